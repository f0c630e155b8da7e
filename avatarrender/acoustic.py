"""English phone timings from an acoustic model of real speech (PocketSphinx's US English model).

The lip-sync classifier (:mod:`avatarrender.lipsync`) learnt speech from synthesizers; the voices
it never heard are where it is least sure. PocketSphinx ships, inside its wheel, a continuous
HMM acoustic model trained on hours of recorded speakers, and forced alignment of known words
is what that model does best: given the words, it finds where each phone of them sounds. With
the text, :func:`phone_classes` gives the phone class that alignment puts at each frame, which
the alignment of :mod:`avatarrender.align` leans on as it leans on espeak-ng's reading.

A plain word is said as CMUdict (the model's own dictionary) says it; anything else (a name it
lacks, digits, symbols, an abbreviation) as espeak-ng reads it, its phonemes mapped to ARPAbet. English only: for any other
language there is no model, and :func:`phone_classes` returns ``None``.

Without the words, :func:`hear_phones` gives the phones the model hears (its phone loop), which
the audio-only track (:func:`avatarrender.lipsync.mouth_track`) leans on, in any language.

Deterministic: the same speech and words give the same phones in any process, whatever was
aligned before (the dither is ours, seeded per call; the front end is made afresh for each
search, and the dictionary never changes).
"""

from __future__ import annotations

import re
import threading

import numpy as np

from .phonemes import arpabet_class

__all__ = ["available", "align_phones", "hear_phones", "phone_classes"]

_RATE_HZ = 16000
_FRAME_S = 0.01  # the model's frame step
# a frame's window (25.625 ms) starts at its step: the boundary between frames k-1 and k lies
# half a window less half a step after k's start
_EDGE_S = (0.025625 - _FRAME_S) / 2
# Beams as wide as 1e-80 (the default 1e-48 lost the path on espeak-ng's formant synthesis, far
# from the model's speakers, most of the time); where even they lose it (one of espeak-ng's
# sentences in ten, with pauses of digital silence), a search without pruning, which a sentence's
# chain of phones affords (0.9 against 0.7 s of CPU for a minute of speech, so not always). Not ds=2
# (the mixtures scored every other frame, 30 % less time): a phone's three states then need 60 ms,
# and fast speech found no path
_SEARCHES = ({"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}, {"beam": 0.0, "wbeam": 0.0, "pbeam": 0.0})
# a longer span (a long text without sentence ends) is not searched: the time grows faster than the
# length (unpruned, with its square)
_MAX_SPAN_S = 30.0
_MAX_UNPRUNED_S = 10.0  # unpruned, 21 s took 0.85 s (0.28 s pruned): longer spans go without

# espeak-ng's English mnemonics -> ARPAbet, for the words CMUdict lacks
_MNEMONIC_ARPABET = {
    **{c: c.upper() for c in ("p", "b", "m", "f", "v", "t", "d", "k", "g", "s", "z", "n", "l", "r", "w")},
    "N": "NG", "S": "SH", "Z": "ZH", "T": "TH", "D": "DH", "h": "HH", "tS": "CH", "dZ": "JH",
    "j": "Y", "x": "K", "?": "T", "t#": "D", "t2": "T", "d#": "D", "n-": "N", "l/": "L", "L": "L",
    "r-": "ER", "@": "AH", "@-": "AH", "@2": "AH", "@5": "AH", "V": "AH", "3": "ER", "3:": "ER",
    "a": "AE", "a#": "AE", "aa": "AE", "A:": "AA", "0": "AA", "E": "EH", "e": "EH", "eI": "EY",
    "I": "IH", "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY", "aI": "AY", "aU": "AW",
    "oU": "OW", "@U": "OW", "o": "OW", "O:": "AO", "O": "AO", "O2": "AO", "OI": "OY",
    "u:": "UW", "u": "UW", "U": "UH", "@L": "AH L", "A@": "AA R", "o@": "AO R", "O@": "AO R",
    "e@": "EH R", "i@": "IH R", "i@3": "IY AH", "U@": "UH R", "aI3": "AY ER", "aI@": "AY AH",
}  # fmt: skip

_LOCK = threading.Lock()
_decoders: dict = {}


def available() -> bool:
    """Whether PocketSphinx and its English model can be loaded here."""
    try:
        with _LOCK:
            _get_decoder()
    except Exception:  # noqa: BLE001 - not installed, or its model unreadable: the aligner is absent
        return False
    return True


# the model's phones: each is also a word of its own (``_p_AA``...), added once, in this order, so
# that the dictionary is the same for every search (words added later moved a boundary by a frame)
_PHONES = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()


def _get_decoder(search: int = 0):
    """The decoder with the beams of ``_SEARCHES[search]`` (each loaded once: 0.02 s).

    Its dictionary holds the phone-words alone: a search's text is made of them, and loading
    CMUdict's 135,000 words took 0.12 s a decoder (on the render's way to its first chunk,
    holding the GIL). The same phones at the same frames as with CMUdict loaded, on espeak-ng's
    and flite's readings of the tuning sentences, digits and abbreviations among them.
    CMUdict's pronunciations are read by :func:`_cmudict_says`."""
    if search not in _decoders:
        d = _new_decoder(**_SEARCHES[search])
        for k, p in enumerate(_PHONES):
            d.add_word("_p_" + p, p, k == len(_PHONES) - 1)
        _decoders[search] = d
    return _decoders[search]


def _new_decoder(**kw):
    """A decoder of the wheel's model, with an empty dictionary (see :func:`_get_decoder`)."""
    import os

    from pocketsphinx import Decoder

    # no noise removal: the same alignment of a minute of speech without it, for less work
    return Decoder(
        lm=None,
        dict=os.devnull,
        samprate=_RATE_HZ,
        loglevel="FATAL",
        bestpath=False,
        remove_noise=False,
        **kw,
    )


def _timed(segs, name) -> list[tuple[str, float, float]]:
    """``(name(segment), start_s, end_s)`` of a search's segments, in seconds of its speech."""
    return [
        (name(s), s.start_frame * _FRAME_S + _EDGE_S, (s.end_frame + 1) * _FRAME_S + _EDGE_S) for s in segs
    ]


_CMUDICT: list[bytes] = []  # the file's bytes, read once


def _cmudict_says(word: str) -> str | None:
    """CMUdict's first pronunciation of ``word`` (lower case), as the decoder's ``lookup_word``
    gave it with the dictionary loaded; ``None`` when it lacks the word. A search of the file's
    3 MB (about 0.15 ms a word) instead of a table of every word."""
    if not _CMUDICT:
        from pocketsphinx import get_model_path

        with open(f"{get_model_path()}/en-us/cmudict-en-us.dict", "rb") as fh:
            _CMUDICT.append(b"\n" + fh.read())
    data = _CMUDICT[0]
    key = b"\n" + word.encode() + b" "
    at = data.find(key)
    if at < 0:
        return None
    end = data.find(b"\n", at + 1)
    return data[at + len(key) : end if end >= 0 else len(data)].decode().strip() or None


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")  # letters, with apostrophes inside ("don't")


def _tokens(text: str) -> list[str]:
    """The text's words as written, each stripped of the punctuation around it."""
    return [t for t in (w.strip("\"'()[]{},;:!?\u2018\u2019\u201c\u201d") for w in text.split()) if t]


def _pronunciation(token: str, language: str) -> list[str]:
    """``token``'s phones (ARPAbet): CMUdict's for a plain word, else espeak-ng's reading of it
    (digits, symbols, abbreviations: "1,000", "$5", "50%", "Dr.", "U.S."), mapped."""
    word = token.lower()
    plain = word.rstrip(".")
    if _WORD.fullmatch(plain):
        # "home." at a sentence's end is "home"; "Dr." is not "dr" (CMUdict's "drive")
        said = _cmudict_says(plain) if len(plain) > 3 or plain == word else None
        if said is not None:
            return said.split()
        token = token.rstrip(".")
    from .phonemes import _LOCK as espeak_lock
    from .phonemes import EspeakUnavailable, _phoneme_strings

    try:
        with espeak_lock:
            strings = _phoneme_strings(token, language, False)
    except (ValueError, EspeakUnavailable):
        return []
    phones = []
    for p in "|".join(" ".join(strings).split()).split("|"):
        arpa = _MNEMONIC_ARPABET.get(p.lstrip("'\",=%").rstrip(";"))
        if arpa:
            phones += arpa.split()
    return phones


def _loaded(get):
    """``get()``'s decoder, or ``None`` where PocketSphinx or its model cannot be loaded."""
    try:
        with _LOCK:
            return get()
    except Exception:  # noqa: BLE001 - see available()
        return None


def _at_16k(y: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    import soxr

    return soxr.resample(np.asarray(y, np.float32), sample_rate_hz, _RATE_HZ)


def _pcm(y: np.ndarray) -> bytes:
    # +-1 LSB of dither, the same every call: digital silence (zeros) has no log-spectrum
    rng = np.random.default_rng(0)
    x = np.clip(np.rint(y * 32767.0) + rng.integers(-1, 2, size=len(y)), -32768, 32767)
    return x.astype(np.int16).tobytes()


def _align_one(d, pcm: bytes, phones: list[str]) -> tuple[list[tuple[str, float, float]], float] | None:
    """One search over the phones, each a word of its own, so that its path is the phones'
    timing (PocketSphinx's own phone alignment is a second full search: twice the time, and no
    better on the tuning set); and the path's acoustic log-likelihood, each frame's taken against
    the best state of the model there (0: every frame on the best; see :func:`align_phones`)."""
    chain = ["_p_" + p for p in phones if p in _PHONES]
    if not chain:
        return None
    started = False
    try:
        # the front end carries state from one utterance to the next (a boundary moved by a frame
        # after other speech): made afresh, 0.03 ms
        d.reinit_feat()
        d.set_align_text(" ".join(chain))
        d.start_utt()
        started = True
        d.process_raw(pcm, full_utt=True)
        started = False
        d.end_utt()
        if d.hyp() is None:
            return None  # no path through the phones: they are not what is said here
        segs = list(d.seg())
        # each segment's ascore comes as exp() of its log-likelihood in the model's scaled units
        # (x1000: readable figures)
        score = 1000.0 * float(sum(np.log(max(s.ascore, 1e-300)) for s in segs))
        return _timed(segs, lambda s: s.word[3:] if s.word.startswith("_p_") else "SIL"), score
    except RuntimeError:
        if started:  # an utterance left open would fail every later search of this decoder
            try:
                d.end_utt()
            except RuntimeError:
                _decoders.clear()
        return None


def align_phones(
    y: np.ndarray,
    sample_rate_hz: int,
    texts: list[str],
    spans_s: list[tuple[float, float] | None],
    *,
    language: str = "en-us",
    fits: list | None = None,
) -> list[tuple[str, float, float]] | None:
    """``[(ARPAbet phone or SIL, start_s, end_s), ...]`` of ``texts`` spoken in ``y`` (mono), each
    text looked for within its span of ``spans_s`` (``None``: not looked for), or ``None`` (not
    English, PocketSphinx absent, nothing aligned). A text whose phones find no path through its
    span is left out. Short spans keep the search's time in the speech's length (one search over
    a minute costs twice what twenty three-second ones do).

    ``fits``, a list, gets ``(log_likelihood, (start_s, end_s))`` for each text searched for: how
    well the model of real speakers hears the text in its span, its path's log-likelihood summed
    over the span's 10-ms frames, each frame's against the best state of the model there (0 at
    best, lower is worse; ``None`` where the pruned search found no path), and the span."""
    if not language.lower().startswith("en") or not any(t.strip() for t in texts):
        return None
    d = _loaded(_get_decoder)
    if d is None:
        return None
    y16 = _at_16k(y, sample_rate_hz)
    out: list[tuple[str, float, float]] = []
    with _LOCK:
        for text, span in zip(texts, spans_s):
            if span is None:
                continue
            i0, i1 = max(0, int(span[0] * _RATE_HZ)), min(len(y16), int(span[1] * _RATE_HZ))
            phones = [p for tok in _tokens(text) for p in _pronunciation(tok, language)]
            if not phones or not _RATE_HZ // 10 <= i1 - i0 <= _MAX_SPAN_S * _RATE_HZ:
                continue
            pcm = _pcm(y16[i0:i1])
            got = _align_one(d, pcm, phones)
            if fits is not None:
                fits.append((None if got is None else got[1], (i0 / _RATE_HZ, i1 / _RATE_HZ)))
            if got is None and i1 - i0 <= _MAX_UNPRUNED_S * _RATE_HZ:
                try:
                    got = _align_one(_get_decoder(1), pcm, phones)
                except Exception:  # noqa: BLE001 - see available()
                    got = None
            if got:
                out += [(name, a + i0 / _RATE_HZ, b + i0 / _RATE_HZ) for name, a, b in got[0]]
    return out or None


# the phone loop: any phone may follow any other, weighed by the model's phone trigrams
_PHONE_LM = "en-us-phone.lm.bin"


def hear_phones(y: np.ndarray, sample_rate_hz: int) -> list[tuple[str, float, float]] | None:
    """``[(ARPAbet phone or SIL, start_s, end_s), ...]``: the phones the model hears in ``y``
    (mono) without being told the words (its phone loop), or ``None`` (PocketSphinx absent, no
    sound). Slower than an alignment (about 3 s of CPU a minute of speech, against 0.3 s: every
    phone is a candidate at every frame) and far less sure; a second opinion for the audio alone."""
    d = _loaded(_get_loop)
    if d is None:
        return None
    y16 = _at_16k(y, sample_rate_hz)
    if len(y16) < _RATE_HZ // 10:
        return None
    with _LOCK:
        try:
            d.reinit_feat()
            d.start_utt()
            d.process_raw(_pcm(y16), full_utt=True)
            d.end_utt()
        except RuntimeError:
            _decoders.pop("loop", None)
            return None
        return _timed(d.seg(), lambda s: s.word if s.word in _PHONES else "SIL") or None


def _get_loop():
    """The phone-loop decoder (loaded once)."""
    if "loop" not in _decoders:
        from pocketsphinx import get_model_path

        _decoders["loop"] = _new_decoder(allphone=f"{get_model_path()}/en-us/{_PHONE_LM}")
    return _decoders["loop"]


def phone_classes(phones: list[tuple[str, float, float]], n_frames: int, fps: float) -> np.ndarray:
    """The phone class at the middle of each of ``n_frames`` frames at ``fps``, -1 where no phone
    of ``phones`` sounds. Silence (``SIL``, what :func:`align_phones` names every filler) is silence."""
    mids = (np.arange(n_frames) + 0.5) / fps
    out = np.full(n_frames, -1, dtype=np.int64)
    for name, s, e in phones:
        lo, hi = np.searchsorted(mids, [s, e])
        out[lo:hi] = arpabet_class(name)
    return out

"""Phone classes, and text to phonemes with libespeak-ng (through ctypes).

The lip-sync classifier (:mod:`avatarrender.lipsync`) scores eleven *phone classes* per frame,
finer than the nine mouth shapes so that text can be aligned to them: the three kinds of ``B``
consonant (stops, fricatives, sonorants) sound unlike each other, though the mouth shows them
alike. Every class has one shape (:data:`CLASS_SHAPE`).

:func:`phonemize` turns text into words of phone classes with espeak-ng, in any of its languages;
numbers, abbreviations and punctuation are espeak's business (``12`` -> "twelve", ``Dr.`` ->
"doctor"). Phonemes are mapped through their IPA symbols (:func:`ipa_class`), and for English
through espeak's own mnemonics, which the training truth uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import threading
import re
import unicodedata

import numpy as np

from . import _espeak_reading as _er

__all__ = [
    "CLASSES",
    "CLASS_SHAPE",
    "Word",
    "phonemize",
    "ipa_class",
    "mnemonic_class",
    "arpabet_class",
    "libespeak",
    "speak",
    "read_aloud",
    "start_reading",
    "reads_in_ipa",
    "Reading",
    "EspeakUnavailable",
]

# name, mouth shape
_CLASS_TABLE = (
    ("sil", "X"),
    ("bilabial", "A"),  # p b m (and Spanish b/v between vowels, lips almost touching)
    ("labiodental", "G"),  # f v
    ("lateral", "H"),  # l
    ("round", "F"),  # w, oo, uh, ü
    ("midround", "E"),  # aw, oh, er, ow, oy
    ("open", "D"),  # ah, ae, ay, uh (cup)
    ("front", "C"),  # eh, ih, ee, ey, schwa
    ("stop", "B"),  # t d k g
    ("fricative", "B"),  # s z sh zh th dh h ch j x
    ("sonorant", "B"),  # n ng r y
)
CLASSES = tuple(name for name, _ in _CLASS_TABLE)
CLASS_SHAPE = "".join(shape for _, shape in _CLASS_TABLE)
_C = {name: i for i, name in enumerate(CLASSES)}

# espeak-ng mnemonics (English) -> class; the shapes agree with evaluation.espeak.PHONEME_SHAPE
_MNEMONIC = {
    **dict.fromkeys(["p", "b", "m"], "bilabial"),
    **dict.fromkeys(["f", "v"], "labiodental"),
    **dict.fromkeys(["l", "l/", "L", "l#", "@L"], "lateral"),  # @L: syllabic l ("apple")
    **dict.fromkeys(["w", "u:", "U", "u", "U@", "w#"], "round"),
    **dict.fromkeys(["O:", "O", "3:", "@U", "oU", "OI", "o@", "O@", "0", "aU", "3", "r-"], "midround"),
    **dict.fromkeys(["A:", "aI", "a", "A@", "V", "aa", "a#", "A", "a2"], "open"),
    **dict.fromkeys(
        ["E", "e", "eI", "e@", "I", "i", "i:", "@", "@2", "@5", "a@", "I2", "I#", "i@", "e#", "E2"], "front"
    ),
    **dict.fromkeys(["t", "d", "k", "g", "t#", "d#", "?", "t2", "d2", "k#", "g#", "c", "x#"], "stop"),
    **dict.fromkeys(
        ["s", "z", "S", "Z", "T", "D", "h", "x", "C", "tS", "dZ", "s#", "z#", "S;", "Z;", "ts", "dz"],
        "fricative",
    ),
}

# ARPAbet (flite, CMUdict) -> class, in step with the espeak table above
_ARPABET = {
    "pau": "sil",
    "h#": "sil",
    "sil": "sil",
    "brth": "sil",  # Festival's breath
    **dict.fromkeys(["p", "b", "m", "em"], "bilabial"),
    **dict.fromkeys(["f", "v"], "labiodental"),
    **dict.fromkeys(["l", "el"], "lateral"),
    **dict.fromkeys(["w", "uw", "uh"], "round"),
    **dict.fromkeys(["ao", "ow", "oy", "aw", "er", "axr"], "midround"),
    **dict.fromkeys(["aa", "ay", "ae", "ah"], "open"),
    **dict.fromkeys(["eh", "ey", "ih", "iy", "ax", "ix"], "front"),
    **dict.fromkeys(["t", "d", "k", "g", "dx"], "stop"),
    **dict.fromkeys(["s", "z", "sh", "zh", "th", "dh", "hh", "hv", "ch", "jh"], "fricative"),
    **dict.fromkeys(["n", "ng", "en", "r", "y"], "sonorant"),
}

# IPA symbols (after stress and length marks are removed) -> class
_IPA_MULTI = {
    "aʊ": "midround",
    "oʊ": "midround",
    "ɔɪ": "midround",
    "əʊ": "midround",
    "aɪ": "open",
    "eɪ": "front",
    "əl": "lateral",
    "tʃ": "fricative",
    "dʒ": "fricative",
    "ts": "fricative",
    "dz": "fricative",
    "pf": "labiodental",
}
_IPA_FIRST = {
    **dict.fromkeys("pbmɸβʙ", "bilabial"),
    **dict.fromkeys("fvʋɱ", "labiodental"),
    **dict.fromkeys("lɫʎɬɭɮʟ", "lateral"),
    **dict.fromkeys("wuʊɥʍyʏɯ", "round"),
    **dict.fromkeys("oɔɒɜɝɚøœɵɞɤ", "midround"),
    **dict.fromkeys("aɑæʌɐɶ", "open"),
    **dict.fromkeys("eɛiɪəɨɘᵻ", "front"),  # ᵻ: espeak-ng's reduced vowel ("wanted")
    **dict.fromkeys("tdkgɡqʔcɟʈɖɢ", "stop"),
    **dict.fromkeys("szʃʒʂʐɕʑçxχʝɣhɦθðħʕ", "fricative"),
    **dict.fromkeys("nŋɲɳɴrɾɹɻʁʀjɰ", "sonorant"),
}
_MARKS = "ˈˌːˑ'ˌ‿̯̩̃̆͡"


def event_class(name: str, ipa: bool) -> int:
    """The class of a phoneme event's name (:func:`start_reading`): IPA or an espeak-ng
    mnemonic; pauses (``_``...) are silence, an IPA symbol of no class a sonorant."""
    if not name or name.startswith("_"):
        return _C["sil"]
    if ipa:
        c = ipa_class(name)
        return _C["sonorant"] if c is None else c
    return mnemonic_class(name)


def mnemonic_class(name: str) -> int:
    """The class of an espeak-ng phoneme mnemonic; pauses (``_``...) are silence, unlisted
    consonants sonorants."""
    if not name or name.startswith("_"):
        return _C["sil"]
    base = name.rstrip("#;:/!")
    return _C[_MNEMONIC.get(name, _MNEMONIC.get(base, "sonorant"))]


def arpabet_class(name: str) -> int:
    """The class of an ARPAbet phone (flite's segment names, stress digits allowed)."""
    return _C[_ARPABET.get(name.lower().rstrip("012"), "sonorant")]


def ipa_class(symbol: str) -> int | None:
    """The class of one IPA phoneme as espeak-ng writes it (``ˈɑː``, ``aɪ``, ``t͡ʃ``), or
    ``None`` for a symbol with no letter of the table."""
    s = "".join(c for c in unicodedata.normalize("NFD", symbol) if c not in _MARKS)
    if not s:
        return None
    for k in (s[:2],):
        if k in _IPA_MULTI:
            return _C[_IPA_MULTI[k]]
    for ch in s:
        if ch in _IPA_FIRST:
            return _C[_IPA_FIRST[ch]]
    return None


@dataclasses.dataclass(frozen=True)
class Word:
    """One spoken word as espeak-ng reads it: its phone classes, and the caption cue (the index
    given to :func:`phonemize`) it came from."""

    classes: tuple[int, ...]
    cue: int = 0


class EspeakUnavailable(RuntimeError):
    """libespeak-ng cannot be loaded or initialised."""


_CHARS_UTF8 = _er.CHARS_UTF8
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def libespeak() -> tuple[ctypes.CDLL, int]:
    """libespeak-ng, initialised once per process for synchronous synthesis with phoneme
    events: ``(library, sample rate in Hz)``. Raises :class:`EspeakUnavailable`."""
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise EspeakUnavailable(f"cannot load libespeak-ng ({exc}): install espeak-ng") from None
    rate = lib.espeak_Initialize(
        _er.AUDIO_OUTPUT_SYNCHRONOUS, 200, None, _er.INITIALIZE_PHONEME_EVENTS | _er.INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise EspeakUnavailable("espeak_Initialize failed (is espeak-ng-data installed?)")
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    return lib, rate


def has_language(language: str) -> bool | None:
    """Whether espeak-ng speaks ``language`` (a voice name or a language it lists); None when
    espeak-ng is not there to ask."""
    try:
        lib, _ = libespeak()
    except EspeakUnavailable:
        return None
    return bool(_er.set_voice(lib, language))


def _phoneme_strings(text: str, language: str, ipa: bool) -> list[str]:
    """espeak-ng's phonemes of ``text``, one string per clause, phonemes separated by ``|`` and
    words by spaces."""
    lib, _ = libespeak()
    if not _er.set_voice(lib, language):
        raise ValueError(f"espeak-ng has no language {language!r}")
    # a control character is a space: espeak-ng reads a C string, and a NUL ended the text there
    text = _CONTROL.sub(" ", text)
    buf = ctypes.create_string_buffer(text.encode("utf-8", errors="replace"))
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    mode = (2 if ipa else 0) | (ord("|") << 8)
    out = []
    while ptr.value:  # one clause per call; the pointer becomes NULL at the end
        before = ptr.value
        res = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
        if res:
            out.append(res.decode("utf-8", errors="replace"))
        if ptr.value == before:  # no progress: never loop for ever
            break
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# speech synthesis with phoneme events (the evaluation's truth; the alignment's template reads in a
# process of its own: read_aloud)
_RATE = _er.PARAM_RATE
_PITCH = _er.PARAM_PITCH


class _Synth:
    def __init__(self) -> None:
        # one initialisation per process, shared with the text-to-phonemes
        self.lib, self.rate = libespeak()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _er.CALLBACK(self._callback)
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_Synth.argtypes = _er.SYNTH_ARGTYPES

    def _callback(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        self._events.extend(_er.phoneme_events(events))
        return 0

    def say(self, text: str, voice: str, rate_wpm: int, pitch: int | None):
        if not _er.set_voice(self.lib, voice):
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        # 0-100 around the voice's own pitch (50); set every time, as the engine keeps it
        self.lib.espeak_SetParameter(_PITCH, 50 if pitch is None else int(pitch), 0)
        self._chunks, self._events = [], []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return samples, [(name, ms / 1000.0) for name, ms in self._events]


@functools.lru_cache(maxsize=1)
def _synth() -> _Synth:
    return _Synth()


def speak(
    text: str, *, voice: str = "en-us", rate_wpm: int = 175, pitch: int | None = None
) -> tuple[np.ndarray, int, list[tuple[str, float]]]:
    """``text`` spoken by espeak-ng: ``(samples [float32, mono], sample rate in Hz, [(phoneme
    mnemonic, start_s), ...])``. ``pitch`` 0-100 around the voice's own (50).

    Raises
    ------
    ValueError
        espeak-ng has no such voice.
    EspeakUnavailable
    """
    with _LOCK:
        samples, events = _synth().say(text, voice, rate_wpm, pitch)
        return samples, _synth().rate, events


class Reading:
    """``texts`` being read aloud by espeak-ng in a fresh process (:func:`start_reading`): the
    process reads while the caller works; :meth:`result` collects it, :meth:`cancel` ends it.

    The samples come back through a temporary file that has no name from the start (created,
    opened, unlinked; the child writes to the inherited descriptor): a render killed with
    SIGKILL leaves nothing in /dev/shm or /tmp."""

    def __init__(self, texts: list[str], *, voice: str, rate_wpm: int, timeout_s: float, ipa: bool = False):
        import json
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        self.texts, self.timeout_s = list(texts), timeout_s
        script = Path(__file__).with_name("_espeak_reading.py")
        self._file = None
        for where in ("/dev/shm", None):  # memory if it can be had, else the temp directory
            try:
                self._file = tempfile.TemporaryFile(prefix="avatarrender-reading-", dir=where)
                break
            except OSError:
                if where is None:
                    raise
        fd = self._file.fileno()
        req = {"voice": voice, "rate_wpm": int(rate_wpm), "texts": self.texts, "samples_fd": fd, "ipa": ipa}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(fd,),
            )
        except BaseException:
            self._file.close()
            raise
        # the request now, so that the reading runs while the caller works (a request longer
        # than the pipe holds waits here until the child has started and reads it)
        try:
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the child ended first: result() says why
        self._proc.stdin = None

    def result(self) -> tuple[np.ndarray, int, list[tuple[str, float]], list[tuple[float, float]]]:
        """``(samples [float32, mono], sample rate in Hz, [(phoneme mnemonic, start_s), ...],
        [(start_s, end_s) of each text, ...])``. Raises :class:`EspeakUnavailable`."""
        import json
        import subprocess

        try:
            out, err = self._proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise EspeakUnavailable(
                f"espeak-ng did not read {len(self.texts)} texts within {self.timeout_s:g} s"
            ) from None
        try:
            if self._proc.returncode != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                raise EspeakUnavailable(
                    lines[-1] if lines else f"the reading ended with {self._proc.returncode}"
                )
            info = json.loads(out)
            self._file.seek(0)
            samples = np.frombuffer(self._file.read(), dtype="<i2").astype(np.float32) / 32768.0
            rate_hz = int(info["rate_hz"])
            events, spans, at = [], [], 0
            for part in info["parts"]:
                events += [(str(name), (at + rate_hz * ms / 1000.0) / rate_hz) for name, ms in part["events"]]
                spans.append((at / rate_hz, (at + int(part["samples"])) / rate_hz))
                at += int(part["samples"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a file or an answer cut short
            raise EspeakUnavailable(f"the reading's answer could not be read ({exc})") from None
        finally:
            self._file.close()
        return samples[:at], rate_hz, events, spans

    def cancel(self) -> None:
        """End the reading if it runs still (its result is not wanted), and reap the process."""
        if self._proc.returncode is None:
            if self._proc.poll() is None:
                self._proc.kill()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
            self._proc.wait()
        self._file.close()


def reads_in_ipa(language: str) -> bool:
    """Whether :func:`start_reading` names the phonemes in IPA for ``language`` by default (every
    language but English, whose mnemonics the training truth uses)."""
    return not language.lower().startswith("en")


def start_reading(
    texts: list[str],
    *,
    voice: str = "en-us",
    rate_wpm: int = 175,
    timeout_s: float = 60.0,
    ipa: bool | None = None,
) -> Reading:
    """Start ``texts`` being read aloud one after the other by espeak-ng in a fresh process, so
    that the same texts always give the same samples (libespeak-ng's output moves with what it
    read before in a process; ``_espeak_reading``). The reading runs while the caller works.

    ``ipa``: the phonemes named in IPA (:func:`ipa_class`), else in espeak-ng's mnemonics
    (:func:`mnemonic_class`, English); by default IPA for every language but English."""
    if ipa is None:
        ipa = reads_in_ipa(voice)
    return Reading(texts, voice=voice, rate_wpm=rate_wpm, timeout_s=timeout_s, ipa=ipa)


def read_aloud(
    texts: list[str],
    *,
    voice: str = "en-us",
    rate_wpm: int = 175,
    timeout_s: float = 60.0,
    ipa: bool | None = None,
) -> tuple[np.ndarray, int, list[tuple[str, float]], list[tuple[float, float]]]:
    """:func:`start_reading` and its :meth:`Reading.result`.

    Raises
    ------
    EspeakUnavailable
        espeak-ng cannot be loaded, has no such voice, or did not answer within ``timeout_s``.
    """
    return start_reading(texts, voice=voice, rate_wpm=rate_wpm, timeout_s=timeout_s, ipa=ipa).result()


def phonemize(texts: list[str] | str, *, language: str = "en-us") -> list[Word]:
    """The words of ``texts`` (caption cues, in order) as phone classes.

    Parameters
    ----------
    texts : list of str, or str
        The words spoken; each item's words carry its index as :attr:`Word.cue`.
    language : str
        An espeak-ng voice or language name (``en-us``, ``es``, ``de``, ...).

    Raises
    ------
    ValueError
        espeak-ng has no such language.
    EspeakUnavailable
    """
    if isinstance(texts, str):
        texts = [texts]
    english = language.lower().startswith("en")
    words: list[Word] = []
    with _LOCK:
        for cue, text in enumerate(texts):
            ipa = " ".join(_phoneme_strings(text, language, True)).split()
            mnem = " ".join(_phoneme_strings(text, language, False)).split() if english else []
            for k, w in enumerate(ipa):
                syms = [p for p in w.split("|") if p]
                names = [p.lstrip("'\",=%") for p in mnem[k].split("|") if p] if len(mnem) == len(ipa) else []
                if len(names) != len(syms):
                    names = []
                classes = []
                for j, sym in enumerate(syms):
                    known = names and names[j].rstrip("#;:/!") in _MNEMONIC or names and names[j] in _MNEMONIC
                    c = mnemonic_class(names[j]) if known else ipa_class(sym)
                    if c is not None and c != _C["sil"]:
                        classes.append(c)
                if classes:
                    words.append(Word(tuple(classes), cue))
    return words

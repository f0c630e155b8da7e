"""PocketSphinx's forced alignment of known English words (avatarrender.acoustic), and the text
track leaning on it."""

from __future__ import annotations

import shutil
import warnings
from fractions import Fraction

import numpy as np
import pytest

from avatarrender import acoustic
from avatarrender.evaluation.espeak import synthesize, truth_classes
from avatarrender.phonemes import CLASSES

FPS = 90.0
SIL = CLASSES.index("sil")
BILABIAL = CLASSES.index("bilabial")


def _agreement(utt, text: str) -> tuple[float, np.ndarray, np.ndarray]:
    """Share of speech frames (90 fps) whose class the alignment gets right, and both tracks."""
    phones = acoustic.align_phones(utt.samples, utt.sample_rate_hz, [text], [(0.0, utt.duration_s)])
    assert phones, text
    n = int(np.ceil(utt.duration_s * FPS))
    want = truth_classes(utt, fps=Fraction(90), n_frames=n)
    got = acoustic.phone_classes(phones, n, FPS)
    speech = want != SIL
    return float(np.mean(got[speech] == want[speech])), got, want


def test_the_model_is_there():
    """Installed with the package, model and dictionary inside its wheel: no download."""
    assert acoustic.available()


@pytest.mark.skipif(not shutil.which("flite"), reason="flite is not installed")
def test_phones_of_voices_from_recordings_land_where_their_synthesizer_put_them():
    """flite's voices (recorded speakers; never heard by the model) at two speaking rates: most
    speech frames get their phone's class, and every p/b/m is found closed."""
    from avatarrender.evaluation import flite

    text = "Maybe my brother will buy both of the blue bikes."
    for voice, stretch in (("slt", 1.0), ("awb", 1.25)):
        utt = flite.synthesize(text, voice=voice, stretch=stretch)
        share, got, want = _agreement(utt, text)
        assert share >= 0.7, (voice, share)
        # each closure of the truth meets one of the alignment's (a frame of slack at 90 fps)
        edges = np.flatnonzero(np.diff(np.r_[0, (want == BILABIAL).astype(int), 0]))
        for s, e in zip(edges[::2], edges[1::2]):
            assert (got[max(0, s - 1) : e + 1] == BILABIAL).any(), (voice, s / FPS)


def test_phones_of_formant_synthesis_are_found_too():
    """espeak-ng's voices are far from the model's speakers: the wide beams still find a path."""
    for voice, rate, text in (
        ("en-us", 155, "Bring the paper map, please; the bus stops by the bridge."),
        ("en-gb-x-rp", 170, "Put the big lamp by the window before bedtime."),
    ):
        share, _, _ = _agreement(synthesize(text, voice=voice, rate_wpm=rate), text)
        assert share >= 0.6, (voice, share)


def test_cmudict_is_read_as_the_decoder_reads_it():
    """The decoders load no dictionary (0.12 s each): CMUdict's words are read from its file,
    as PocketSphinx's own lookup gives them with it loaded."""
    from pocketsphinx import Decoder

    full = Decoder(lm=None, loglevel="FATAL")  # CMUdict loaded, as the model comes
    words = ["'bout", "read", "bridge", "the", "a", "zyuganov", "don't", "zorblax", "café", "xx"]
    words += ["w" * 300, "tableau", "record", "live"]
    assert [acoustic._cmudict_says(w) for w in words] == [full.lookup_word(w) for w in words]
    assert acoustic._cmudict_says("read") == "R EH D"  # the first of its variants
    assert acoustic._get_decoder().lookup_word("bridge") is None  # not loaded


def test_words_the_dictionary_lacks_are_said_as_espeak_reads_them():
    assert acoustic._pronunciation("Bridge.", "en-us") == "B R IH JH".split()
    assert acoustic._pronunciation("25", "en-us") == "T W EH N T IY F AY V".split()
    # numbers, symbols and abbreviations as they are read, not CMUdict's entry for the letters
    for token, expect in (
        ("1,000", "W AH N TH AW Z AH N D"),
        ("50%", "F IH F T IY P ER S EH N T"),
        ("Dr.", "D AA K T ER"),
        ("home.", "HH OW M"),
    ):
        assert acoustic._pronunciation(token, "en-us") == expect.split(), token
    assert acoustic._tokens('He said, "Bring 2 maps!"') == ["He", "said", "Bring", "2", "maps"]
    said = acoustic._pronunciation("Zorblax", "en-us")
    assert said[:3] == ["Z", "AO", "R"] and said[-3:] == ["AE", "K", "S"], said
    # aligned like any word
    text = "Zorblax paid 25 dollars."
    utt = synthesize(text, voice="en-us", rate_wpm=150)
    phones = acoustic.align_phones(utt.samples, utt.sample_rate_hz, [text], [(0.0, utt.duration_s)])
    names = [p for p, _, _ in phones]
    assert names[names.index("F") : names.index("F") + 3] == ["F", "AY", "V"]


def test_where_the_beams_lose_the_path_an_unpruned_search_finds_it(monkeypatch):
    text = "Bob picked a big bumpy apple."
    utt = synthesize(text, voice="en-us", rate_wpm=160)
    narrow = {"beam": 0.5, "wbeam": 0.5, "pbeam": 0.5}  # loses it at once
    monkeypatch.setattr(acoustic, "_SEARCHES", (narrow, acoustic._SEARCHES[1]))
    monkeypatch.setattr(acoustic, "_decoders", {})
    import soxr

    d = acoustic._get_decoder(0)
    chain = [p for tok in acoustic._tokens(text) for p in acoustic._pronunciation(tok, "en-us")]
    pcm = acoustic._pcm(soxr.resample(utt.samples, utt.sample_rate_hz, 16000))
    assert acoustic._align_one(d, pcm, chain) is None
    phones = acoustic.align_phones(utt.samples, utt.sample_rate_hz, [text], [(0.0, utt.duration_s)])
    assert phones and 1 in acoustic._decoders
    assert [p for p, _, _ in phones if p != "SIL"][:3] == ["B", "AA", "B"]


def test_the_same_speech_gives_the_same_phones_whatever_came_before():
    """No state from one alignment to the next: a segment gets the same mouth in the render
    service, after hundreds of others, as from the command line."""
    texts = ["Bob picked a big bumpy apple.", "We will go home when the big moon comes up."]
    utts = [synthesize(t, voice="en-us", rate_wpm=160) for t in texts]

    def run(k):
        u = utts[k]
        return acoustic.align_phones(u.samples, u.sample_rate_hz, [texts[k]], [(0.0, u.duration_s)])

    first = run(0)
    run(1)
    u = utts[0]
    acoustic.align_phones(u.samples * 0.1, u.sample_rate_hz, texts[:1], [(0.0, u.duration_s)])
    assert run(0) == first


def test_spans_bound_each_search_and_what_cannot_be_aligned_is_left_out():
    text = "Please bring my brown umbrella."
    utt = synthesize(text, voice="en-us", rate_wpm=160)
    y = np.concatenate([np.zeros(utt.sample_rate_hz, np.float32), utt.samples])  # 1 s of silence first
    dur = len(y) / utt.sample_rate_hz
    phones = acoustic.align_phones(y, utt.sample_rate_hz, [text], [(0.8, dur)])
    assert phones and min(s for _, s, _ in phones) >= 0.8 and max(e for _, _, e in phones) <= dur + 0.02
    speech = [s for p, s, _ in phones if p != "SIL"]
    assert min(speech) >= 0.95  # nothing placed in the leading silence
    # another language has no model; a text not looked for, or empty, gives nothing
    assert acoustic.align_phones(y, utt.sample_rate_hz, [text], [(0.0, dur)], language="de") is None
    assert acoustic.align_phones(y, utt.sample_rate_hz, [text], [None]) is None
    assert acoustic.align_phones(y, utt.sample_rate_hz, ["", "!?"], [(0.0, dur)] * 2) is None


def test_a_long_text_without_cue_times_is_searched_sentence_by_sentence(monkeypatch):
    """Three sentences as one text, with pauses of their own: each is searched around where the
    classifier's path put its words (short searches), and the template marks the phonemes."""
    from avatarrender import align
    from avatarrender.align import text_mouth_track

    texts = [
        "Bring the paper map, please.",
        "Maybe my brother will buy both of the blue bikes.",
        "Put the big lamp by the window before bedtime.",
    ]
    sr = 22050
    pieces, want = [], []
    for t, pause_s in zip(texts, (2.0, 0.5, 0.0)):
        u = synthesize(t, voice="en-us", rate_wpm=160)
        n = int(round(u.duration_s * FPS))
        pieces += [u.samples[: n * sr // 90], np.zeros(int(pause_s * FPS) * sr // 90, np.float32)]
        want += [truth_classes(u, fps=Fraction(90), n_frames=n), np.full(int(pause_s * FPS), SIL)]
    y, want = np.concatenate(pieces), np.concatenate(want)
    searched, heard = [], {}
    real_align, real_template = acoustic.align_phones, align._heard_template

    def spy_align(y, sr, pieces, spans, **kw):
        searched.extend(zip(pieces, spans))
        return real_align(y, sr, pieces, spans, **kw)

    def spy_template(*a, **kw):
        heard["classes"] = real_template(*a, **kw)
        return heard["classes"]

    monkeypatch.setattr(acoustic, "align_phones", spy_align)
    monkeypatch.setattr(align, "_heard_template", spy_template)
    # espeak-ng's voice is the classifier's own: its path explains every sentence, none is searched
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text_mouth_track(y, sr, fps=Fraction(30), texts=[" ".join(texts)])
    assert searched == []
    monkeypatch.setattr(align, "_HEARD_SURE_FIT", 1.0)  # as for a voice it doubts: all are
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text_mouth_track(y, sr, fps=Fraction(30), texts=[" ".join(texts)])
    assert [p for p, _ in searched] == texts
    for _, (s0, s1) in searched:
        assert s1 - s0 < 5.0  # around its own words, not the whole speech
    got = heard["classes"][: len(want)]
    speech = want != SIL
    assert np.mean(got[speech] == want[speech]) >= 0.6


# ALSA's test recordings (alsa-utils, which `scripts/setup.sh --test` installs): one real speaker
_ALSA = "/usr/share/sounds/alsa"
_ALSA_WORDS = (
    "Front_Center",
    "Front_Left",
    "Front_Right",
    "Rear_Center",
    "Rear_Left",
    "Rear_Right",
    "Side_Left",
    "Side_Right",
)


def _alsa(name: str) -> tuple[np.ndarray, int]:
    import soundfile

    y, sr = soundfile.read(f"{_ALSA}/{name}.wav", dtype="float32")
    return (y.mean(axis=1) if y.ndim > 1 else y), sr


def _refused(y, sr, texts) -> tuple[bool, np.ndarray]:
    from avatarrender.align import LipsyncWarning, text_mouth_track

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LipsyncWarning)
        track = text_mouth_track(y, sr, fps=Fraction(30), texts=texts)
    return any("does not fit" in str(w.message) for w in caught), track


def test_a_real_voice_s_words_are_heard_and_wrong_ones_refused():
    """A recorded speaker, unlike every voice the classifier trained on, which doubted the right
    words of 6 of these 8 recordings: the model of real speakers hears them, so the text leads.
    Other words than those said stay refused."""
    from avatarrender.lipsync import mouth_track

    parts, texts = [], []
    for name in _ALSA_WORDS:
        y, sr = _alsa(name)
        parts += [y, np.zeros(int(0.3 * sr), np.float32)]
        texts.append(name.replace("_", " ") + ".")
    y = np.concatenate(parts)
    refused, track = _refused(y, sr, [" ".join(texts)])
    assert not refused
    assert not np.array_equal(track, mouth_track(y, sr, fps=Fraction(30), n_frames=len(track)))
    taken = sum(not _refused(*_alsa(name), [name.replace("_", " ")])[0] for name in _ALSA_WORDS)
    assert taken >= 6
    # other words: a sentence of another speech, and two words not said
    assert _refused(y, sr, ["Please bring my brown umbrella before the bus arrives, and then we go home."])[0]
    assert _refused(*_alsa("Rear_Left"), ["Side Right"])[0]
    assert _refused(*_alsa("Front_Center"), ["Rear Right"])[0]


def test_audio_alone_hears_a_real_reader_s_closures():
    """Audio alone, the phones PocketSphinx's phone loop hears (no words given) lead where the
    classifier, which learnt synthesizers only, is unsure: a LibriVox reader's p/b/m (truth: the
    forced alignment of the words) closed 0.55 -> 0.76, without the loop 0.55."""
    from pathlib import Path

    import soundfile

    from avatarrender.evaluation import score_track
    from avatarrender.evaluation.espeak import Phoneme, Utterance, truth_track
    from avatarrender.lipsync import mouth_track

    got = {True: [], False: []}
    for f in sorted((Path(__file__).parent / "data" / "librivox").glob("*.flac")):
        y, sr = soundfile.read(f, dtype="float32")
        text = f.with_suffix(".txt").read_text().strip()
        truth, t = [], 0.0
        for name, s, e in acoustic.align_phones(y, sr, [text], [(0.0, len(y) / sr)]):
            if s > t + 1e-3:
                truth.append(Phoneme("sil", t))
            truth.append(Phoneme("sil" if name == "SIL" else name.lower(), s))
            t = e
        want, closures = truth_track(Utterance(y, sr, tuple(truth), alphabet="arpabet"), fps=Fraction(30))
        for hear in got:
            track = mouth_track(y, sr, fps=Fraction(30), n_frames=len(want), hear=hear)
            got[hear].append(score_track(track, want, closures))
    closed = {k: np.mean([s.closure for s in v]) for k, v in got.items()}
    accuracy = {k: np.mean([s.accuracy for s in v]) for k, v in got.items()}
    assert closed[True] >= closed[False] + 0.1, closed
    assert accuracy[True] >= accuracy[False] - 0.01, accuracy
    # what was heard before does not move what is heard (the render service's long-lived process
    # and the command give one mouth)
    first = acoustic.hear_phones(y, sr)
    acoustic.hear_phones(y[::-1].copy(), sr)
    assert acoustic.hear_phones(y, sr) == first


def test_a_long_run_of_speech_is_heard_in_pieces(monkeypatch):
    """Each search holds the GIL, so a stop waits for it: a run of a minute is heard 20 s at most
    at a time, every frame of it still heard."""
    from avatarrender import lipsync

    sr = 16000
    t = np.arange(50 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    y += 0.05 * np.random.default_rng(0).standard_normal(len(y)).astype(np.float32)
    pieces, real = [], acoustic.hear_phones

    def spy(part, rate):
        pieces.append(len(part) / rate)
        return real(part, rate)

    monkeypatch.setattr(acoustic, "hear_phones", spy)
    heard = lipsync._heard_classes(y, sr, np.ones(50 * 30, bool))
    assert pieces == [20.0, 20.0, 10.0]
    assert (heard >= 0).mean() > 0.95


def test_other_words_under_a_noise_floor_stay_refused():
    """A recording with a noise floor (21 dB under the speech): its pauses are not speech, which
    the path's silence explains whatever the words. Counted as speech, they took "Good morning"
    for "Front Center" (a review)."""
    y, sr = _alsa("Front_Center")
    pad = np.zeros(sr, np.float32)
    y = np.concatenate([pad, y, pad])
    y = y + np.random.default_rng(0).standard_normal(len(y)).astype(np.float32) * np.float32(10 ** (-41 / 20))
    assert _refused(y, sr, ["Good morning"])[0]
    assert _refused(y, sr, ["Buenos días"])[0]

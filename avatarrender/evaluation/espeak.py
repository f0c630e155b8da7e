"""Speech with ground truth: libespeak-ng through ctypes, with its phoneme events.

``synthesize(text, voice=..., rate_wpm=...)`` returns the samples and every phoneme with its
start time, which give the true mouth shape per frame (:func:`truth_track`).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

__all__ = [
    "Phoneme",
    "Utterance",
    "synthesize",
    "truth_track",
    "truth_classes",
    "PHONEME_SHAPE",
    "shape_of",
    "class_of",
]


@dataclasses.dataclass(frozen=True)
class Phoneme:
    name: str
    start_s: float


@dataclasses.dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # float32 mono
    sample_rate_hz: int
    phonemes: tuple[Phoneme, ...]
    # how the phoneme names are written: "espeak" mnemonics, "arpabet" or "ipa" (``_``: a pause)
    alphabet: str = "espeak"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


def read_wav(path) -> tuple[np.ndarray, int]:
    """A 16-bit mono WAV file that another synthesizer wrote (flite, Festival): ``(samples
    [float32, -1..1], sample rate in Hz)``."""
    import wave

    with wave.open(str(path), "rb") as w:
        sr = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return samples, sr


def synthesize(
    text: str, *, voice: str = "en-us", rate_wpm: int = 160, pitch: int | None = None
) -> Utterance:
    """Speak ``text`` with espeak-ng; the phonemes carry their start times. ``pitch`` 0-100."""
    from ..phonemes import speak

    samples, rate_hz, events = speak(text, voice=voice, rate_wpm=rate_wpm, pitch=pitch)
    return Utterance(
        samples=samples, sample_rate_hz=rate_hz, phonemes=tuple(Phoneme(n, s) for n, s in events)
    )


# espeak-ng's English phoneme mnemonics -> Rhubarb / Preston Blair shapes.
PHONEME_SHAPE = {
    **dict.fromkeys(["p", "b", "m"], "A"),
    **dict.fromkeys(["f", "v"], "G"),
    # "@L" is the syllabic l of "apple", "people": an l (IPA "əl", flite's "ax l" or "el")
    **dict.fromkeys(["l", "l/", "L", "@L"], "H"),
    **dict.fromkeys(["w", "u:", "U", "u", "U@", "w#"], "F"),
    **dict.fromkeys(["O:", "O", "3:", "@U", "oU", "OI", "o@", "O@", "0", "aU", "3", "r-"], "E"),
    **dict.fromkeys(["A:", "aI", "a", "A@", "V", "aa", "a#", "A", "a2"], "D"),
    **dict.fromkeys(
        ["E", "e", "eI", "e@", "I", "i", "i:", "@", "@2", "@5", "a@", "I2", "I#", "i@", "e#", "E2"], "C"
    ),
}


def class_of(phoneme: str, alphabet: str = "espeak") -> int:
    """The phone class (index into ``phonemes.CLASSES``) of a phoneme name."""
    from ..phonemes import arpabet_class, event_class, mnemonic_class

    if alphabet == "ipa":
        return event_class(phoneme, ipa=True)
    return arpabet_class(phoneme) if alphabet == "arpabet" else mnemonic_class(phoneme)


def shape_of(phoneme: str, alphabet: str = "espeak") -> str:
    """The mouth shape of a phoneme: pauses rest (X: ``_`` in any alphabet, as ``Utterance``
    says, and ARPAbet's ``pau``/``sil``), an unlisted espeak consonant is B."""
    if not phoneme or phoneme.startswith("_"):
        return "X"  # (ARPAbet's table took "_" for a consonant: B, a mouth open over a pause)
    if alphabet in ("arpabet", "ipa"):
        from ..phonemes import CLASS_SHAPE

        return CLASS_SHAPE[class_of(phoneme, alphabet)]
    base = phoneme.rstrip("#;:/!")
    return PHONEME_SHAPE.get(phoneme, PHONEME_SHAPE.get(base, "B"))


def truth_track(utt: Utterance, *, fps: Fraction, n_frames: int | None = None) -> tuple[np.ndarray, list]:
    """The true shape per frame (the phoneme sounding at each frame's middle), and the frame
    spans of every p/b/m: ``(shapes [shape=(n,)] as letters, [(first, last) frame, ...])``."""
    fps = Fraction(fps)
    n = n_frames or int(np.ceil(utt.duration_s * fps))
    mids = (np.arange(n) + 0.5) / float(fps)
    starts = np.array([p.start_s for p in utt.phonemes] + [utt.duration_s])
    names = [p.name for p in utt.phonemes]
    out = np.full(n, "X", dtype="<U1")
    closures = []
    for k, name in enumerate(names):
        s, e = starts[k], starts[k + 1]
        on = (mids >= s) & (mids < e)
        out[on] = shape_of(name, utt.alphabet)
        if name in ("p", "b", "m", "em"):
            f0, f1 = int(s * float(fps)), max(int(s * float(fps)), int(np.ceil(e * float(fps))) - 1)
            closures.append((f0, f1))
    # espeak's trailing silence after the last phoneme rests
    return out, closures


def truth_classes(utt: Utterance, *, fps: Fraction, n_frames: int | None = None) -> np.ndarray:
    """The true phone class per frame [shape=(n,)]: the phoneme sounding at the frame's middle."""
    fps = Fraction(fps)
    n = n_frames or int(np.ceil(utt.duration_s * fps))
    mids = (np.arange(n) + 0.5) / float(fps)
    starts = np.array([p.start_s for p in utt.phonemes] + [max(utt.duration_s, 1e9)])
    out = np.zeros(n, dtype=np.int64)
    k = np.searchsorted(starts, mids, side="right") - 1
    cls = np.array([class_of(p.name, utt.alphabet) for p in utt.phonemes] + [0])
    ok = k >= 0
    out[ok] = cls[k[ok]]
    return out

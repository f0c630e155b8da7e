"""Speech with ground truth: libespeak-ng through ctypes, with its phoneme events.

``synthesize(text, voice=..., rate_wpm=...)`` returns the samples and every phoneme with its
start time, which give the true mouth shape per frame (:func:`truth_track`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
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

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED, _EVENT_PHONEME, _EVENT_END, _EVENT_MSG_TERMINATED = 0, 7, 5, 6
_RATE = 1
_PITCH = 3
_CHARS_UTF8 = 1


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclasses.dataclass(frozen=True)
class Phoneme:
    name: str
    start_s: float


@dataclasses.dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # float32 mono
    sample_rate_hz: int
    phonemes: tuple[Phoneme, ...]
    alphabet: str = "espeak"  # how the phoneme names are written: "espeak" mnemonics or "arpabet"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


class _Espeak:
    def __init__(self) -> None:
        from ..phonemes import libespeak

        # one initialisation per process, shared with the text-to-phonemes of the runtime
        self.lib, self.rate = libespeak()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _CALLBACK(self._callback)
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    def _callback(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append(
                    (bytes(ev.id.string).split(b"\0")[0].decode(errors="replace"), ev.audio_position)
                )
            i += 1
        return 0

    def say(self, text: str, voice: str, rate_wpm: int, pitch: int | None = None) -> Utterance:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        # 0-100 around the voice's own pitch (50); set every time, as the engine keeps it
        self.lib.espeak_SetParameter(_PITCH, 50 if pitch is None else int(pitch), 0)
        self._chunks, self._events = [], []
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        phonemes = tuple(Phoneme(name, ms / 1000.0) for name, ms in self._events)
        return Utterance(samples=samples, sample_rate_hz=self.rate, phonemes=phonemes)


@functools.lru_cache(maxsize=1)
def _engine() -> _Espeak:
    return _Espeak()


def synthesize(
    text: str, *, voice: str = "en-us", rate_wpm: int = 160, pitch: int | None = None
) -> Utterance:
    """Speak ``text`` with espeak-ng; the phonemes carry their start times. ``pitch`` 0-100."""
    from ..phonemes import _LOCK

    with _LOCK:
        return _engine().say(text, voice, rate_wpm, pitch)


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
    from ..phonemes import arpabet_class, mnemonic_class

    return arpabet_class(phoneme) if alphabet == "arpabet" else mnemonic_class(phoneme)


def shape_of(phoneme: str, alphabet: str = "espeak") -> str:
    """The mouth shape of an espeak phoneme: pauses rest (X), unlisted consonants are B."""
    if alphabet == "arpabet":
        from ..phonemes import CLASS_SHAPE

        return CLASS_SHAPE[class_of(phoneme, alphabet)]
    if not phoneme or phoneme.startswith("_"):
        return "X"
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

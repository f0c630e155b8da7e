"""Per-frame scores of a mouth track against espeak-ng's truth.

- activity: share of frames where "mouth moving" (not X) agrees with "a phoneme sounds";
- openness_r: Pearson correlation of predicted and true openness, over frames *within speech*;
- openness_r_all: the same over every frame (pauses and the silence around speech included);
- closure: share of p/b/m whose frames (one frame of slack each side) show a closed mouth (A);
- closure_precision: share of closed-mouth (A) runs that meet a p/b/m (one frame of slack), so
  closing the mouth everywhere does not buy a good closure score;
- one_frame: share of shape runs that last a single frame;
- lag: the shift (frames) that best aligns predicted openness with the truth (positive = late);
- accuracy: share of frames within speech whose shape is exactly the true one.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Callable

import numpy as np

from ..lipsync import OPENNESS, SHAPES
from .espeak import synthesize, truth_track

__all__ = [
    "Scores",
    "score_track",
    "evaluate",
    "score_utterances",
    "corrupt",
    "CORPUS",
    "VOICES",
    "DEV_CORPUS",
    "DEV_VOICES",
    "OTHER_LANGUAGES",
]

CORPUS = (
    "Bob picked a big bumpy apple, and maybe a plum.",
    "Please bring my brown umbrella before the bus arrives.",
    "The painter mixed a pale blue paint for the boat.",
    "Members of the public may bid for the vintage map.",
    "Five brave people moved the piano up the main stairs.",
    "We will go home when the big moon comes up.",
)
VOICES = (("en-us", 150), ("en", 175), ("en-us+m3", 130), ("en-gb-x-rp", 165))
# Sentences and espeak-ng voices for tuning the alignment's and the animation's constants, so that
# CORPUS (and benchmarks.lipsync_eval's voices) are never tuned on: neither set is in training
# (evaluation/train.py) nor in CORPUS.
DEV_CORPUS = (
    "My cousin Ben plays the trumpet in a marching band.",
    "Bright lamps hung above the lobby of the old hotel.",
    "A bumblebee landed softly on the purple flower.",
    "Mark opened the map and pointed at the harbour.",
    "Please remember to buy milk, bananas and a bottle of water.",
    "The children played ball in the park until nine.",
    "Bill baked a plum pie for the parade on Sunday.",
    "Our neighbour keeps bees behind the brick wall.",
    "Tom mopped the floor while Pam washed the dishes.",
    "A famous poet wrote about the empty moor.",
    "We booked a cabin by the lake for the whole summer.",
    "Ben combed his hair and put on his best jumper.",
)
DEV_VOICES = (("en-us+f3", 170), ("en+m5", 155), ("en-gb-x-rp+m6", 145), ("en-us+f2", 185))

# Sentences in other languages, for their espeak-ng voices with the text (the benchmark and the
# tests): espeak-ng language -> sentences
OTHER_LANGUAGES = {
    "es": (
        "Buenos días, me llamo Pablo y vivo en Madrid.",
        "Mi madre compra pan y manzanas en el mercado.",
        "El perro blanco bebe agua de la fuente.",
    ),
    "de": (
        "Guten Morgen, mein Name ist Paul und ich wohne in Bremen.",
        "Die Mutter backt am Montag einen Apfelkuchen.",
        "Wir fahren morgen mit dem Bus nach Berlin.",
    ),
}


@dataclasses.dataclass
class Scores:
    activity: float
    openness_r: float
    closure: float
    one_frame: float
    lag: int
    accuracy: float
    closure_precision: float = 0.0
    openness_r_all: float = 0.0

    @classmethod
    def mean(cls, items: list[Scores]) -> Scores:
        """Mean of every score over ``items``; the median of the lags."""
        return cls(
            **{
                f.name: int(np.median([s.lag for s in items]))
                if f.name == "lag"
                else float(np.mean([getattr(s, f.name) for s in items]))
                for f in dataclasses.fields(cls)
            }
        )


def score_track(pred: np.ndarray, truth: np.ndarray, closures: list[tuple[int, int]]) -> Scores:
    """Scores of ``pred`` (indices into SHAPES) against ``truth`` (letters)."""
    letters = np.array([SHAPES[i] for i in pred])
    speech = truth != "X"
    moving = letters != "X"
    activity = float(np.mean(speech == moving))
    po = np.array([OPENNESS[s] for s in letters])
    to = np.array([OPENNESS[s] for s in truth])
    within = speech
    r = float(np.corrcoef(po[within], to[within])[0, 1]) if within.sum() > 2 and po[within].std() > 0 else 0.0
    hit = 0
    for f0, f1 in closures:
        lo, hi = max(0, f0 - 1), min(len(letters), f1 + 2)
        hit += bool((letters[lo:hi] == "A").any())
    closure = hit / len(closures) if closures else 1.0
    edges = np.nonzero(letters[1:] != letters[:-1])[0] + 1
    lengths = np.diff(np.concatenate([[0], edges, [len(letters)]]))
    one_frame = float(np.mean(lengths == 1)) if len(lengths) else 0.0
    best, lag = -np.inf, 0
    for d in range(-4, 5):
        a = po[max(0, d) : len(po) + min(0, d)]
        b = to[max(0, -d) : len(to) + min(0, -d)]
        c = float(np.dot(a - a.mean(), b - b.mean()))
        if c > best:
            best, lag = c, d
    accuracy = float(np.mean(letters[speech] == truth[speech])) if speech.any() else 1.0
    near = np.zeros(len(letters), bool)
    for f0, f1 in closures:
        near[max(0, f0 - 1) : f1 + 2] = True
    closed_runs = [
        bool(near[s:e].any())
        for s, e in zip(np.concatenate([[0], edges]), np.concatenate([edges, [len(letters)]]))
        if letters[s] == "A"
    ]
    precision = float(np.mean(closed_runs)) if closed_runs else 1.0
    r_all = float(np.corrcoef(po, to)[0, 1]) if len(po) > 2 and po.std() > 0 and to.std() > 0 else 0.0
    return Scores(activity, r, closure, one_frame, lag, accuracy, precision, r_all)


def evaluate(
    method: Callable[..., np.ndarray], *, fps: Fraction = Fraction(30), voices=VOICES, corpus=CORPUS
) -> tuple[Scores, list[Scores]]:
    """Score ``method(y, sr, fps=, n_frames=)`` on every sentence in every voice."""
    each = []
    for voice, rate in voices:
        for text in corpus:
            utt = synthesize(text, voice=voice, rate_wpm=rate)
            truth, closures = truth_track(utt, fps=fps)
            pred = method(utt.samples, utt.sample_rate_hz, fps=fps, n_frames=len(truth))
            each.append(score_track(np.asarray(pred), truth, closures))
    return Scores.mean(each), each


def score_utterances(
    method: Callable[..., np.ndarray], items, *, fps: Fraction = Fraction(30)
) -> tuple[Scores, list[Scores]]:
    """Score ``method(y, sr, fps=, n_frames=, text=)`` on ``items``, ``(text, Utterance)`` pairs
    from any synthesizer (``Utterance.alphabet`` says how its phonemes are written)."""
    each = []
    for text, utt in items:
        truth, closures = truth_track(utt, fps=fps)
        pred = method(utt.samples, utt.sample_rate_hz, fps=fps, n_frames=len(truth), text=text)
        each.append(score_track(np.asarray(pred), truth, closures))
    return Scores.mean(each), each


_OTHER_WORDS = (
    "table",
    "seven",
    "quickly",
    "orange",
    "yesterday",
    "window",
    "happy",
    "music",
    "garden",
    "silver",
    "number",
    "forest",
    "little",
    "coffee",
    "station",
    "paper",
)


def corrupt(text: str, *, share: float = 0.2, seed: int = 0) -> str:
    """``text`` with ``share`` of its words replaced by other words or dropped (half each),
    the way a script drifts from what was said."""
    rng = np.random.default_rng(seed)
    words = text.split()
    k = max(1, int(round(share * len(words))))
    out = list(words)
    for i in sorted(rng.choice(len(words), size=k, replace=False), reverse=True):
        if rng.random() < 0.5:
            del out[i]
        else:
            out[i] = str(rng.choice(_OTHER_WORDS))
    return " ".join(out)

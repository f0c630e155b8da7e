"""Evaluation of the lip sync against speech whose phoneme timings are known (espeak-ng, flite)."""

from .metrics import CORPUS, VOICES, Scores, evaluate, score_track

__all__ = ["CORPUS", "VOICES", "Scores", "evaluate", "score_track"]

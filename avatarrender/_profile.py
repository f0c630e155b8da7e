"""Cheap per-stage time counters, off unless ``AVATARRENDER_PROFILE=1`` is in the environment.

The render's stages call :func:`add` with a stage name and the ``perf_counter()`` they started
at; each process sums its own (a worker hands its sums back with each chunk's result, the main
process adds them to the manifest's ``render.profile``). Off, :data:`ENABLED` is False and the
callers skip the clock entirely.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

__all__ = ["ENABLED", "add", "count", "mark", "merge", "take", "take_marks", "timed"]

ENABLED = os.environ.get("AVATARRENDER_PROFILE") == "1"
_TOTALS: defaultdict[str, float] = defaultdict(float)
_MARKS: dict[str, float] = {}


def add(stage: str, started: float) -> None:
    """Count the seconds since ``started`` (a ``time.perf_counter()``) to ``stage``."""
    _TOTALS[stage] += time.perf_counter() - started


def count(event: str) -> None:
    """Count one ``event`` (summed like the stages' seconds; a no-op when profiling is off)."""
    if ENABLED:
        _TOTALS[event] += 1


def mark(event: str) -> None:
    """Note the wall clock (epoch s) of ``event``'s first occurrence since the last
    :func:`take_marks` (a no-op when profiling is off)."""
    if ENABLED:
        _MARKS.setdefault(event, time.time())


def take_marks() -> dict[str, float]:
    """This process's marks since the last call (epoch s), and reset them."""
    out = dict(_MARKS)
    _MARKS.clear()
    return out


def merge(totals: dict[str, float], marks: dict[str, float]) -> None:
    """Add another process's :func:`take` and :func:`take_marks` to this one's."""
    for k, v in totals.items():
        _TOTALS[k] += v
    for k, v in marks.items():
        _MARKS.setdefault(k, v)


def take() -> dict[str, float]:
    """This process's sums since the last call (s), and reset them."""
    out = {k: round(v, 4) for k, v in _TOTALS.items()}
    _TOTALS.clear()
    return out


def timed(stage: str, fn):
    """``fn`` itself when profiling is off, else a wrapper that counts its calls to ``stage``."""
    if not ENABLED:
        return fn

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            add(stage, t0)

    return wrapper

"""Frame index <-> seconds <-> samples, exactly. Time is ``Fraction``; floats only at the edges."""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["parse_fps", "frames_in", "AUDIO_RATE_HZ"]

AUDIO_RATE_HZ = 48_000


def parse_fps(value: int | float | str | Fraction) -> Fraction:
    """``30``, ``"30000/1001"``, ``29.97`` -> an exact ``Fraction`` (29.97 means 30000/1001)."""
    if isinstance(value, Fraction):
        fps = value
    elif isinstance(value, str) and "/" not in value:
        return parse_fps(float(value))  # "29.97" means what 29.97 means
    elif isinstance(value, str):
        fps = Fraction(value.strip())
    elif isinstance(value, float):
        ntsc = Fraction(round(value * 1.001) * 1000, 1001) if math.isfinite(value) else None
        if ntsc and value != int(value) and abs(value - ntsc) < 0.005:
            fps = ntsc  # 29.97, 23.976, 59.94: the NTSC rate, not 2997/100
        else:
            fps = Fraction(value).limit_denominator(1001)
    else:
        fps = Fraction(int(value))
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {value!r}")
    return fps


def as_written(value: float | int | Fraction) -> Fraction:
    """``value`` as an exact fraction; a float as the decimal it was written as (0.3 is 3/10,
    not the double a hair below it that ``Fraction(0.3)`` gives)."""
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def frames_in(duration_s: float | Fraction, fps: Fraction) -> int:
    """Number of whole frames that start before ``duration_s`` (rounding to the nearest frame, a
    half up: 0.5 s is 13 frames at 25 fps and 8 at 15, not 12 and 8 as rounding to even gave). A
    float counts as the decimal it was written as: 0.3 s at 25 fps is 7.5 frames, so 8, though
    the double nearest 0.3 lies a hair below it."""
    return math.floor(as_written(duration_s) * fps + Fraction(1, 2))

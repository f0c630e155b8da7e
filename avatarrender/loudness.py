"""Loudness normalisation ahead of air time (ITU-R BS.1770 / EBU R 128).

A render knows its whole audio before it encodes it, so the segment is measured first, one
gain brings it to the target, and a look-ahead true-peak limiter lowers the gain only around
the peaks that would cross the ceiling. Nothing here pumps: the gain is one number, and the
limiter's envelope reaches each peak's reduction before the peak and returns after it.

The measurement is ffmpeg's ``ebur128`` filter (integrated loudness, loudness range, true
peak with 4x oversampling), run on the signal exactly as the AAC encoder receives it (mono
upmixed to stereo by ffmpeg), so that the figures are those of the decoded output.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import subprocess

import numpy as np

from .errors import FFmpegError
from .media import ffmpeg_exe
from .timebase import AUDIO_RATE_HZ

__all__ = ["LoudnessTarget", "LoudnessReport", "measure", "normalise", "SILENCE_LUFS",
           "DEFAULT_LOUDNESS_LUFS", "DEFAULT_TRUE_PEAK_DBTP"]

log = logging.getLogger("avatarrender.loudness")

DEFAULT_LOUDNESS_LUFS = -16.0
DEFAULT_TRUE_PEAK_DBTP = -1.5
# ebur128 reports -70 LUFS (its absolute gate) for silence and anything under a 400 ms block.
SILENCE_LUFS = -70.0
# ffmpeg upmixes our mono track to stereo at -3 dB per channel (measured: a mono peak of
# -28.1 dBFS decodes as -31.1 dBFS per channel; the loudness is unchanged).
_UPMIX = 1 / math.sqrt(2)
# The AAC encoder overshoots sample peaks a little (measured up to ~0.4 dB on limited speech
# at 128 kb/s): the limiter aims this far under the ceiling.
_CODEC_MARGIN_DB = 0.6
# Look-ahead of the limiter: its gain moves over 2 x this, before and after each peak.
_LOOKAHEAD_S = 0.005
# Good enough for the limiter's loudness loss (the target tolerance of EBU R 128 is +-0.5 LU,
# and every round costs a measurement).
_TOLERANCE_LU = 0.2
_RELEASE_S = 0.06


@dataclasses.dataclass(frozen=True)
class LoudnessTarget:
    """What to normalise to.

    Attributes
    ----------
    integrated_lufs : float
        Target integrated loudness, LUFS.
    true_peak_dbtp : float
        True-peak ceiling, dBTP.
    enabled : bool
        False: measure only, leave the samples as they are.
    """

    integrated_lufs: float = DEFAULT_LOUDNESS_LUFS
    true_peak_dbtp: float = DEFAULT_TRUE_PEAK_DBTP
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One ebur128 reading: integrated (LUFS, None when silent), range (LU), true peak (dBTP)."""

    integrated_lufs: float | None
    range_lu: float
    true_peak_dbtp: float | None


@dataclasses.dataclass(frozen=True)
class LoudnessReport:
    """Before and after, the gain applied and how much of the audio the limiter touched."""

    before: Measurement
    after: Measurement
    target: LoudnessTarget
    gain_db: float
    limited_s: float


_FIELD = {"I": "integrated", "LRA": "range", "Peak": "peak"}
_LINE = re.compile(r"^\s*(I|LRA|Peak):\s+(-?inf|-?\d+(?:\.\d+)?)\s", re.M)


def measure(samples: np.ndarray, *, sample_rate_hz: int = AUDIO_RATE_HZ,
            true_peak: bool = True) -> Measurement:
    """Measure mono float samples as the AAC track carries them (upmixed to stereo).

    Parameters
    ----------
    samples : np.ndarray [shape=(n,), dtype=float32]
        Mono, at ``sample_rate_hz``.

    true_peak : bool
        Also measure the true peak (else ``true_peak_dbtp`` is None; a little cheaper).

    Returns
    -------
    Measurement
        ``integrated_lufs`` None when the audio is silent (or shorter than one 400 ms block).
    """
    data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-f", "f32le",
           "-ar", str(sample_rate_hz), "-ac", "1", "-i", "-",
           "-af", "aformat=channel_layouts=stereo,ebur128=framelog=quiet"
           + (":peak=true" if true_peak else ""),
           "-f", "null", "-"]
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=600)
    text = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise FFmpegError("loudness measurement: ffmpeg failed", cmd=cmd, stderr=text)
    summary = text[text.rfind("Summary:"):]
    found = {_FIELD[k]: float(v) for k, v in _LINE.findall(summary)}
    if not true_peak:
        found["peak"] = -math.inf
    if len(found) != 3:
        raise FFmpegError("loudness measurement: no ebur128 summary", cmd=cmd, stderr=text)
    integrated = found["integrated"]
    peak = found["peak"]
    return Measurement(
        integrated_lufs=None if integrated <= SILENCE_LUFS + 1e-9 else integrated,
        range_lu=found["range"],
        true_peak_dbtp=None if not math.isfinite(peak) else peak,
    )


# Between samples a band-limited signal peaks at most a few dB above them (3.5 dB covers
# speech and music; a full-scale square wave's overshoot is ~2 dB): a signal whose sample peak
# stays this far under the ceiling is not oversampled at all.
_INTERSAMPLE_DB = 4.0


def _true_peak_per_sample(x: np.ndarray) -> np.ndarray:
    """|x| with 4x oversampling (BS.1770 annex 2): per input sample, the largest magnitude of the
    oversampled signal around it. [shape=(n,)]

    It scales with the signal, so it is computed once, before any gain."""
    from scipy.signal import resample_poly

    n = x.shape[0]
    up = np.abs(resample_poly(x.astype(np.float64), 4, 1))
    return np.maximum(up[: n * 4].reshape(n, 4).max(axis=1), np.abs(x))


def _limiter_gain(peak: np.ndarray, ceiling: float, sample_rate_hz: int) -> np.ndarray:
    """A look-ahead gain envelope <= 1 keeping a signal whose true peak per sample is ``peak``
    under ``ceiling``.

    The gain each sample needs is spread by a minimum filter over the look-ahead + release
    window and smoothed by two box filters whose support fits inside it, so the smoothed gain
    never exceeds what any sample needs, and it moves over milliseconds, not per sample.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if need.min() >= 1.0:
        return need
    half = max(1, int(round((_LOOKAHEAD_S + _RELEASE_S) / 2 * sample_rate_hz)))
    env = minimum_filter1d(need, size=2 * half + 1, mode="nearest")
    box = half + 1  # two centred boxes of half+1: support 2*half+1, inside the min window
    env = uniform_filter1d(env, size=box, mode="nearest")
    env = uniform_filter1d(env, size=box, mode="nearest")
    return np.minimum(env, need)  # float rounding only


def normalise(samples: np.ndarray, target: LoudnessTarget, *, name: str = "audio",
              sample_rate_hz: int = AUDIO_RATE_HZ) -> tuple[np.ndarray, LoudnessReport]:
    """Bring ``samples`` to ``target``: one gain, then the true-peak limiter where needed.

    Parameters
    ----------
    samples : np.ndarray [shape=(n,), dtype=float32]
        The whole segment's mono audio.
    name : str
        For the warning about silence (the spec file).

    Returns
    -------
    samples : np.ndarray [shape=(n,), dtype=float32]
    report : LoudnessReport

    Silence (no measurable loudness) gets no gain, and a warning.
    """
    before = measure(samples, sample_rate_hz=sample_rate_hz)
    if not target.enabled:
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    if before.integrated_lufs is None:
        log.warning("%s: the audio is silent (no measurable loudness): no gain applied", name)
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    x = samples.astype(np.float64)
    # the limiter works on the stereo samples the encoder gets
    ceiling = 10 ** ((target.true_peak_dbtp - _CODEC_MARGIN_DB) / 20) / _UPMIX
    gain_db = target.integrated_lufs - before.integrated_lufs
    out, limited = x, np.zeros(0, dtype=bool)
    # Limiting lowers the loudness a little: raise the gain by what it lost and limit again
    # (converges in two or three rounds; each is deterministic). Without limiting the gain is
    # exact: loudness, range and peak move by it, and nothing is measured again.
    sample_peak = float(np.abs(x).max(initial=0.0))
    peak: np.ndarray | None = None
    after: Measurement | None = None
    for round_ in range(4):
        g = 10 ** (gain_db / 20)
        y = x * g
        if sample_peak * g * 10 ** (_INTERSAMPLE_DB / 20) < ceiling:
            out, limited = y, np.zeros(0, dtype=bool)  # nothing can reach the ceiling
            break
        if peak is None:
            peak = _true_peak_per_sample(x)
        env = _limiter_gain(peak * g, ceiling, sample_rate_hz)
        out = y * env
        limited = env < 0.9999
        if not limited.any():
            break
        got = measure(out.astype(np.float32), sample_rate_hz=sample_rate_hz)
        miss = 0.0 if got.integrated_lufs is None else target.integrated_lufs - got.integrated_lufs
        if abs(miss) < _TOLERANCE_LU or round_ == 3:
            after = got  # what is returned is what was measured
            break
        gain_db += miss
    out32 = out.astype(np.float32)
    if after is None:  # not limited: the one gain moved everything by exactly that much
        after = Measurement(
            integrated_lufs=round(before.integrated_lufs + gain_db, 1), range_lu=before.range_lu,
            true_peak_dbtp=(None if before.true_peak_dbtp is None
                            else round(before.true_peak_dbtp + gain_db, 1)))
    return out32, LoudnessReport(
        before=before, after=after, target=target, gain_db=round(gain_db, 2),
        limited_s=round(float(limited.sum()) / sample_rate_hz, 3))

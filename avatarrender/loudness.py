"""Loudness normalisation ahead of air time (ITU-R BS.1770 / EBU R 128).

A render knows its whole audio before it encodes it, so the segment is measured first, one
gain brings it to the target, and a look-ahead true-peak limiter lowers the gain only around
the peaks that would cross the ceiling. Nothing here pumps: the gain is one number, and the
limiter's envelope reaches each peak's reduction before the peak and returns after it.

The measurement is ffmpeg's ``ebur128`` filter (integrated loudness, loudness range, true
peak with 4x oversampling), run in this process through PyAV's libavfilter on the signal the
AAC encoder receives (mono, upmixed to stereo by the encoder's ffmpeg), so that the figures
are those of the decoded output. Nothing here imports scipy: it sits on the way to the first
media segment's audio, where a cold ``scipy.signal`` alone cost 0.7-1.3 s.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from .errors import FFmpegError
from .timebase import AUDIO_RATE_HZ

__all__ = [
    "LoudnessTarget",
    "LoudnessReport",
    "measure",
    "normalise",
    "add_true_peaks",
    "SILENCE_LUFS",
    "DEFAULT_LOUDNESS_LUFS",
    "DEFAULT_TRUE_PEAK_DBTP",
]

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
_MISSED_LU = 1.0  # short of the target by more than this after the rounds: a warning
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


def _ceiling(target: LoudnessTarget) -> float:
    """The sample level the limiter keeps the mono samples under: the true-peak ceiling less
    the codec's margin, for the stereo samples the encoder gets."""
    return 10 ** ((target.true_peak_dbtp - _CODEC_MARGIN_DB) / 20) / _UPMIX


def _ceiling_only(
    samples: np.ndarray, before: Measurement, target: LoudnessTarget, *, name: str, sample_rate_hz: int
) -> tuple[np.ndarray, LoudnessReport]:
    """``normalise: false``: the level left as it is, but the true-peak ceiling still holds (a
    hot speech file or ``gain_db`` went over full scale on air, clipped by every player), said."""
    ceiling = _ceiling(target)
    x = samples.astype(np.float64)
    if float(np.abs(x).max(initial=0.0)) * _TP_BOUND < ceiling:
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    env = _limiter_gain(_TruePeak(x).upto(ceiling), ceiling, sample_rate_hz)
    limited = env < 0.9999
    if not limited.any():
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    out = (x * env).astype(np.float32)
    after = measure(out, sample_rate_hz=sample_rate_hz)
    limited_s = float(limited.sum()) / sample_rate_hz
    log.warning(
        "%s: normalise is off and the audio peaks at %s dBTP, over the %.1f dBTP ceiling: limited "
        "there (%.1f s of it); lower speech.gain_db or the source's level",
        name,
        "?" if before.true_peak_dbtp is None else f"{before.true_peak_dbtp:+.1f}",
        target.true_peak_dbtp,
        limited_s,
    )
    return out, LoudnessReport(before, after, target, 0.0, limited_s)


def measure(
    samples: np.ndarray, *, sample_rate_hz: int = AUDIO_RATE_HZ, true_peak: bool = True
) -> Measurement:
    """Measure mono float samples as the AAC track carries them (upmixed to stereo).

    In-process, through PyAV's libavfilter: ffmpeg's own ``ebur128`` filter (BS.1770-4 gated
    integrated loudness, EBU Tech 3342 loudness range, true peak with 4x oversampling), so the
    figures are those the ``ffmpeg`` command reads on the decoded output, without starting
    ffmpeg (a process and a pipe of the whole track: 0.3-0.5 s each time, measured).

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
    # Mono is measured as mono: BS.1770 weighs one channel as the two upmixed halves it becomes
    # (the same loudness), and only the true peak moves, by the upmix's -3 dB.
    found = _ebur128(np.ascontiguousarray(samples, dtype=np.float32), sample_rate_hz, true_peak)
    integrated, range_lu, peak = found
    return Measurement(
        integrated_lufs=None if integrated <= SILENCE_LUFS + 1e-9 else integrated,
        range_lu=range_lu,
        true_peak_dbtp=(None if not true_peak or peak <= 0.0 else round(20 * math.log10(peak * _UPMIX), 1)),
    )


# Samples per frame pushed into the filter graph (1 s: few Python round trips).
_GRAPH_FRAME = AUDIO_RATE_HZ


def _ebur128(x: np.ndarray, sample_rate_hz: int, true_peak: bool) -> tuple[float, float, float]:
    """ffmpeg's ``ebur128`` over mono float32 ``x``: (integrated LUFS, range LU, true peak as a
    linear magnitude). The filter tags each 100 ms frame it passes with its readings so far;
    the last frame's are those of the whole signal."""
    import av
    from av.filter import Graph

    graph = Graph()
    chain = [
        graph.add_abuffer(format="flt", sample_rate=sample_rate_hz, layout="mono", channels=1),
        graph.add("ebur128", "metadata=1" + (":peak=true" if true_peak else "")),
        graph.add("abuffersink"),
    ]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    last: dict[str, str] = {}

    def drain() -> None:
        nonlocal last
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            last = frame.metadata or last

    try:
        for i in range(0, x.shape[0], _GRAPH_FRAME):
            frame = av.AudioFrame.from_ndarray(x[None, i : i + _GRAPH_FRAME], format="flt", layout="mono")
            frame.sample_rate, frame.pts = sample_rate_hz, i
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    except av.FFmpegError as exc:
        raise FFmpegError(
            f"loudness measurement: libavfilter's ebur128 failed: {exc}", cmd=["ebur128"], stderr=str(exc)
        ) from None
    if "lavfi.r128.I" not in last:  # nothing long enough to measure: silence
        return -math.inf, 0.0, 0.0
    try:
        return (
            float(last["lavfi.r128.I"]),
            float(last["lavfi.r128.LRA"]),
            float(last["lavfi.r128.true_peak"]) if true_peak else 0.0,
        )
    except (KeyError, ValueError):
        raise FFmpegError(
            f"loudness measurement: unexpected ebur128 readings {last}", cmd=["ebur128"], stderr=""
        ) from None


# 4x oversampling interpolator of BS.1770-4 annex 2: the low-pass scipy.signal.resample_poly
# designs for 4:1 (81 taps, Kaiser beta 5, cut at the input's Nyquist), here in numpy: the
# limiter then needs no scipy.signal (its import alone took 0.7-1.3 s, measured, on the way
# to the first media segment's audio). Row p is the polyphase branch for output phase p.
_TP_TAPS = 81
_TP_DELAY = (_TP_TAPS - 1) // 8  # the filter's delay in input samples (10)


def _tp_filter() -> np.ndarray:
    m = np.arange(_TP_TAPS) - (_TP_TAPS - 1) / 2
    h = 0.25 * np.sinc(0.25 * m) * np.kaiser(_TP_TAPS, 5.0)
    h *= 4 / h.sum()  # unity gain through the zero-stuffed upsampling
    return np.stack([np.pad(h[p::4], (0, -(-_TP_TAPS // 4) - h[p::4].size)) for p in range(4)])


_TP_PHASES = _tp_filter()  # [shape=(4, 21)]
# No interpolated sample exceeds this many times the largest |x| under its taps.
_TP_BOUND = float(np.abs(_TP_PHASES).sum(axis=1).max())
# The true peak is computed per block of this many samples, only where a block could reach
# the ceiling (speech brought to -16 LUFS: a few percent of the blocks).
_TP_BLOCK = 4096


class _TruePeak:
    """|x| with 4x oversampling (BS.1770 annex 2), per input sample the largest magnitude of the
    oversampled signal around it, computed lazily: only blocks whose samples (with the filter's
    reach) could come within a ceiling are oversampled; elsewhere |x| stands in, which is all
    the limiter needs there (it leaves a sample alone below the ceiling).

    It scales with the signal, so it is computed for ``x`` once, before any gain.
    """

    def __init__(self, x: np.ndarray):
        self.x = x
        n = x.shape[0]
        self.peak = np.abs(x)
        n_blocks = -(-n // _TP_BLOCK)
        padded = np.zeros(n_blocks * _TP_BLOCK)
        padded[:n] = self.peak
        block_max = padded.reshape(n_blocks, _TP_BLOCK).max(axis=1)
        # the filter reaches _TP_DELAY samples into each neighbouring block
        near = block_max.copy()
        near[1:] = np.maximum(near[1:], block_max[:-1])
        near[:-1] = np.maximum(near[:-1], block_max[1:])
        self.reach = near * _TP_BOUND  # no true peak in a block exceeds this
        self.done = np.zeros(n_blocks, dtype=bool)

    def upto(self, level: float) -> np.ndarray:
        """The per-sample true peak, exact wherever it could reach ``level``. [shape=(n,)]"""
        todo = np.flatnonzero(~self.done & (self.reach >= level))
        if todo.size:
            x, n = self.x, self.x.shape[0]
            taps = _TP_PHASES.shape[1]
            # runs of consecutive blocks, each filtered in one call per phase: the same sums
            # sample for sample, in a few numpy calls instead of four a block (a loud segment
            # has hundreds of blocks near the ceiling, and each call waits for the GIL while
            # the analysis runs beside this)
            breaks = np.flatnonzero(np.diff(todo) > 1)
            for b0, b1 in zip(
                np.r_[todo[:1], todo[breaks + 1]].tolist(), np.r_[todo[breaks], todo[-1:]].tolist()
            ):
                i0, i1 = b0 * _TP_BLOCK, min(n, (b1 + 1) * _TP_BLOCK)
                lo, hi = max(0, i0 - taps), min(n, i1 + taps)
                seg = x[lo:hi]
                for p in range(4):
                    y = np.convolve(seg, _TP_PHASES[p])[i0 - lo + _TP_DELAY : i1 - lo + _TP_DELAY]
                    np.maximum(self.peak[i0:i1], np.abs(y), out=self.peak[i0:i1])
            self.done[todo] = True
        return self.peak


def _sliding_min(a: np.ndarray, half: int) -> np.ndarray:
    """Minimum over ``a[i - half: i + half + 1]``, edges held (van Herk / Gil-Werman: three
    passes whatever the window). [shape=a.shape]"""
    w = 2 * half + 1
    n = a.shape[0]
    n_blocks = -(-(n + 2 * half) // w)
    padded = np.full(n_blocks * w, a[-1])
    padded[: n + half] = np.concatenate([np.full(half, a[0]), a])
    blocks = padded.reshape(n_blocks, w)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:n], prefix[w - 1 : w - 1 + n])


def _box_below_one(a: np.ndarray, half: int) -> np.ndarray:
    """Mean over ``a[i - half: i + half + 1]``, edges held, for ``a <= 1``: averaged as the
    shortfall from 1, so that runs of 1 come out as exactly 1. [shape=a.shape]"""
    short = np.concatenate([np.full(half, 1 - a[0]), 1 - a, np.full(half, 1 - a[-1])])
    c = np.concatenate([[0.0], np.cumsum(short)])
    w = 2 * half + 1
    return 1 - (c[w:] - c[:-w]) / w


def _limiter_gain(peak: np.ndarray, ceiling: float, sample_rate_hz: int) -> np.ndarray:
    """A look-ahead gain envelope <= 1 keeping a signal whose true peak per sample is ``peak``
    under ``ceiling``.

    The gain each sample needs is spread by a minimum filter over the look-ahead + release
    window and smoothed by two box filters whose support fits inside it, so the smoothed gain
    never exceeds what any sample needs, and it moves over milliseconds, not per sample.

    Only the spans around samples that need a reduction are filtered (elsewhere the gain is
    exactly 1, as the filters' reach says): limiting a few seconds of a long segment costs
    those seconds, not the segment (it sits on the way to the first media segment's audio).
    """
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    below = np.flatnonzero(need < 1.0)
    if below.size == 0:
        return need
    half = max(2, int(round((_LOOKAHEAD_S + _RELEASE_S) / 2 * sample_rate_hz)))
    box = half // 2  # two centred boxes of 2*(half//2)+1: support <= 2*half+1, inside the min
    reach = half + 2 * box + 1  # how far from a sample needing reduction the gain can dip
    # spans of samples within reach of one needing reduction (apart by more than 2 x reach)
    breaks = np.flatnonzero(np.diff(below) > 2 * reach)
    firsts = np.concatenate([below[:1], below[breaks + 1]])
    lasts = np.concatenate([below[breaks], below[-1:]])
    env = np.ones_like(need)
    n = need.shape[0]
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        # each span starts and ends on gain 1 (or the signal's edge): filtering it alone gives
        # what filtering the whole signal would
        lo, hi = max(0, first - reach), min(n, last + reach + 1)
        span = _sliding_min(need[lo:hi], half)
        env[lo:hi] = _box_below_one(_box_below_one(span, box), box)
    return np.minimum(env, need)  # float rounding only


def normalise(
    samples: np.ndarray,
    target: LoudnessTarget,
    *,
    name: str = "audio",
    sample_rate_hz: int = AUDIO_RATE_HZ,
    true_peaks: bool = True,
    silent_ok: bool = False,
) -> tuple[np.ndarray, LoudnessReport]:
    """Bring ``samples`` to ``target``: one gain, then the true-peak limiter where needed.

    Parameters
    ----------
    samples : np.ndarray [shape=(n,), dtype=float32]
        The whole segment's mono audio.
    name : str
        For the warning about silence (the spec file).
    silent_ok : bool
        Silence is meant (no speech, no clip sound: a filler, a silent scaffold): no warning.
    true_peaks : bool
        Measure the true peaks for the report. False leaves them out (None) for
        :func:`add_true_peaks` to fill in later: the gain and the limiter do not need them
        (the limiter oversamples where it must), so a render can start encoding sooner.

    Returns
    -------
    samples : np.ndarray [shape=(n,), dtype=float32]
    report : LoudnessReport

    Silence (no measurable loudness) gets no gain, and a warning.
    """
    before = measure(samples, sample_rate_hz=sample_rate_hz, true_peak=true_peaks)
    if not target.enabled:
        return _ceiling_only(samples, before, target, name=name, sample_rate_hz=sample_rate_hz)
    if before.integrated_lufs is None:
        if not silent_ok:
            log.warning("%s: the audio is silent (no measurable loudness): no gain applied", name)
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    x = samples.astype(np.float64)
    ceiling = _ceiling(target)
    gain_db = target.integrated_lufs - before.integrated_lufs
    out, limited = x, np.zeros(0, dtype=bool)
    # Limiting lowers the loudness a little: raise the gain by what it lost and limit again
    # (converges in two or three rounds; each is deterministic). Without limiting the gain is
    # exact: loudness, range and peak move by it, and nothing is measured again.
    sample_peak = float(np.abs(x).max(initial=0.0))
    peak: _TruePeak | None = None
    after: Measurement | None = None
    for round_ in range(4):
        g = 10 ** (gain_db / 20)
        y = x * g
        if sample_peak * g * _TP_BOUND < ceiling:
            out, limited = y, np.zeros(0, dtype=bool)  # nothing can reach the ceiling
            break
        if peak is None:
            peak = _TruePeak(x)
        env = _limiter_gain(peak.upto(ceiling / g) * g, ceiling, sample_rate_hz)
        out = y * env
        limited = env < 0.9999
        if not limited.any():
            break
        got = measure(out.astype(np.float32), sample_rate_hz=sample_rate_hz, true_peak=true_peaks)
        miss = 0.0 if got.integrated_lufs is None else target.integrated_lufs - got.integrated_lufs
        if abs(miss) < _TOLERANCE_LU or round_ == 3:
            after = got  # what is returned is what was measured
            break
        gain_db += miss
    out32 = out.astype(np.float32)
    if after is None:  # not limited: the one gain moved everything by exactly that much
        after = Measurement(
            integrated_lufs=round(before.integrated_lufs + gain_db, 1),
            range_lu=before.range_lu,
            true_peak_dbtp=(
                None if before.true_peak_dbtp is None else round(before.true_peak_dbtp + gain_db, 1)
            ),
        )
    limited_s = float(limited.sum()) / sample_rate_hz
    if after.integrated_lufs is not None and target.integrated_lufs - after.integrated_lufs > _MISSED_LU:
        # the ceiling held the peaks down so far that the level could not follow: said, not hidden
        log.warning(
            "%s: %.1f LUFS, not the %.1f asked: the true-peak ceiling of %.1f dBTP limits %.1f s "
            "of it (lower the loudness target or raise the ceiling)",
            name,
            after.integrated_lufs,
            target.integrated_lufs,
            target.true_peak_dbtp,
            limited_s,
        )
    return out32, LoudnessReport(
        before=before,
        after=after,
        target=target,
        gain_db=round(gain_db, 2),
        limited_s=round(limited_s, 3),
    )


def add_true_peaks(
    report: LoudnessReport, before: np.ndarray, after: np.ndarray, *, sample_rate_hz: int = AUDIO_RATE_HZ
) -> LoudnessReport:
    """``report`` of ``normalise(..., true_peaks=False)`` with its true peaks measured.

    Parameters
    ----------
    before, after : np.ndarray [shape=(n,), dtype=float32]
        What :func:`normalise` was given, and what it returned.
    """
    measured = measure(before, sample_rate_hz=sample_rate_hz)
    if report.after is report.before:  # left as it was (silence, or normalisation off)
        return dataclasses.replace(report, before=measured, after=measured)
    if report.limited_s == 0 and measured.true_peak_dbtp is not None:
        # one gain, no limiting: the peak moved by exactly the gain
        return dataclasses.replace(
            report,
            before=measured,
            after=dataclasses.replace(
                report.after, true_peak_dbtp=round(measured.true_peak_dbtp + report.gain_db, 1)
            ),
        )
    return dataclasses.replace(report, before=measured, after=measure(after, sample_rate_hz=sample_rate_hz))

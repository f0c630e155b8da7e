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
    if _abs_max(samples) * _TP_BOUND < ceiling:
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    spans = _gain_spans(_TruePeak(samples), 1.0, ceiling, sample_rate_hz)
    limited = _limited_count(spans)
    if not limited:
        return samples, LoudnessReport(before, before, target, 0.0, 0.0)
    out = _apply(samples, 1.0, spans)
    after = measure(out, sample_rate_hz=sample_rate_hz)
    limited_s = limited / sample_rate_hz
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
# An oversampled block keeps the true peaks from this share of the level it was oversampled
# for, and is oversampled again for a level under its kept share / _TP_AGAIN (a gain raised by
# 5 dB since): every sample it keeps nothing of stays far under the ceiling
_TP_KEEP, _TP_AGAIN = 0.5, 0.9


# Samples per pass of the whole-track loops below (1 M: 8 MB of float64 at a time), so that a
# long segment's limiter holds the track's float32 samples and little more, not float64 copies
_PASS = 1 << 20


def _abs_max(x: np.ndarray) -> float:
    """``float(np.abs(x).max(initial=0.0))``, a pass at a time (no copy of the track)."""
    return max((float(np.abs(x[i : i + _PASS]).max()) for i in range(0, x.shape[0], _PASS)), default=0.0)


class _TruePeak:
    """|x| with 4x oversampling (BS.1770 annex 2), per input sample the largest magnitude of the
    oversampled signal around it, computed lazily: only blocks whose samples (with the filter's
    reach) could come within a ceiling are oversampled; elsewhere |x| stands in, which is all
    the limiter needs there (it leaves a sample alone below the ceiling).

    It scales with the signal, so it is computed for ``x`` once, before any gain. ``x`` is kept
    as it is given (float32 samples are read as float64 a block at a time, the same values).
    Of an oversampled block only the samples whose true peak is at least half the level it was
    oversampled for are kept (:data:`_TP_KEEP`): the limiter leaves every other sample alone,
    whichever stands in for it, so the gain is that of the whole array, without an array of
    float64 peaks as long as the track (speech at -16 LUFS oversamples 80 % of its blocks).
    A block is oversampled again if a later level comes near what it kept (:data:`_TP_AGAIN`).
    """

    def __init__(self, x: np.ndarray):
        self.x = x
        n = x.shape[0]
        n_blocks = -(-n // _TP_BLOCK)
        block_max = np.zeros(n_blocks)
        step = _PASS // _TP_BLOCK * _TP_BLOCK
        for i in range(0, n, step):
            part = np.abs(x[i : i + step])
            full = part.shape[0] // _TP_BLOCK
            b0 = i // _TP_BLOCK
            block_max[b0 : b0 + full] = part[: full * _TP_BLOCK].reshape(full, _TP_BLOCK).max(axis=1)
            if part.shape[0] > full * _TP_BLOCK:  # the last, short block (zero-padded before)
                block_max[b0 + full] = max(0.0, float(part[full * _TP_BLOCK :].max()))
        # the filter reaches _TP_DELAY samples into each neighbouring block
        near = block_max.copy()
        near[1:] = np.maximum(near[1:], block_max[:-1])
        near[:-1] = np.maximum(near[:-1], block_max[1:])
        self.reach = near * _TP_BOUND  # no true peak in a block exceeds this
        # per block, the true peak it keeps from (inf: not oversampled yet), and what it keeps:
        # (offsets in the block, their true peaks [float64])
        self.kept_from = np.full(n_blocks, np.inf)
        self.exact: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def done(self) -> np.ndarray:
        """Blocks oversampled. [shape=(n_blocks,), dtype=bool]"""
        return np.isfinite(self.kept_from)

    def compute(self, level: float) -> None:
        """Oversample every block whose true peak could reach ``level``."""
        todo = np.flatnonzero((self.reach >= level) & (self.kept_from > _TP_AGAIN * level))
        if not todo.size:
            return
        x, n = self.x, self.x.shape[0]
        taps = _TP_PHASES.shape[1]
        keep = _TP_KEEP * level
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
            seg = np.asarray(x[lo:hi], dtype=np.float64)
            peak = np.abs(seg[i0 - lo : i1 - lo])
            for p in range(4):
                y = np.convolve(seg, _TP_PHASES[p])[i0 - lo + _TP_DELAY : i1 - lo + _TP_DELAY]
                np.maximum(peak, np.abs(y), out=peak)
            for b in range(b0, b1 + 1):
                block = peak[(b - b0) * _TP_BLOCK : (b - b0 + 1) * _TP_BLOCK]
                at = np.flatnonzero(block >= keep)
                self.exact[b] = (at.astype(np.int32), block[at])
        self.kept_from[todo] = keep

    def peaks(self, i0: int, i1: int) -> np.ndarray:
        """The per-sample peak over ``[i0, i1)`` as computed so far (float64, a new array): exact
        where it could reach the last level given to :meth:`compute`."""
        out = np.abs(np.asarray(self.x[i0:i1], dtype=np.float64))
        if self.exact:
            for b in range(i0 // _TP_BLOCK, -(-i1 // _TP_BLOCK)):
                got = self.exact.get(b)
                if got is not None and got[0].size:
                    at = got[0] + (b * _TP_BLOCK - i0)
                    inside = (at >= 0) & (at < i1 - i0)
                    out[at[inside]] = got[1][inside]
        return out

    def upto(self, level: float) -> np.ndarray:
        """The per-sample true peak, exact wherever it could reach ``level``. [shape=(n,)]"""
        self.compute(level)
        return self.peaks(0, self.x.shape[0])


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
    under ``ceiling`` (:func:`_limiter_spans` spread over the whole signal). [shape=peak.shape]"""

    def need_of(lo: int, hi: int) -> np.ndarray:
        return np.minimum(1.0, ceiling / np.maximum(peak[lo:hi], 1e-12))

    env = np.ones(peak.shape[0])
    for lo, hi, gain in _limiter_spans(need_of, peak.shape[0], sample_rate_hz):
        env[lo:hi] = gain
    return env


def _limiter_spans(need_of, n: int, sample_rate_hz: int) -> list[tuple[int, int, np.ndarray]]:
    """A look-ahead gain envelope <= 1, as the spans where it is not exactly 1: ``(lo, hi,
    gain [shape=(hi - lo,)])``. ``need_of(lo, hi)`` is the gain each sample of ``[lo, hi)``
    needs (1 where none): ``min(1, ceiling / true peak)``.

    The gain each sample needs is spread by a minimum filter over the look-ahead + release
    window and smoothed by two box filters whose support fits inside it, so the smoothed gain
    never exceeds what any sample needs, and it moves over milliseconds, not per sample.

    Only the spans around samples that need a reduction are filtered (elsewhere the gain is
    exactly 1, as the filters' reach says): limiting a few seconds of a long segment costs
    those seconds, not the segment (it sits on the way to the first media segment's audio),
    and no array of the segment's length is made.
    """
    below = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [np.flatnonzero(need_of(i, min(n, i + _PASS)) < 1.0) + i for i in range(0, n, _PASS)]
    )
    if below.size == 0:
        return []
    half = max(2, int(round((_LOOKAHEAD_S + _RELEASE_S) / 2 * sample_rate_hz)))
    box = half // 2  # two centred boxes of 2*(half//2)+1: support <= 2*half+1, inside the min
    reach = half + 2 * box + 1  # how far from a sample needing reduction the gain can dip
    # spans of samples within reach of one needing reduction (apart by more than 2 x reach)
    breaks = np.flatnonzero(np.diff(below) > 2 * reach)
    firsts = np.concatenate([below[:1], below[breaks + 1]])
    lasts = np.concatenate([below[breaks], below[-1:]])
    spans = []
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        # each span starts and ends on gain 1 (or the signal's edge): filtering it alone gives
        # what filtering the whole signal would
        lo, hi = max(0, first - reach), min(n, last + reach + 1)
        need = need_of(lo, hi)
        env = _box_below_one(_box_below_one(_sliding_min(need, half), box), box)
        spans.append((lo, hi, np.minimum(env, need)))  # float rounding only
    return spans


def _gain_spans(
    peak: _TruePeak, g: float, ceiling: float, sample_rate_hz: int
) -> list[tuple[int, int, np.ndarray]]:
    """:func:`_limiter_spans` for the signal of ``peak`` times ``g``."""
    peak.compute(ceiling / g)

    def need_of(lo: int, hi: int) -> np.ndarray:
        return np.minimum(1.0, ceiling / np.maximum(peak.peaks(lo, hi) * g, 1e-12))

    return _limiter_spans(need_of, peak.x.shape[0], sample_rate_hz)


def _limited_count(spans: list[tuple[int, int, np.ndarray]]) -> int:
    """Samples the limiter lowers by more than 0.01 %."""
    return sum(int((gain < 0.9999).sum()) for _, _, gain in spans)


def _apply(
    samples: np.ndarray, g: float, spans: list[tuple[int, int, np.ndarray]], out: np.ndarray | None = None
) -> np.ndarray:
    """``samples`` (as float64) times ``g`` times the limiter's gain (1 outside ``spans``), as
    float32: the samples of ``(x * g * env).astype(np.float32)`` without a float64 copy of the
    track. ``out``: a float32 array to write into."""
    n = samples.shape[0]
    if out is None:
        out = np.empty(n, dtype=np.float32)
    for i in range(0, n, _PASS):
        out[i : i + _PASS] = np.asarray(samples[i : i + _PASS], dtype=np.float64) * g
    for lo, hi, gain in spans:
        out[lo:hi] = np.asarray(samples[lo:hi], dtype=np.float64) * g * gain
    return out


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
    ceiling = _ceiling(target)
    gain_db = target.integrated_lufs - before.integrated_lufs
    # (the track times one gain, times the limiter's where it is not 1: see _apply)
    g_out, spans, limited = 10 ** (gain_db / 20), [], 0
    out32: np.ndarray | None = None  # _apply's samples of (g_out, spans), once made
    # Limiting lowers the loudness a little: raise the gain by what it lost and limit again
    # (converges in two or three rounds; each is deterministic). Without limiting the gain is
    # exact: loudness, range and peak move by it, and nothing is measured again.
    sample_peak = _abs_max(samples)
    peak: _TruePeak | None = None
    after: Measurement | None = None
    for round_ in range(4):
        g = 10 ** (gain_db / 20)
        if sample_peak * g * _TP_BOUND < ceiling:
            g_out, spans, limited = g, [], 0  # nothing can reach the ceiling
            break
        if peak is None:
            peak = _TruePeak(samples)
        g_out, spans = g, _gain_spans(peak, g, ceiling, sample_rate_hz)
        limited = _limited_count(spans)
        out32 = None
        if not limited:
            break
        out32 = _apply(samples, g, spans)
        got = measure(out32, sample_rate_hz=sample_rate_hz, true_peak=true_peaks)
        miss = 0.0 if got.integrated_lufs is None else target.integrated_lufs - got.integrated_lufs
        if abs(miss) < _TOLERANCE_LU or round_ == 3:
            after = got  # what is returned is what was measured
            break
        out32 = None
        gain_db += miss
    if out32 is None:
        out32 = _apply(samples, g_out, spans)
    if after is None:  # not limited: the one gain moved everything by exactly that much
        after = Measurement(
            integrated_lufs=round(before.integrated_lufs + gain_db, 1),
            range_lu=before.range_lu,
            true_peak_dbtp=(
                None if before.true_peak_dbtp is None else round(before.true_peak_dbtp + gain_db, 1)
            ),
        )
    limited_s = limited / sample_rate_hz
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

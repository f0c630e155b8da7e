"""Encoding: raw yuv420p frames to libx264 in this process (PyAV's FFmpeg libraries), muxed with
the chunk's AAC frames into MPEG-TS media segments; and the TV clip decoded by ffmpeg straight to
yuv420p at the screen's size.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import functools
import io
import itertools
import math
import os
import struct
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import av.filter
import av.logging
import numpy as np

from . import _profile, h264
from .errors import FFmpegError, MediaError
from .rendition import audio_with_video
from .spec import OutputSettings
from .audio import AAC_FRAME_SAMPLES
from .media import video_stream
from .timebase import AUDIO_RATE_HZ

__all__ = [
    "TVReader",
    "close_clip_decoders",
    "SegmentJob",
    "AudioSource",
    "ChunkEncoder",
    "keep_freed_memory",
    "x264_options",
    "x264_args",
    "rawvideo_input_args",
]


_BT709 = {"colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv"}


def rawvideo_input_args(out: OutputSettings) -> list[str]:
    """Our raw yuv420p frames, tagged BT.709 limited range *as input*: tagged only on the
    output, ffmpeg inserts a colour conversion that costs about a third of x264's time."""
    return [
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        f"{out.width}x{out.height}",
        "-framerate",
        f"{out.fps.numerator}/{out.fps.denominator}",
        *(a for k, v in _BT709.items() for a in (f"-{k}", v)),
    ]


def x264_options(out: OutputSettings, *, threads: int | None) -> dict[str, str]:
    """libx264 High, BT.709, a keyframe exactly on every media segment boundary, no B-frames, as
    libavcodec options (what ``ffmpeg -c:v libx264 -KEY VALUE ...`` passes to the encoder).

    No B-frames, as low-latency encoders do: every frame boundary is then a place where the live
    playout can cut an LL-HLS part (a cut inside a run of B-frames would split what is shown
    before it from what is decoded before it), so parts are exactly ``part_frames`` long, as
    RFC 8216bis asks (at least 85 % of PART-TARGET); x264's adaptive runs of 1-3 B-frames made
    6-frame parts of 4 or 5 frames. Measured on 10 s of the demo at 1080p, veryfast, one thread:
    9 % more bytes at the same CRF, 10 % less encoder CPU (a fixed run of 2 B-frames: 2 % more
    bytes, the same CPU, but parts only in multiples of 3 frames).
    """
    g = str(out.frames_per_segment)
    return {
        "preset": out.x264_preset,
        "profile": "high",
        "crf": f"{out.crf:g}",
        "maxrate": f"{out.maxrate_kbps}k",
        "bufsize": f"{out.maxrate_kbps * 2}k",
        "g": g,
        "keyint_min": g,
        "sc_threshold": "0",
        "bf": "0",
        **_BT709,
        "threads": str(threads) if threads else "auto",
    }


def x264_args(out: OutputSettings, *, threads: int | None) -> list[str]:
    """The same settings for the ffmpeg command line (the benchmark's bare-ffmpeg floor)."""
    args = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    for key, value in x264_options(out, threads=threads).items():
        args += [f"-{key}", value]
    return args


# A worker keeps this many clips' decoders open across runs and chunks (a 1080p H.264 decoder
# holds its reference frames, ~3 MB each); the least recently used one is closed beyond it
KEEP_CLIP_DECODERS = 3
# Frames a decoder keeps after handing them out (the fps filter reads ahead of its output by one
# frame, two for a clip at twice the output's rate; past that the next run seeks)
_RECENT_FRAMES = 4


class _ClipDecoder:
    """One TV clip open in this worker: its container and decoder, kept from run to run and
    from chunk to chunk, and where the decoder is.

    A run at time t is decoded as a fresh seek to t would decode it (the seek's keyframe, the
    frames decoded from it, those before t dropped). When the decoder is already on the way
    from that very keyframe (the last seek landed on the same packet a seek to t would land
    on) and has handed out no frame at or after t, decoding on gives that same sequence of
    frames, without going back to the keyframe: a clip with keyframes far apart (x264's
    default GOP of 250 frames) then costs the frames in between once, not once per run.
    Where a seek to t lands is asked of a second demuxer of the same file (a seek and one
    packet read, no decoding), so whatever the format's seeking does, the answer is its own.
    """

    def __init__(self, path: Path, key: tuple[Any, ...]):
        self.path, self.key = path, key
        self.container = self._open()
        self.stream = video_stream(self.container)
        self._probe: Any = None
        self._packets: Iterator[Any] | None = None  # the demuxer since the last seek
        self._pending: collections.deque[Any] = collections.deque()  # decoded, not handed out
        # the last frames handed out, with their pts as decoded: a run's fps filter takes a
        # frame or two past its last output, which the next run may start with
        self._recent: collections.deque[tuple[int, Any]] = collections.deque()
        self._origin: Any = None  # the first packet after the last seek
        self._gone_pts: int | None = None  # the largest pts handed out and no longer recent
        self._skip_below: int | None = None  # the run's start (pts): frames before it are dropped
        self._skipping = False
        self._may_skip: bool | None = None  # the decoder was told its reordering (None: not yet)
        self.seeks = 0
        self.damaged = 0  # packets that did not decode
        self._damaged = False  # since a damaged packet: frames dropped up to the next keyframe

    def start(self, t_us: int, shift: int, before: int = 0) -> bool:
        """Be ready to hand out the frames a seek to ``t_us`` (AV_TIME_BASE) would decode, those
        before ``shift`` (the stream's time base) included, and among them the last one before
        it for sure (the run shows it at t when no frame falls nearer t): frames less than
        ``before`` ticks before ``shift`` are decoded even where others before t are skipped.
        Returns False if it had to seek."""
        near = shift - before
        recent_before = any(pts < shift for pts, _ in self._recent)
        if (
            self._origin is not None
            and (
                self._gone_pts is None or self._gone_pts < near or (recent_before and self._gone_pts < shift)
            )
            and self._landing(t_us) == self._origin
        ):
            self._skip_below = near
            # the recent frames from the last before t are handed out again, in order (those
            # before t among them are dropped again by the run, but for the last)
            while len(self._recent) > 1 and self._recent[1][0] < shift:
                self._recent.popleft()
            for pts, frame in reversed(self._recent):
                frame.pts = pts
                self._pending.appendleft(frame)
            self._recent.clear()
            return True
        container = self.container
        self.container, first, packets = self._seek(container, t_us)
        if self.container is not container:  # opened again: a new decoder
            self._may_skip = None
        self.stream = video_stream(self.container)
        self.seeks += 1
        self._packets = itertools.chain([first], packets) if first is not None else packets
        self._pending.clear()
        self._recent.clear()
        self._origin = self._gone_pts = None
        self._damaged = False
        self.stream.codec_context.skip_frame = "DEFAULT"
        self._skip_below, self._skipping = near, False
        return False

    @staticmethod
    def _identity(packet: Any) -> Any:
        if packet.size == 0:  # the demuxer's end: nothing to continue from
            return None
        return (packet.pos, packet.dts, packet.pts, packet.size)

    def _open(self) -> Any:
        container = av.open(str(self.path))
        video_stream(container).codec_context.thread_count = 1  # the other core encodes
        return container

    def _seek(self, container: Any, t_us: int) -> tuple[Any, Any, Iterator[Any]]:
        """Seek ``container`` to the keyframe at or before ``t_us``: (the container, its first
        packet, the demuxer after it). The decoder is flushed.

        MP4 and Matroska seek to a keyframe; MPEG-TS seeks to any packet whose time is before
        t (a seek to t lands on the frame a P- or B-frame after it, which the decoder drops
        up to the next keyframe: frames from seconds later, or none at all with one keyframe
        in the clip). There, seek again a second earlier, then two, four... and at the clip's
        start, read it from its first packet.
        """
        start_us = container.start_time or 0
        back_us, target_us = 1_000_000, t_us
        while True:
            container.seek(target_us, backward=True)  # PyAV flushes the decoder
            packets = container.demux(video_stream(container))
            first = next(packets, None)
            if first is None or first.size == 0 or first.is_keyframe:
                return container, first, packets
            if target_us <= start_us:
                break
            target_us, back_us = max(start_us, target_us - back_us), back_us * 2
        container.close()
        container = self._open()  # a fresh decoder too
        packets = container.demux(video_stream(container))
        return container, next(packets, None), packets

    def _landing(self, t_us: int) -> Any:
        """The first packet a seek to ``t_us`` gives (its place and times), from the probe."""
        if self._probe is None:
            self._probe = av.open(str(self.path))
        self._probe, first, _ = self._seek(self._probe, t_us)
        return self._identity(first) if first is not None else None

    def next_frame(self) -> Any:
        """The decoder's next frame in its own order, or None after the clip's last. (The caller
        may change its pts: the pts as decoded is kept.)"""
        while not self._pending:
            packet = next(self._packets, None) if self._packets is not None else None
            if packet is None:
                self._packets = None
                return None
            if self._origin is None:
                self._origin = self._identity(packet) or object()  # (equal to no landing)
            # a frame before the run's start that no other frame refers to (most B-frames):
            # not decoded at all, as if handed out and dropped. Only where the clip declares
            # its frame reordering up front (x264 does): else libavcodec learns it from the
            # frames it sees, and would learn it differently with some of them skipped
            skip = (
                self._may_skip is True
                and packet.pts is not None
                and self._skip_below is not None
                and packet.pts < self._skip_below
            )
            if skip != self._skipping:
                self.stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
                self._skipping = skip
            if skip:
                self._gone_pts = packet.pts if self._gone_pts is None else max(self._gone_pts, packet.pts)
            if self._damaged and packet.is_keyframe:
                self._damaged = False  # what follows refers to nothing before it
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                # a damaged packet (a bad sector, a broken upload; validate decodes keyframes
                # only): the picture holds its last good frame up to the next keyframe (the
                # render failed here). Not ffmpeg's concealment, whose frames depend on what
                # the decoder saw before (a run started elsewhere, another --jobs: others)
                self._damaged, frames = True, []
                self.damaged += 1
            if not self._damaged:
                self._pending.extend(frames)
            if self._may_skip is None:  # known once its first packet (and SPS) is decoded
                self._may_skip = self.stream.codec_context.has_b_frames > 0
        frame = self._pending.popleft()
        if frame.pts is not None:
            self._recent.append((frame.pts, frame))
            if len(self._recent) > _RECENT_FRAMES:
                gone, _ = self._recent.popleft()
                self._gone_pts = gone if self._gone_pts is None else max(self._gone_pts, gone)
        return frame

    def close(self) -> None:
        self._packets = None
        self._pending.clear()
        self._recent.clear()
        for c in (self.container, self._probe):
            if c is not None:
                c.close()
        self._probe = None


# Per thread: a worker of a threaded pool (Dask's) renders chunks side by side, each its own
_KEPT = threading.local()


def _kept_decoders() -> collections.OrderedDict[tuple[Any, ...], _ClipDecoder]:
    """This thread's kept decoders, least recently used first."""
    kept = getattr(_KEPT, "decoders", None)
    if kept is None:
        kept = _KEPT.decoders = collections.OrderedDict()
    return kept


def _clip_key(path: Path) -> tuple[Any, ...]:
    """The clip's path and file identity: a clip replaced under the same name is another clip."""
    st = os.stat(path)
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _clip_decoder(path: Path) -> _ClipDecoder:
    """This worker's decoder of ``path``, opened if it has none (or the file changed)."""
    key = _clip_key(path)
    kept = _kept_decoders()
    dec = kept.get(key)
    if dec is not None:
        kept.move_to_end(key)
        return dec
    for old in [k for k in kept if k[0] == key[0]]:  # the same name, another file
        kept.pop(old).close()
    dec = _ClipDecoder(path, key)
    kept[key] = dec
    while len(kept) > KEEP_CLIP_DECODERS:
        kept.popitem(last=False)[1].close()
    return dec


def _drop_clip_decoder(dec: _ClipDecoder) -> None:
    """Close ``dec`` and forget it (after a decoding error its state is not to be trusted)."""
    kept = _kept_decoders()
    if kept.get(dec.key) is dec:
        del kept[dec.key]
    dec.close()


def close_clip_decoders(keep: Sequence[Path] = ()) -> None:
    """Close this thread's kept TV clip decoders, but those of ``keep`` (a new spec's clips)."""
    names = {str(p) for p in keep}
    kept = _kept_decoders()
    for key in [k for k in kept if k[0] not in names]:
        kept.pop(key).close()


# a clip within this of the screen's shape is scaled to it (a bar of a pixel or two is no fit)
FIT_TOLERANCE = Fraction(2, 100)


# A clip's colour matrix (libavutil's AVColorSpace) -> swscale's name for it and the colorspace
# filter's (None: BT.709 already)
_MATRICES = {
    1: ("bt709", None),
    4: ("fcc", "bt601-6-525"),  # FCC: BT.601's coefficients to two decimals
    5: ("bt601", "bt601-6-625"),
    6: ("bt601", "bt601-6-525"),
    7: ("smpte240m", "smpte240m"),
    9: ("bt2020", "bt2020"),
    10: ("bt2020", "bt2020"),
}
AVCOL_SPC_UNSPECIFIED = 2


def clip_matrix(colorspace: int, size: tuple[int, int], *, rgb: bool = False) -> tuple[str, str | None]:
    """The colour matrix of a clip's frames, (swscale's name, the ``colorspace`` filter's name or
    None for BT.709): the clip's own when it says which, else the one players assume from its
    size (as mpv does: BT.709 from 1280 wide or over 576 lines, BT.601 below). RGB frames (and
    palettes) have none: swscale writes them as BT.709 directly."""
    if rgb:
        return "bt709", None
    if colorspace == AVCOL_SPC_UNSPECIFIED:
        w, h = size
        return ("bt709", None) if w >= 1280 or h > 576 else ("bt601", "bt601-6-525")
    return _MATRICES.get(colorspace, ("bt709", None))


def to_bt709(matrix: tuple[str, str | None]) -> list[str]:
    """The filter that takes yuv420p TV-range frames of ``matrix`` (:func:`clip_matrix`) to
    BT.709, the render's: none for BT.709. (swscale can convert while it scales, but off by two
    levels on flat grey when it scales down; the colorspace filter is exact and as cheap.)"""
    if matrix[1] is None:
        return []
    return [f"colorspace=all=bt709:iall={matrix[1]}:range=tv:irange=tv:fast=1:format=yuv420p"]


# A clip's transfer (libavutil's AVColorTransferCharacteristic) that is HDR: PQ and HLG
AVCOL_TRC_SMPTE2084 = 16
AVCOL_TRC_ARIB_STD_B67 = 18
# BT.2408: HDR reference (graphics) white, in nits, is the SDR picture's 100 %
HDR_REFERENCE_WHITE_NITS = 203.0
HLG_PEAK_NITS = 1000.0  # BT.2100's reference display for HLG (system gamma 1.2)
PQ_PEAK_NITS = 1000.0  # a PQ clip's highlights roll off to SDR white by here (most are graded to it)
HDR_LUT_SIZE = 65
_HDR_LUT_VERSION = 1  # in the LUT file's name: raise it when hdr_to_sdr changes
# BT.2020 -> BT.709 primaries, linear light (BT.2087)
_BT2020_TO_BT709 = np.array(
    [[1.660491, -0.587641, -0.072850], [-0.124550, 1.132900, -0.008349], [-0.018151, -0.100579, 1.118730]],
    dtype=np.float64,
)


def hdr_to_sdr(rgb: np.ndarray, trc: int) -> np.ndarray:
    """HDR BT.2020 R'G'B' (PQ or HLG signal, 0..1, shape (..., 3)) -> SDR BT.709 R'G'B' for a
    BT.1886 display (0..1): linear light in nits, BT.2020 to BT.709 primaries, HDR reference
    white (203 nits, BT.2408) on SDR white's level, all above 80 % of it rolled off (reference
    white lands at 96 %, the clip's peak on SDR white) with the hue kept (the largest channel compressed, the others scaled with it),
    what lies outside BT.709 clipped, then the display's 2.4 gamma undone."""
    e = np.clip(rgb.astype(np.float64), 0.0, 1.0)
    if trc == AVCOL_TRC_SMPTE2084:  # SMPTE ST 2084 EOTF
        m1, m2 = 2610 / 16384, 2523 / 4096 * 128
        c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
        p = e ** (1 / m2)
        nits = 10000.0 * (np.maximum(p - c1, 0.0) / (c2 - c3 * p)) ** (1 / m1)
        peak = PQ_PEAK_NITS
    else:  # ARIB STD-B67 (HLG): inverse OETF, then the OOTF of a 1000-nit display
        a = 0.17883277
        b, c = 1 - 4 * a, 0.5 - a * math.log(4 * a)
        scene = np.where(e <= 0.5, e * e / 3.0, (np.exp((e - c) / a) + b) / 12.0)
        ys = scene @ np.array([0.2627, 0.6780, 0.0593])
        nits = HLG_PEAK_NITS * scene * (np.maximum(ys, 1e-12) ** 0.2)[..., None]
        peak = HLG_PEAK_NITS
    lin = np.maximum(nits @ _BT2020_TO_BT709.T, 0.0) / HDR_REFERENCE_WHITE_NITS
    top = lin.max(axis=-1, keepdims=True)
    knee, room = 0.8, 0.2
    w = max(peak / HDR_REFERENCE_WHITE_NITS - knee, room + 1e-3)  # the peak, above the knee
    m = w * room / (w - room)  # y / (1 + y / m): slope 1 at the knee, the peak on SDR white
    y = np.maximum(top - knee, 0.0)
    rolled = np.where(top > knee, knee + y / (1.0 + y / m), top)
    lin = lin * (rolled / np.maximum(top, 1e-12))
    return np.clip(lin, 0.0, 1.0) ** (1 / 2.4)


def hdr_lut(trc: int) -> Path:
    """A ``lut3d`` .cube file of :func:`hdr_to_sdr` for ``trc`` (PQ or HLG), 65 nodes a side,
    made once in the temp folder (0.3 s; its content is fixed by this code: any process may
    write it, atomically). A LUT in the decoder's filter graph, not numpy per frame: libavfilter
    here has ``tonemap`` but not ``zscale`` to bring PQ or HLG to linear light for it."""
    name = "pq" if trc == AVCOL_TRC_SMPTE2084 else "hlg"
    path = Path(tempfile.gettempdir()) / f"avatarrender-hdr-{name}-{HDR_LUT_SIZE}-v{_HDR_LUT_VERSION}.cube"
    if path.exists():
        return path
    n = HDR_LUT_SIZE
    g = np.linspace(0.0, 1.0, n)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")  # .cube order: red changes fastest
    out = hdr_to_sdr(np.stack([r, gg, b], axis=-1).reshape(-1, 3), trc)
    text = f"LUT_3D_SIZE {n}\n" + "\n".join(f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in out.tolist()) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def fit_filters(
    aspect: Fraction, screen: tuple[int, int], fit: str, matrix: tuple[str, str | None] = ("bt709", None)
) -> list[str]:
    """ffmpeg filters that scale a picture of display ``aspect`` (width / height, its pixels'
    shape counted) onto a ``screen`` of (w, h): whole, centred on black (``contain``); filling
    it, the overflow cut evenly (``cover``); or stretched to it (``stretch``, and any clip
    within :data:`FIT_TOLERANCE` of the screen's shape). Sizes and offsets are even (yuv420p).

    The scale keeps the clip's colour ``matrix`` (:func:`clip_matrix`; :func:`to_bt709` then
    converts): told nothing, swscale writes BT.601, and the render's stream says BT.709 (a
    BT.709 clip's yellow aired as 254,235,0)."""
    w, h = screen
    scale = f"flags=bicubic:in_color_matrix={matrix[0]}:out_color_matrix={matrix[0]}:out_range=tv"
    box = fit_box(aspect, screen, fit)
    if box is None:
        return [f"scale={w}:{h}:{scale}"]
    sw, sh, x, y = box
    if fit == "contain":
        return [f"scale={sw}:{sh}:{scale}", f"pad={w}:{h}:{x}:{y}:black"]
    return [f"scale={sw}:{sh}:{scale}", f"crop={w}:{h}:{x}:{y}"]


def fit_box(aspect: Fraction, screen: tuple[int, int], fit: str) -> tuple[int, int, int, int] | None:
    """How :func:`fit_filters` fits a picture of display ``aspect`` onto ``screen``: (scaled
    width, height, x, y), the offset being the bars' (``contain``) or the cut's (``cover``),
    all even; None when it is stretched to the screen."""
    w, h = screen
    if fit == "stretch" or abs(aspect / Fraction(w, h) - 1) <= FIT_TOLERANCE:
        return None
    even = lambda v: max(2, 2 * int(round(v / 2)))  # noqa: E731
    if (aspect > Fraction(w, h)) == (fit == "contain"):
        sw, sh = w, even(w / aspect)  # as wide as the screen
    else:
        sw, sh = even(h * aspect), h  # as tall as the screen
    return sw, sh, 2 * (abs(w - sw) // 4), 2 * (abs(h - sh) // 4)


class TVReader:
    """Decodes the TV clips a chunk shows, in this process (PyAV), scaled to the screen.

    Each contiguous run from T gives the frames ``ffmpeg -i CLIP -vf setpts=PTS-T/TB,fps=R:
    start_time=0,scale=W:H:flags=bicubic:in_color_matrix=M:out_color_matrix=M:out_range=tv,
    format=yuv420p[,colorspace=all=bt709:iall=M...]`` gives (the fps filter
    over the whole clip; tested frame for frame against the ffmpeg command), so a run started
    at any frame shows what a run from the clip's start shows there, decoded from the keyframe
    before T, without a process, a pipe or fresh memory per chunk. The clips' decoders stay open in the worker from run to run and chunk to chunk,
    and decode on instead of seeking where that gives the same frames (:class:`_ClipDecoder`).

    A clip of another shape than the screen (a portrait phone clip, a 4:3 archive) is fitted
    as ``fit`` says (:func:`fit_filters`): whole, with black bars (``contain``), filling the
    screen, its edges cut (``cover``), or stretched (``stretch``).

    Parameters
    ----------
    clip_paths : list of Path
    size : (w, h) of the screen, px (even)
    fps : output frame rate
    fit : "contain", "cover" or "stretch"
    """

    def __init__(self, clip_paths: list[Path], size: tuple[int, int], fps: Fraction, fit: str = "contain"):
        self.clip_paths = clip_paths
        self.w, self.h = size
        self.fps = fps
        self.fit = fit
        self._buf = np.empty(self.w * self.h * 3 // 2, dtype=np.uint8)
        n, q = self.w * self.h, self.w * self.h // 4
        self._planes = (
            self._buf[:n].reshape(self.h, self.w),
            self._buf[n : n + q].reshape(self.h // 2, self.w // 2),
            self._buf[n + q :].reshape(self.h // 2, self.w // 2),
        )
        self._run: Iterator[Any] | None = None
        self._decoder: _ClipDecoder | None = None
        self._reading = 0
        self._last_ok = False
        self.repeated = False  # the frame last yielded is the one yielded before it
        self.seeks = 0  # runs that sought (the others decoded on from where the decoder was)
        self.continued = 0
        close_clip_decoders(keep=clip_paths)  # another spec's clips: closed

    def _decoded(self, clip: int, t_s: float, frames: int) -> Iterator[Any]:
        """The run's output frames: decoded from the keyframe before ``t_s``, re-timed from it,
        the frames before it dropped but the last, then the filters."""
        dec = self._decoder = _clip_decoder(self.clip_paths[clip])
        # t counts from the file's start time (an MPEG-TS clip's may be 1.4 s), as with -ss
        t_us = round(t_s * 1_000_000) + (dec.container.start_time or 0)
        shift = math.floor(Fraction(t_us, 1_000_000) / dec.stream.time_base + Fraction(1, 2))
        # to the keyframe at or before t (any earlier one would do: frames before t are decoded
        # and dropped), or on from where the decoder is when that gives the same frames; the
        # last frame before t is kept for the fps filter (see below): frames up to two of the
        # clip's frame times (or an output frame's) before t are always decoded
        tb = dec.stream.time_base
        rate = dec.stream.average_rate or dec.stream.guessed_rate
        span = max(2 / Fraction(rate) if rate else Fraction(1, 2), 1 / self.fps)
        if dec.start(t_us, shift, math.ceil(span / tb)):
            self.continued += 1
            _profile.count("tv_runs_decoded_on")
        else:
            self.seeks += 1
            _profile.count("tv_runs_sought")
        stream = dec.stream  # (the clip may have been opened again, from its start)
        graph: Any = None  # fresh per run: its fps filter counts from the run's first frame
        given = 0

        def pulled() -> Iterator[Any]:
            nonlocal given
            while given < frames:
                try:
                    out = graph.vpull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return
                given += 1
                yield out

        # The output frames are those of the fps filter run over the whole clip from its start:
        # anchored at t (start_time 0), it shows at t the last frame before t when none falls
        # nearer t. So a run started at any frame (a chunk's first, preview's one) shows what the
        # run before it would have shown there: frames the same for any chunk size
        held = None  # the last frame before t
        last = None  # the last frame pushed
        while given < frames:
            frame = dec.next_frame()
            if frame is None:
                if graph is None and held is not None:  # the run starts past the clip's last frame
                    graph = self._graph(stream, held)
                    # (at t at the latest: a clip cut short by damage ends before the time the
                    # run asks for, and a frame before t alone gave the fps filter nothing)
                    held.pts = max(held.pts - shift, 0) if dec.damaged else held.pts - shift
                    graph.vpush(held)
                    last, held = held, None
                if graph is not None:
                    if given == 0 and last is not None:
                        # a clip shorter than half an output frame gives the fps filter nothing
                        # to show: its last frame again, an output frame later, is shown
                        last.pts += max(1, math.ceil(1 / (self.fps * stream.time_base)))
                        graph.vpush(last)
                    graph.vpush(None)  # the clip ended: the fps filter gives what it still holds
                    yield from pulled()
                return
            if frame.pts is None:
                continue
            if frame.pts - shift < 0:
                held = frame
                continue
            if graph is None:
                graph = self._graph(stream, held if held is not None else frame)
                if held is not None:
                    held.pts -= shift
                    graph.vpush(held)
            frame.pts -= shift
            graph.vpush(frame)
            last = frame
            yield from pulled()

    @staticmethod
    def _upright(frame: Any) -> list[str]:
        """The filters that turn a phone clip's picture upright (and unmirror a front camera's)
        by its display matrix, as ffmpeg's autorotate chooses them (checked against it); none
        for an angle that is not a quarter turn (as before)."""
        m = next(
            (struct.unpack("<9i", bytes(sd)) for sd in frame.side_data if sd.type.name == "DISPLAYMATRIX"),
            None,
        )
        if m is None:
            return []
        theta = -round(frame.rotation or 0)  # fftools' get_rotation: clockwise, 0 <= theta < 360
        theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
        if abs(theta - 90) < 1:
            return ["transpose=cclock_flip" if m[3] > 0 else "transpose=clock"]
        if abs(theta - 180) < 1:
            return [*(["hflip"] if m[0] < 0 else []), *(["vflip"] if m[4] < 0 else [])]
        if abs(theta - 270) < 1:
            return ["transpose=clock_flip" if m[3] < 0 else "transpose=cclock"]
        return ["vflip"] if abs(theta) < 1 and m[4] < 0 else []

    def _graph(self, stream: Any, first: Any) -> Any:
        """rotation, fps, scale bicubic to the screen as BT.709 TV range (fitted), yuv420p, an
        HDR clip tone-mapped to SDR; from the run's ``first`` frame (its rotation, size, colour
        matrix and transfer)."""
        turn = self._upright(first)
        sar = Fraction(stream.sample_aspect_ratio or 1) or Fraction(1)
        w, h = first.width, first.height
        fmt = first.format
        matrix = clip_matrix(first.colorspace, (w, h), rgb=fmt.is_rgb or fmt.name.startswith("pal"))
        if turn and turn[0].startswith("transpose"):
            w, h, sar = h, w, 1 / sar
        fit = fit_filters(Fraction(w) * sar / h, (self.w, self.h), self.fit, matrix)
        if first.color_trc in (AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67) and not fmt.is_rgb:
            # HDR: the scale gives 16-bit R'G'B' of the clip's matrix, a 3-D LUT maps it to
            # SDR BT.709 (:func:`hdr_to_sdr`; by its matrix alone it aired dim and grey)
            colour = [
                "format=gbrp16le",
                f"lut3d=file='{hdr_lut(first.color_trc)}':interp=tetrahedral",
                "scale=flags=bicubic:out_color_matrix=bt709:out_range=tv",
                "format=yuv420p",
            ]
        else:
            colour = ["format=yuv420p", *to_bt709(matrix)]
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(template=stream),
            # an interlaced frame (1080i, 576i broadcast) is deinterlaced from its own two
            # fields (spatial only: the same frame whatever run it starts), a progressive one
            # passes as it is (it aired combed); a picture of under 3 lines has no fields to
            # speak of (estdif refuses it: the render failed on a 2x2 clip validate took)
            *([graph.add("estdif", "mode=frame:deint=interlaced")] if first.height >= 3 else []),
            *(graph.add(*f.split("=", 1)) for f in turn),
            graph.add("fps", f"fps={self.fps.numerator}/{self.fps.denominator}:start_time=0"),
            *(graph.add(*f.split("=", 1)) for f in fit),
            *(graph.add(*f.split("=", 1)) for f in colour),
            graph.add("buffersink"),
        ]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        return graph

    def _field(self) -> str:
        """The spec field of the clip being read (for errors: the file and the field)."""
        return f"tv.clips[{self._reading}].file"

    def _read(self) -> None:
        try:
            frame = next(self._run, None) if self._run is not None else None
        except (av.error.FFmpegError, OSError) as exc:  # (OSError: the clip is gone)
            if self._decoder is not None:
                _drop_clip_decoder(self._decoder)  # where it stopped is not to be trusted
                self._decoder = None
            self._run = None
            raise MediaError(
                self.clip_paths[self._reading], self._field(), f"cannot decode the TV clip: {exc}"
            ) from None
        if frame is None:
            if self._last_ok:
                self.repeated = True  # clip ended a frame early (rounding of its duration):
                return  # hold the last frame
            raise MediaError(
                self.clip_paths[self._reading], self._field(), "the TV clip gave no frame to show"
            )
        w, h = self.w, self.h
        y, u, v = self._planes
        src = [
            np.frombuffer(plane, np.uint8).reshape(ph, plane.line_size)[:, :pw]
            for plane, pw, ph in (
                (frame.planes[0], w, h),
                (frame.planes[1], w // 2, h // 2),
                (frame.planes[2], w // 2, h // 2),
            )
        ]
        # A clip slower than the output: the fps filter gives its frame again (0.1 ms to tell
        # at 720x404, where x264 would spend a frame's work on the repeat)
        self.repeated = self._last_ok and all(np.array_equal(d, s) for d, s in zip((y, u, v), src))
        if not self.repeated:
            for dst, s in zip((y, u, v), src):
                dst[:] = s
        self._last_ok = True

    def _start(self, clip: int, t_s: float, frames: int) -> None:
        self._reading = clip  # (for errors: the clip being started)
        if self._run is not None:
            self._run.close()  # the run before ends here; the decoder keeps what it holds
        self._run = self._decoded(clip, t_s, frames)  # opened, sought, decoded at the first read

    def frames(self, clip: np.ndarray, time_s: np.ndarray) -> Iterator[tuple[np.ndarray, ...] | None]:
        """For each frame: the clip's yuv planes (a reused buffer), or None when the TV is off.
        After each, :attr:`repeated` says whether the planes are those yielded before, unchanged.

        Parameters
        ----------
        clip : np.ndarray [shape=(n,), dtype=int16]  clip index per frame, -1 off
        time_s : np.ndarray [shape=(n,)]  time inside the clip per frame
        """
        step = 1.0 / float(self.fps)
        n = len(clip)
        prev: tuple[int, float] | None = None
        i = 0
        try:
            while i < n:
                c = int(clip[i])
                if c < 0:
                    prev = None
                    yield None
                    i += 1
                    continue
                t = float(time_s[i])
                t0 = time.perf_counter() if _profile.ENABLED else 0.0
                if prev is not None and prev[0] == c and abs(t - prev[1]) < step / 2:
                    self.repeated = True  # hold: the same clip frame again
                elif prev is not None and prev[0] == c and abs(t - prev[1] - step) < step / 2:
                    self._read()
                else:
                    # a new run: count the frames that advance one step at a time
                    j = i + 1
                    while j < n and clip[j] == c and abs(time_s[j] - time_s[j - 1] - step) < step / 2:
                        j += 1
                    self._last_ok = False
                    self._start(c, t, j - i)
                    self._read()
                if _profile.ENABLED:
                    _profile.add("tv_decode", t0)
                yield self._planes
                prev = (c, t)
                i += 1
        finally:
            self.close()

    def close(self) -> None:
        """End the run being read; the clips' decoders stay open for the worker's next chunk
        (:func:`close_clip_decoders` closes them)."""
        if self._run is not None:
            self._run.close()
            self._run = None
        self._decoder = None


@dataclasses.dataclass(frozen=True)
class SegmentJob:
    """One media segment of a chunk: its file, its frames and where it starts in the whole.

    ``end_s`` is where the next segment starts; None for the segment's last, which takes the
    rest of the AAC track.
    """

    path: Path
    frames: int
    start_s: Fraction
    end_s: Fraction | None
    repeats: int = 0  # frames after its first that repeat the frame before (skip frames)


# Gives a segment its AAC frames (ADTS, header included) and the first one's presentation time
# in seconds of the whole; may wait for the audio encoder to get that far.
AudioSource = Callable[[SegmentJob], tuple[Sequence[bytes], Fraction]]


_MALLOC_TUNED = False


def keep_freed_memory() -> None:
    """Make this process's malloc keep what it frees (glibc; elsewhere a no-op).

    Each media segment's x264 allocates ~200 MB of frames at 1080p and frees them at its end. By
    default glibc returns such blocks to the kernel, and the next x264 gets fresh pages that
    the kernel must zero (on a VM the host must back them first: ~2 ms per MB here). Kept, the
    next segment's encoder reuses them warm. A worker's footprint stays at its peak, which does
    not grow with the segment's length.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: blocks up to 32 MB come from the heap
    mallopt(M_TRIM_THRESHOLD, 1 << 30)  # and the heap does not shrink


class ChunkEncoder:
    """Encodes a chunk's media segments in this process: libx264 and the MPEG-TS muxer of PyAV's
    FFmpeg libraries, one fresh x264 per media segment.

    A fresh encoder per media segment makes each segment depend on its own frames only (x264's
    rate control carries state from frame to frame), so the decoded output is the same whatever
    the chunk size or worker count. In this long-lived worker its memory is the memory the last
    one freed: an ffmpeg process per chunk got its x264 frame pool fresh from the kernel (and on
    a VM, from the host) for every segment, about 280 ms per segment at 1080p, as much as
    encoding the segment's 30 frames. Frames pass by pointer, not through a pipe. The bitstream
    is byte for byte what ``ffmpeg -c:v libx264`` writes with the same options (tested).

    Each segment's timestamps are offset to its place in the whole, as ``ffmpeg
    -output_ts_offset`` would: its first frame at its start time plus the mpegts muxer's
    constant 1.4 s, its audio at its AAC frames' own presentation times. The audio is asked
    for when the segment's video is done, so the AAC encoder runs alongside the first chunks.

    A frame written as ``same_as_previous`` (the composer knows nothing changed) does not go to
    x264 unless it starts a segment: it becomes an H.264 skip frame (:mod:`avatarrender.h264`),
    and x264's later frames in the segment are renumbered around it. x264 sees the changed
    frames only, one after another, at a CRF lowered for the repeats. Off with ``output.skip_identical_frames: false``, or when
    x264's settings make a stream where a skip frame would not fit (B-frames, more than one
    reference frame): then x264 encodes every frame.

    Parameters
    ----------
    segments : list of SegmentJob, in air order
    audio : gives each segment its AAC frames
    threads : x264 threads (None: x264 decides)
    """

    def __init__(
        self, out: OutputSettings, segments: list[SegmentJob], *, audio: AudioSource, threads: int | None
    ):
        keep_freed_memory()
        av.logging.set_level(av.logging.ERROR)  # libav's messages reach us, not the terminal
        self.out = out
        self.segments = list(segments)
        self.audio = audio
        self.options = x264_options(out, threads=threads)
        self._next = 0  # the segment being encoded
        self._mux: Any = None
        self._buf: io.BytesIO | None = None
        self._video: Any = None
        self._packets: list[Any] = []
        self._pts = 0
        self._capture: Any = None
        self._logs: list[tuple[int, str, str]] = []
        self._skip_frames: bool | None = None if out.skip_identical_frames else False
        self._skipped: list[int] = []  # this segment's frames written as skip frames (pts)
        self.skipped_count = 0  # over the chunk

    @property
    def skip_frames(self) -> bool:
        """Repeated frames become skip frames (known when the first segment's encoder opens)."""
        if self._skip_frames is None:
            self._skip_frames = skip_frames_fit(self.options) is None
        return self._skip_frames

    def _x264_options(self, job: SegmentJob) -> dict[str, str]:
        """The options, with the CRF lower in a segment with skip frames.

        x264 refines a repeated frame: coded again, it gets residual that brings it closer to
        the source, run after run. A skip frame keeps the frame before as it was coded, so the
        changed frames are coded finer instead: the CRF is lowered by 1.5 x the share of
        repeated frames, at most 1. Measured with ``benchmarks/skip_frames.py`` (6 s, speech
        only, 66-67 % repeats, PSNR of every decoded frame against the composed one, against
        x264 on every frame at the same CRF): at the same CRF 0.5 dB less for 6-14 % fewer
        bytes; one step lower 0.2-0.35 dB more for -6 to +2 % bytes (demo, grain); half a
        step 0.05-0.13 dB less.
        """
        if not job.repeats or not self.skip_frames:
            return self.options
        step = min(SKIP_CRF_STEP, 1.5 * job.repeats / job.frames)
        return {**self.options, "crf": f"{max(0.0, self.out.crf - step):.2f}"}

    def _fail(self, exc: Exception, job: SegmentJob) -> FFmpegError:
        lines = "\n".join(f"[{name}] {msg.strip()}" for _, name, msg in self._logs if msg.strip())
        return FFmpegError(f"video encoder (libx264) failed on {job.path.name}: {exc}", stderr=lines)

    def _open(self) -> None:
        job = self.segments[self._next]
        self._capture = av.logging.Capture()
        self._logs = self._capture.__enter__()
        try:
            self._buf = io.BytesIO()
            self._mux = av.open(
                self._buf,
                "w",
                format="mpegts",
                options={
                    "max_delay": "700000",  # ffmpeg's -muxdelay default: the same 1.4 s TS offset
                    # one PES per AAC frame (the default waits for 2930 bytes, 0.2-0.4 s of audio,
                    # written after the video of that time): each LL-HLS part then carries its own
                    # audio, so a player's buffered range (audio and video) reaches the live edge,
                    # and a segment cut at a part boundary ends with its audio. About 30 kbit/s more
                    # (2 % of the demo's 1.6 Mbit/s: more TS packets for the same AAC).
                    "pes_payload_size": "0",
                    "output_ts_offset": f"{float(job.start_s):.9f}",
                    "avoid_negative_ts": "disabled",
                },
            )
            # (the first time, a probe encode: settings x264 refuses fail there, logged here)
            video = self._mux.add_stream("libx264", rate=self.out.fps, options=self._x264_options(job))
            video.width, video.height, video.pix_fmt = self.out.width, self.out.height, "yuv420p"
            video.codec_context.open()
        except av.error.FFmpegError as exc:
            self._end_capture()
            raise self._fail(exc, job) from None
        self._video, self._packets, self._pts, self._skipped = video, [], 0, []

    def _end_capture(self) -> None:
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
            self._capture = None

    def _close(self) -> None:
        job = self.segments[self._next]
        mux = self._mux
        t0 = time.perf_counter() if _profile.ENABLED else 0.0
        try:
            self._packets += self._video.encode(None)
            if self._skipped:
                self._packets = self._with_skip_frames(self._packets)
            self._packets = _with_parameter_sets(self._packets)
            if _profile.ENABLED:
                _profile.add("encode", t0)
                _profile.mark("video_done")
                t0 = time.perf_counter()
            aac, aac_start_s = self.audio(job)
            if _profile.ENABLED:
                _profile.add("audio_wait", t0)
                _profile.mark("audio_got")
                t0 = time.perf_counter()
            # the header is written at the first mux(): the audio stream may still join
            audio = mux.add_stream_from_template(_aac_template(bytes(aac[0])))
            tick = Fraction(AAC_FRAME_SAMPLES, AUDIO_RATE_HZ)
            for j, data in enumerate(aac):
                pkt = av.Packet(data)
                pkt.pts = pkt.dts = int((aac_start_s - job.start_s + j * tick) * 90000)
                pkt.duration = int(tick * 90000)
                pkt.time_base = Fraction(1, 90000)
                pkt.is_keyframe = True  # as ffmpeg's ADTS reader marks them: TS random access
                pkt.stream = audio
                mux.mux(pkt)
            for pkt in self._packets:  # the muxer interleaves them with the audio by time
                mux.mux(pkt)
            mux.close()
        except av.error.FFmpegError as exc:
            raise self._fail(exc, job) from None
        finally:
            self._end_capture()
        job.path.write_bytes(audio_with_video(self._buf.getvalue()))
        if _profile.ENABLED:
            _profile.add("mux", t0)
        self._mux = self._buf = self._video = None
        self._packets = []
        self._next += 1

    def _with_skip_frames(self, packets: list[Any]) -> list[Any]:
        """The segment's packets in decode order: x264's, with a skip frame at each skipped
        frame's place and every slice's frame_num set to its frame's place (all frames are
        reference frames, so frame_num counts them from the IDR).

        x264 got the changed frames at consecutive times, as a constant-rate stream of fewer
        frames; their times are set here. Given their real times instead (x264 then knows a
        frame stays on screen for a run of skip frames, libavcodec leaves x264's
        ``b_vfr_input`` on), its rate control spent 23-25 % more bytes for 2.3-2.7 dB more
        PSNR than without skip frames (demo and grain, speech only, 6 s); this way 6-14 %
        fewer bytes for 0.5 dB less (``benchmarks/skip_frames.py``): what a CRF means stays
        about what it meant.
        """
        job = self.segments[self._next]
        sp = h264.read_seq_params(bytes(packets[0])) if packets else None
        why = sp.why_not_skippable() if sp else "the segment's first frame has no SPS and PPS"
        if why or len(packets) + len(self._skipped) != job.frames:
            # the settings were checked when the first segment's encoder opened: a bug, not bad input
            raise FFmpegError(f"cannot write skip frames into {job.path.name}: {why or 'frames lost'}")
        assert sp is not None
        skipped = set(self._skipped)
        out = []
        modulo = 1 << sp.log2_max_frame_num
        x264_index = 0  # x264 numbered its frames as if none were skipped
        for k in range(job.frames):
            if k in skipped:
                pkt = _packet(_skip_frame(sp, k % modulo), k, packets[0])
            else:
                old = packets[x264_index]
                if old.pts != x264_index or old.dts != x264_index:
                    raise FFmpegError(
                        f"x264 gave frame {old.pts} where {x264_index} was due in {job.path.name}"
                    )
                if k == 0:  # the IDR: our PPS goes with x264's
                    pkt = _packet(h264.with_skip_pps(bytes(old), sp), k, old)
                elif x264_index == k:  # no skip frame before it yet
                    pkt = old
                else:
                    try:
                        data = h264.renumber_frame(bytes(old), sp, k, was=x264_index)
                    except ValueError as exc:
                        raise FFmpegError(
                            f"cannot renumber x264's frame {k} in {job.path.name}: {exc}"
                        ) from None
                    pkt = _packet(data, k, old)
                x264_index += 1
            pkt.stream = self._video
            out.append(pkt)
        return out

    def write(self, data: np.ndarray, *, same_as_previous: bool = False) -> None:
        """Encode one flat yuv420p frame (the buffer may be reused once this returns).

        ``same_as_previous``: the frame is the previous one again, sample for sample (the
        caller knows it: nothing was redrawn); it is then written as a skip frame.
        """
        t0 = time.perf_counter() if _profile.ENABLED else 0.0
        if self._video is None:
            if self._next >= len(self.segments):
                raise ValueError("more frames than the chunk's segments hold")
            self._open()
        elif same_as_previous and self.skip_frames:
            self._skipped.append(self._pts)  # written at the segment's end, between x264's
            self.skipped_count += 1
            self._pts += 1
            if _profile.ENABLED:
                _profile.add("skip_frames", t0)
            if self._pts == self.segments[self._next].frames:
                self._close()
            return
        frame = av.VideoFrame.from_numpy_buffer(
            data.reshape(self.out.height * 3 // 2, self.out.width), format="yuv420p"
        )
        # x264 numbers the frames it gets one after another (see _with_skip_frames)
        frame.pts = self._pts - len(self._skipped)
        self._pts += 1
        try:
            self._packets += self._video.encode(frame)  # x264 copies the picture before returning
        except av.error.FFmpegError as exc:
            raise self._fail(exc, self.segments[self._next]) from None
        if _profile.ENABLED:
            _profile.add("encode", t0)
        if self._pts == self.segments[self._next].frames:
            self._close()

    def finish(self) -> None:
        if self._video is not None or self._next < len(self.segments):
            raise ValueError(f"the chunk got frames for {self._next} of its {len(self.segments)} segments")

    def __enter__(self) -> ChunkEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self._mux = self._buf = self._video = None  # dropped half-way: nothing of it is written
        self._packets = []
        self._end_capture()


def _with_parameter_sets(packets: list[Any]) -> list[Any]:
    """Every frame after the IDR with the IDR's SPS and PPSs before its slices (the muxer puts
    the access unit delimiter before them).

    An LL-HLS part is a byte range of the media segment, and a player may demux each part on
    its own: Shaka Player's TS transmuxer builds its init segment from the SPS in the chunk it
    fetched, and refused every part but a segment's first (error 3018); video.js's starts on
    a part in the middle of a segment. Repeated parameter sets (identical, as H.264 allows
    anywhere before an access unit's slices) cost about 40 bytes a frame (10 kbit/s at 30 fps)
    and change no decoded frame.
    """
    if len(packets) < 2:
        return packets
    params = h264.parameter_sets(bytes(packets[0]))
    if not params:
        return packets
    out = packets[:1]
    for old in packets[1:]:
        pkt = av.Packet(params + bytes(old))
        pkt.pts, pkt.dts, pkt.time_base = old.pts, old.dts, old.time_base
        pkt.duration, pkt.is_keyframe, pkt.stream = old.duration, old.is_keyframe, old.stream
        out.append(pkt)
    return out


def _packet(data: bytes, pts: int, like: Any) -> Any:
    """A video packet of ``data`` at frame ``pts`` (the time base and keyframe flag of ``like``)."""
    pkt = av.Packet(data)
    pkt.pts = pkt.dts = pts
    pkt.time_base = like.time_base
    pkt.is_keyframe = like.is_keyframe and pts == 0
    return pkt


@functools.lru_cache(maxsize=64)
def _skip_frame(sp: h264.SeqParams, frame_num: int) -> bytes:
    return h264.skip_frame(sp, frame_num)


SKIP_CRF_STEP = 1.0  # x264's CRF is at most this much lower when it gets only the changed frames
_FIT: dict[tuple[tuple[str, str], ...], str | None] = {}


def skip_frames_fit(options: dict[str, str]) -> str | None:
    """None if x264 with these options makes a stream skip frames fit into (picture order
    from frame_num, one reference frame), else why not. Known by encoding one small frame
    with the same options (a few ms, once per process and settings)."""
    key = tuple(sorted(options.items()))
    if key not in _FIT:
        ctx = av.CodecContext.create("libx264", "w")  # settings x264 refuses raise here
        ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
        ctx.time_base = Fraction(1, 30)
        ctx.options = {**options, "threads": "1"}
        frame = av.VideoFrame.from_ndarray(np.full((96, 64), 128, np.uint8), format="yuv420p")
        frame.pts = 0
        packets = [*ctx.encode(frame), *ctx.encode(None)]
        sp = h264.read_seq_params(bytes(packets[0])) if packets else None
        _FIT[key] = sp.why_not_skippable() if sp else "x264's first frame has no SPS and PPS"
    return _FIT[key]


_AAC_TEMPLATES: dict[bytes, Any] = {}


def _aac_template(frame: bytes) -> Any:
    """An AAC stream with the parameters (profile, rate, channels) of this ADTS frame's header."""
    key = frame[:3] + bytes([frame[3] & 0xC0])  # the header's fixed part, without the length
    if key not in _AAC_TEMPLATES:
        inp = av.open(io.BytesIO(frame), format="aac")  # kept open: the stream belongs to it
        _AAC_TEMPLATES[key] = inp.streams.audio[0]
    return _AAC_TEMPLATES[key]

"""The rendered folder: the one contract between the renderer and the playout.

A rendition is a folder of MPEG-TS media segments with a playlist and a manifest::

    OUT/manifest.json    the typed manifest (:class:`Manifest`): format, frame rate, picture size,
                         codecs, bandwidth, and every media segment with its frames, bytes, sha256
    OUT/index.m3u8       VOD playlist (EVENT while rendering: the finished prefix)
    OUT/seg_NNNNN.ts     media segments, each starting on a keyframe
    OUT/master.m3u8      master playlist naming index.m3u8 and the subtitle tracks (when any)
    OUT/sub_LANG.m3u8    a subtitle track's media playlist, and its WebVTT files
    OUT/sub_LANG_NNNNN.vtt  (one per media segment, mapped onto the MPEG-TS clock)

While rendering it is ``OUT.partial/`` (``.OUT.partial/`` in a spool others list, see
:func:`partial_path`): media segments appear there atomically in air order, the manifest says
``"complete": false`` and lists the contiguous finished prefix, and ``.work/`` holds the chunks in
progress. On success the folder is renamed to ``OUT``.

This module is the only one that knows that layout. The renderer writes through
:class:`Publisher`; the playout reads through :func:`read_rendered` and :func:`verify_media_file`.
Every file is replaced with :func:`atomic_write`, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import MediaError
from .files import atomic_write

__all__ = [
    "ADTS_RATES_HZ",
    "FAILED_NAME",
    "RenditionFailed",
    "mark_failed",
    "clear_failed",
    "check_not_failed",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "PLAYLIST_NAME",
    "TS_PACKET_BYTES",
    "TS_SYNC_BYTE",
    "TS_NULL_PID",
    "Loudness",
    "SubtitleRendition",
    "AudioRendition",
    "MediaSegmentInfo",
    "Manifest",
    "RenderedSegment",
    "Publisher",
    "atomic_write",
    "partial_path",
    "lock_path",
    "render_running",
    "lock_holder",
    "FolderLock",
    "Busy",
    "parse_manifest",
    "read_manifest",
    "read_rendered",
    "verify_media_file",
    "write_rendition",
    "media_playlist",
    "subtitle_playlist",
    "master_playlist",
    "MASTER_PLAYLIST_NAME",
    "codecs_string",
    "audio_with_video",
    "continue_cc",
    "utc_now_iso",
]

MANIFEST_FORMAT = "avatarrender.segment/1"
MANIFEST_NAME = "manifest.json"
PLAYLIST_NAME = "index.m3u8"
MASTER_PLAYLIST_NAME = "master.m3u8"  # written when the rendition has subtitle tracks

# MPEG-TS (ISO/IEC 13818-1): fixed-size packets, each starting with the sync byte.
TS_PACKET_BYTES = 188
TS_SYNC_BYTE = 0x47
TS_NULL_PID = 0x1FFF  # stuffing packets: no continuity counter
ADTS_RATES_HZ = (  # sampling_frequency_index of an ADTS header
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)

DEFAULT_CODECS = "avc1.640028,mp4a.40.2"  # High 4.0 + AAC-LC, when no SPS tells otherwise
DEFAULT_FPS = Fraction(30)  # manifests written before "fps" was recorded were all 30 fps


# ---------------------------------------------------------------------------------- files


def partial_path(out_dir: str | Path, *, hidden: bool = False) -> Path:
    """Where a rendition of ``out_dir`` lives until it is complete.

    ``NAME.partial`` beside it, or ``.NAME.partial`` (``hidden``) in a spool whose other readers
    list only finished folders.
    """
    out_dir = Path(out_dir)
    name = f".{out_dir.name}.partial" if hidden else f"{out_dir.name}.partial"
    return out_dir.with_name(name)


def lock_path(out_dir: str | Path) -> Path:
    """The lock a render of ``out_dir`` holds while it runs: ``.NAME.lock`` beside it (removed
    when the render ends; left, held by nobody, when it is killed)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.lock")


class Busy(Exception):
    """Another process holds the lock; ``pid`` is the one it wrote in the file (None if unread)."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is held by pid {pid or '?'}")
        self.path, self.pid = path, pid


class FolderLock:
    """An exclusive ``flock`` on a lock file, with the holder's pid in it: a render's on
    ``.NAME.lock`` beside its output (see :func:`lock_path`; removed when released, so nothing is
    left beside a finished output), a playout's on ``OUT/.lock`` (``keep``: the file stays).

    Removing a lock file is safe because every taker checks, once it holds the lock, that the
    file it locked is still the one at that path: a waiter that opened the file before the holder
    removed it finds another inode (or none) and tries again on the current file. A lock taken
    without ``wait`` is tried for 0.2 s (:func:`lock_holder` holds a free lock for an instant)
    before :class:`Busy` is raised.
    """

    def __init__(self, path: str | Path, *, wait: bool = False, keep: bool = False):
        self.path, self.keep = Path(path), keep
        self._fd: int | None = self._take(wait)

    def _take(self, wait: bool) -> int:
        import fcntl
        import time

        tries = 0
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = _pid_in(fd)
                os.close(fd)
                tries += 1
                if tries < 20:  # a probe's instant hold (lock_holder: a playout, a service)
                    time.sleep(0.01)
                    continue
                raise Busy(self.path, holder) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(self.path, fd):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)  # the holder we waited for removed it: lock the file now at that path

    def again(self) -> None:
        """Lock the file at the path anew when it is not the one held (removed with its folder
        and made again: ``rm -rf OUT`` on air); :class:`Busy` when another process took it."""
        if self._fd is None or _same_file(self.path, self._fd):
            return
        fd = self._take(False)
        os.close(self._fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if not self.keep and _same_file(self.path, self._fd):
            # still holding it: a waiter then sees the inode change
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _pid_in(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def lock_holder(path: str | Path) -> int | None:
    """The pid of the process holding the lock file ``path`` (0 when it wrote none), or None
    when nobody does (a killed render's lock file is held by nobody). The probe holds a free
    lock for an instant; a :class:`FolderLock` taken then retries."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(fd) or 0
    except OSError:
        return None
    finally:
        os.close(fd)  # (closing releases a lock this took)
    return None


def render_running(out_dir: str | Path) -> bool:
    """Whether a render holds ``out_dir``'s lock (:func:`lock_path`): a ``.NAME.partial`` whose
    render was stopped or killed has none."""
    return lock_holder(lock_path(out_dir)) is not None


def utc_now_iso() -> str:
    """The wall clock as ISO 8601 UTC with milliseconds (``2027-01-15T08:00:00.000Z``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------- MPEG-TS


def continue_cc(data: bytes, state: dict[str, int]) -> bytes:
    """Rewrite MPEG-TS continuity counters so they run on from the previous media segment.

    Each chunk's muxer starts its counters at 0; a player (and ffmpeg's HLS reader) would see a
    discontinuity at every chunk boundary. ``state`` maps PID -> last counter and is updated.
    """
    import numpy as np  # here, not at the top: `avatarrender submit` reads this module, not TS

    if len(data) % TS_PACKET_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of TS packets")
    a = np.frombuffer(data, np.uint8).reshape(-1, TS_PACKET_BYTES).copy()
    if a.size and not (a[:, 0] == TS_SYNC_BYTE).all():
        raise ValueError("lost MPEG-TS sync")
    pid = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
    has_payload = (a[:, 3] & 0x10) != 0
    for p in np.unique(pid):
        if p == TS_NULL_PID:
            continue
        idx = np.nonzero(pid == p)[0]
        pay = has_payload[idx]
        key = str(int(p))
        if key in state:
            start = state[key]
        else:
            start = (int(a[idx[0], 3]) & 0x0F) - int(pay[0])
        cc = (start + np.cumsum(pay)) & 0x0F
        a[idx, 3] = (a[idx, 3] & 0xF0) | cc.astype(np.uint8)
        state[key] = int(cc[-1])
    return a.tobytes()


def audio_with_video(data: bytes) -> bytes:
    """Give each AAC frame of a media segment a PES of its own, placed just before the first video
    PES presented at or after it, so the audio of any stretch of time lies in the file no later
    than its video.

    The MPEG-TS muxer gathers AAC frames into one PES until it holds 170 bytes (its smallest PES:
    one frame at 128 kbit/s, a dozen frames of silence) and writes it after the video of the
    same time. An LL-HLS part cut at a video frame then lacked its own audio: hls.js cannot start
    on such a part (it waits for the next one and maps the stream one part late, a part more
    latency for the viewer) and a player's buffered range stops short of the live edge. One
    frame per PES also lets the playout drop a single frame where a join would overlap the audio
    that aired. Other packets keep their order; continuity counters run on; what decodes is
    unchanged. A PES that is not made of whole ADTS frames moves whole.

    Parameters
    ----------
    data : bytes [shape=(188 * n,)]
        One media segment as the muxer wrote it (audio and video PES with a PTS each).
    """
    import numpy as np  # here, not at the top: `avatarrender submit` reads this module, not TS

    if len(data) % TS_PACKET_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of TS packets")
    a = np.frombuffer(data, np.uint8).reshape(-1, TS_PACKET_BYTES)
    pid = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
    payload_at = np.where((a[:, 3] >> 4) & 2, 5 + a[:, 4].astype(np.int32), 4)
    video: list[tuple[int, int]] = []  # (row, PTS) of each video PES start
    audio: list[tuple[int, int, int]] = []  # (row, PTS, PID) of each audio PES start
    for r in np.nonzero((a[:, 1] & 0x40) != 0)[0]:
        row, po = a[r], int(payload_at[r])
        if po + 14 > TS_PACKET_BYTES or row[po] or row[po + 1] or row[po + 2] != 1 or not row[po + 7] & 0x80:
            continue  # PSI, or a PES without a PTS: stays where it is
        sid = int(row[po + 3])
        p = row[po + 9 : po + 14].astype(np.int64)
        pts = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
        if 0xE0 <= sid <= 0xEF:
            video.append((int(r), int(pts)))
        elif 0xC0 <= sid <= 0xDF:
            audio.append((int(r), int(pts), int(pid[r])))
    if not video or not audio:
        return data
    half = 1 << 32  # PTS differences modulo 2^33, as signed
    insert: dict[int, list[bytes]] = {}
    moved: set[int] = set()
    ends: dict[int, int] = {}  # each audio PES runs to the next start on its PID
    nxt: list[int] = [0] * len(audio)
    for k in range(len(audio) - 1, -1, -1):
        nxt[k] = ends.get(audio[k][2], len(a))
        ends[audio[k][2]] = audio[k][0]
    cc: dict[int, int] = {}  # the next continuity counter of each audio PID, in the new order
    for k, (start, pts, p) in enumerate(audio):
        rows = [start] + [int(x) for x in np.nonzero(pid[start + 1 : nxt[k]] == p)[0] + start + 1]
        moved.update(rows)
        cc.setdefault(p, int(a[start, 3]) & 0x0F)
        frames = _adts_frames(b"".join(a[r, int(payload_at[r]) :].tobytes() for r in rows))
        units = frames if frames is not None else [(0, None)]
        for at_90k, frame in units:
            when = (pts + at_90k) % (2 * half)
            target = next((vr for vr, vp in video if ((vp - when + half) % (2 * half)) - half >= 0), start)
            if frame is None:  # not ADTS as we know it: the PES moves whole
                out = [a[r].tobytes() for r in rows]
                cc[p] = (int(a[rows[-1], 3]) + 1) & 0x0F
            else:
                out, cc[p] = _audio_pes_packets(p, when, frame, cc[p], int(a[start, payload_at[start] + 6]))
            insert.setdefault(min(target, start), []).extend(out)
    order: list[bytes] = []
    for r in range(len(a)):
        order += insert.get(r, ())
        if r not in moved:
            order.append(a[r].tobytes())
    return b"".join(order)


def _adts_frames(pes: bytes) -> list[tuple[int, bytes]] | None:
    """(offset from the PES's PTS in 90 kHz ticks, frame) of each ADTS frame of an audio PES
    (its bytes from the start code on), or None when it is not made of whole ADTS frames."""
    if len(pes) < 9 or pes[:3] != b"\x00\x00\x01":
        return None
    i, at, out = 9 + pes[8], 0, []
    while i < len(pes):
        if i + 7 > len(pes) or pes[i] != 0xFF or pes[i + 1] & 0xF0 != 0xF0:
            return None
        length = ((pes[i + 3] & 3) << 11) | (pes[i + 4] << 3) | (pes[i + 5] >> 5)
        rate_index = (pes[i + 2] >> 2) & 0x0F
        if length < 7 or i + length > len(pes) or rate_index >= len(ADTS_RATES_HZ):
            return None
        out.append((at, pes[i : i + length]))
        at += 90000 * 1024 * ((pes[i + 6] & 3) + 1) // ADTS_RATES_HZ[rate_index]
        i += length
    return out or None


def _audio_pes_packets(pid: int, pts: int, frame: bytes, cc: int, flags6: int) -> tuple[list[bytes], int]:
    """One audio PES (PTS only) holding ``frame``, as TS packets: the first marked as a random
    access point, the last filled out with adaptation-field stuffing. Returns (packets, next cc)."""
    pes = (
        b"\x00\x00\x01\xc0"
        + (8 + len(frame)).to_bytes(2, "big")
        + bytes([flags6, 0x80, 5])
        + bytes(
            [
                0x21 | ((pts >> 29) & 0x0E),
                (pts >> 22) & 0xFF,
                ((pts >> 14) & 0xFE) | 1,
                (pts >> 7) & 0xFF,
                ((pts << 1) & 0xFE) | 1,
            ]
        )
        + frame
    )
    out, first = [], True
    while pes:
        room = 184 - (2 if first else 0)
        take = min(room, len(pes))
        stuff = room - take
        if first:
            af = bytes([1 + stuff, 0x40]) + b"\xff" * stuff
        elif stuff:
            af = b"\x00" if stuff == 1 else bytes([stuff - 1, 0]) + b"\xff" * (stuff - 2)
        else:
            af = b""
        head = bytes(
            [TS_SYNC_BYTE, (0x40 if first else 0) | (pid >> 8), pid & 0xFF, (0x30 if af else 0x10) | cc]
        )
        out.append(head + af + pes[:take])
        pes, first, cc = pes[take:], False, (cc + 1) & 0x0F
    return out, cc


def codecs_string(first_segment: str | Path) -> str:
    """RFC 6381 CODECS of a media segment: H.264 profile/level read from its SPS, and AAC-LC."""
    data = Path(first_segment).read_bytes()[: 64 * 1024]
    i = data.find(b"\x00\x00\x01\x67")
    avc = DEFAULT_CODECS.split(",")[0]  # if no SPS is found in the first packets
    if i >= 0 and i + 7 <= len(data):
        profile, flags, level = data[i + 4], data[i + 5], data[i + 6]
        avc = f"avc1.{profile:02x}{flags:02x}{level:02x}"
    return f"{avc},mp4a.40.2"


def verify_media_file(path: str | Path, info: MediaSegmentInfo) -> None:
    """Check that ``path`` holds exactly the media segment ``info`` describes.

    Size, sha256, and an MPEG-TS sync byte at every 188-byte packet start.

    Raises
    ------
    MediaError
        Missing, truncated, altered, or not MPEG-TS.
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as exc:
        raise MediaError(path, None, "media segment missing") from exc
    if size != info.size_bytes:
        raise MediaError(path, "bytes", f"size {size} != {info.size_bytes} in the manifest")
    if size == 0 or size % TS_PACKET_BYTES:
        raise MediaError(path, None, f"size {size} is not a whole number of TS packets")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(TS_PACKET_BYTES * 4096)
            if not block:
                break
            if any(b != TS_SYNC_BYTE for b in block[::TS_PACKET_BYTES]):
                raise MediaError(path, None, "not MPEG-TS (sync byte 0x47 missing)")
            h.update(block)
    if h.hexdigest() != info.sha256:
        raise MediaError(path, "sha256", "content does not match the manifest's sha256")


# ---------------------------------------------------------------------------------- manifest


@dataclasses.dataclass(frozen=True)
class Loudness:
    """Programme loudness of the rendition's audio (EBU R 128 / ITU-R BS.1770).

    Attributes
    ----------
    integrated_lufs : float or None
        Integrated loudness of the audio as rendered, LUFS (None: silent).
    true_peak_dbtp : float, optional
        Maximum true peak as rendered, dBTP.
    range_lu : float, optional
        Loudness range as rendered, LU.
    input_integrated_lufs, input_true_peak_dbtp, input_range_lu : float, optional
        The same, measured before normalisation.
    target_lufs, target_true_peak_dbtp : float, optional
        What it was normalised to (None: not normalised).
    gain_db : float, optional
        The one gain applied, dB.
    limited_s : float, optional
        How long the true-peak limiter lowered the gain, seconds.
    """

    integrated_lufs: float | None
    true_peak_dbtp: float | None = None
    range_lu: float | None = None
    input_integrated_lufs: float | None = None
    input_true_peak_dbtp: float | None = None
    input_range_lu: float | None = None
    target_lufs: float | None = None
    target_true_peak_dbtp: float | None = None
    gain_db: float | None = None
    limited_s: float | None = None


@dataclasses.dataclass(frozen=True)
class SubtitleRendition:
    """A subtitle track beside the media segments (an ``EXT-X-MEDIA TYPE=SUBTITLES`` entry).

    Attributes
    ----------
    uri : str
        Its media playlist, a plain file name inside the folder.
    language : str
        BCP 47 tag (``en``, ``pt-BR``).
    name : str
        Human-readable name shown by players.
    default : bool
        Selected when the player has no preference.
    """

    uri: str
    language: str
    name: str
    default: bool = False


@dataclasses.dataclass(frozen=True)
class AudioRendition:
    """An alternative audio track (an ``EXT-X-MEDIA TYPE=AUDIO`` entry).

    Attributes
    ----------
    uri : str
        Its media playlist, a plain file name inside the folder.
    language : str
        BCP 47 tag.
    name : str
        Human-readable name shown by players.
    codecs : str
        RFC 6381 codecs string (``mp4a.40.2``).
    default : bool
        Selected when the player has no preference.
    """

    uri: str
    language: str
    name: str
    codecs: str = "mp4a.40.2"
    default: bool = False


@dataclasses.dataclass(frozen=True)
class MediaSegmentInfo:
    """One media segment listed in a manifest.

    Attributes
    ----------
    index : int
        Position in the rendition (0-based).
    uri : str
        Its file name inside the folder.
    frames : int or None
        Video frames it holds (None in manifests that gave only a duration).
    duration_s : Fraction
        Exact duration in seconds (``frames / fps``).
    size_bytes : int
        Size the manifest promises.
    sha256 : str
        Hex digest the manifest promises.
    path : Path
        Where the file is now (inside the complete or the partial folder).
    """

    index: int
    uri: str
    frames: int | None
    duration_s: Fraction
    size_bytes: int
    sha256: str
    path: Path

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"uri": self.uri}
        if self.frames is not None:
            doc["frames"] = self.frames
        doc.update(duration_s=float(self.duration_s), bytes=self.size_bytes, sha256=self.sha256)
        return doc


@dataclasses.dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what a rendition holds, typed.

    Attributes
    ----------
    complete : bool
        True for a finished render; False while rendering (``segments`` is the finished prefix).
    width, height : int
        Picture size in pixels.
    fps : Fraction
        Video frame rate, frames per second (written as ``"30/1"``, ``"30000/1001"``).
    segments : tuple of MediaSegmentInfo
        The media segments listed so far, in air order.
    planned_segments : int
        How many media segments the rendition has when complete.
    codecs : str
        RFC 6381 codecs string of the media segments.
    target_duration_s : int
        The playlist's EXT-X-TARGETDURATION, seconds.
    bandwidth_bps, average_bandwidth_bps : int
        Peak and average bit rates, bits per second (0 when unknown).
    segment_type : str
        Container of the media segments (``mpegts``).
    spec_hash : str
        Content hash of the spec rendered (the renderer's up-to-date check).
    source : str
        The segment.yaml rendered.
    duration_s : Fraction
        Planned length of the rendition, seconds.
    frame_count : int
        Planned number of video frames.
    created_at : str
        ISO 8601 UTC time the render started.
    render : Mapping
        The renderer's statistics and resume state (free-form).
    loudness : Loudness, optional
        Programme loudness of the audio, when measured.
    subtitles, audio : tuple, optional
        Subtitle and alternative audio renditions in the folder, when any.
    format : str
        :data:`MANIFEST_FORMAT`.
    """

    complete: bool
    width: int
    height: int
    fps: Fraction
    segments: tuple[MediaSegmentInfo, ...]
    planned_segments: int
    codecs: str = DEFAULT_CODECS
    target_duration_s: int = 1
    bandwidth_bps: int = 0
    average_bandwidth_bps: int = 0
    segment_type: str = "mpegts"
    spec_hash: str = ""
    source: str = ""
    duration_s: Fraction = Fraction(0)
    frame_count: int = 0
    created_at: str = ""
    render: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    loudness: Loudness | None = None
    subtitles: tuple[SubtitleRendition, ...] | None = None
    audio: tuple[AudioRendition, ...] | None = None
    format: str = MANIFEST_FORMAT

    @property
    def listed_duration_s(self) -> Fraction:
        """Duration of the listed media segments, in seconds."""
        return sum((s.duration_s for s in self.segments), Fraction(0))

    def to_json(self) -> dict[str, Any]:
        """The JSON document (keys in the order ``manifest.json`` has always had them)."""
        doc: dict[str, Any] = {
            "format": self.format,
            "complete": self.complete,
            "spec_hash": self.spec_hash,
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "duration_s": float(self.duration_s),
            "frame_count": self.frame_count,
            "segment_type": self.segment_type,
            "target_duration_s": self.target_duration_s,
            "codecs": self.codecs,
            "bandwidth_bps": self.bandwidth_bps,
            "average_bandwidth_bps": self.average_bandwidth_bps,
            "planned_segments": self.planned_segments,
            "segments": [s.to_json() for s in self.segments],
            "created_at": self.created_at,
            "render": dict(self.render),
        }
        if self.loudness is not None:
            doc["loudness"] = dataclasses.asdict(self.loudness)
        if self.subtitles is not None:
            doc["subtitles"] = [dataclasses.asdict(s) for s in self.subtitles]
        if self.audio is not None:
            doc["audio"] = [dataclasses.asdict(a) for a in self.audio]
        return doc


def _fps(value: object, manifest: Path) -> Fraction:
    try:
        fps = Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise MediaError(manifest, "fps", f"not a frame rate: {value!r}") from exc
    if fps <= 0:
        raise MediaError(manifest, "fps", f"must be positive, got {value!r}")
    return fps


def _plain_name(uri: object, manifest: Path, field: str) -> str:
    uri = str(uri)
    if not uri or "/" in uri or "\\" in uri or uri.startswith("."):
        raise MediaError(manifest, field, f"must be a plain file name: {uri!r}")
    return uri


def _renditions(doc: dict[str, Any], key: str, cls: type, manifest: Path) -> tuple | None:
    items = doc.get(key)
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        item = dict(item)
        item["uri"] = _plain_name(item.get("uri"), manifest, f"{key}[{i}].uri")
        out.append(cls(**item))
    return tuple(out)


def parse_manifest(doc: Any, folder: Path) -> Manifest:
    """Check and type a manifest document read from ``folder``.

    Manifests written before a field existed read with its default (``fps`` 30/1).

    Raises
    ------
    MediaError
        Another format, or inconsistent (a segment without a duration, a complete manifest with
        fewer segments than planned, a file name that leaves the folder, ...).
    """
    manifest = folder / MANIFEST_NAME
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise MediaError(manifest, "format", f"expected {MANIFEST_FORMAT!r}")
    fps = _fps(doc.get("fps", f"{DEFAULT_FPS}/1"), manifest)
    segs = []
    try:
        for i, s in enumerate(doc["segments"]):
            uri = _plain_name(s["uri"], manifest, f"segments[{i}].uri")
            frames = int(s["frames"]) if "frames" in s else None
            if frames is not None:
                dur = Fraction(frames) / fps
            else:
                dur = Fraction(str(s["duration_s"])).limit_denominator(90000)
            if dur <= 0:
                raise MediaError(manifest, f"segments[{i}]", "duration must be positive")
            segs.append(
                MediaSegmentInfo(
                    index=i,
                    uri=uri,
                    frames=frames,
                    duration_s=dur,
                    size_bytes=int(s["bytes"]),
                    sha256=str(s["sha256"]).lower(),
                    path=folder / uri,
                )
            )
        complete = bool(doc.get("complete"))
        planned = int(doc.get("planned_segments", len(segs)))
        listed_s = sum((s.duration_s for s in segs), Fraction(0))
        loudness = doc.get("loudness")
        man = Manifest(
            complete=complete,
            width=int(doc["width"]),
            height=int(doc["height"]),
            fps=fps,
            segments=tuple(segs),
            planned_segments=planned,
            codecs=str(doc.get("codecs", DEFAULT_CODECS)),
            target_duration_s=int(doc.get("target_duration_s", 1)),
            bandwidth_bps=int(doc.get("bandwidth_bps", 0)),
            average_bandwidth_bps=int(doc.get("average_bandwidth_bps", 0)),
            segment_type=str(doc.get("segment_type", "mpegts")),
            spec_hash=str(doc.get("spec_hash", "")),
            source=str(doc.get("source", "")),
            duration_s=(
                Fraction(str(doc["duration_s"])).limit_denominator(90000) if "duration_s" in doc else listed_s
            ),
            frame_count=int(doc.get("frame_count", sum(s.frames or 0 for s in segs))),
            created_at=str(doc.get("created_at", "")),
            render=dict(doc.get("render") or {}),
            loudness=Loudness(**loudness) if loudness is not None else None,
            subtitles=_renditions(doc, "subtitles", SubtitleRendition, manifest),
            audio=_renditions(doc, "audio", AudioRendition, manifest),
        )
    except MediaError:
        raise  # already names its field (MediaError is a ValueError too)
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(manifest, None, f"malformed manifest: {exc!r}") from exc
    if complete and len(segs) != planned:
        raise MediaError(
            manifest, "segments", f"complete but lists {len(segs)} of {planned} planned media segments"
        )
    if complete and not segs:
        raise MediaError(manifest, "segments", "complete but empty")
    return man


def _load(folder: Path) -> Manifest:
    manifest = folder / MANIFEST_NAME
    try:
        doc = json.loads(manifest.read_text())
    except FileNotFoundError as exc:
        raise MediaError(manifest, None, "no manifest.json: not a rendered segment") from exc
    except (OSError, ValueError) as exc:
        raise MediaError(manifest, None, f"unreadable manifest: {exc}") from exc
    return parse_manifest(doc, folder)


def read_manifest(folder: str | Path) -> Manifest | None:
    """The manifest of ``folder``, or None when there is none that reads (for the renderer's
    up-to-date and resume checks, where anything unreadable is simply rendered again)."""
    try:
        return _load(Path(folder))
    except MediaError:
        return None


@dataclasses.dataclass(frozen=True)
class RenderedSegment:
    """A rendition as the playout sees it: its folder and its checked manifest.

    Attributes
    ----------
    folder : Path
        The folder the manifest was read from (complete or partial).
    manifest : Manifest
        Its manifest, shape-checked (the media files are checked by :func:`verify_media_file`).
    """

    folder: Path
    manifest: Manifest

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    @property
    def segments(self) -> tuple[MediaSegmentInfo, ...]:
        return self.manifest.segments

    @property
    def planned_segments(self) -> int:
        return self.manifest.planned_segments

    @property
    def width(self) -> int:
        return self.manifest.width

    @property
    def height(self) -> int:
        return self.manifest.height

    @property
    def fps(self) -> Fraction:
        return self.manifest.fps

    @property
    def target_duration_s(self) -> int:
        return self.manifest.target_duration_s

    @property
    def bandwidth_bps(self) -> int:
        return self.manifest.bandwidth_bps

    @property
    def codecs(self) -> str:
        return self.manifest.codecs

    @property
    def duration_s(self) -> Fraction:
        """Duration of the listed media segments, in seconds."""
        return self.manifest.listed_duration_s


def read_rendered(folder: str | Path) -> RenderedSegment:
    """Read and shape-check ``folder/manifest.json`` for airing.

    Raises
    ------
    MediaError
        The manifest is missing, not JSON, of another format, not MPEG-TS, or inconsistent (a
        segment without a duration, a complete manifest with fewer segments than planned, ...).
    """
    folder = Path(folder)
    man = _load(folder)
    if man.segment_type != "mpegts":
        raise MediaError(folder / MANIFEST_NAME, "segment_type", "the playout airs MPEG-TS segments only")
    return RenderedSegment(folder=folder, manifest=man)


# ---------------------------------------------------------------------------------- writing


def media_playlist(segments: Sequence[MediaSegmentInfo], *, target_duration_s: float, complete: bool) -> str:
    """A VOD playlist when ``complete``, else an EVENT playlist of the finished prefix."""
    durations_s = [float(s.duration_s) for s in segments]
    # RFC 8216 4.3.3.1: no EXTINF, rounded to the nearest integer, above it (1.001 s gives 1)
    target = max(1, math.floor(max([target_duration_s] + durations_s) + 0.5))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if complete else 'EVENT'}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for s, d in zip(segments, durations_s):
        lines += [f"#EXTINF:{d:.5f},", s.uri]
    if complete:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def subtitle_playlist(
    uris: Sequence[str], durations_s: Sequence[Fraction], *, target_duration_s: float, complete: bool = True
) -> str:
    """The media playlist of a WebVTT subtitle rendition (its segments match the video's): VOD
    when ``complete``, else an EVENT playlist of what is written so far."""
    target = max(1, math.ceil(max([float(target_duration_s)] + [float(d) for d in durations_s]) - 1e-9))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if complete else 'EVENT'}",
    ]
    for uri, d in zip(uris, durations_s):
        lines += [f"#EXTINF:{float(d):.5f},", uri]
    if complete:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    # a quoted-string may not hold " or a line break (RFC 8216 4.2)
    return '"' + value.replace('"', "'").replace("\n", " ").replace("\r", " ") + '"'


def master_playlist(
    manifest: Manifest, *, variant_uri: str = PLAYLIST_NAME, subtitles_group: str = "subs"
) -> str:
    """A master playlist: the one variant plus its subtitle renditions (EXT-X-MEDIA)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for sub in manifest.subtitles or ():
        lines.append(
            f"#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID={_quoted(subtitles_group)},"
            f"LANGUAGE={_quoted(sub.language)},NAME={_quoted(sub.name)},"
            f"DEFAULT={'YES' if sub.default else 'NO'},AUTOSELECT=YES,URI={_quoted(sub.uri)}"
        )
    fps = float(manifest.fps)
    attrs = [f"BANDWIDTH={max(1, manifest.bandwidth_bps)}"]
    if manifest.average_bandwidth_bps:
        attrs.append(f"AVERAGE-BANDWIDTH={manifest.average_bandwidth_bps}")
    attrs += [
        f"CODECS={_quoted(manifest.codecs)}",
        f"RESOLUTION={manifest.width}x{manifest.height}",
        f"FRAME-RATE={fps:.3f}",
    ]
    if manifest.subtitles:
        attrs.append(f"SUBTITLES={_quoted(subtitles_group)}")
    lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), variant_uri]
    return "\n".join(lines) + "\n"


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_rendition(folder: Path, manifest: Manifest) -> None:
    """Write ``index.m3u8`` then ``manifest.json`` of ``folder``, each atomically.

    The playlist goes first: a reader that trusts the manifest finds every segment it lists in
    the playlist too.
    """
    atomic_write(
        folder / PLAYLIST_NAME,
        media_playlist(
            manifest.segments, target_duration_s=manifest.target_duration_s, complete=manifest.complete
        ),
    )
    if manifest.subtitles:
        atomic_write(folder / MASTER_PLAYLIST_NAME, master_playlist(manifest))
    atomic_write(folder / MANIFEST_NAME, _dump_json(manifest.to_json()))


class Publisher:
    """Moves finished chunks into the partial folder in air order and keeps playlist + manifest.

    Parameters
    ----------
    partial : Path
        The in-progress folder (:func:`partial_path`).
    planned : Manifest
        What the rendition will be: format, size, rate, spec hash, planned segments (its
        ``segments``, ``complete``, ``codecs`` and bandwidths are filled in here).

    A partial folder left by an interrupted render of the same spec is taken over: its listed
    media segments that are on disk stay published (when the continuity counters they ended on
    are known; otherwise all are published again).
    """

    def __init__(self, partial: Path, planned: Manifest):
        self.partial = partial
        self.planned = planned
        self.segments: list[MediaSegmentInfo] = []
        self.cc: dict[str, int] = {}
        self.created_at = utc_now_iso()
        old = read_manifest(partial)
        if old and old.spec_hash == planned.spec_hash and not old.complete:
            self.segments = [s for s in old.segments if s.path.is_file()]
            self.cc = dict(old.render.get("cc_state", {})) if len(self.segments) == len(old.segments) else {}
            if not self.cc:
                self.segments = []
            self.created_at = old.created_at or self.created_at

    @property
    def published(self) -> int:
        """How many media segments are published (a contiguous prefix)."""
        return len(self.segments)

    def publish(self, result: Mapping[str, Any]) -> None:
        """Publish a finished chunk: ``result["dir"]`` holds ``result["segments"]`` (uri, frames)."""
        src = Path(result["dir"])
        fps = self.planned.fps
        for seg in result["segments"]:
            data = continue_cc((src / seg["uri"]).read_bytes(), self.cc)
            atomic_write(self.partial / seg["uri"], data)
            self.segments.append(
                MediaSegmentInfo(
                    index=len(self.segments),
                    uri=seg["uri"],
                    frames=seg["frames"],
                    duration_s=Fraction(seg["frames"]) / fps,
                    size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    path=self.partial / seg["uri"],
                )
            )
        self.write(complete=False, stats={})
        shutil.rmtree(src, ignore_errors=True)

    def manifest(self, *, complete: bool, stats: Mapping[str, Any]) -> Manifest:
        """The manifest as it stands, with the renderer's ``stats``."""
        durations_s = [float(s.duration_s) for s in self.segments]
        total_bytes = sum(s.size_bytes for s in self.segments)
        dur = sum(durations_s) or 1.0
        peak = max((s.size_bytes * 8 / d for s, d in zip(self.segments, durations_s)), default=0)
        return dataclasses.replace(
            self.planned,
            complete=complete,
            codecs=codecs_string(self.segments[0].path) if self.segments else DEFAULT_CODECS,
            bandwidth_bps=int(max(peak, total_bytes * 8 / dur)),
            average_bandwidth_bps=int(total_bytes * 8 / dur),
            segments=tuple(self.segments),
            created_at=self.created_at,
            render={**stats, "cc_state": dict(self.cc)},
        )

    def write(self, *, complete: bool, stats: Mapping[str, Any]) -> Manifest:
        """Write playlist and manifest as they stand; return the manifest."""
        man = self.manifest(complete=complete, stats=stats)
        write_rendition(self.partial, man)
        return man


# ---------------------------------------------------------------------------------- failure

FAILED_NAME = "FAILED"


class RenditionFailed(MediaError):
    """An in-progress rendition whose render failed: it will not grow; air something else."""


def mark_failed(folder: str | Path, message: str) -> None:
    """Tell readers of an in-progress ``folder`` that its render failed, and why (one line).

    A render that starts again over the folder clears it (:func:`clear_failed`).
    """
    folder = Path(folder)
    if folder.is_dir():
        atomic_write(
            folder / FAILED_NAME, message.strip().splitlines()[0] + "\n" if message.strip() else "failed\n"
        )


def clear_failed(folder: str | Path) -> None:
    """Remove a failure mark (a new render of the folder is starting)."""
    Path(folder, FAILED_NAME).unlink(missing_ok=True)


def check_not_failed(folder: str | Path) -> None:
    """Raise :class:`RenditionFailed` with the render's error line if ``folder`` is marked failed."""
    path = Path(folder, FAILED_NAME)
    try:
        why = path.read_text().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        why = str(exc)
    raise RenditionFailed(path, None, f"the render failed: {why}")

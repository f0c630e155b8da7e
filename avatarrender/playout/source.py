"""Rendered segments as the playout sees them: manifest reading and media validation.

A rendered segment is a folder written by ``avatarrender render`` (see the README for the format):
``OUT/`` when complete, ``OUT.partial/`` (or ``.NAME.partial`` in a spool) while rendering. The playout
only trusts what it has checked: every media segment it airs matches the manifest's size and sha256
and starts with MPEG-TS sync bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from fractions import Fraction
from pathlib import Path

from avatarrender.errors import MediaError

__all__ = [
    "MediaSegmentInfo",
    "RenderedSegment",
    "read_rendered",
    "verify_media_file",
    "TS_PACKET_BYTES",
]

TS_PACKET_BYTES = 188
_SYNC = 0x47


@dataclasses.dataclass(frozen=True)
class MediaSegmentInfo:
    """One media segment listed in a manifest.

    Attributes
    ----------
    index : int
        Position in the rendered segment (0-based).
    path : Path
        Where the file is now (inside the complete or the partial folder).
    duration_s : Fraction
        Exact duration in seconds (``frames / fps``).
    size_bytes : int
        Size the manifest promises.
    sha256 : str
        Hex digest the manifest promises.
    """

    index: int
    path: Path
    duration_s: Fraction
    size_bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class RenderedSegment:
    """A rendered segment's manifest, read and checked for shape (not yet for bytes).

    Attributes
    ----------
    folder : Path
        The folder the manifest was read from.
    complete : bool
        True for a finished render; False for a partial one (``segments`` is the finished prefix).
    segments : tuple of MediaSegmentInfo
        The media segments listed so far, in air order.
    planned_segments : int
        How many media segments the render will have when complete.
    width, height : int
        Picture size in pixels.
    target_duration_s : int
        The rendered playlist's EXT-X-TARGETDURATION.
    bandwidth_bps : int
        Peak bit rate the manifest declares (0 when unknown).
    codecs : str
        RFC 6381 codecs string.
    """

    folder: Path
    complete: bool
    segments: tuple[MediaSegmentInfo, ...]
    planned_segments: int
    width: int
    height: int
    target_duration_s: int
    bandwidth_bps: int
    codecs: str

    @property
    def duration_s(self) -> Fraction:
        """Duration of the listed media segments, in seconds."""
        return sum((s.duration_s for s in self.segments), Fraction(0))


def _fps(value: object, manifest: Path) -> Fraction:
    try:
        fps = Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise MediaError(manifest, "fps", f"not a frame rate: {value!r}") from exc
    if fps <= 0:
        raise MediaError(manifest, "fps", f"must be positive, got {value!r}")
    return fps


def read_rendered(folder: str | Path) -> RenderedSegment:
    """Read and shape-check ``folder/manifest.json``.

    Raises
    ------
    MediaError
        The manifest is missing, not JSON, of another format, or inconsistent (a segment
        without a duration, a complete manifest with fewer segments than planned, ...).
    """
    folder = Path(folder)
    manifest = folder / "manifest.json"
    try:
        doc = json.loads(manifest.read_text())
    except FileNotFoundError as exc:
        raise MediaError(manifest, None, "no manifest.json: not a rendered segment") from exc
    except (OSError, ValueError) as exc:
        raise MediaError(manifest, None, f"unreadable manifest: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != "avatarrender.segment/1":
        raise MediaError(manifest, "format", "expected 'avatarrender.segment/1'")
    if doc.get("segment_type", "mpegts") != "mpegts":
        raise MediaError(manifest, "segment_type", "the playout airs MPEG-TS segments only")
    fps = _fps(doc.get("fps", "30/1"), manifest)
    segs = []
    try:
        for i, s in enumerate(doc["segments"]):
            uri = str(s["uri"])
            if "/" in uri or "\\" in uri or uri.startswith("."):
                raise MediaError(manifest, f"segments[{i}].uri", f"must be a plain file name: {uri!r}")
            if "frames" in s:
                dur = Fraction(int(s["frames"])) / fps
            else:
                dur = Fraction(str(s["duration_s"])).limit_denominator(90000)
            if dur <= 0:
                raise MediaError(manifest, f"segments[{i}]", "duration must be positive")
            segs.append(MediaSegmentInfo(index=i, path=folder / uri, duration_s=dur,
                                         size_bytes=int(s["bytes"]), sha256=str(s["sha256"]).lower()))
        complete = bool(doc.get("complete"))
        planned = int(doc.get("planned_segments", len(segs)))
        width, height = int(doc["width"]), int(doc["height"])
        target = int(doc.get("target_duration_s", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(manifest, None, f"malformed manifest: {exc!r}") from exc
    if complete and len(segs) != planned:
        raise MediaError(manifest, "segments",
                         f"complete but lists {len(segs)} of {planned} planned media segments")
    if complete and not segs:
        raise MediaError(manifest, "segments", "complete but empty")
    return RenderedSegment(folder=folder, complete=complete, segments=tuple(segs),
                           planned_segments=planned, width=width, height=height,
                           target_duration_s=target, bandwidth_bps=int(doc.get("bandwidth_bps", 0)),
                           codecs=str(doc.get("codecs", "avc1.640028,mp4a.40.2")))


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
            if any(b != _SYNC for b in block[::TS_PACKET_BYTES]):
                raise MediaError(path, None, "not MPEG-TS (sync byte 0x47 missing)")
            h.update(block)
    if h.hexdigest() != info.sha256:
        raise MediaError(path, "sha256", "content does not match the manifest's sha256")

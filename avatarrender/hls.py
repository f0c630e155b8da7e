"""Packaging: media segments published in air order, playlists and manifest written atomically."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TS_PACKET",
    "continue_cc",
    "atomic_write",
    "media_playlist",
    "codecs_string",
]

TS_PACKET = 188


def continue_cc(data: bytes, state: dict[str, int]) -> bytes:
    """Rewrite MPEG-TS continuity counters so they run on from the previous media segment.

    Each chunk's muxer starts its counters at 0; a player (and ffmpeg's HLS reader) would see a
    discontinuity at every chunk boundary. ``state`` maps PID -> last counter and is updated.
    """
    if len(data) % TS_PACKET:
        raise ValueError(f"{len(data)} bytes is not a whole number of TS packets")
    a = np.frombuffer(data, np.uint8).reshape(-1, TS_PACKET).copy()
    if a.size and not (a[:, 0] == 0x47).all():
        raise ValueError("lost MPEG-TS sync")
    pid = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
    has_payload = (a[:, 3] & 0x10) != 0
    for p in np.unique(pid):
        if p == 0x1FFF:  # null packets carry no counter
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


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temp file beside ``path``, fsync, rename: readers see old or new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def media_playlist(segments: list[dict[str, Any]], *, target_duration_s: float,
                   complete: bool) -> str:
    """A VOD playlist when ``complete``, else an EVENT playlist of the finished prefix."""
    # RFC 8216 4.3.3.1: no EXTINF, rounded to the nearest integer, above it (1.001 s gives 1)
    target = max(1, math.floor(max([target_duration_s] + [s["duration_s"] for s in segments]) + 0.5))
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
             "#EXT-X-MEDIA-SEQUENCE:0",
             f"#EXT-X-PLAYLIST-TYPE:{'VOD' if complete else 'EVENT'}",
             "#EXT-X-INDEPENDENT-SEGMENTS"]
    for s in segments:
        lines += [f"#EXTINF:{s['duration_s']:.5f},", s["uri"]]
    if complete:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def codecs_string(first_segment: Path) -> str:
    """RFC 6381 CODECS of a media segment: H.264 profile/level read from its SPS, and AAC-LC."""
    data = Path(first_segment).read_bytes()[: 64 * 1024]
    i = data.find(b"\x00\x00\x01\x67")
    avc = "avc1.640028"  # High 4.0 if no SPS is found in the first packets
    if i >= 0 and i + 7 <= len(data):
        profile, flags, level = data[i + 4], data[i + 5], data[i + 6]
        avc = f"avc1.{profile:02x}{flags:02x}{level:02x}"
    return f"{avc},mp4a.40.2"


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"

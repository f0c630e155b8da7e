"""LL-HLS partial segments cut from an aired MPEG-TS media segment (RFC 8216bis 4.4.4.9).

A part is a byte range of the (already rewritten) media segment file: it starts on a TS packet
that begins a video PES, so it holds whole frames, and its duration is its frame count over the
frame rate, exact. Why byte ranges of the parent, not part files: the bytes exist once (a proxy or
CDN caches one object and serves ranges of it), a player that loads the parent later gets the
same bytes, and hls.js feeds the parts of one segment into one demuxer back to back, so a PES that
is not video (audio) never needs to start at a part boundary. ffmpeg's and PyAV's TS muxer write
every PES in one run of packets (PAT/PMT/PCR-only packets aside), so a cut before a video PES
never splits an audio PES either: a prefix of parts is itself a clean, shorter media segment
(what a filler segment cut short at a part boundary becomes).

With B-frames a cut is only valid where every frame before it is presented before every frame
after it (otherwise a frame of the part would need a later part to be shown); cuts are chosen
among those.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np

from avatarrender.playout.mpegts import get_ts, packets, pes_starts

__all__ = ["Part", "cut_parts", "shorten", "video_frames"]

_PACKET = 188


@dataclasses.dataclass(frozen=True)
class Part:
    """One partial segment: a byte range of its parent media segment.

    Attributes
    ----------
    offset_bytes, size_bytes : int
        The range in the parent file (whole TS packets).
    frames : int
        Video frames it holds; its duration is ``frames / fps`` seconds.
    independent : bool
        It starts with a keyframe (RFC 8216bis ``INDEPENDENT=YES``).
    """

    offset_bytes: int
    size_bytes: int
    frames: int
    independent: bool

    def duration_s(self, fps: Fraction) -> Fraction:
        """Exact duration in seconds at ``fps`` frames per second."""
        return Fraction(self.frames) / fps

    def to_json(self) -> list[int]:
        return [self.offset_bytes, self.size_bytes, self.frames, int(self.independent)]

    @classmethod
    def from_json(cls, v: list[int]) -> Part:
        return cls(int(v[0]), int(v[1]), int(v[2]), bool(v[3]))


def video_frames(data: bytes, where: str | Path | None = None) -> list[tuple[int, int, bool]]:
    """(packet row, PTS in 90 kHz, keyframe) of every video PES start, in file (decode) order.

    A keyframe is a PES whose first packet has the adaptation field's random_access_indicator,
    which ffmpeg's and PyAV's muxers set on every keyframe.

    Raises
    ------
    MediaError
        Malformed MPEG-TS (see :mod:`.mpegts`).
    """
    a = packets(data, where)
    out = []
    for s in pes_starts(a, where):
        if not s.video:
            continue
        row = a[s.row]
        has_af = bool((int(row[3]) >> 4) & 2)
        key = has_af and int(row[4]) > 0 and bool(int(row[5]) & 0x40)
        pts = get_ts(row, s.pts_at) if s.pts_at is not None else -1
        out.append((s.row, pts, key))
    return out


def cut_parts(data: bytes, *, part_frames: int) -> tuple[Part, ...] | None:
    """Cut a media segment into parts of at most ``part_frames`` frames each.

    Parameters
    ----------
    data : bytes [shape=(188 * n,)]
        One media segment, whole TS packets, one video frame per video PES.
    part_frames : int
        PART-TARGET in frames. Parts are as long as that where the stream allows (all of them
        but the last, without B-frames), never longer.

    Returns
    -------
    tuple of Part or None
        Covering ``data`` from byte 0 to its end, in order; None when it cannot be cut within
        ``part_frames`` (no video, or a run of B-frames longer than a part): the caller then
        publishes the segment whole, without parts.

    Raises
    ------
    MediaError
        Malformed MPEG-TS (see :mod:`.mpegts`).
    """
    if part_frames < 1:
        raise ValueError("part_frames must be >= 1")
    frames = video_frames(data)
    n = len(frames)
    if n == 0 or any(pts < 0 for _, pts, _ in frames):
        return None
    pts = [p for _, p, _ in frames]
    # valid cut before frame j: everything before is presented before everything from j on
    prefix_max = np.maximum.accumulate(pts)
    suffix_min = np.minimum.accumulate(pts[::-1])[::-1]
    valid = [False] + [bool(prefix_max[j - 1] < suffix_min[j]) for j in range(1, n)] + [True]
    starts = [0]
    while n - starts[-1] > part_frames:
        s = starts[-1]
        j = next((j for j in range(s + part_frames, s, -1) if valid[j]), None)
        if j is None:
            return None
        starts.append(j)
    parts = []
    for k, s in enumerate(starts):
        e = starts[k + 1] if k + 1 < len(starts) else n
        off = 0 if k == 0 else frames[s][0] * _PACKET  # the first part also takes PAT/PMT
        end = frames[e][0] * _PACKET if e < n else len(data)
        parts.append(Part(offset_bytes=off, size_bytes=end - off, frames=e - s, independent=frames[s][2]))
    return tuple(parts)


def shorten(
    data: bytes, parts: tuple[Part, ...], keep: int, *, carry_audio: bool = True
) -> tuple[bytes, tuple[Part, ...]]:
    """A media segment cut after its first ``keep`` parts, as a clean shorter media segment.

    The audio of the kept frames may lie partly beyond the cut: the renderer writes one PES per
    AAC frame (21 ms), older renders and other muxers one when it is full (2930 bytes, 0.2-0.4 s
    of AAC), after the video of the same time. With
    ``carry_audio`` (the last kept part is not published yet) the audio PES that start before
    the first cut-away frame are moved to the end of the last kept part, which grows by them;
    without it (parts already out) the file is just truncated.

    Returns
    -------
    (bytes, tuple of Part)
        The shortened segment and its parts (the last one with its new size).
    """
    if not 0 < keep <= len(parts):
        raise ValueError(f"keep must be in 1..{len(parts)}")
    last = parts[keep - 1]
    end = last.offset_bytes + last.size_bytes
    kept = data[:end]
    if carry_audio and keep < len(parts):
        a = packets(data)
        # the first frame shown after the cut (with B-frames not the first one decoded)
        after = [p for r, p, _ in video_frames(data) if r * _PACKET >= end]
        cut_pts = min(after) if after else None
        audio = [st for st in pes_starts(a) if not st.video and st.row * _PACKET >= end]
        carried = []
        if cut_pts is not None and audio:
            pids = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
            audio_pid = audio[0].pid
            starts = {
                st.row: get_ts(a[st.row], st.pts_at) < cut_pts
                for st in audio
                if st.pid == audio_pid and st.pts_at is not None
            }
            take = False
            for r in range(end // _PACKET, len(a)):
                if int(pids[r]) != audio_pid:
                    continue
                if a[r, 1] & 0x40:  # a PES starts: audio before the cut is carried, the rest not
                    take = starts.get(r, False)
                if take and (int(a[r, 3]) >> 4) & 1:
                    carried.append(a[r].tobytes())
        kept += b"".join(carried)
    new_last = dataclasses.replace(last, size_bytes=len(kept) - last.offset_bytes)
    return kept, parts[: keep - 1] + (new_last,)

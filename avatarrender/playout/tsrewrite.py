"""MPEG-TS timestamp and continuity rewriting, so the live stream's clock never jumps back.

Every rendered segment's timestamps start at 1.4 s. The playlist marks each change of program with
EXT-X-DISCONTINUITY (hls.js needs it), but clients that ignore the tag (ffmpeg, some TVs) would see
timestamps go backwards and continuity counters jump. So the playout shifts PTS, DTS and PCR of
every aired media segment by a per-program offset that continues the previous program's clock, and
renumbers continuity counters: the channel is one continuous transport stream. The offset keeps the
picture on the frame grid, so media time stays on the programme-date clock. The sound is made
contiguous too: the new program's audio is moved by at most half an AAC frame (10.7 ms at 48 kHz,
well inside lip sync's tolerance) so that it starts where the aired audio ends, after dropping
a first AAC frame that would overlap it by more than that. (Dropping any overlapping frame left
holes of up to a frame at each join, which players fill with silence, a click, and a warning.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avatarrender.playout.mpegts import get_ts as _get_ts
from avatarrender.playout.mpegts import packets, pes_starts
from avatarrender.rendition import ADTS_RATES_HZ, TS_PACKET_BYTES, continue_cc

__all__ = ["TimestampRewriter", "read_pts", "WRAP_90K"]

WRAP_90K = 1 << 33  # PTS/DTS/PCR base wrap (about 26.5 h)
_PACKET = TS_PACKET_BYTES


def _put_ts(b: np.ndarray, i: int, value: int) -> None:
    v = value % WRAP_90K
    b[i] = (int(b[i]) & 0xF0) | (((v >> 30) & 7) << 1) | 1
    b[i + 1] = (v >> 22) & 0xFF
    b[i + 2] = (((v >> 15) & 0x7F) << 1) | 1
    b[i + 3] = (v >> 7) & 0xFF
    b[i + 4] = ((v & 0x7F) << 1) | 1


def _pes_rows(a: np.ndarray, where: str | Path | None = None) -> list[tuple[int, int, int, int | None]]:
    """(row, stream_id, pts offset in row, dts offset in row or None) of every PES header
    (audio and video), bounds checked (see mpegts.pes_starts)."""
    return [(s.row, s.stream_id, s.pts_at, s.dts_at) for s in pes_starts(a, where) if s.pts_at is not None]


def _payload(row: np.ndarray) -> np.ndarray:
    afc = (int(row[3]) >> 4) & 3
    if not afc & 1:
        return row[:0]
    return row[4 + (1 + int(row[4]) if afc & 2 else 0) :]


def _audio_end(a: np.ndarray, start_row: int, pts: int) -> int:
    """End (90 kHz) of the audio PES starting at ``start_row``: its PTS plus its ADTS frames."""
    pid = ((int(a[start_row, 1]) & 0x1F) << 8) | int(a[start_row, 2])
    pids = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
    rows = [start_row] + [int(r) for r in np.nonzero(pids[start_row + 1 :] == pid)[0] + start_row + 1]
    parts = []
    for k, r in enumerate(rows):
        if k and a[r, 1] & 0x40:  # the next PES begins
            break
        parts.append(_payload(a[r]).tobytes())
    data = b"".join(parts)
    if len(data) < 9:
        return pts
    i = 9 + data[8]
    end = pts
    while i + 7 <= len(data) and data[i] == 0xFF and (data[i + 1] & 0xF0) == 0xF0:
        rate = ADTS_RATES_HZ[min((data[i + 2] >> 2) & 0x0F, len(ADTS_RATES_HZ) - 1)]
        length = ((data[i + 3] & 3) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        if length < 7:
            break
        end += round(1024 * 90000 / rate) * ((data[i + 6] & 3) + 1)
        i += length
    return end


def read_pts(data: bytes) -> dict[str, list[int]]:
    """PTS (90 kHz, as stored) of every video and audio PES in ``data``: {"video": [...], "audio": [...]}.

    Raises
    ------
    MediaError
        Malformed MPEG-TS (see :mod:`.mpegts`).
    """
    a = packets(data)
    out: dict[str, list[int]] = {"video": [], "audio": []}
    for r, sid, pi, _ in _pes_rows(a):
        out["video" if sid >= 0xE0 else "audio"].append(_get_ts(a[r], pi))
    return out


class TimestampRewriter:
    """Shifts each aired media segment onto one continuous channel clock.

    Parameters
    ----------
    video_frame_90k : int
        A video frame's duration in 90 kHz ticks (3000 at 30 fps).
    audio_frame_90k : int
        An AAC frame's duration in 90 kHz ticks (1920 for 1024 samples at 48 kHz).
    """

    def __init__(self, *, video_frame_90k: int = 3000, audio_frame_90k: int = 1920):
        self.video_frame_90k = video_frame_90k
        self.audio_frame_90k = audio_frame_90k
        self.offset_90k: int | None = None  # added to the current program's timestamps
        self.audio_shift_90k = 0  # added to its audio's besides: contiguous with what aired
        self.end_90k = {"video": None, "audio": None}  # unwrapped end of what has aired
        self.last_dts_90k = {"video": None, "audio": None}
        self.cc: dict[str, int] = {}

    def rewrite(self, data: bytes, *, rebase: bool, where: str | Path | None = None) -> bytes:
        """Return ``data`` with timestamps shifted and continuity counters continued.

        Parameters
        ----------
        data : bytes [shape=(188 * n,)]
            One media segment (whole TS packets).
        rebase : bool
            A new program (or a jump within one) starts here: choose a new offset so that its
            first video and audio timestamps follow what has aired. Otherwise keep the offset.
        where : path, optional
            The file, for error messages.

        Raises
        ------
        MediaError
            Malformed MPEG-TS (see :mod:`.mpegts`); the rewriter's state is then unchanged.
        """
        a = packets(data, where).copy()
        pes = _pes_rows(a, where)
        first_pts: dict[str, int] = {}
        first_dts: dict[str, int] = {}
        for r, sid, pi, di in pes:
            kind = "video" if sid >= 0xE0 else "audio"
            p = _get_ts(a[r], pi)
            d = _get_ts(a[r], di) if di is not None else p
            first_pts[kind] = min(first_pts.get(kind, p), p)
            first_dts[kind] = min(first_dts.get(kind, d), d)
        if rebase or self.offset_90k is None:
            # the picture continues where the last one ended, on the frame grid: the channel's
            # media time stays on its programme-date clock (each join placed after the audio, up
            # to one AAC frame past the picture, put a viewer on hls.js 21 ms further behind at
            # every program change and filler loop). Decoding order stays monotonic.
            lead = "video" if "video" in first_pts else "audio"
            cands = [self.end_90k[lead] - first_pts[lead]] if self.end_90k[lead] is not None else []
            if self.last_dts_90k[lead] is not None:
                cands.append(self.last_dts_90k[lead] + 1 - first_dts[lead])
            self.offset_90k = max(cands) if cands else 0
            self.audio_shift_90k = 0
            if lead == "video" and self.end_90k["audio"] is not None and "audio" in first_pts:
                # no stream may overlap what aired: audio starting more than half a frame before
                # the aired audio ends is dropped (the first AAC frame at most: our renders hold
                # one per PES); what is left is moved onto the aired audio's end, if it is at
                # most half a frame off (a longer gap is the program's own silence)
                end = self.end_90k["audio"] - self.offset_90k
                half = self.audio_frame_90k // 2
                a, pes = self._drop_audio_before(a, pes, end - half)
                starts = [_get_ts(a[r], pi) for r, sid, pi, _ in pes if sid < 0xE0]
                if starts and abs(min(starts) - end) <= half:
                    self.audio_shift_90k = end - min(starts)
        off = self.offset_90k
        for r, sid, pi, di in pes:
            kind = "video" if sid >= 0xE0 else "audio"
            shift = off if kind == "video" else off + self.audio_shift_90k
            pts = _get_ts(a[r], pi) + shift
            _put_ts(a[r], pi, pts)
            dts = pts
            if di is not None:
                dts = _get_ts(a[r], di) + shift
                _put_ts(a[r], di, dts)
            if self.last_dts_90k[kind] is None or dts > self.last_dts_90k[kind]:
                self.last_dts_90k[kind] = dts
            end = pts + self.video_frame_90k if kind == "video" else _audio_end(a, r, pts)
            if self.end_90k[kind] is None or end > self.end_90k[kind]:
                self.end_90k[kind] = end
        # PCR (adaptation field, flag 0x10): same shift on its 33-bit base
        afc = (a[:, 3] >> 4) & 3
        has_pcr = np.nonzero(((afc & 2) != 0) & (a[:, 4] >= 7) & ((a[:, 5] & 0x10) != 0))[0]
        for r in has_pcr:
            row = a[r]
            base = (
                (int(row[6]) << 25)
                | (int(row[7]) << 17)
                | (int(row[8]) << 9)
                | (int(row[9]) << 1)
                | (int(row[10]) >> 7)
            )
            base = (base + off) % WRAP_90K
            row[6] = (base >> 25) & 0xFF
            row[7] = (base >> 17) & 0xFF
            row[8] = (base >> 9) & 0xFF
            row[9] = (base >> 1) & 0xFF
            row[10] = ((base & 1) << 7) | (int(row[10]) & 0x7F)
        return continue_cc(a.tobytes(), self.cc)

    @staticmethod
    def _drop_audio_before(a: np.ndarray, pes: list, limit_90k: int) -> tuple[np.ndarray, list]:
        """``a`` without the audio PES whose (unshifted) PTS is before ``limit_90k``, and the PES
        rows of what is left (continuity counters are renumbered by the caller's continue_cc)."""
        pids = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
        drop: set[int] = set()
        for k, (r, sid, pi, _di) in enumerate(pes):
            if sid >= 0xE0 or _get_ts(a[r], pi) >= limit_90k:
                continue
            pid = int(pids[r])
            nxt = next((r2 for r2, s2, _, _ in pes[k + 1 :] if int(pids[r2]) == pid), len(a))
            drop.update(int(x) for x in np.nonzero(pids[r:nxt] == pid)[0] + r)
        if not drop:
            return a, pes
        keep = np.array([r for r in range(len(a)) if r not in drop], dtype=np.int64)
        a = a[keep]
        return a, _pes_rows(a)

    def to_json(self) -> dict[str, Any]:
        return {
            "offset_90k": self.offset_90k,
            "audio_shift_90k": self.audio_shift_90k,
            "end_90k": dict(self.end_90k),
            "last_dts_90k": dict(self.last_dts_90k),
            "cc": dict(self.cc),
        }

    def restore(self, d: dict[str, Any]) -> None:
        self.offset_90k = d.get("offset_90k")
        self.audio_shift_90k = int(d.get("audio_shift_90k", 0))
        self.end_90k = {"video": d["end_90k"].get("video"), "audio": d["end_90k"].get("audio")}
        last = d.get("last_dts_90k", {})
        self.last_dts_90k = {"video": last.get("video"), "audio": last.get("audio")}
        self.cc = {str(k): int(v) for k, v in d.get("cc", {}).items()}

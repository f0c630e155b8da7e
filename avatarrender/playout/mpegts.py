"""MPEG-TS media segments as the playout reads them: packets, program tables, PES headers.

One parser for the TS rewrite (tsrewrite.py), the part cutter (parts.py) and the check of what
airs (:func:`inspect_segment`), so that every byte they read is bounds-checked once: a packet
whose adaptation field, PES header or timestamp would run past its end, a PES on a PID the
program does not list, a program table with a bad CRC, raise :class:`MediaError` naming the
packet and the field, never an ``IndexError`` or ``ValueError`` from deep inside a loop (a
bad adaptation-field length once made the rewrite read a DTS past the packet's end and took the
channel off air).

The renderer's muxers (PyAV's and ffmpeg's) write one program, its PAT and PMT at the start of
every media segment, each PES header whole in its first packet, and a PTS on every audio and
video PES; anything else is refused rather than guessed at.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np

from avatarrender.errors import MediaError

__all__ = [
    "PACKET_BYTES",
    "PesStart",
    "Program",
    "SegmentFacts",
    "get_ts",
    "inspect_segment",
    "packets",
    "pes_starts",
    "program",
]

PACKET_BYTES = 188
_SYNC = 0x47
_NULL_PID = 0x1FFF
_SI_PIDS = range(0x10, 0x20)  # DVB service information (ffmpeg writes an SDT on 0x11)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def _crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2 (ISO/IEC 13818-1 annex A): over a whole section including its CRC it is 0."""
    c = 0xFFFFFFFF
    for b in data:
        c = ((c << 8) & 0xFFFFFFFF) ^ _CRC[((c >> 24) ^ b) & 0xFF]
    return c


def get_ts(row: np.ndarray, i: int) -> int:
    """The 33-bit PTS/DTS (90 kHz) stored in ``row[i:i + 5]`` (bounds checked by the caller)."""
    b0, b1, b2, b3, b4 = (int(x) for x in row[i : i + 5])  # Python ints: uint8 shifts would overflow
    return (((b0 >> 1) & 7) << 30) | (b1 << 22) | ((b2 >> 1) << 15) | (b3 << 7) | (b4 >> 1)


def packets(data: bytes | bytearray, where: str | Path | None = None) -> np.ndarray:
    """``data`` as TS packets, shape (n, 188), read-only, after the per-packet checks.

    Raises
    ------
    MediaError
        Empty, not whole packets, a lost sync byte, the transport error flag, the reserved
        adaptation_field_control 0, or an adaptation field longer than its packet.
    """
    if not len(data):
        raise MediaError(where, None, "empty media segment")
    if len(data) % PACKET_BYTES:
        raise MediaError(where, "bytes", f"{len(data)} bytes is not a whole number of TS packets")
    a = np.frombuffer(bytes(data), np.uint8).reshape(-1, PACKET_BYTES)
    bad = np.nonzero(a[:, 0] != _SYNC)[0]
    if bad.size:
        raise MediaError(where, f"packet {bad[0]}", "sync byte 0x47 missing")
    bad = np.nonzero(a[:, 1] & 0x80)[0]
    if bad.size:
        raise MediaError(where, f"packet {bad[0]}", "transport_error_indicator set")
    afc = (a[:, 3] >> 4) & 3
    bad = np.nonzero(afc == 0)[0]
    if bad.size:
        raise MediaError(where, f"packet {bad[0]}", "adaptation_field_control 0 (reserved)")
    # an adaptation field alone fills the packet (183); before a payload it leaves room for it
    af_len = a[:, 4].astype(np.int32)
    bad = np.nonzero(((afc == 2) & (af_len != 183)) | ((afc == 3) & (af_len > 182)))[0]
    if bad.size:
        r = int(bad[0])
        raise MediaError(where, f"packet {r}.adaptation_field_length", f"{af_len[r]} does not fit the packet")
    for r in np.nonzero((afc & 2) != 0)[0]:
        _check_adaptation_field(a[r], int(r), where)
    return a


def _check_adaptation_field(row: np.ndarray, r: int, where: str | Path | None) -> None:
    """The fields the flags announce fit the adaptation field, and the rest is 0xFF stuffing
    (13818-1 2.4.3.5): a wrong length moves the payload's start, which nothing else shows."""
    length = int(row[4])
    if length == 0:
        return  # one byte of stuffing: the length field alone
    flags = int(row[5])
    need = 1 + 6 * bool(flags & 0x10) + 6 * bool(flags & 0x08) + bool(flags & 0x04)
    if flags & 0x02 and 5 + need < PACKET_BYTES:  # transport_private_data
        need += 1 + int(row[5 + need])
    if flags & 0x01 and 5 + need < PACKET_BYTES:  # adaptation_field_extension
        need += 1 + int(row[5 + need])
    if need > length:
        raise MediaError(
            where,
            f"packet {r}.adaptation_field_length",
            f"{length} is shorter than the fields its flags announce ({need})",
        )
    stuffing = row[5 + need : 5 + length]
    if stuffing.size and not (stuffing == 0xFF).all():
        raise MediaError(
            where, f"packet {r}.adaptation_field_length", f"{length} does not end where the stuffing ends"
        )


def _pids(a: np.ndarray) -> np.ndarray:
    return ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]


def _payload_offsets(a: np.ndarray) -> np.ndarray:
    """Offset of each packet's payload in its row (188: none). After :func:`packets`."""
    afc = (a[:, 3] >> 4) & 3
    off = np.where((afc & 2) != 0, 5 + a[:, 4].astype(np.int32), 4)
    return np.where((afc & 1) != 0, off, PACKET_BYTES)


@dataclasses.dataclass(frozen=True)
class Program:
    """The one program of a media segment, from its first PAT and PMT.

    Attributes
    ----------
    pmt_pid, pcr_pid : int
    streams : dict of int to int
        Elementary stream PID -> stream_type (0x1B H.264, 0x0F AAC, ...).
    """

    pmt_pid: int
    pcr_pid: int
    streams: dict[int, int]


def _section(a: np.ndarray, r: int, where: str | Path | None, name: str, table_id: int) -> bytes:
    """The PSI section starting in packet ``r``, CRC checked; it must fit in the packet."""
    po = int(_payload_offsets(a[r : r + 1])[0])
    if not a[r, 1] & 0x40 or po >= PACKET_BYTES:
        raise MediaError(where, f"packet {r}", f"{name} without a section start")
    row = a[r].tobytes()
    s = po + 1 + row[po]  # pointer_field
    if s + 3 > PACKET_BYTES:
        raise MediaError(where, f"packet {r}.pointer_field", f"{name} section starts past the packet")
    length = ((row[s + 1] & 0x0F) << 8) | row[s + 2]
    end = s + 3 + length
    if row[s] != table_id or length < 9 or end > PACKET_BYTES:
        raise MediaError(where, f"packet {r}.section_length", f"malformed {name} section")
    if _crc32_mpeg(row[s:end]):
        raise MediaError(where, f"packet {r}.CRC_32", f"{name} section fails its CRC")
    return row[s:end]


def program(a: np.ndarray, where: str | Path | None = None) -> Program:
    """The program the segment's first PAT and PMT describe.

    Raises
    ------
    MediaError
        No PAT or PMT, a section that does not fit its packet or fails its CRC, not exactly
        one program.
    """
    pid = _pids(a)
    rows = np.nonzero(pid == 0)[0]
    if not rows.size:
        raise MediaError(where, "PAT", "no program association table")
    pat = _section(a, int(rows[0]), where, "PAT", 0x00)
    entries = [pat[i : i + 4] for i in range(8, len(pat) - 4, 4)]
    pmts = [((e[2] & 0x1F) << 8) | e[3] for e in entries if len(e) == 4 and (e[0] << 8 | e[1])]
    if len(pmts) != 1:
        raise MediaError(where, "PAT", f"{len(pmts)} programs; the playout airs one")
    rows = np.nonzero(pid == pmts[0])[0]
    if not rows.size:
        raise MediaError(where, "PMT", f"no program map table on PID {pmts[0]}")
    pmt = _section(a, int(rows[0]), where, "PMT", 0x02)
    pcr_pid = ((pmt[8] & 0x1F) << 8) | pmt[9]
    i = 12 + (((pmt[10] & 0x0F) << 8) | pmt[11])
    streams: dict[int, int] = {}
    while i + 5 <= len(pmt) - 4:
        es_pid = ((pmt[i + 1] & 0x1F) << 8) | pmt[i + 2]
        streams[es_pid] = pmt[i]
        i += 5 + (((pmt[i + 3] & 0x0F) << 8) | pmt[i + 4])
    if not streams:
        raise MediaError(where, "PMT", "no elementary streams")
    return Program(pmt_pid=pmts[0], pcr_pid=pcr_pid, streams=streams)


@dataclasses.dataclass(frozen=True)
class PesStart:
    """The header of one audio or video PES, in its first packet.

    Attributes
    ----------
    row : int
        Its packet's index in the segment.
    pid, stream_id : int
    pts_at, dts_at : int or None
        Offsets in the packet of the 5-byte PTS and DTS (None: absent).
    data_at : int
        Offset in the packet where the PES payload (the elementary stream) begins.
    length_bytes : int
        PES_packet_length: its bytes after the length field (0: unbounded, as for video).
    """

    row: int
    pid: int
    stream_id: int
    pts_at: int | None
    dts_at: int | None
    data_at: int
    length_bytes: int = 0

    @property
    def video(self) -> bool:
        return self.stream_id >= 0xE0


def _check_ts_field(row: np.ndarray, i: int, prefix: int) -> bool:
    """The 4-bit prefix and the three marker bits of a PTS/DTS field are as 13818-1 says."""
    return (
        int(row[i]) >> 4 == prefix and int(row[i]) & 1 and int(row[i + 2]) & 1 and int(row[i + 4]) & 1
    ) != 0


def pes_starts(
    a: np.ndarray, where: str | Path | None = None, *, prog: Program | None = None
) -> list[PesStart]:
    """Every audio and video PES header of the segment, in file order, bounds checked.

    Raises
    ------
    MediaError
        A packet on a PID the program does not list, a PES start without its start code, a PES
        header that does not fit its packet, an audio or video PES without a PTS, a PTS/DTS field
        with wrong marker bits.
    """
    prog = prog or program(a, where)
    pid = _pids(a)
    allowed = set(prog.streams) | {0, prog.pmt_pid, prog.pcr_pid, _NULL_PID, *_SI_PIDS}
    stray = np.nonzero(~np.isin(pid, sorted(allowed)))[0]
    if stray.size:
        r = int(stray[0])
        raise MediaError(where, f"packet {r}.PID", f"{pid[r]} is not in the program")
    po_all = _payload_offsets(a)
    out = []
    for r in np.nonzero(((a[:, 1] & 0x40) != 0) & np.isin(pid, sorted(prog.streams)))[0]:
        r = int(r)
        row, po = a[r], int(po_all[r])
        field = f"packet {r}.PES"
        if po + 9 > PACKET_BYTES:
            raise MediaError(where, field, "payload_unit_start with no room for a PES header")
        if row[po] != 0 or row[po + 1] != 0 or row[po + 2] != 1:
            raise MediaError(where, field, "payload_unit_start without a PES start code")
        sid = int(row[po + 3])
        if not 0xC0 <= sid <= 0xEF:
            continue  # private or padding streams: not rewritten, not counted
        if int(row[po + 6]) >> 6 != 2:
            raise MediaError(where, field, "PES header marker bits are not '10'")
        flags = int(row[po + 7]) >> 6
        header_len = int(row[po + 8])
        data_at = po + 9 + header_len
        if flags in (0, 1):
            raise MediaError(where, field, "PES without a PTS" if not flags else "PTS_DTS_flags 01")
        need = 10 if flags == 3 else 5
        if header_len < need or data_at > PACKET_BYTES:
            raise MediaError(
                where,
                f"{field}_header_data_length",
                f"{header_len} bytes at offset {po + 9} run past the packet or "
                f"hold no {'PTS and DTS' if flags == 3 else 'PTS'}",
            )
        f7 = int(row[po + 7])
        if not f7 & 0x01:  # without a PES extension the fields are fixed: the rest is stuffing
            fixed = (
                need
                + 6 * bool(f7 & 0x20)
                + 3 * bool(f7 & 0x10)
                + bool(f7 & 0x08)
                + bool(f7 & 0x04)
                + 2 * bool(f7 & 0x02)
            )
            pad = row[po + 9 + fixed : data_at]
            if fixed > header_len or (pad.size and not (pad == 0xFF).all()):
                raise MediaError(
                    where,
                    f"{field}_header_data_length",
                    f"{header_len} does not end where the header's fields end",
                )
        pts_at = po + 9
        dts_at = po + 14 if flags == 3 else None
        if not _check_ts_field(row, pts_at, 3 if flags == 3 else 2) or (
            dts_at is not None and not _check_ts_field(row, dts_at, 1)
        ):
            raise MediaError(where, f"{field}.PTS", "timestamp marker bits are wrong")
        out.append(
            PesStart(
                row=r,
                pid=int(pid[r]),
                stream_id=sid,
                pts_at=pts_at,
                dts_at=dts_at,
                data_at=data_at,
                length_bytes=(int(row[po + 4]) << 8) | int(row[po + 5]),
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class SegmentFacts:
    """What a media segment holds, for the check before it airs.

    Attributes
    ----------
    frames : int
        Video PES (one frame each, as the renderer muxes).
    first_pts_90k, end_pts_90k : int
        First presentation time and the end of the last frame (last PTS + one frame), 90 kHz,
        as stored (not unwrapped).
    """

    frames: int
    first_pts_90k: int
    end_pts_90k: int


def _check_cc(a: np.ndarray, where: str | Path | None) -> None:
    """Continuity counters run on by one per payload packet of each PID: no packet is missing
    or repeated."""
    pid = _pids(a)
    has_payload = (a[:, 3] & 0x10) != 0
    cc = a[:, 3] & 0x0F
    for p in np.unique(pid):
        if p == _NULL_PID:
            continue
        idx = np.nonzero((pid == p) & has_payload)[0]
        if idx.size < 2:
            continue
        step = (cc[idx[1:]].astype(np.int32) - cc[idx[:-1]]) & 0x0F
        # 13818-1 allows a packet sent twice (step 0), but the channel renumbers the counters
        # (continue_cc), which would turn a repeat into a second copy of its data: refused
        bad = np.nonzero(step != 1)[0]
        if bad.size:
            r = int(idx[bad[0] + 1])
            what = (
                "repeats a packet"
                if step[bad[0]] == 0
                else f"skips {int(step[bad[0]]) - 1} packet(s): data is missing"
            )
            raise MediaError(where, f"packet {r}.continuity_counter", f"PID {p} {what}")


def _check_pes_lengths(a: np.ndarray, starts: list[PesStart], where: str | Path | None) -> None:
    """A PES that gives its length (audio) has exactly that many bytes before the next one on
    its PID: a file cut short at a packet boundary loses the end of one (a frame count alone does
    not see it)."""
    pid = _pids(a)
    sizes = PACKET_BYTES - _payload_offsets(a)
    by_pid: dict[int, list[PesStart]] = {}
    for s in starts:
        by_pid.setdefault(s.pid, []).append(s)
    for p, group in by_pid.items():
        rows = np.nonzero(pid == p)[0]
        ends = [g.row for g in group[1:]] + [len(a)]
        for g, end in zip(group, ends):
            if not g.length_bytes:
                continue
            inside = rows[(rows >= g.row) & (rows < end)]
            have = int(sizes[inside].sum()) - 6  # from the start code; 6: up to the length
            if have != g.length_bytes:
                raise MediaError(
                    where,
                    f"packet {g.row}.PES_packet_length",
                    f"{g.length_bytes} bytes announced, {have} present",
                )


def inspect_segment(
    data: bytes, where: str | Path | None = None, *, frame_90k: Fraction, frames: int | None = None
) -> SegmentFacts:
    """Check a rendered media segment whole and count what it holds.

    Parameters
    ----------
    frame_90k : Fraction
        One video frame in 90 kHz ticks (3000 at 30 fps, 3003 at 30000/1001).
    frames : int, optional
        The video frames the manifest lists for it.

    Raises
    ------
    MediaError
        Anything :func:`packets` and :func:`pes_starts` refuse, a packet missing (continuity
        counter), no video, another frame count than ``frames``, or video timestamps that do
        not step by one frame (a hole).
    """
    a = packets(data, where)
    starts = pes_starts(a, where)
    _check_cc(a, where)
    _check_pes_lengths(a, starts, where)
    pts = sorted(get_ts(a[s.row], s.pts_at) for s in starts if s.video and s.pts_at is not None)
    if not pts:
        raise MediaError(where, "video", "no video frames")
    if frames is not None and len(pts) != frames:
        raise MediaError(where, "frames", f"holds {len(pts)} video frames, the manifest lists {frames}")
    steps = np.diff(np.asarray(pts, dtype=np.int64))
    # a muxer rounds a frame to whole ticks (3753.75 at 24000/1001): allow one tick either way
    bad = np.nonzero(np.abs(steps - float(frame_90k)) > 1)[0]
    if bad.size:
        k = int(bad[0])
        raise MediaError(
            where,
            "video PTS",
            f"frame {k + 1} is {int(steps[k])} ticks after the "
            f"previous one, not {float(frame_90k):g}: frames are missing or misplaced",
        )
    return SegmentFacts(frames=len(pts), first_pts_90k=pts[0], end_pts_90k=pts[-1] + round(frame_90k))

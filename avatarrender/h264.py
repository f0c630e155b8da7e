"""H.264 (ITU-T H.264 / ISO 14496-10) Annex B bits we write ourselves: a frame that repeats the
previous one, coded as one P slice of P_Skip macroblocks, and the renumbering of x264's frames
around it.

A P_Skip macroblock whose neighbours are all P_Skip (or outside the picture) has the predicted
motion vector (0, 0) on reference index 0 (8.4.1.1: the first macroblock has no neighbour A or B;
every later one has a skipped neighbour with a zero vector), and no residual: with deblocking
switched off in the slice header the decoded picture is a copy of the reference picture, sample
for sample. The slice costs a few bytes and no encoder time.

x264's own picture parameter set is CABAC; an all-skip slice is simplest in CAVLC
(``mb_skip_run`` = every macroblock), so the skip frame refers to a second PPS of ours (CAVLC,
one reference, deblocking control present). It goes into the IDR access unit, before x264's
PPS: a player can only start a media segment at its IDR, so it knows the PPS before any skip
frame; hls.js writes the last PPS it demuxed into its init segment's avcC (and keeps every
in-band one in the samples), which is then x264's, the one most frames use.

The skip frame is a reference frame (``nal_ref_idc`` 2, like x264's P frames): x264 writes
``pic_order_cnt_type`` 2 when it makes no B-frames, where output order follows ``frame_num`` and
two non-reference frames in a row are not allowed (8.2.1.3), so a run of skip frames must be
reference frames. Each takes a ``frame_num``, and the x264 frames after it are renumbered (a
fixed-width field, rewritten in place). With one reference frame (x264's ``ref`` 1, the sliding
window of ``max_num_ref_frames`` 1) the x264 frame after a skip frame predicts from the skip
frame, which is sample for sample the frame x264 predicted from.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = [
    "SeqParams",
    "nal_units",
    "read_seq_params",
    "skip_frame",
    "with_skip_pps",
    "renumber_frame",
    "frame_num_of",
    "parameter_sets",
]

NAL_SLICE, NAL_IDR, NAL_SPS, NAL_PPS = 1, 5, 7, 8
_START = b"\x00\x00\x00\x01"

# Profiles whose SPS carries chroma_format_idc and bit depths (7.3.2.1.1)
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def nal_units(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit's bytes (header included, start code excluded) in Annex B."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    out = []
    for i, s in enumerate(starts):
        e = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        while e > s and data[e - 1] == 0:  # a 4-byte start code's zero, or trailing_zero_8bits
            e -= 1
        out.append((s, e))
    return out


def unescape(ebsp: bytes) -> bytes:
    """RBSP from the NAL payload: every emulation_prevention_three_byte removed (7.4.1). A valid
    payload has no 00 00 00-02, so each 00 00 03 found left to right is one."""
    return ebsp.replace(b"\x00\x00\x03", b"\x00\x00")


_NEEDS_03 = re.compile(b"\x00\x00(?=[\x00-\x03])")


def escape(rbsp: bytes) -> bytes:
    """The NAL payload for an RBSP: 03 after each 00 00 that precedes 00-03 (7.4.1), and after
    a final 00 00."""
    out = _NEEDS_03.sub(b"\x00\x00\x03", rbsp)
    return out + b"\x03" if out.endswith(b"\x00\x00") else out


class BitReader:
    """MSB-first reader of an RBSP with Exp-Golomb codes (9.1)."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0  # bits

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError past the end: a truncated unit
            v = (v << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


class BitWriter:
    """MSB-first writer with Exp-Golomb codes and rbsp_trailing_bits."""

    def __init__(self) -> None:
        self.bits: list[str] = []

    def u(self, n: int, v: int) -> BitWriter:
        if n:
            self.bits.append(format(v, f"0{n}b"))
        return self

    def ue(self, v: int) -> BitWriter:
        code = format(v + 1, "b")
        self.bits.append("0" * (len(code) - 1) + code)
        return self

    def se(self, v: int) -> BitWriter:
        return self.ue(2 * v - 1 if v > 0 else -2 * v)

    def rbsp(self) -> bytes:
        """The bits with rbsp_trailing_bits (a 1, then zeros to the byte boundary)."""
        s = "".join(self.bits) + "1"
        s += "0" * (-len(s) % 8)
        return int(s, 2).to_bytes(len(s) // 8, "big")


@dataclasses.dataclass(frozen=True)
class SeqParams:
    """What the skip frames and the renumbering need of x264's parameter sets.

    Attributes
    ----------
    sps_id, pps_id : the ids x264 uses
    log2_max_frame_num : width of ``frame_num``, bits
    poc_type : pic_order_cnt_type
    max_num_ref_frames : the sliding window's size
    frame_mbs_only : no field coding
    mbs : PicSizeInMbs, macroblocks in a frame
    """

    sps_id: int
    pps_id: int
    log2_max_frame_num: int
    poc_type: int
    max_num_ref_frames: int
    frame_mbs_only: bool
    mbs: int

    def why_not_skippable(self) -> str | None:
        """None when skip frames fit this stream, else why not (a sentence)."""
        if self.poc_type != 2:
            return f"pic_order_cnt_type is {self.poc_type} (B-frames?), skip frames need 2"
        if self.max_num_ref_frames != 1:
            return f"x264 uses {self.max_num_ref_frames} reference frames, skip frames need 1"
        if not self.frame_mbs_only:
            return "the stream is interlaced"
        return None

    @property
    def skip_pps_id(self) -> int:
        return self.pps_id + 1


def read_seq_params(access_unit: bytes) -> SeqParams | None:
    """The SPS and PPS of an x264 IDR access unit (None if it has neither, or an SPS this module
    cannot read: scaling matrices, pic_order_cnt_type 1)."""
    sps = pps = None
    for s, e in nal_units(access_unit):
        kind = access_unit[s] & 0x1F
        if kind == NAL_SPS and sps is None:
            sps = unescape(access_unit[s + 1 : e])
        elif kind == NAL_PPS and pps is None:
            pps = unescape(access_unit[s + 1 : e])
    if sps is None or pps is None:
        return None
    r = BitReader(sps)
    profile = r.u(8)
    r.u(16)  # constraint flags, reserved bits, level_idc
    sps_id = r.ue()
    if profile in _HIGH_PROFILES:
        if r.ue() == 3:  # chroma_format_idc
            r.u(1)
        r.ue(), r.ue()  # bit depths
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag: not read here
            return None
    log2_max_frame_num = r.ue() + 4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        return None
    max_refs = r.ue()
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = bool(r.u(1))
    p = BitReader(pps)
    pps_id = p.ue()
    return SeqParams(
        sps_id=sps_id,
        pps_id=pps_id,
        log2_max_frame_num=log2_max_frame_num,
        poc_type=poc_type,
        max_num_ref_frames=max_refs,
        frame_mbs_only=frame_mbs_only,
        mbs=width_mbs * height_map_units * (1 if frame_mbs_only else 2),
    )


def _nal(header: int, rbsp: bytes) -> bytes:
    return _START + bytes([header]) + escape(rbsp)


def skip_pps(sp: SeqParams) -> bytes:
    """Our PPS (7.3.2.2): CAVLC, one slice group, one reference by default, no weighted
    prediction, QP 26, deblocking control present (so the slice can switch it off)."""
    w = BitWriter().ue(sp.skip_pps_id).ue(sp.sps_id)
    w.u(1, 0).u(1, 0).ue(0)  # entropy_coding_mode_flag, bottom_field_pic_order, slice groups
    w.ue(0).ue(0).u(1, 0).u(2, 0)  # num_ref_idx_l0/l1_default_active_minus1, weighted pred/bipred
    w.se(0).se(0).se(0)  # pic_init_qp_minus26, pic_init_qs_minus26, chroma_qp_index_offset
    w.u(1, 1).u(1, 0).u(1, 0)  # deblocking_filter_control_present, constrained_intra, redundant_pic_cnt
    return _nal(0x68, w.rbsp())  # nal_ref_idc 3, nal_unit_type 8


def skip_slice(sp: SeqParams, frame_num: int) -> bytes:
    """A P slice (7.3.3) covering the frame, every macroblock P_Skip, deblocking off."""
    w = BitWriter().ue(0).ue(5).ue(sp.skip_pps_id)  # first_mb_in_slice, slice_type P (all), pps
    w.u(sp.log2_max_frame_num, frame_num % (1 << sp.log2_max_frame_num))
    # poc type 2, frames only, no redundant_pic_cnt: nothing more before the P fields
    w.u(1, 0)  # num_ref_idx_active_override_flag
    w.u(1, 0)  # ref_pic_list_modification_flag_l0
    w.u(1, 0)  # dec_ref_pic_marking: adaptive_ref_pic_marking_mode_flag (sliding window)
    w.se(0)  # slice_qp_delta
    w.ue(1)  # disable_deblocking_filter_idc: off
    w.ue(sp.mbs)  # slice_data: mb_skip_run over the whole frame, then no more data
    return _nal(0x41, w.rbsp())  # nal_ref_idc 2 (as x264's P frames), nal_unit_type 1


def skip_frame(sp: SeqParams, frame_num: int) -> bytes:
    """An access unit (Annex B) that decodes to a copy of the previous frame (its PPS is in
    the IDR access unit: :func:`with_skip_pps`)."""
    return skip_slice(sp, frame_num)


def with_skip_pps(idr_access_unit: bytes, sp: SeqParams) -> bytes:
    """x264's IDR access unit with our PPS put before x264's."""
    for s, _ in nal_units(idr_access_unit):
        if idr_access_unit[s] & 0x1F == NAL_PPS:
            at = s - 4 if idr_access_unit[max(0, s - 4) : s] == _START else s - 3
            return idr_access_unit[:at] + skip_pps(sp) + idr_access_unit[at:]
    raise ValueError("the IDR access unit has no PPS")


def parameter_sets(access_unit: bytes) -> bytes:
    """The SPS and PPS NAL units of an access unit, in its order, each after a start code."""
    return b"".join(
        _START + access_unit[s:e]
        for s, e in nal_units(access_unit)
        if access_unit[s] & 0x1F in (NAL_SPS, NAL_PPS)
    )


def _frame_num_field(rbsp_head: bytes, sp: SeqParams) -> int:
    """Bit offset of frame_num in a slice RBSP (after first_mb_in_slice, slice_type, pps_id)."""
    r = BitReader(rbsp_head)
    r.ue(), r.ue(), r.ue()
    return r.pos


def frame_num_of(unit: bytes, sp: SeqParams) -> int:
    """frame_num of a slice NAL unit (header byte included)."""
    rbsp = unescape(unit[1:33])  # the field lies in the first few bytes
    r = BitReader(rbsp)
    r.pos = _frame_num_field(rbsp, sp)
    return r.u(sp.log2_max_frame_num)


def _with_frame_num(unit: bytes, sp: SeqParams, frame_num: int) -> bytes:
    """The slice NAL unit with its frame_num replaced (same width: nothing else moves)."""
    # Re-escape only a head of the unit that ends on a non-zero byte: the escaping of what
    # follows depends only on the zeros just before it, none either way.
    cut = next((k for k in range(8, min(len(unit), 64)) if unit[k - 1] not in (0, 3)), None)
    head, tail = (unit[1:cut], unit[cut:]) if cut else (unit[1:], b"")
    rbsp = bytearray(unescape(head))
    pos = _frame_num_field(bytes(rbsp), sp)
    n = sp.log2_max_frame_num
    if cut and (pos + n - 1) >> 3 >= len(rbsp) - 1:  # the head's last byte must stay as it is
        raise ValueError("slice header longer than expected")
    v = frame_num % (1 << n)
    for i in range(n):
        bit, byte = (v >> (n - 1 - i)) & 1, (pos + i) >> 3
        mask = 1 << (7 - ((pos + i) & 7))
        rbsp[byte] = (rbsp[byte] | mask) if bit else (rbsp[byte] & ~mask)
    new_head = escape(bytes(rbsp)) if not cut else _NEEDS_03.sub(b"\x00\x00\x03", bytes(rbsp))
    return unit[:1] + new_head + tail


def renumber_frame(access_unit: bytes, sp: SeqParams, frame_num: int, *, was: int) -> bytes:
    """An x264 access unit with the frame_num of each of its slices set from ``was`` (checked:
    ValueError if a slice says otherwise) to ``frame_num``."""
    units = nal_units(access_unit)
    out = bytearray()
    at = 0
    for s, e in units:
        kind = access_unit[s] & 0x1F
        if kind in (NAL_SLICE, NAL_IDR):
            if frame_num_of(access_unit[s:e], sp) != was % (1 << sp.log2_max_frame_num):
                raise ValueError(f"a slice's frame_num is not {was}")
            out += access_unit[at:s]
            out += _with_frame_num(access_unit[s:e], sp, frame_num)
            at = e
    out += access_unit[at:]
    return bytes(out)

"""The H.264 bits we write ourselves (avatarrender.h264) and when the encoder may use them."""

from __future__ import annotations

import numpy as np
import pytest

from avatarrender import h264
from avatarrender.encode import skip_frames_fit, x264_options
from avatarrender.spec import load_spec

from conftest import make_tiny_segment

# x264's parameters at veryfast without B-frames, 1920x1088 (8160 macroblocks)
_SP_1080P = h264.SeqParams(
    sps_id=0, pps_id=0, log2_max_frame_num=4, poc_type=2, max_num_ref_frames=1, frame_mbs_only=True, mbs=8160
)


@pytest.mark.parametrize(
    "rbsp",
    [
        b"\x00\x00\x00\x01",
        b"\x00\x00\x01\x00\x00\x02\x00\x00\x03\x05",
        b"\x80\x00\x00",
        b"\x00\x00\x00\x00\x00\x10",
    ],
)
def test_escape_round_trip(rbsp):
    ebsp = h264.escape(rbsp)
    assert b"\x00\x00\x00" not in ebsp and b"\x00\x00\x01" not in ebsp and b"\x00\x00\x02" not in ebsp
    assert not ebsp.endswith(b"\x00")
    assert h264.unescape(ebsp) == rbsp


def test_exp_golomb_round_trip():
    values = [0, 1, 2, 5, 30, 255, 8160, 65535]
    w = h264.BitWriter()
    for v in values:
        w.ue(v).se(-v).u(4, v % 16)
    r = h264.BitReader(w.rbsp())
    assert [(r.ue(), r.se(), r.u(4)) for _ in values] == [(v, -v, v % 16) for v in values]


def test_renumbering_keeps_the_rest_of_the_slice():
    """frame_num rewritten in place, whatever emulation prevention the new bits need."""
    sp = _SP_1080P
    rng = np.random.default_rng(3)
    for was in range(16):
        body = bytes(rng.integers(0, 3, 40, dtype=np.uint8))  # zeros galore
        w = h264.BitWriter().ue(0).ue(5).ue(0).u(4, was)
        bits = "".join(w.bits)
        rbsp = int(bits + "0" * (-len(bits) % 8), 2).to_bytes((len(bits) + 7) // 8, "big") + body + b"\x80"
        unit = b"\x41" + h264.escape(rbsp)
        au = b"\x00\x00\x00\x01" + unit
        for new in (0, 7, 15, 16 + was):
            got = h264.renumber_frame(au, sp, new, was=was)
            ((s, e),) = h264.nal_units(got)
            assert h264.frame_num_of(got[s:e], sp) == new % 16
            back = h264.unescape(got[s + 1 : e])
            assert back[2:] == rbsp[2:] and len(back) == len(rbsp)
        with pytest.raises(ValueError):
            h264.renumber_frame(au, sp, 3, was=was + 1)


@pytest.mark.parametrize(
    "preset,fits", [("veryfast", True), ("ultrafast", True), ("faster", False), ("medium", False)]
)
def test_skip_frames_need_one_reference_frame(tmp_path, preset, fits):
    """x264's presets from 'faster' on use 2+ reference frames: a skip frame would shift what
    x264's frames refer to, so x264 gets every frame there."""
    yml = make_tiny_segment(
        tmp_path / "seg", speech_s=4.0, width=64, height=36, extra={"output": {"x264_preset": preset}}
    )
    why = skip_frames_fit(x264_options(load_spec(yml).output, threads=1))
    assert (why is None) == fits, why
    if not fits:
        assert "reference frames" in why


def test_skip_frame_bits():
    sp = _SP_1080P
    au = h264.skip_frame(sp, 5)
    ((ss, se),) = h264.nal_units(au)
    assert au[ss] == 0x41  # a reference non-IDR slice
    pps = h264.skip_pps(sp)
    r = h264.BitReader(h264.unescape(pps[5:]))
    assert (r.ue(), r.ue(), r.u(1)) == (1, 0, 0)  # pps 1 on sps 0, CAVLC
    r = h264.BitReader(h264.unescape(au[ss + 1 : se]))
    assert (r.ue(), r.ue(), r.ue(), r.u(4)) == (0, 5, 1, 5)
    assert (r.u(1), r.u(1), r.u(1), r.se(), r.ue(), r.ue()) == (0, 0, 0, 0, 1, 8160)
    assert r.u(1) == 1  # rbsp_stop_one_bit


@pytest.mark.parametrize("clip_fps", [30, 12])
def test_repeated_frames_are_the_composed_frame_before(tmp_path, clip_fps):
    """The composer's repeat signal is exact: every frame it marks equals, byte for byte, the
    frame it composed before (it is not composed again), and it marks frames in the speech and
    while a clip slower than the output holds its frame."""
    from avatarrender.analysis import analyse
    from avatarrender.compose import compose_frames, repeated_frames
    from avatarrender.scene import Scene

    from conftest import make_clip

    yml = make_tiny_segment(tmp_path / "seg", speech_s=4.0, width=160, height=90)
    make_clip(tmp_path / "seg" / "assets" / "clip.mp4", duration_s=2.0, fps=clip_fps)
    spec = load_spec(yml)
    tl = analyse(spec)
    marked = repeated_frames(spec, tl)  # from the timeline alone
    on = tl.tv_clip >= 0
    assert marked[~on].sum() > 20
    scene = Scene(spec)
    prev = None
    same_on = 0
    for i, (data, same) in enumerate(compose_frames(spec, tl, scene)):
        frame = bytes(data)
        assert same >= bool(marked[i])
        if same:
            assert frame == prev, f"frame {i} is marked as a repeat but differs"
            same_on += bool(on[i])
        prev = frame
    if clip_fps < 30:
        assert same_on > 10  # the clip's frame given again (and the state held)

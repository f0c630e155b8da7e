"""Structured corruptions of real MPEG-TS media segments against everything the playout runs on
them before and while they air: the check (inspect_segment), the timestamp rewrite, the part
cutter and the shortening of a segment. Whatever the bytes, only MediaError may come out.

Seeded (numpy's default_rng), so a failure names its case and reproduces; the kinds are the ways
TS goes wrong in practice (a bad adaptation_field_length once took the channel off air), not only
random bit flips.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from avatarrender.errors import MediaError
from avatarrender.media import ffmpeg_exe
from avatarrender.playout.mpegts import inspect_segment
from avatarrender.playout.parts import cut_parts, shorten, video_frames
from avatarrender.playout.tsrewrite import TimestampRewriter, read_pts

P = 188
FRAME_90K = Fraction(3000)


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> dict[int, bytes]:
    """One 1 s media segment (30 frames) with audio, without and with B-frames (PTS + DTS)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    out = {}
    for bf in (0, 3):
        path = tmp / f"b{bf}.ts"
        subprocess.run(
            [
                ffmpeg_exe(),
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=160x90:r=30:d=1",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=1",
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-bf",
                str(bf),
                "-g",
                "30",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-f",
                "mpegts",
                str(path),
            ],
            check=True,
        )
        out[bf] = path.read_bytes()
    return out


def _rows(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(-1, P).copy()


def _pusi_rows(a: np.ndarray, pid: int) -> np.ndarray:
    pids = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
    return np.nonzero(((a[:, 1] & 0x40) != 0) & (pids == pid))[0]


def _pes_at(row: np.ndarray) -> int:
    afc = (int(row[3]) >> 4) & 3
    return 4 + (1 + int(row[4]) if afc & 2 else 0)


VIDEO_PID, AUDIO_PID = 0x100, 0x101  # ffmpeg's mpegts muxer


def corrupt(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """``data`` damaged in one way of ``kind``."""
    a = _rows(data)
    n = len(a)
    video = _pusi_rows(a, VIDEO_PID)
    es = np.concatenate([video, _pusi_rows(a, AUDIO_PID)])
    r = int(rng.integers(n))
    if kind == "af_length":  # any value, on a packet that has an adaptation field
        with_af = np.nonzero((a[:, 3] >> 4) & 2)[0]
        r = int(rng.choice(with_af))
        a[r, 4] = rng.integers(256)
    elif kind == "af_length_over_pes":  # the original crash: the PES header pushed past the end
        r = int(rng.choice(video))
        a[r, 3] |= 0x30
        a[r, 4] = rng.integers(160, 183)
    elif kind == "pes_header_length":  # truncated PES header / DTS past the end
        r = int(rng.choice(es))
        a[r, _pes_at(a[r]) + 8] = rng.integers(0, 256)
    elif kind == "pes_flags":
        r = int(rng.choice(es))
        a[r, _pes_at(a[r]) + 7] ^= np.uint8(1 << int(rng.integers(6, 8)))
    elif kind == "pusi_garbage":  # a payload start whose payload is garbage
        r = int(rng.integers(n))
        a[r, 1] |= 0x40
        po = _pes_at(a[r])
        if po < P:
            a[r, po:] = rng.integers(0, 256, P - po)
    elif kind == "pes_garbage":  # garbage in a real PES header
        r = int(rng.choice(es))
        po = _pes_at(a[r])
        k = int(rng.integers(0, 19))
        if po + k < P:
            a[r, po + k] = rng.integers(256)
    elif kind == "wrong_pid":
        a[r, 1] = (a[r, 1] & 0xE0) | rng.integers(0, 32)
        a[r, 2] = rng.integers(256)
    elif kind == "payload_less":  # the payload flag cleared (or the reserved value 0)
        a[r, 3] &= np.uint8(0xCF | (0x20 if rng.integers(2) else 0))
    elif kind == "header_bitflip":  # one bit of the 4-byte packet header
        a[r, int(rng.integers(4))] ^= np.uint8(1 << int(rng.integers(8)))
    elif kind == "psi_garbage":  # a bit of the PAT or the PMT section
        pids = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
        r = int(rng.choice(np.nonzero((pids == 0) | (pids == 0x1000))[0][:2]))
        a[r, int(rng.integers(5, 5 + 3 + int(a[r, 7])))] ^= np.uint8(1 << int(rng.integers(8)))
    elif kind == "drop_packet":
        a = np.delete(a, r, axis=0)
    elif kind == "duplicate_packets":
        a = np.insert(a, r, a[r], axis=0)
        a = np.insert(a, r, a[r], axis=0)
    elif kind == "swap_packets":
        s = int(rng.integers(n))
        a[[r, s]] = a[[s, r]]
    elif kind == "truncate_bytes":
        return data[: int(rng.integers(0, len(data)))]
    elif kind == "truncate_packets":
        return data[: P * int(rng.integers(0, n))]
    elif kind == "zero_length":
        return b""
    elif kind == "random_bitflips":
        flat = a.reshape(-1)
        for i in rng.integers(0, flat.size, int(rng.integers(1, 8))):
            flat[i] ^= np.uint8(1 << int(rng.integers(8)))
    else:  # pragma: no cover
        raise AssertionError(kind)
    return a.tobytes()


KINDS = [
    "af_length",
    "af_length_over_pes",
    "pes_header_length",
    "pes_flags",
    "pusi_garbage",
    "pes_garbage",
    "wrong_pid",
    "payload_less",
    "header_bitflip",
    "psi_garbage",
    "drop_packet",
    "duplicate_packets",
    "swap_packets",
    "truncate_bytes",
    "truncate_packets",
    "zero_length",
    "random_bitflips",
]
CASES_PER_KIND = 40


def _run_all(data: bytes) -> str:
    """Everything the playout does to a media segment; "aired" or "refused" (MediaError)."""
    try:
        inspect_segment(data, "seg.ts", frame_90k=FRAME_90K, frames=30)  # as its manifest says
    except MediaError:
        refused = True
    else:
        refused = False
    # the rewrite and the cutter must hold on their own too (the check could be skipped)
    for step in (
        lambda: TimestampRewriter().rewrite(data, rebase=True, where="seg.ts"),
        lambda: read_pts(data),
        lambda: video_frames(data),
        lambda: cut_parts(data, part_frames=8),
    ):
        try:
            step()
        except MediaError:
            refused = True
    try:
        parts = cut_parts(data, part_frames=8)
        if parts and len(parts) > 1:
            for carry in (True, False):
                short, _ = shorten(data, parts, 1, carry_audio=carry)
                TimestampRewriter().rewrite(short, rebase=True)
    except MediaError:
        refused = True
    return "refused" if refused else "aired"


@pytest.mark.parametrize("bframes", [0, 3])
def test_structured_corruption_gives_only_media_errors(segments, bframes: int) -> None:
    data = segments[bframes]
    assert _run_all(data) == "aired"
    rng = np.random.default_rng(20261130 + bframes)
    outcome: Counter[tuple[str, str]] = Counter()
    for kind in KINDS:
        for case in range(CASES_PER_KIND):
            bad = corrupt(data, kind, rng)
            try:
                outcome[kind, _run_all(bad)] += 1
            except Exception as exc:  # noqa: BLE001 - the assertion names the case
                pytest.fail(f"{kind} case {case} (bframes {bframes}): {type(exc).__name__}: {exc}")
    print({k: (outcome[k, "refused"], outcome[k, "aired"]) for k in KINDS})
    # the kinds that always break the structure are always refused
    for kind in [
        "af_length_over_pes",
        "zero_length",
        "wrong_pid",
        "duplicate_packets",
        "psi_garbage",
        "payload_less",
    ]:
        assert not outcome[kind, "aired"], (kind, outcome[kind, "aired"])
    # a cut inside the last frame's packets, or a dropped SDT or padding packet, holds every frame
    for kind in ["truncate_bytes", "drop_packet"]:
        assert outcome[kind, "aired"] <= 2, (kind, outcome[kind, "aired"])
    assert sum(outcome[k, "refused"] for k in KINDS) > 0.6 * len(KINDS) * CASES_PER_KIND


def test_the_original_crash_is_a_media_error(segments) -> None:
    """A bad adaptation-field length in a video PES packet with PTS and DTS: the rewrite read a
    DTS past the packet's end (ValueError). Now: MediaError naming the packet and the field."""
    a = _rows(segments[3])
    r = int(_pusi_rows(a, VIDEO_PID)[3])
    a[r, 3] |= 0x30
    a[r, 4] = 170
    with pytest.raises(MediaError, match=r"seg\.ts: packet \d+\.(adaptation_field_length|PES)"):
        TimestampRewriter().rewrite(a.tobytes(), rebase=True, where="seg.ts")


def test_inspect_counts_frames_and_finds_holes(segments) -> None:
    data = segments[0]
    facts = inspect_segment(data, "seg.ts", frame_90k=FRAME_90K)
    assert facts.frames == 30 and facts.end_pts_90k - facts.first_pts_90k == 30 * 3000
    # a video frame removed whole (its packets, continuity counters renumbered): a PTS hole
    a = _rows(data)
    starts = list(_pusi_rows(a, VIDEO_PID))
    pids = ((a[:, 1].astype(np.int32) & 0x1F) << 8) | a[:, 2]
    drop = [r for r in range(starts[10], starts[11]) if pids[r] == VIDEO_PID]
    b = np.delete(a, drop, axis=0)
    from avatarrender.rendition import continue_cc

    holed = continue_cc(b.tobytes(), {})
    with pytest.raises(MediaError, match="video PTS.*frames are missing"):
        inspect_segment(holed, "seg.ts", frame_90k=FRAME_90K)

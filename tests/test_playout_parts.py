"""LL-HLS parts cut from real MPEG-TS media segments (ffmpeg-made, with and without B-frames)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from avatarrender.errors import MediaError
from avatarrender.media import ffmpeg_exe
from avatarrender.playout.parts import cut_parts, shorten, video_frames


def _segment(tmp: Path, *, bframes: int) -> bytes:
    """One 1 s media segment (30 frames, keyframe first) with audio, as the renderer muxes it."""
    out = tmp / f"seg-b{bframes}.ts"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=30:d=1",
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
            str(bframes),
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "mpegts",
            str(out),
        ],
        check=True,
    )
    return out.read_bytes()


def _decoded_frames(path: Path) -> tuple[int, str]:
    r = subprocess.run(
        [ffmpeg_exe(), "-v", "warning", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sum(1 for ln in r.stdout.splitlines() if ln and not ln.startswith("#")), r.stderr


@pytest.mark.parametrize("bframes", [0, 3])
def test_parts_cover_the_segment_on_frame_boundaries(tmp_path: Path, bframes: int) -> None:
    data = _segment(tmp_path, bframes=bframes)
    parts = cut_parts(data, part_frames=8)
    assert parts is not None
    assert sum(p.frames for p in parts) == 30 and all(0 < p.frames <= 8 for p in parts)
    assert parts[0].offset_bytes == 0 and parts[0].independent
    assert not any(p.independent for p in parts[1:])  # one keyframe per segment
    assert parts[-1].offset_bytes + parts[-1].size_bytes == len(data)
    starts = {r * 188 for r, _, _ in video_frames(data)}
    for a, b in zip(parts, parts[1:]):
        assert b.offset_bytes == a.offset_bytes + a.size_bytes and b.offset_bytes in starts
    if bframes == 0:
        assert [p.frames for p in parts] == [8, 8, 8, 6]
    # every frame before a cut is shown before every frame after it
    pts = [p for _, p, _ in video_frames(data)]
    k = 0
    for p in parts[:-1]:
        k += p.frames
        assert max(pts[:k]) < min(pts[k:])


@pytest.mark.parametrize("bframes", [0, 3])
@pytest.mark.parametrize("carry_audio", [True, False])
def test_shortened_segment_is_clean(tmp_path: Path, bframes: int, carry_audio: bool) -> None:
    data = _segment(tmp_path, bframes=bframes)
    parts = cut_parts(data, part_frames=8)
    short, kept = shorten(data, parts, 2, carry_audio=carry_audio)
    assert kept[:1] == parts[:1] and len(kept) == 2
    assert short[: kept[1].offset_bytes] == data[: kept[1].offset_bytes]  # published bytes unchanged
    assert len(short) == kept[1].offset_bytes + kept[1].size_bytes
    path = tmp_path / "short.ts"
    path.write_bytes(short)
    n, stderr = _decoded_frames(path)
    assert n == parts[0].frames + parts[1].frames
    if carry_audio:  # with its audio, the shorter segment is a clean file on its own
        assert not stderr.strip(), stderr
        r = subprocess.run(
            [ffmpeg_exe(), "-v", "warning", "-i", str(path), "-map", "0:a", "-f", "null", "-"],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_malformed_is_refused_not_cut() -> None:
    # a packet that is no program at all, and bytes that are not whole packets
    with pytest.raises(MediaError, match="adaptation_field_control"):
        cut_parts(b"\x47" + b"\x00" * 187, part_frames=8)
    with pytest.raises(MediaError, match="not a whole number of TS packets"):
        cut_parts(b"\x47" * 100, part_frames=8)

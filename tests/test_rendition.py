"""The rendered folder's contract: typed manifest, its reading of older manifests, atomic writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from avatarrender.errors import MediaError
from avatarrender.rendition import (
    MANIFEST_FORMAT,
    AudioRendition,
    Loudness,
    Manifest,
    MediaSegmentInfo,
    SubtitleRendition,
    atomic_write,
    parse_manifest,
    partial_path,
    read_manifest,
    read_rendered,
    write_rendition,
)


def _manifest(folder: Path, **kw) -> Manifest:
    fps = kw.pop("fps", Fraction(30000, 1001))
    segs = tuple(
        MediaSegmentInfo(
            index=i,
            uri=f"seg_{i:05d}.ts",
            frames=30,
            duration_s=Fraction(30) / fps,
            size_bytes=188 * (i + 1),
            sha256="ab" * 32,
            path=folder / f"seg_{i:05d}.ts",
        )
        for i in range(3)
    )
    return Manifest(
        complete=True,
        width=64,
        height=36,
        fps=fps,
        segments=segs,
        planned_segments=3,
        spec_hash="h",
        source="seg.yaml",
        duration_s=Fraction(90) / fps,
        frame_count=90,
        created_at="2027-01-15T08:00:00.000Z",
        render={"wall_s": 1.5},
        **kw,
    )


def test_manifest_round_trips_through_its_folder(tmp_path: Path) -> None:
    man = _manifest(tmp_path)
    write_rendition(tmp_path, man)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["format"] == MANIFEST_FORMAT and doc["fps"] == "30000/1001"
    assert "loudness" not in doc and "subtitles" not in doc and "audio" not in doc
    back = read_manifest(tmp_path)
    assert back == man
    assert read_rendered(tmp_path).fps == Fraction(30000, 1001)
    playlist = (tmp_path / "index.m3u8").read_text()
    assert "#EXTINF:1.00100," in playlist and playlist.endswith("#EXT-X-ENDLIST\n")
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_optional_renditions_and_loudness_round_trip(tmp_path: Path) -> None:
    man = _manifest(
        tmp_path,
        loudness=Loudness(integrated_lufs=-16.0, true_peak_dbtp=-1.5),
        subtitles=(SubtitleRendition(uri="en.m3u8", language="en", name="English"),),
        audio=(AudioRendition(uri="pt.m3u8", language="pt", name="Português"),),
    )
    back = parse_manifest(json.loads(json.dumps(man.to_json())), tmp_path)
    assert back == man


def test_old_manifest_without_fps_reads_as_30(tmp_path: Path) -> None:
    doc = {
        "format": MANIFEST_FORMAT,
        "complete": False,
        "width": 64,
        "height": 36,
        "planned_segments": 4,
        "segments": [
            {"uri": "a.ts", "frames": 30, "bytes": 188, "sha256": "AB" * 32},
            {"uri": "b.ts", "duration_s": 0.5, "bytes": 188, "sha256": "cd" * 32},
        ],
    }
    man = parse_manifest(doc, tmp_path)
    assert man.fps == 30
    assert [s.duration_s for s in man.segments] == [Fraction(1), Fraction(1, 2)]
    assert man.segments[0].sha256 == "ab" * 32 and man.segments[1].frames is None


@pytest.mark.parametrize(
    "change,field",
    [
        ({"fps": "0/1"}, "fps"),
        ({"fps": "fast"}, "fps"),
        ({"format": "other/1"}, "format"),
        ({"segments": [{"uri": "../x.ts", "frames": 1, "bytes": 1, "sha256": ""}]}, "segments[0].uri"),
        ({"complete": True, "planned_segments": 2}, "segments"),
    ],
)
def test_bad_manifest_names_the_field(tmp_path: Path, change: dict, field: str) -> None:
    doc = {
        "format": MANIFEST_FORMAT,
        "complete": False,
        "width": 64,
        "height": 36,
        "segments": [{"uri": "a.ts", "frames": 30, "bytes": 188, "sha256": "ab"}],
        **change,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(MediaError) as err:
        read_rendered(tmp_path)
    assert err.value.field == field and str(tmp_path / "manifest.json") in str(err.value)
    assert read_manifest(tmp_path) is None  # the renderer simply renders such a folder again


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]  # fails inside the write
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_partial_names() -> None:
    assert partial_path(Path("/a/show")) == Path("/a/show.partial")
    assert partial_path(Path("/spool/show"), hidden=True) == Path("/spool/.show.partial")


def _pes_layout(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(row, PTS) of every video PES start and every audio PES start, as the playout reads them."""
    from avatarrender.playout.mpegts import get_ts, packets, pes_starts

    a = packets(data)
    video, audio = [], []
    for st in pes_starts(a):
        (video if st.video else audio).append((st.row, get_ts(a[st.row], st.pts_at)))
    return video, audio


def test_audio_moves_next_to_the_video_of_its_time(tmp_path: Path) -> None:
    """The muxer writes a PES of quiet AAC (a dozen frames, 0.26 s) after the video of its time;
    audio_with_video gives each AAC frame a PES of its own, before the first video frame presented
    at or after it, so an LL-HLS part cut before a video frame holds the audio of its time and a
    join can drop a single frame. Continuity counters stay valid and every decoded video frame and
    audio sample is unchanged."""
    import av
    import numpy as np

    from avatarrender.media import ffmpeg_exe
    from avatarrender.playout.mpegts import inspect_segment
    from avatarrender.rendition import audio_with_video
    from media_check import decode_audio, frame_hashes

    src = tmp_path / "muxed.ts"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=30:d=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=48000:d=2,volume=0.001",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-bf",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "24k",
            "-pes_payload_size",
            "0",
            "-f",
            "mpegts",
            str(src),
        ],
        check=True,
    )
    data = src.read_bytes()
    video, audio = _pes_layout(data)
    late = lambda v, au: [p for r, p in au if any(vp >= p and vr < r for vr, vp in v)]  # noqa: E731
    assert late(video, audio), "the muxer's layout: some audio after the video of its time"
    moved = audio_with_video(data)
    assert len(moved) % 188 == 0 and moved != data
    video2, audio2 = _pes_layout(moved)
    assert late(video2, audio2) == []
    assert [p for _, p in video2] == [p for _, p in video]
    # one AAC frame per PES (the muxer gathered quiet ones into 170-byte PES): every frame's own
    # PTS, 1920 ticks apart, covering what the gathered PES did
    with av.open(str(src)) as c:
        aac = [(int(pk.pts), bytes(pk)) for pk in c.demux(audio=0) if pk.pts is not None]
    assert len(audio2) == len(aac) > len(audio)
    assert [p for _, p in audio2] == [p for p, _ in aac]
    inspect_segment(moved, "moved.ts", frame_90k=Fraction(3000))  # counters, PES lengths, program
    out = tmp_path / "moved.ts"
    out.write_bytes(moved)
    assert frame_hashes(out) == frame_hashes(src)
    assert np.array_equal(decode_audio(out), decode_audio(src))
    with av.open(str(out)) as c:  # and ffmpeg reads it without a complaint
        assert sum(1 for _ in c.decode(video=0)) == 60


def test_atomic_write_through_links_devices_and_not_onto_folders(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    atomic_write(link, "new")  # the file the link names is replaced; the link stays a link
    assert link.is_symlink() and target.read_text() == "new"
    null = Path(os.devnull)
    atomic_write(null, "x")  # written through, never replaced by a file (as root, it could be)
    assert stat.S_ISCHR(null.stat().st_mode)
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_atomic_write_to_this_process_stdout_appends(tmp_path: Path) -> None:
    # -o /dev/stdout with stdout a file opened by '>>': what was in it stays (the link's target
    # was replaced whole)
    out = tmp_path / "log.txt"
    out.write_text("first\n")
    code = "from avatarrender.files import atomic_write; atomic_write('/dev/stdout', 'second\\n')"
    with open(out, "a") as fh:
        subprocess.run([sys.executable, "-c", code], stdout=fh, check=True)
    assert out.read_text() == "first\nsecond\n"

"""The rendered folder's contract: typed manifest, its reading of older manifests, atomic writes."""
from __future__ import annotations

import json
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
    segs = tuple(MediaSegmentInfo(index=i, uri=f"seg_{i:05d}.ts", frames=30,
                                  duration_s=Fraction(30) / fps, size_bytes=188 * (i + 1),
                                  sha256="ab" * 32, path=folder / f"seg_{i:05d}.ts")
                 for i in range(3))
    return Manifest(complete=True, width=64, height=36, fps=fps, segments=segs, planned_segments=3,
                    spec_hash="h", source="seg.yaml", duration_s=Fraction(90) / fps, frame_count=90,
                    created_at="2027-01-15T08:00:00.000Z", render={"wall_s": 1.5}, **kw)


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
    man = _manifest(tmp_path, loudness=Loudness(integrated_lufs=-16.0, true_peak_dbtp=-1.5),
                    subtitles=(SubtitleRendition(uri="en.m3u8", language="en", name="English"),),
                    audio=(AudioRendition(uri="pt.m3u8", language="pt", name="Português"),))
    back = parse_manifest(json.loads(json.dumps(man.to_json())), tmp_path)
    assert back == man


def test_old_manifest_without_fps_reads_as_30(tmp_path: Path) -> None:
    doc = {"format": MANIFEST_FORMAT, "complete": False, "width": 64, "height": 36,
           "planned_segments": 4,
           "segments": [{"uri": "a.ts", "frames": 30, "bytes": 188, "sha256": "AB" * 32},
                        {"uri": "b.ts", "duration_s": 0.5, "bytes": 188, "sha256": "cd" * 32}]}
    man = parse_manifest(doc, tmp_path)
    assert man.fps == 30
    assert [s.duration_s for s in man.segments] == [Fraction(1), Fraction(1, 2)]
    assert man.segments[0].sha256 == "ab" * 32 and man.segments[1].frames is None


@pytest.mark.parametrize("change,field", [
    ({"fps": "0/1"}, "fps"),
    ({"fps": "fast"}, "fps"),
    ({"format": "other/1"}, "format"),
    ({"segments": [{"uri": "../x.ts", "frames": 1, "bytes": 1, "sha256": ""}]}, "segments[0].uri"),
    ({"complete": True, "planned_segments": 2}, "segments"),
])
def test_bad_manifest_names_the_field(tmp_path: Path, change: dict, field: str) -> None:
    doc = {"format": MANIFEST_FORMAT, "complete": False, "width": 64, "height": 36,
           "segments": [{"uri": "a.ts", "frames": 30, "bytes": 188, "sha256": "ab"}], **change}
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

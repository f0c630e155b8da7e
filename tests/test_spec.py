"""segment.yaml validation: good specs resolve, bad ones fail with file + field, exit 2, no output."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from avatarrender.errors import AssetNotFoundError, MediaError, SpecError
from avatarrender.spec import load_spec, parse_cues

from conftest import run_cli


def _edit(yml: Path, fn) -> Path:
    doc = yaml.safe_load(yml.read_text())
    fn(doc)
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return yml


def test_tiny_spec_resolves(tiny_segment: Path):
    spec = load_spec(tiny_segment)
    assert spec.output.width == 320 and spec.output.height == 180
    assert spec.output.fps == Fraction(30)
    assert spec.frame_count == 120  # 4 s of speech
    assert spec.output.frames_per_segment == 30
    assert spec.scene.background.is_absolute() and spec.scene.background.is_file()
    assert len(spec.cues) == 2 and spec.clip_durations_s[0] == pytest.approx(2.0, abs=0.05)
    # the hash follows content: touching an asset's bytes changes it
    before = spec.spec_hash
    (tiny_segment.parent / "assets" / "speech.wav").open("ab").write(b"\0\0")
    assert load_spec(tiny_segment).spec_hash != before


@pytest.mark.parametrize(
    "preset,size,fps",
    [("1080p30", (1920, 1080), 30), ("720p30", (1280, 720), 30), ("720p15", (1280, 720), 15)],
)
def test_presets(tiny_segment: Path, preset, size, fps):
    # the tiny assets are 320x180, so only the preset's fields other than size are checked here
    doc = yaml.safe_load(tiny_segment.read_text())
    doc["output"] = {"preset": preset, "width": 320, "height": 180}
    tiny_segment.write_text(yaml.safe_dump(doc))
    spec = load_spec(tiny_segment)
    assert spec.output.fps == fps
    from avatarrender.spec import load_preset

    p = load_preset(preset)
    assert (p["width"], p["height"]) == size


@pytest.mark.parametrize(
    "duration_s,fps,frames",
    [(0.5, 25, 13), (0.5, 15, 8), (0.1, 25, 3), (0.3, 25, 8), (0.49, 25, 12), (2, 30, 60)],
)
def test_frames_in_rounds_half_a_frame_up_at_any_rate(duration_s, fps, frames):
    from avatarrender.timebase import frames_in

    assert frames_in(duration_s, Fraction(fps)) == frames


@pytest.mark.parametrize("fps,frames", [(25, 8), (15, 5)])
def test_a_segment_of_0_3_s_has_its_frames_rounded_half_up(tiny_segment: Path, fps: int, frames: int):
    """duration_s: 0.3 at 25 fps is 7.5 frames: 8 (the YAML's 0.3, not the double a hair below)."""
    doc = yaml.safe_load(tiny_segment.read_text())
    doc["duration_s"] = 0.3
    doc["output"]["fps"] = fps
    doc.pop("captions", None)
    doc.pop("tv", None)
    tiny_segment.write_text(yaml.safe_dump(doc))
    assert load_spec(tiny_segment).frame_count == frames


def test_exact_fps_and_cues():
    assert (
        parse_cues(
            "1\n00:00:01,500 --> 00:00:02,000\nHi <i>there</i>\n\n2\n00:01:00.250 --> 00:01:01.000\nB\n"
        )[0].text
        == "Hi there"
    )
    vtt = parse_cues("WEBVTT\n\nNOTE x\n\n00:01.000 --> 00:02.500 align:start\nHello\nworld\n")
    # a cue's lines stay lines, as players show them
    assert (vtt[0].start_s, vtt[0].end_s, vtt[0].text) == (1.0, 2.5, "Hello\nworld")
    # WebVTT's escapes are the characters they stand for, a tag written with them is text
    vtt = parse_cues("WEBVTT\n\n00:01.000 --> 00:02.000\n<b>&lt;tag&gt;</b> Tom &amp; Pam&nbsp;!\n")
    assert vtt[0].text == "<tag> Tom & Pam\u00a0!"
    # an SRT without the blank lines between cues: every time line starts a cue, the next cue's
    # number is not the text (it was drawn on screen, with the time line, and the cue was lost)
    packed = parse_cues(
        "1\n00:00:00,000 --> 00:00:02,000\nA line\n2\n00:00:02,000 --> 00:00:03,000\nB\ntwo\n"
        "3\n00:00:03,000 --> 00:00:04,000\n42\n"
    )
    assert [(c.start_s, c.end_s, c.text) for c in packed] == [
        (0, 2, "A line"),
        (2, 3, "B\ntwo"),
        (3, 4, "42"),
    ]


def _garbage(path: Path) -> None:
    path.write_bytes(b"not really a file of this type" * 10)


def _song_with_cover(a: Path) -> None:
    """The speech as an AAC song with its cover art (an attached picture: a video stream)."""
    import subprocess

    from avatarrender.media import ffmpeg_exe

    song = a / "song.m4a"
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(a / "speech.wav"), "-i", str(a / "base.png")]
    cmd += ["-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic"]
    subprocess.run([*cmd, str(song)], check=True)
    (a / "clip.mp4").write_bytes(song.read_bytes())


BAD = {
    "missing background": (
        lambda d, a: d["scene"].__setitem__("background", "assets/nope.png"),
        "scene.background",
        AssetNotFoundError,
    ),
    "unreadable image": (lambda d, a: _garbage(a / "base.png"), "character.base", MediaError),
    "unreadable audio": (lambda d, a: _garbage(a / "speech.wav"), "speech.file", MediaError),
    "unreadable clip": (lambda d, a: _garbage(a / "clip.mp4"), "tv.clips[0].file", MediaError),
    "still image as clip": (
        lambda d, a: (a / "clip.mp4").write_bytes((a / "base.png").read_bytes()),
        "tv.clips[0].file",
        MediaError,
    ),
    # validate took its cover art for the picture; the render failed ("gave no frame")
    "song with cover art as clip": (lambda d, a: _song_with_cover(a), "tv.clips[0].file", MediaError),
    "audio file as clip": (
        lambda d, a: (a / "clip.mp4").write_bytes((a / "speech.wav").read_bytes()),
        "tv.clips[0].file",
        MediaError,
    ),
    "character wholly outside the frame": (
        lambda d, a: d["character"].__setitem__("position", [320, 10]),
        "character.position",
        SpecError,
    ),
    "tv outside frame": (
        lambda d, a: d["tv"].__setitem__("screen", [300, 100, 64, 36]),
        "tv.screen",
        SpecError,
    ),
    "odd tv rect": (lambda d, a: d["tv"].__setitem__("screen", [11, 10, 64, 36]), "tv.screen", SpecError),
    "odd size": (lambda d, a: d["output"].__setitem__("width", 321), "output.width", SpecError),
    "unknown preset": (lambda d, a: d["output"].__setitem__("preset", "4k120"), "output.preset", SpecError),
    "caption outside": (
        lambda d, a: d["captions"]["cues"].append({"text": "late", "start_s": 9, "end_s": 10}),
        "captions.cues[2]",
        SpecError,
    ),
    "caption reversed": (
        lambda d, a: d["captions"]["cues"][0].update(end_s=0.1),
        "captions.cues[0]",
        SpecError,
    ),
    "unknown field": (
        lambda d, a: d["character"].__setitem__("mouht_offset", [0, 0]),
        "character.mouht_offset",
        SpecError,
    ),
    "bad colour": (
        lambda d, a: d["captions"]["style"].__setitem__("color", "white"),
        "captions.style.color",
        SpecError,
    ),
    "wrong type": (lambda d, a: d["blink"].__setitem__("seed", "abc"), "blink.seed", SpecError),
    # two subtitle tracks of one name: an invalid master playlist (RFC 8216 4.3.4.1.1)
    "second track named as the first": (
        lambda d, a: (
            (a / "en2.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nHi\n"),
            d["captions"].update(language="en", tracks=[{"file": "assets/en2.vtt", "language": "en"}]),
        ),
        "captions.tracks[0].language",
        SpecError,
    ),
    "unknown mouth": (
        lambda d, a: d["character"]["mouths"].__setitem__("Q", "assets/mouth_X.png"),
        "character.mouths",
        SpecError,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_field(tiny_segment: Path, case: str):
    change, field, exc_type = BAD[case]
    _edit(tiny_segment, lambda d: change(d, tiny_segment.parent / "assets"))
    with pytest.raises(exc_type) as info:
        load_spec(tiny_segment)
    assert info.value.field == field
    assert str(tiny_segment) in str(info.value)


def test_background_of_the_wrong_shape_is_refused_from_its_header(tiny_segment: Path, monkeypatch):
    """An 8000x6000 photo as the background of a 16:9 output: refused before its 48 M pixels are
    decoded (seconds of a user's time), still naming the file and the field."""
    from PIL import Image

    from avatarrender import images

    Image.new("RGB", (400, 300), (10, 20, 30)).save(tiny_segment.parent / "assets" / "photo.png")
    _edit(tiny_segment, lambda d: d["scene"].__setitem__("background", "assets/photo.png"))

    def no_decoding(path, *a, **kw):
        raise AssertionError(f"{path} decoded")

    monkeypatch.setattr(images, "_decoded", no_decoding)
    with pytest.raises(SpecError, match="400x300, not the shape") as info:
        load_spec(tiny_segment)
    assert info.value.field == "scene.background"


def test_an_animated_image_warns_that_its_first_frame_shows(tiny_segment: Path):
    from PIL import Image

    assets = tiny_segment.parent / "assets"
    still = Image.open(assets / "mouth_X.png").convert("RGBA")
    still.save(assets / "talk.gif", save_all=True, append_images=[still.rotate(20)], duration=100)
    _edit(tiny_segment, lambda d: d["character"]["mouths"].__setitem__("A", "assets/talk.gif"))
    from avatarrender import SpecWarning

    with pytest.warns(SpecWarning, match="character.mouths.A: talk.gif is animated") as said:
        spec = load_spec(tiny_segment)  # to a script too, not only in spec.warnings
    assert str(tiny_segment) in str(said[0].message)
    assert said[0].filename == __file__, said[0].filename  # the script's line, not ours
    assert [w for w in spec.warnings if w.startswith("character.mouths.A: talk.gif is animated")], (
        spec.warnings
    )
    assert not [w for w in spec.warnings if "animated" in w and "talk.gif" not in w]


def test_malformed_yaml(tiny_segment: Path):
    tiny_segment.write_text("scene:\n  background: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert "malformed YAML" in str(info.value) and str(tiny_segment) in str(info.value)


@pytest.mark.parametrize("case", ["unreadable clip", "caption outside", "unknown preset"])
def test_cli_bad_input_exit_2_and_nothing_written(tiny_segment: Path, tmp_path: Path, case: str):
    change, field, _ = BAD[case]
    _edit(tiny_segment, lambda d: change(d, tiny_segment.parent / "assets"))
    out = tmp_path / "out"
    for args in (["validate", str(tiny_segment)], ["render", str(tiny_segment), "-o", str(out), "-q"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert str(tiny_segment) in lines[0] and field in lines[0]
    assert not out.exists() and not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*"))


def test_cli_validate_ok_writes_nothing(tiny_segment: Path):
    before = sorted(p.name for p in tiny_segment.parent.rglob("*"))
    proc = run_cli("validate", str(tiny_segment))
    assert proc.returncode == 0, proc.stderr
    assert "120 frames" in proc.stdout and "4 media segments" in proc.stdout
    assert sorted(p.name for p in tiny_segment.parent.rglob("*")) == before


def test_bare_off_key_is_a_key_not_false(tiny_segment: Path):
    text = tiny_segment.read_text().replace(
        "  overlay: assets/bezel.png", "  off: assets/room.png\n  overlay: assets/bezel.png"
    )
    tiny_segment.write_text(text)
    spec = load_spec(tiny_segment)
    assert spec.tv.off == (tiny_segment.parent / "assets/room.png").resolve()

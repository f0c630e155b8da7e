"""Bad input and faults: every one gives one clear line naming the file and the field, the
documented exit code, and nothing half-written (issue 14, render and validate)."""

from __future__ import annotations

import inspect
import json
import pickle
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from avatarrender import errors
from avatarrender.errors import AvatarRenderError, SpecError
from avatarrender.spec import load_spec

from conftest import ROOT, run_cli


def _edit(yml: Path, fn) -> Path:
    doc = yaml.safe_load(yml.read_text())
    fn(doc)
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return yml


def _one_line(proc, code: int) -> str:
    assert proc.returncode == code, proc.stderr
    # warnings (one line each, "avatarrender: warning: ...") may come before the error's line
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("avatarrender: warning: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- the error family


def _error_classes() -> list[type]:
    found, todo = [], [AvatarRenderError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def _example(cls: type) -> BaseException:
    params = inspect.signature(cls.__init__).parameters
    if "field" in params:
        return cls("/x/segment.yaml", "tv.clips[0].file", "cannot decode")
    if "stderr" in params:
        return cls("encoder failed", cmd=["ffmpeg", "-i", "x"], stderr="line 1\nline 2")
    return cls("/x/out: something went wrong")


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_survives_pickling(cls):
    # how a worker's error travels to the parent on loky and Dask
    err = _example(cls)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err)
    assert back.__dict__ == err.__dict__
    assert back.exit_code == err.exit_code
    assert isinstance(back, OSError) == isinstance(err, OSError)


def test_error_family_is_listed():
    assert {c.__name__ for c in _error_classes()} >= set(errors.__all__)


# --------------------------------------------------------------------------- spec loading


def test_symlink_loop_in_an_asset_path(tiny_segment: Path):
    a = tiny_segment.parent / "assets"
    (a / "loop1").symlink_to("loop2")
    (a / "loop2").symlink_to("loop1")
    _edit(tiny_segment, lambda d: d["scene"].__setitem__("background", "assets/loop1"))
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "scene.background" and "symlink loop" in str(info.value)
    line = _one_line(run_cli("validate", str(tiny_segment)), 2)
    assert str(tiny_segment) in line and "scene.background" in line


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "0", "-30", "abc", "1/0"])
def test_fps_that_is_not_a_rate(tiny_segment: Path, value: str):
    text = tiny_segment.read_text().replace(
        "  x264_preset: veryfast", f"  x264_preset: veryfast\n  fps: {value}"
    )
    tiny_segment.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "output.fps", str(info.value)


@pytest.mark.parametrize(
    "field,value", [("duration_s", ".inf"), ("duration_s", ".nan"), ("blink.mean_interval_s", ".nan")]
)
def test_inf_and_nan_are_refused_everywhere(tiny_segment: Path, field: str, value: str):
    top, _, sub = field.partition(".")
    doc = yaml.safe_load(tiny_segment.read_text())
    (doc[top] if sub else doc)[sub or top] = "@@"
    tiny_segment.write_text(yaml.safe_dump(doc, sort_keys=False).replace("'@@'", value))
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == field


def test_clip_end_at_infinity_is_refused(tiny_segment: Path):
    text = tiny_segment.read_text().replace("end_s: 3.5", "end_s: .inf")
    tiny_segment.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "tv.clips[0].end_s"


@pytest.mark.parametrize("where", ["top", "nested"])
def test_duplicate_keys_name_the_key_and_line(tiny_segment: Path, where: str):
    lines = tiny_segment.read_text().splitlines()
    if where == "top":
        lines.append("blink: {seed: 9}")
        key, first = "blink", next(i for i, ln in enumerate(lines) if ln.startswith("blink:")) + 1
    else:
        i = next(i for i, ln in enumerate(lines) if ln.startswith("  x264_preset:"))
        lines.insert(i + 1, "  x264_preset: slow")
        key, first = "x264_preset", i + 1
    dup = len(lines) if where == "top" else first + 1
    tiny_segment.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    msg = str(info.value)
    assert f"duplicate key '{key}'" in msg and f"line {dup}" in msg and f"line {first}" in msg, msg


def test_merge_keys_are_not_duplicates(tiny_segment: Path):
    text = tiny_segment.read_text().replace("blink:", "blink_defaults: &b {seed: 1}\nblink:\n  <<: *b", 1)
    tiny_segment.write_text(text)
    with pytest.raises(SpecError) as info:  # an unknown top-level key, not a duplicate
        load_spec(tiny_segment)
    assert info.value.field == "blink_defaults"


@pytest.mark.parametrize(
    "fps,frames_per_segment", [("30000/1001", 30), ("24000/1001", 24), ("60000/1001", 60), ("29.97", 30)]
)
def test_ntsc_rates_work_with_the_default_segment_length(tiny_segment: Path, fps, frames_per_segment):
    _edit(tiny_segment, lambda d: d["output"].__setitem__("fps", fps))
    spec = load_spec(tiny_segment)
    assert spec.output.frames_per_segment == frames_per_segment
    assert spec.output.segment_duration_s * spec.output.fps == frames_per_segment
    assert spec.output.segment_duration_s == Fraction(1001, 1000)


def test_explicit_segment_length_that_is_not_whole_frames_says_what_to_set(tiny_segment: Path):
    _edit(tiny_segment, lambda d: d["output"].update(fps="30000/1001", segment_duration_s=1))
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "output.segment_duration_s"
    assert "1.001 (30 frames)" in str(info.value)


@pytest.mark.parametrize("typo,meant", [("charcter", "character"), ("scene", None)])
def test_top_level_typo_names_the_unknown_key(tiny_segment: Path, typo: str, meant):
    if meant:
        _edit(tiny_segment, lambda d: d.__setitem__(typo, d.pop(meant)))
        with pytest.raises(SpecError) as info:
            load_spec(tiny_segment)
        assert info.value.field == typo and f"did you mean '{meant}'" in str(info.value)
    else:
        _edit(tiny_segment, lambda d: d["scene"].__setitem__("backgorund", d["scene"].pop("background")))
        with pytest.raises(SpecError) as info:
            load_spec(tiny_segment)
        assert info.value.field == "scene.backgorund" and "'background'" in str(info.value)


@pytest.mark.parametrize(
    "pattern",
    [
        "assets/{mouht}_{eyes}.png",
        "assets/{mouth!r}_{eyes:>99999999999}.png",  # a review's: MemoryError, "internal error"
        "assets/{mouth}_{eyes}_{0}.png",
        "assets/{mouth}_{eyes.real}.png",
        "assets/{mouth}_{eyes.png",
    ],
)
def test_states_pattern_that_does_not_format(tiny_segment: Path, pattern: str):
    def change(d):
        ch = d["character"]
        for k in ("base", "mouths", "eyes", "mouth_offset", "eyes_offset"):
            ch.pop(k, None)
        ch["states"] = pattern

    _edit(tiny_segment, change)
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "character.states" and "not a pattern" in str(info.value), info.value


@pytest.mark.parametrize("pattern", ["assets/base.png", "assets/eyes_{eyes}.png"])
def test_states_pattern_without_a_mouth_is_refused(tiny_segment: Path, pattern: str):
    """One image for every mouth is a mistake (the character could not speak), not a scene."""

    def change(d):
        ch = d["character"]
        for k in ("base", "mouths", "eyes", "mouth_offset", "eyes_offset"):
            ch.pop(k, None)
        ch["states"] = pattern

    _edit(tiny_segment, change)
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "character.states" and "{mouth}" in str(info.value)


@pytest.mark.parametrize(
    "field,value",
    [
        ("duration_s", True),
        ("output.crf", False),
        ("captions.style.size_px", True),
        ("tv.screen", [True, 2, 64, 36]),
    ],
)
def test_a_boolean_is_not_a_number(tiny_segment: Path, field: str, value):
    """YAML's true where a number belongs is refused, not read as 1."""

    def change(d):
        *path, last = field.split(".")
        node = d
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value

    _edit(tiny_segment, change)
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field.startswith(field) and "expected a number" in str(info.value), str(info.value)


def test_clip_that_starts_after_the_segment_is_refused(clip_segment: Path):
    def change(d):
        d["tv"]["clips"][0]["start_s"] = 50
        d["tv"]["clips"][0].pop("end_s", None)

    _edit(clip_segment, change)
    with pytest.raises(SpecError) as info:
        load_spec(clip_segment)
    assert info.value.field == "tv.clips[0].start_s" and "never show" in str(info.value)


# --------------------------------------------------------------------------- output paths


def test_output_that_is_a_file_is_refused_and_kept(tiny_segment: Path, tmp_path: Path):
    target = tmp_path / "notes.txt"
    target.write_text("the user's own file\n")
    line = _one_line(run_cli("render", str(tiny_segment), "-o", str(target), "-q"), 2)
    assert str(target) in line and "--force" in line
    assert target.read_text() == "the user's own file\n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["notes.txt", "seg"]


def test_output_that_is_someone_elses_folder_is_refused(tiny_segment: Path, tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("x")
    line = _one_line(run_cli("render", str(tiny_segment), "-o", str(docs), "-q"), 2)
    assert str(docs) in line
    assert [p.name for p in docs.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("where", [".", "assets"])
def test_output_that_holds_the_scene_is_refused_even_with_force(tiny_segment: Path, where: str):
    """-o the scene's own folder (or its assets) with --force would replace the folder whole and
    delete what it renders from: refused before anything is written, the scene untouched."""
    scene = tiny_segment.parent
    before = sorted(str(p.relative_to(scene)) for p in scene.rglob("*"))
    out = (scene / where).resolve()
    line = _one_line(run_cli("render", str(tiny_segment), "-o", str(out), "--force", "-q"), 2)
    assert str(out) in line and "which the render reads" in line, line
    if where == ".":
        assert str(tiny_segment) in line  # the spec itself is named first
    after = sorted(str(p.relative_to(scene)) for p in scene.rglob("*") if not p.name.endswith(".lock"))
    assert after == before


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only file system (the tests run as root, which permission bits do not stop)."""
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("sub", ["out", "deeper/out"])
def test_read_only_output_folder_is_one_line(tiny_segment: Path, read_only_dir: Path, sub: str):
    line = _one_line(run_cli("render", str(tiny_segment), "-o", str(read_only_dir / sub), "-q"), 1)
    assert "Read-only file system" in line and str(read_only_dir) in line


# --------------------------------------------------------------------------- image modes


def _grey_image(mode: str, fmt: str, level: int, size=(320, 180)):
    """An image of ``mode`` whose every pixel means the 8-bit grey ``level`` (fully opaque)."""
    import numpy as np
    from PIL import Image

    w, h = size
    if mode in ("I;16", "I"):
        return Image.fromarray(np.full((h, w), level * 257, np.uint16 if mode == "I;16" else np.int32))
    if mode == "F":
        return Image.fromarray(np.full((h, w), level / 255.0, np.float32), "F")
    if mode == "1":
        return Image.new("1", size, 1 if level > 127 else 0)
    if mode == "P":
        im = Image.new("P", size, 1)
        im.putpalette([255, 0, 0] + [level] * 3 + [0, 0, 0] * 254)
        im.info["transparency"] = 0  # index 0 transparent, the one used (1) opaque
        return im
    if mode == "CMYK":
        return Image.new("CMYK", size, (0, 0, 0, 255 - level))
    return Image.new("RGBA", size, (level, level, level, 255)).convert(mode)


IMAGE_MODES = [
    ("1", "png"),
    ("L", "png"),
    ("LA", "png"),
    ("P", "png"),
    ("I;16", "png"),
    ("I", "tiff"),
    ("RGB", "png"),
    ("RGBA", "png"),
    ("L", "jpeg"),
    ("RGB", "jpeg"),
    ("CMYK", "jpeg"),
    ("F", "tiff"),
]


@pytest.mark.parametrize("mode,fmt", IMAGE_MODES, ids=lambda v: str(v))
def test_every_image_mode_composites_as_its_grey(tiny_segment: Path, mode: str, fmt: str):
    import numpy as np
    from PIL import Image
    from avatarrender.scene import Scene

    level = 255 if mode == "1" else 100
    path = tiny_segment.parent / "assets" / f"bg.{fmt}"
    _grey_image(mode, fmt, level).save(path, format=fmt.upper())
    with Image.open(path) as im:  # what the user has: check the file kept its mode
        saved_mode = im.mode
    assert saved_mode == mode, saved_mode
    _edit(
        tiny_segment,
        lambda d: (
            d["scene"].__setitem__("background", f"assets/bg.{fmt}"),
            d["scene"].__setitem__("layers", []),
        ),
    )
    scene = Scene(load_spec(tiny_segment))
    px = np.asarray(scene.base_rgba)[2:20, 2:20]  # a corner with no sprite, TV or caption
    assert abs(int(np.median(px[..., :3])) - level) <= 3, (mode, np.median(px[..., :3]))
    assert (px[..., 3] == 255).all()


def test_sixteen_bit_grey_keeps_its_gradient(tiny_segment: Path):
    import numpy as np
    from PIL import Image
    from avatarrender.images import open_rgba

    ramp = np.tile(np.linspace(0, 65535, 320).astype(np.uint16), (180, 1))
    path = tiny_segment.parent / "assets" / "ramp.png"
    Image.fromarray(ramp).save(path)
    rgb = np.asarray(open_rgba(path))[0, :, 0].astype(int)
    assert rgb[0] == 0 and rgb[-1] == 255 and np.all(np.diff(rgb) >= 0)
    assert abs(rgb[160] - 128) <= 2  # not clipped to white


def test_jpeg_exif_orientation_is_applied(tmp_path: Path):
    from PIL import Image
    from avatarrender.images import open_rgba

    im = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "phone.jpg", exif=exif)
    assert open_rgba(tmp_path / "phone.jpg").size == (20, 40)


def test_png_exif_orientation_before_or_after_the_pixels(tmp_path: Path):
    """A PNG's eXIf chunk may follow its pixel data: the header still tells the upright size
    (without decoding the pixels, as PIL does to look for it), the same size the decode gives."""
    import io
    import struct
    import zlib

    from PIL import Image
    from avatarrender.images import header, open_rgba

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(buf, "PNG", exif=exif)
    data = buf.getvalue()

    def chunks_of(data: bytes) -> list[bytes]:  # a PNG's chunks, whole (length, kind, data, CRC)
        out, at = [], 8
        while at < len(data):
            (length,) = struct.unpack(">I", data[at : at + 4])
            out.append(data[at : at + 12 + length])
            at += 12 + length
        return out

    chunks = chunks_of(data)
    kinds = [c[4:8] for c in chunks]
    assert kinds.index(b"eXIf") < kinds.index(b"IDAT")
    late = [c for c in chunks if c[4:8] != b"eXIf"]
    late.insert(len(late) - 1, chunks[kinds.index(b"eXIf")])  # just before IEND
    plain = [c for c in chunks if c[4:8] != b"eXIf"]
    for name, parts in (("early", chunks), ("late", late), ("plain", plain)):
        (tmp_path / f"{name}.png").write_bytes(data[:8] + b"".join(parts))
    assert zlib.crc32(late[-2][4:-4]) == struct.unpack(">I", late[-2][-4:])[0]  # moved whole
    # PIL also reads an orientation from XMP and from ImageMagick's raw profile, before or after
    # the pixels: the header must agree with the decode there too (a review: XMP after the
    # pixels was missed, and a rotated background refused)
    from PIL.PngImagePlugin import PngInfo

    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    raw = exif.tobytes()
    for name, key, text in (
        ("xmp", "XML:com.adobe.xmp", xmp),
        ("raw", "Raw profile type exif", f"\nexif\n{len(raw):8d}\n{raw.hex()}\n"),
    ):
        info = PngInfo()
        info.add_itxt(key, text) if name == "xmp" else info.add_text(key, text)
        buf = io.BytesIO()
        Image.new("RGB", (40, 20), (200, 30, 30)).save(buf, "PNG", pnginfo=info)
        data2 = buf.getvalue()
        chunks2 = chunks_of(data2)
        text_at = next(i for i, c in enumerate(chunks2) if c[4:8] in (b"iTXt", b"tEXt"))
        after = [c for i, c in enumerate(chunks2) if i != text_at]
        after.insert(len(after) - 1, chunks2[text_at])
        (tmp_path / f"{name}-early.png").write_bytes(data2)
        (tmp_path / f"{name}-late.png").write_bytes(data2[:8] + b"".join(after))
    for name, size in (
        ("early", (20, 40)),
        ("late", (20, 40)),
        ("plain", (40, 20)),
        ("xmp-early", (20, 40)),
        ("xmp-late", (20, 40)),
        ("raw-early", (20, 40)),
        ("raw-late", (20, 40)),
    ):
        path = tmp_path / f"{name}.png"
        assert open_rgba(path).size == size, name
        assert header(path) == (size, 1), name


def test_palette_transparency_is_kept(tmp_path: Path):
    import numpy as np
    from avatarrender.images import open_rgba

    im = _grey_image("P", "png", 100, size=(8, 8))
    im.putpixel((0, 0), 0)
    im.save(tmp_path / "p.png", transparency=0)
    a = np.asarray(open_rgba(tmp_path / "p.png"))
    assert a[0, 0, 3] == 0 and a[1, 1, 3] == 255 and a[1, 1, 0] == 100


# --------------------------------------------------------------------------- mouth track

BAD_TRACKS = {
    "not json": "{not json",
    "no cues key": '{"metadata": {}}',
    "cues not a list": '{"mouthCues": 3}',
    "cue not a mapping": '{"mouthCues": ["A"]}',
    "cue without value": '{"mouthCues": [{"start": 0.0}]}',
    "unknown shape": '{"mouthCues": [{"start": 0.0, "end": 1.0, "value": "Q"}]}',
    "time not a number": "zero\tA\n",
    "negative time": "-1.0\tA\n",
    "nan time": "nan\tA\n",
    "empty": "",
    "binary": b"\xff\xfe\x00garbage",
}


@pytest.mark.parametrize("case", sorted(BAD_TRACKS))
def test_bad_mouth_track_names_the_field_before_any_output(tiny_segment: Path, tmp_path: Path, case: str):
    track = tiny_segment.parent / "assets" / "mouth.json"
    data = BAD_TRACKS[case]
    track.write_bytes(data if isinstance(data, bytes) else data.encode())
    _edit(tiny_segment, lambda d: d["speech"].__setitem__("mouth_track", "assets/mouth.json"))
    with pytest.raises(SpecError) as info:
        load_spec(tiny_segment)
    assert info.value.field == "speech.mouth_track" and str(track) in str(info.value)
    if case in ("unknown shape", "negative time"):
        out = tmp_path / "out"
        for args in (["validate", str(tiny_segment)], ["render", str(tiny_segment), "-o", str(out), "-q"]):
            line = _one_line(run_cli(*args), 2)
            assert "speech.mouth_track" in line and str(tiny_segment) in line
        assert not [p for p in tmp_path.iterdir() if p.name != "seg"]


def test_good_mouth_track_is_used(tiny_segment: Path):
    from avatarrender.analysis import analyse

    track = tiny_segment.parent / "assets" / "mouth.tsv"
    track.write_text("0.00\tX\n1.00\tD\n2.00\tX\n")
    _edit(tiny_segment, lambda d: d["speech"].__setitem__("mouth_track", "assets/mouth.tsv"))
    tl = analyse(load_spec(tiny_segment))
    assert set(tl.mouth[30:60].tolist()) == {"XABCDEFGH".index("D")}


def test_json_mouth_track_ends_where_its_cues_end(tmp_path: Path):
    """A Rhubarb JSON cue lasts until its end: in a gap, and after the last cue, the mouth rests
    (it held the last shape open to the segment's end)."""
    from avatarrender.lipsync import read_track

    track = tmp_path / "mouth.json"
    track.write_text(
        json.dumps(
            {
                "mouthCues": [
                    {"start": 0.0, "end": 0.5, "value": "D"},
                    {"start": 1.0, "end": 1.5, "value": "C"},  # a gap before it
                    {"start": 1.5, "end": 2.0, "value": "F"},
                ]
            }
        )
    )
    got = "".join("XABCDEFGH"[i] for i in read_track(track, fps=Fraction(10), n_frames=30))
    assert got == "DDDDD" + "XXXXX" + "CCCCC" + "FFFFF" + "X" * 10
    track.write_text(json.dumps({"mouthCues": [{"start": 1.0, "end": 0.5, "value": "D"}]}))
    with pytest.raises(SpecError, match="before its start"):
        read_track(track, fps=Fraction(10), n_frames=30)


# --------------------------------------------------------------------------- broken clips


def _cut_clip(a: Path, *, keep: float = 0.6) -> Path:
    """``clip.mp4`` with its index first (as a phone or a web download has it), cut at ``keep``
    of its bytes: it opens and probes, then breaks partway through."""
    import subprocess
    from avatarrender.media import ffmpeg_exe
    from conftest import make_clip

    make_clip(a / "whole.mp4", duration_s=4.0)
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-i",
            str(a / "whole.mp4"),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(a / "fast.mp4"),
        ],
        check=True,
    )
    data = (a / "fast.mp4").read_bytes()
    (a / "clip.mp4").write_bytes(data[: int(len(data) * keep)])
    return a / "clip.mp4"


def test_clip_that_breaks_partway_fails_validate_and_render(tiny_segment: Path, tmp_path: Path):
    _cut_clip(tiny_segment.parent / "assets")
    _edit(tiny_segment, lambda d: d["tv"]["clips"][0].update(start_s=0.0, end_s=3.9))
    out = tmp_path / "out"
    for args in (["validate", str(tiny_segment)], ["render", str(tiny_segment), "-o", str(out), "-q"]):
        line = _one_line(run_cli(*args), 2)
        assert "tv.clips[0].file" in line and "breaks at" in line, line
    assert not [p for p in tmp_path.iterdir() if p.name != "seg"]


def test_clip_cut_between_packets_is_refused_where_shown_and_passes_where_not(
    tiny_segment: Path, tmp_path: Path
):
    """A clip whose file ends on a whole packet (its last packet intact, the rest missing) is
    refused at the time it ends, as its index promises more; a segment that shows only the part
    before the cut validates (the check reads the part shown, not the whole file)."""
    import av

    a = tiny_segment.parent / "assets"
    _cut_clip(a, keep=1.0)  # whole, index first
    with av.open(str(a / "clip.mp4")) as c:
        starts = [p.pos for p in c.demux(c.streams.video[0]) if p.size]
    data = (a / "clip.mp4").read_bytes()
    (a / "clip.mp4").write_bytes(data[: starts[len(starts) // 2]])  # up to a packet's start
    _edit(tiny_segment, lambda d: d["tv"]["clips"][0].update(start_s=0.0, end_s=3.9, clip_start_s=0.0))
    line = _one_line(run_cli("validate", str(tiny_segment)), 2)
    assert "tv.clips[0].file" in line and "breaks at about 1.9" in line and "index says 4.00 s" in line, line
    _edit(tiny_segment, lambda d: d["tv"]["clips"][0].update(start_s=0.0, end_s=1.5, clip_start_s=0.0))
    assert run_cli("validate", str(tiny_segment)).returncode == 0
    # shown from 0.5 s for 1.5 s: ends before the cut too
    _edit(tiny_segment, lambda d: d["tv"]["clips"][0].update(start_s=1.0, end_s=2.5, clip_start_s=0.5))
    assert run_cli("validate", str(tiny_segment)).returncode == 0


def test_font_that_is_not_a_font_fails_validate(tiny_segment: Path):
    fake = tiny_segment.parent / "assets" / "font.ttf"
    fake.write_text("this is not a font\n")
    _edit(tiny_segment, lambda d: d["captions"]["style"].__setitem__("font", "assets/font.ttf"))
    line = _one_line(run_cli("validate", str(tiny_segment)), 2)
    assert "captions.style.font" in line and str(tiny_segment) in line


def _error_in_a_worker(yml: Path, out: Path, **kw) -> BaseException:
    """Render a spec whose clip was broken after it was checked: the chunks' workers fail."""
    from avatarrender.render import render
    from conftest import make_clip

    make_clip(yml.parent / "assets" / "clip.mp4", duration_s=4.0)
    spec = load_spec(yml)
    # every chunk meets the same fault (with a clip cut partway, which chunk fails first, and
    # so which of two messages comes, depends on timing)
    (yml.parent / "assets" / "clip.mp4").write_bytes(bytes(range(256)) * 64)
    with pytest.raises(AvatarRenderError) as info:
        render(spec, out, **kw)
    return info.value


@pytest.fixture
def clip_segment(tmp_path: Path) -> Path:
    from conftest import make_tiny_segment

    yml = make_tiny_segment(tmp_path / "seg", width=160, height=90, speech_s=4.0)
    _edit(yml, lambda d: d["tv"]["clips"][0].update(start_s=0.0, end_s=3.9))
    return yml


def test_worker_errors_are_the_in_process_error_on_loky_and_dask(clip_segment: Path, tmp_path: Path):
    import distributed
    from joblib import parallel_config
    from avatarrender.errors import MediaError

    here = _error_in_a_worker(clip_segment, tmp_path / "a", jobs=1, chunk_segments=1)
    loky = _error_in_a_worker(clip_segment, tmp_path / "b", jobs=2, chunk_segments=1)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        with parallel_config(backend="dask"):
            dask = _error_in_a_worker(clip_segment, tmp_path / "c", jobs=2, chunk_segments=1)
    for err in (here, loky, dask):
        assert type(err) is MediaError, repr(err)
        assert (
            "segment.yaml: tv.clips[0].file: " in str(err) and "clip.mp4" in str(err) and "\n" not in str(err)
        )
    assert str(loky) == str(here) and str(dask) == str(here)


# --------------------------------------------------------------------------- signals


@pytest.fixture(scope="module")
def slow_render(tmp_path_factory) -> tuple[Path, list[str]]:
    """A render that takes seconds (720p, x264 medium, 10 s), with the frame hashes of a
    render that was not interrupted."""
    from avatarrender.render import render
    from conftest import make_slow_segment
    from media_check import frame_hashes

    yml = make_slow_segment(tmp_path_factory.mktemp("slow") / "seg", speech_s=10.0)
    out = tmp_path_factory.mktemp("slowref") / "out"
    render(load_spec(yml), out, jobs=2, chunk_segments=1)
    return yml, frame_hashes(out / "index.m3u8")


def _published(part: Path) -> int:
    import json

    try:
        return len(json.loads((part / "manifest.json").read_text())["segments"])
    except (OSError, ValueError, KeyError):
        return 0


def _tree(pid: int) -> list[int]:
    from avatarrender.interrupt import _children_of

    return _children_of(pid)


def _running(pid: int) -> bool:
    from avatarrender.interrupt import _alive

    return _alive(pid)


# Moments of a render, told apart by what its partial folder holds (no sleeps)
MOMENTS = {
    "analysis": lambda part: (part / ".work").is_dir() and not list((part / ".work").glob("*.tmp*")),
    "first chunk": lambda part: bool(list((part / ".work").glob("*.tmp*"))) and _published(part) == 0,
    "mid-render": lambda part: _published(part) >= 4,
    "publishing": lambda part: _published(part) >= 8,
}


_EXE = str(Path(sys.executable).with_name("avatarrender"))


def _render_until(yml: Path, out: Path, moment: str, **popen) -> tuple[subprocess.Popen, Path]:
    """A render of ``yml`` started in its own process group (as a terminal's foreground job,
    SIGINT not inherited ignored), returned at ``moment`` (:data:`MOMENTS`) or its end."""
    import signal
    import time
    from avatarrender.render import partial_path

    part = partial_path(out)
    proc = subprocess.Popen(
        [_EXE, "render", str(yml), "-o", str(out), "-q", "--jobs", "2", "--chunk-segments", "1"],
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )
    end = time.monotonic() + 300
    while not MOMENTS[moment](part) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    return proc, part


def _resume(yml: Path, out: Path, ref) -> dict:
    """Render ``yml`` into ``out`` again: it must finish with the frames ``ref`` hashes to.
    Returns its ``--json`` summary."""
    from media_check import frame_hashes

    res = subprocess.run(
        [_EXE, "render", str(yml), "-o", str(out), "--json", "--chunk-segments", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert frame_hashes(out / "index.m3u8") == ref
    return json.loads(res.stdout)


def test_a_stop_signal_sets_the_stop_event_even_inside_its_wait():
    """The playout's and the service's handlers ran ``stop.set()`` in the main thread, which
    may be inside ``stop.wait()`` holding the event's lock: the playout hung for good on a
    SIGTERM (a review's py-bt: wait -> handler -> set -> the same lock). ``set_soon`` does not
    wait for the lock; the event is set once the main thread lets go of it."""
    import threading
    import time

    from avatarrender import interrupt

    stop = threading.Event()
    with stop._cond:  # as inside Event.wait, where a signal handler may run
        began = time.monotonic()
        interrupt.set_soon(stop)
        assert time.monotonic() - began < 1 and not stop.is_set()
    assert stop.wait(5)
    stop.clear()
    with threading._active_limbo_lock:  # as while the main thread starts or lists threads
        interrupt.set_soon(stop)
    assert stop.wait(5)
    import ast
    from pathlib import Path

    import avatarrender

    root = Path(avatarrender.__file__).parent / "_cli"
    for name in ("playout.py", "serve.py"):  # no handler sets an event itself
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.FunctionDef) and node.args.args[:1] and node.args.args[0].arg == "signum":
                calls = [
                    c.func.attr
                    for c in ast.walk(node)
                    if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                ]
                assert "set" not in calls and "set_soon" in calls, (name, node.name, calls)


# every moment and every signal, not each with each: one handler serves all three signals (the
# 12 pairs took 2.5 minutes of a loaded run of the suite, a tenth of it)
@pytest.mark.parametrize(
    "signame,code,moment",
    [
        ("SIGINT", 130, "analysis"),
        ("SIGTERM", 143, "first chunk"),
        ("SIGHUP", 129, "mid-render"),  # (SIGTERM mid-render: the same handler; 15 s)
        ("SIGTERM", 143, "publishing"),
    ],
)
def test_stop_signal_ends_every_process_and_leaves_a_resumable_render(
    slow_render, tmp_path, signame, code, moment
):
    import os
    import signal
    import time

    yml, ref = slow_render
    out = tmp_path / "out"
    proc, part = _render_until(yml, out, moment, stderr=subprocess.PIPE, text=True)
    try:
        tree = _tree(proc.pid)
        sig = getattr(signal, signame)
        # SIGINT as a terminal sends it (to the group); SIGTERM and SIGHUP as systemd (the group)
        # and as timeout or a closed ssh session (the process alone)
        if signame == "SIGTERM" and moment in ("first chunk", "publishing"):
            os.kill(proc.pid, sig)
        else:
            os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        stopped_at = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    while any(_running(p) for p in tree) and time.monotonic() < stopped_at + 2.0:
        time.sleep(0.02)
    assert [p for p in tree if _running(p)] == [], "children alive 2 s after the exit"
    if proc.returncode == 0:  # finished before the signal was handled: a whole render
        assert moment == "publishing" and out.is_dir() and not part.exists()
    else:
        assert proc.returncode == code, err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("avatarrender: warning: ")]
        assert len(lines) == 1 and f"stopped by {signame}" in lines[0], err
        assert not out.exists()
    if moment == "mid-render" or (moment == "publishing" and proc.returncode):
        _resume(yml, out, ref)


def test_workers_end_with_a_render_killed_outright(slow_render, tmp_path):
    """SIGKILL (the OOM killer, ``kill -9``) gives the main process no chance to end its
    workers, which block the stop signals: they notice their parent is gone and end too, and
    the resource trackers with them. The render resumes from what was published."""
    import os
    import signal

    yml, ref = slow_render
    out = tmp_path / "out"
    proc, _ = _render_until(yml, out, "mid-render", stderr=subprocess.DEVNULL)
    try:
        assert proc.poll() is None, "the render ended before it could be killed"
        tree = _tree(proc.pid)
        workers = [p for p in tree if b"loky" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert workers, tree
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert _left_after_killing(proc) == [], "processes alive 10 s after their render was killed"
    # the same frames, and its speed is of the frames it rendered, not of those it found done
    summary = _resume(yml, out, ref)
    assert 0 < summary["frames_rendered"] < summary["frames"], summary
    assert summary["fps"] == pytest.approx(summary["frames_rendered"] / summary["wall_s"], rel=0.05)


def test_workers_end_with_a_render_killed_outright_before_its_first_chunk(slow_render, tmp_path):
    """Killed while the spec is checked (the workers started, no chunk given to them yet): the
    workers watched their parent only from their first chunk on, and idled for loky's five
    minutes."""
    import os
    import signal
    import time

    yml, _ = slow_render
    proc = subprocess.Popen(
        [_EXE, "render", str(yml), "-o", str(tmp_path / "out"), "-q", "--jobs", "2"],
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            tree = _tree(proc.pid)
            workers = [p for p in tree if b"LokyProcess" in Path(f"/proc/{p}/cmdline").read_bytes()]
            time.sleep(0.02)
        assert workers and not (tmp_path / "out.partial" / ".work").is_dir(), "not killed before the work"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert _left_after_killing(proc) == [], "processes alive 10 s after their render was killed"


def _left_after_killing(proc: subprocess.Popen) -> list[int]:
    """SIGKILL to the main process alone, as the OOM killer sends it: what of its process tree
    is still alive 10 s later (killed then, not to leak into the rest of the suite)."""
    import os
    import signal
    import time

    tree = _tree(proc.pid)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        while any(_running(p) for p in tree) and time.monotonic() < killed_at + 10:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    left = [p for p in tree if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


# --------------------------------------------------------------------------- captions


def _ink(text: str, size_px: int = 40, *, basic: bool = False):
    """``text`` drawn by the caption font chain (or Pillow's unshaped layout) as a grey array."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont
    from avatarrender.text import font_chain

    chain = font_chain(None, size_px)
    img = Image.new("L", (size_px * (len(text) + 2), size_px * 2), 0)
    draw = ImageDraw.Draw(img)
    if basic:  # the same font and place, laid out left to right with no shaping
        font = ImageFont.truetype(chain.paths[0], size_px, layout_engine=ImageFont.Layout.BASIC)
        draw.text((size_px // 2, size_px // 4 + chain.ascent_px), text, font=font, fill=255, anchor="ls")
    else:
        chain.draw(draw, (size_px // 2, size_px // 4), text, 255)
    return np.asarray(img)


TOFU = "\u0378"  # unassigned: no font has it, so every chain draws its missing-glyph box


@pytest.mark.parametrize(
    "script,text",
    [
        ("Chinese", "你好世界"),
        ("Japanese", "こんにちはカタカナ漢字"),
        ("Arabic", "مرحبا"),
        ("emoji", "😀🎉👍🔥"),
    ],
)
def test_caption_characters_are_glyphs_not_boxes(script: str, text: str):
    import numpy as np

    tofu = _ink(TOFU)
    seen = []
    for ch in text:
        ink = _ink(ch)
        assert ink.any(), f"{ch!r} drew nothing"
        assert not np.array_equal(ink, tofu), f"{ch!r} is drawn as the missing-glyph box"
        seen.append(ink.tobytes())
    assert len(set(seen)) == len(set(text)), "different characters drawn alike (boxes?)"


def test_raqm_layout_is_installed():
    from PIL import features

    assert features.check("raqm"), "Pillow-SIMD built without libraqm: run scripts/setup.sh"


def _where(line, glyph_text: str) -> int:
    """The x where the glyph of ``glyph_text`` (drawn alone) best matches inside ``line``."""
    import numpy as np

    alone = _ink(glyph_text).astype(int)
    cols = np.nonzero(alone.any(axis=0))[0]
    t = alone[:, cols[0] : cols[-1] + 1]
    w = t.shape[1]
    sad = [np.abs(line[:, x : x + w].astype(int) - t).sum() for x in range(line.shape[1] - w)]
    return int(np.argmin(sad))


def test_right_to_left_text_is_ordered_and_shaped():
    import numpy as np

    # Hebrew has no joining: the first letter is drawn rightmost
    line = _ink("אבג")
    assert _where(line, "א") > _where(line, "ב") > _where(line, "ג")
    assert not np.array_equal(line, _ink("אבג", basic=True))
    # Arabic letters join: the shaped word is not its isolated letters in reverse order
    assert not np.array_equal(_ink("سلام"), _ink("مالس", basic=True))


def test_right_to_left_line_puts_its_first_word_on_the_right():
    # a Hebrew word, then an emoji from another font of the chain: the emoji goes to the left
    line = _ink("אב 😀")
    assert _where(line, "😀") < _where(line, "ב") < _where(line, "א")
    line = _ink("ab 😀")  # and left to right as usual
    assert _where(line, "a") < _where(line, "b") < _where(line, "😀")


def test_left_to_right_phrase_in_two_fonts_keeps_its_order_in_a_right_to_left_line():
    """A review's captions: "مرحبا ABC 日本" came out as "日本 ABC مرحبا" (every font's run
    reversed); the bidi algorithm keeps "ABC 日本" left to right, to the left of the Arabic."""
    line = _ink("אב AB 日本")
    assert _where(line, "A") < _where(line, "B") < _where(line, "日") < _where(line, "本") < _where(line, "ב")
    assert _where(line, "ב") < _where(line, "א")
    # a number inside a right-to-left line reads left to right, between the words around it
    line = _ink("אב 12 גד")
    assert _where(line, "ד") < _where(line, "1") < _where(line, "2") < _where(line, "ב") < _where(line, "א")


@pytest.mark.parametrize(
    "text",
    [
        "word " * 200,
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 8,
        "这是一个非常长的中文句子没有空格" * 12,
    ],
)
def test_long_captions_wrap_inside_the_frame_then_are_cut(text: str):
    from types import SimpleNamespace
    from avatarrender.text import ELLIPSIS, layout_caption

    style = SimpleNamespace(size_px=40, padding_px=10, max_width_px=None, max_lines=3, position=None)
    lay = layout_caption(text, style, k=1.0, frame_px=(640, 360), font_path=None)
    assert len(lay.lines) == 3 and lay.wanted_lines > 3 and lay.lines[-1].endswith(ELLIPSIS)
    for ln in lay.lines:
        assert lay.chain.length(ln) <= 640 * 0.8 - 20
    x, y = lay.xy_px
    w, h = lay.size_px
    assert 0 <= x and x + w <= 640 and 0 <= y and y + h <= 360
    joined = "".join(lay.lines).replace(" ", "")[:-1]
    assert text.replace(" ", "").startswith(joined)  # nothing dropped before the cut


def test_long_caption_is_a_warning_and_renders(tiny_segment: Path):
    _edit(
        tiny_segment,
        lambda d: d["captions"]["cues"].__setitem__(0, {"text": "blah " * 200, "start_s": 0.5, "end_s": 1.8}),
    )
    proc = run_cli("validate", str(tiny_segment))
    assert proc.returncode == 0, proc.stderr
    line = proc.stderr.strip()
    assert line.count("\n") == 0 and "warning" in line and "captions.cues[0]" in line and "cut to" in line


@pytest.mark.parametrize(
    "args", [["render", "x.yaml", "--jobs", "0"], ["render"], ["render", "x.yaml", "--bogus"], ["nosuch"]]
)
def test_usage_errors_are_one_line(args):
    line = _one_line(run_cli(*args), 2)
    assert "--help" in line


def test_playout_says_what_is_wrong_with_its_options_before_rendering_the_filler(tiny_segment, tmp_path):
    """A port in use and a spool folder that is not there are told at once, naming the option,
    not after the filler's render (the port) or never (a mistyped spool airs filler forever)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "live"
        line = _one_line(
            run_cli(
                "playout",
                "--filler-spec",
                str(tiny_segment),
                "--out",
                str(out),
                "--serve",
                f"127.0.0.1:{port}",
            ),
            2,
        )
        assert "--serve" in line and str(port) in line and "in use" in line, line
    assert not any(out.rglob("*.ts")), "the filler was rendered before the port was checked"
    spool = tmp_path / "no-such-spool"
    line = _one_line(
        run_cli("playout", "--filler-spec", str(tiny_segment), "--out", str(out), "--spool", str(spool)), 2
    )
    assert "--spool" in line and str(spool) in line and "no such folder" in line, line
    spool.write_text("")  # a file where the folder should be: said as such
    line = _one_line(
        run_cli("playout", "--filler-spec", str(tiny_segment), "--out", str(out), "--spool", str(spool)), 2
    )
    assert "--spool" in line and "a file, not a folder" in line, line
    assert not any(out.rglob("*.ts"))
    # a refused playout leaves no --out folder it made (an empty /srv/live was left)
    line = _one_line(run_cli("playout", "--out", str(tmp_path / "new-live")), 2)
    assert "filler" in line and not (tmp_path / "new-live").exists(), line
    # a render's folder, or anyone's that is not empty, is not the channel's to overwrite
    render = tmp_path / "render"
    render.mkdir()
    (render / "manifest.json").write_text("{}")
    (render / "master.m3u8").write_text("#EXTM3U\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>mine</p>")
    for folder, what in ((render, "a render's folder"), (site, "not empty")):
        line = _one_line(run_cli("playout", "--filler-spec", str(tiny_segment), "--out", str(folder)), 2)
        assert "--out" in line and what in line, line
    assert (render / "master.m3u8").read_text() == "#EXTM3U\n"
    assert (site / "index.html").read_text() == "<p>mine</p>" and len(list(site.iterdir())) == 1


def test_preview_writes_the_type_its_name_asks_for(tiny_segment: Path, tmp_path: Path):
    from PIL import Image

    for name, kind in (("f.png", "PNG"), ("f.jpg", "JPEG")):
        proc = run_cli("preview", str(tiny_segment), "--at", "1", "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        with Image.open(tmp_path / name) as im:
            assert im.format == kind
    for bad, said in (("nodir/p.png", "no such folder"), ("p.xyz", "no image type")):
        line = _one_line(run_cli("preview", str(tiny_segment), "-o", str(tmp_path / bad)), 2)
        assert "--output" in line and said in line, line
    # a bad option value is said as the option, not as a field of the YAML that has no such value
    for args, option in ((["--preset", "4k"], "--preset"), (["--x264-preset", "turbo"], "--x264-preset")):
        line = _one_line(run_cli("render", str(tiny_segment), *args, "-o", str(tmp_path / "r")), 2)
        assert line.startswith(f"avatarrender: error: {option}: ") and "output." not in line, line
    for at in ("nan", "-1", "inf"):
        line = _one_line(run_cli("preview", str(tiny_segment), "--at", at, "-o", str(tmp_path / "n.png")), 2)
        assert "--at" in line and "not a time in the segment" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jpg", "f.png", "seg"]


def test_preview_stopped_while_composing_writes_nothing(tiny_segment: Path, tmp_path: Path):
    """SIGTERM to ``preview -o`` exited 143 with the frame written (1 of 16 tries at 1-1.9 s
    into a 1.9 s 1080p preview of the demo): the stop's exception was swallowed inside the
    frame's composition (silently there; llvmlite's callbacks and ``__del__`` say "Exception
    ignored"), the work went on. The swallowing is made sure of here: a ``__del__`` run
    while the frame is composed takes the signal."""
    script = (
        "import os, signal, sys, time\n"
        "import avatarrender.compose as compose\n"
        "made = compose.preview_frame\n"
        "class Swallows:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "def preview_frame(*args, **kw):\n"
        "    Swallows()\n"
        "    return made(*args, **kw)\n"
        "compose.preview_frame = preview_frame\n"
        "sys.argv[0] = 'avatarrender'\n"
        "from cli.main import main\n"
        "main()\n"
    )
    out = tmp_path / "f.png"
    args = ["preview", str(tiny_segment), "--at", "1", "-o", str(out)]
    res = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    said = res.stderr.splitlines()  # (the tiny scene's captions are warned about first)
    assert (res.returncode, said[-1], res.stdout) == (143, "avatarrender: stopped by SIGTERM", ""), res
    assert not any("Traceback" in line or "Exception" in line for line in said), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg"]


def test_version_is_the_installed_package_s():
    import tomllib

    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())[
        "project"
    ]
    assert proc.stdout.strip() == f"avatarrender {project['version']}"


def _set_cues(segment: Path, cues: list[dict]) -> None:
    _edit(segment, lambda d: d["captions"].__setitem__("cues", cues))


def test_overlapping_captions_are_a_warning(tiny_segment: Path):
    """Burned in, one caption shows at a time: a cue that starts before the one before ends
    is said, once, with its field."""
    _set_cues(
        tiny_segment,
        [
            {"text": "one", "start_s": 0.1, "end_s": 1.0},
            {"text": "two", "start_s": 0.5, "end_s": 1.5},
            {"text": "three", "start_s": 1.5, "end_s": 1.9},  # touching is not overlapping
        ],
    )
    proc = run_cli("validate", str(tiny_segment))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "captions.cues[1]" in lines[0] and "0.50 s" in lines[0], proc.stderr
    # preview says it too (it said nothing, yet shows what the render encodes)
    proc = run_cli("preview", str(tiny_segment), "--at", "0.7", "-o", str(tiny_segment.parent / "p.png"))
    assert proc.returncode == 0 and lines[0] in proc.stderr.splitlines(), proc.stderr


def test_a_file_and_inline_cues_are_named_by_the_field_that_gave_them(tiny_segment: Path):
    (tiny_segment.parent / "c.srt").write_text(
        "1\n00:00:00,100 --> 00:00:01,000\none\n\n2\n00:00:01,200 --> 00:00:01,600\ntwo\n"
    )
    _edit(
        tiny_segment,
        lambda d: d["captions"].update(file="c.srt", cues=[{"text": "x", "start_s": 0.5, "end_s": 0.9}]),
    )
    proc = run_cli("validate", str(tiny_segment))
    assert proc.returncode == 0, proc.stderr
    # the inline cue overlaps the file's first: it was called the file's cue 3
    assert "captions.cues[0]: starts 0.50 s before captions.file (cue 1) ends" in proc.stderr, proc.stderr


def test_captions_out_of_time_order_burn_and_subtitle_in_time_order(tiny_segment: Path):
    """A caption file's cues need not be in time order (an SRT edited by hand): the cue that
    started last is the one burned in, and the WebVTT lists them by time (as WebVTT requires)."""
    from fractions import Fraction

    from avatarrender.analysis import analyse
    from avatarrender.spec import load_spec
    from avatarrender.subtitles import vtt_segment

    _set_cues(
        tiny_segment,
        [{"text": "second", "start_s": 1.0, "end_s": 1.9}, {"text": "first", "start_s": 0.0, "end_s": 1.2}],
    )
    spec = load_spec(tiny_segment)
    tl = analyse(spec)
    fps = float(spec.output.fps)
    shown = [spec.cues[i].text if i >= 0 else None for i in tl.caption]
    assert shown[int(0.5 * fps)] == "first" and shown[int(1.1 * fps)] == "second", shown
    vtt = vtt_segment(spec.cues, Fraction(0), Fraction(2), duration_s=spec.duration_s)
    assert vtt.index("first") < vtt.index("second"), vtt


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "x.partial", None])
def test_render_into_a_spool_checks_the_name_as_submit_does(tiny_segment: Path, tmp_path: Path, name):
    """render --into SPOOL --name NAME: a name that would land outside the spool, or that the
    playout never airs (hidden, .partial, a sub-folder), is refused before any work, as submit
    refuses it; --name without --into is an error, not ignored."""
    spool = tmp_path / "spool"
    if name is None:
        line = _one_line(run_cli("render", str(tiny_segment), "--name", "x", "-q"), 2)
        assert "--name" in line and "--into" in line
    else:
        line = _one_line(run_cli("render", str(tiny_segment), "--into", str(spool), "--name", name, "-q"), 2)
        assert "--name" in line and repr(name) in line, line
    assert not spool.exists() and not (tmp_path / "escape").exists()


def test_a_folder_given_as_the_segment_or_the_sound_says_so(tmp_path: Path):
    """A folder where a file belongs said "file not found"; it is a folder, and the line says so."""
    for args in (("render", str(tmp_path)), ("validate", str(tmp_path)), ("lipsync", str(tmp_path))):
        line = _one_line(run_cli(*args), 2)
        assert "a folder, not a" in line and str(tmp_path) in line, (args, line)


def test_a_worker_that_does_not_see_the_output_says_so_at_once(tmp_path: Path):
    """A Dask worker on a machine (or in a mount) without the render's output folder made it
    there and waited 120 s for the soundtrack, then blamed the audio, exit 2 (a review). It says
    at once that the folder is not on its file system, and makes nothing."""
    from avatarrender.errors import OutputError
    from avatarrender.render import ChunkTask, render_chunk

    gone = tmp_path / "out.partial" / ".work"
    task = ChunkTask(
        spec=None,
        chunk=None,
        key="k",
        work_root=str(gone),
        audio_path=str(gone / "a.aac"),
        timeline=None,
        threads=1,
    )
    with pytest.raises(OutputError, match="not there on the worker on .* file system they share") as err:
        render_chunk(task)
    assert err.value.exit_code == 1 and not (tmp_path / "out.partial").exists()


def test_an_image_pillow_cannot_read_says_why(tiny_segment: Path):
    """Pillow said 'cannot identify image file' for an empty file and for a WebP it has no codec
    for (its own warning line, naming neither file nor field, before it)."""

    from PIL import features

    from avatarrender.errors import MediaError
    from avatarrender.spec import load_spec

    base = tiny_segment.parent / "assets" / "base.png"
    kept = base.read_bytes()
    base.write_bytes(b"")
    with pytest.raises(MediaError, match=r"character\.base: cannot read image .*base\.png: an empty file"):
        load_spec(tiny_segment)
    base.write_bytes(b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24))
    with pytest.raises(MediaError, match=r"character\.base: cannot read image") as info:
        load_spec(tiny_segment)
    if not features.check("webp"):
        assert "a WebP image, which this Pillow cannot read: give PNG or JPEG" in str(info.value)
    # the command's one line, without Pillow's own before it
    proc = run_cli("validate", str(tiny_segment))
    assert "character.base: cannot read image" in _one_line(proc, 2)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    base.write_bytes(kept)


def test_a_clip_that_fails_mid_render_is_said_from_the_segment(tiny_segment: Path, tmp_path: Path):
    """The spec check passed; the clip then breaks under the render (replaced, damaged past
    what a check reads): the line begins with the segment and the field, as every spec
    error's does (it began with the clip's path)."""
    from avatarrender.errors import MediaError
    from avatarrender.render import render
    from avatarrender.spec import load_spec

    spec = load_spec(tiny_segment)
    clip = spec.tv.clips[0].file
    clip.write_bytes(b"\x00" * 4096)
    with pytest.raises(MediaError) as info:
        render(spec, tmp_path / "out", jobs=1)
    assert str(info.value).startswith(f"{tiny_segment}: tv.clips[0].file: {clip}: "), str(info.value)


def test_a_stop_signal_once_the_output_is_in_place_is_dropped():
    """A render stopped just as it ended (the final swap done) printed its success, then exit 1
    with a traceback from the pool's shutdown, or 143 naming a .partial folder already renamed
    into place (a review: 7 of 10 tries). Once the block that puts the result in place has run,
    the command is done: the signal it held back is dropped and later ones ignored."""
    import sys

    script = (
        "import os, signal\n"
        "from avatarrender import interrupt\n"
        "interrupt.install(workers=False)\n"
        "with interrupt.deferred(finishing={finishing}):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('done')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script.format(finishing=True)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    held = subprocess.run(
        [sys.executable, "-c", script.format(finishing=False)], capture_output=True, text=True
    )
    assert held.returncode != 0 and "Interrupted" in held.stderr and "done" not in held.stdout


def test_a_stop_signal_swallowed_where_it_cannot_propagate_is_not_said():
    """A stop whose exception was raised in a ctypes callback (llvmlite's, while librosa's numba
    compiled for ``lipsync --plot``) or a ``__del__`` is swallowed there and said as "Exception
    ignored" with a traceback over the command's one line. It is recorded all the same (the
    command checks it before it writes); other such exceptions are still said."""
    script = (
        "import os, signal, time\n"
        "from avatarrender import interrupt\n"
        "interrupt.install(workers=False)\n"
        "class Stopped:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "class Broken:\n"
        "    def __del__(self):\n"
        "        raise ValueError('said')\n"
        "Stopped(); Broken()\n"
        "print(interrupt.received().name)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert res.stdout == "SIGTERM\n", res.stderr
    assert "Interrupted" not in res.stderr and "ValueError: said" in res.stderr, res.stderr

"""The demo's asset script: every file made, the right sizes and alpha, sprites distinct, the clip
readable frame by frame, speech and captions that agree, and a segment.yaml that loads."""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from avatarrender.spec import load_spec, parse_cues

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def _load_module():
    spec = importlib.util.spec_from_file_location("demo_make_assets", DEMO / "make_assets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # examples/ is not a package: load the script by path
    spec.loader.exec_module(module)
    return module


ma = _load_module()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A copy of examples/demo with freshly made assets: (folder with segment.yaml and assets/)."""
    folder = tmp_path_factory.mktemp("demo")
    shutil.copy(DEMO / "segment.yaml", folder / "segment.yaml")
    assert ma.main(["--out", str(folder / "assets")]) == 0
    return folder


def _rgba(path: Path) -> Image.Image:
    with Image.open(path) as im:
        assert im.mode == "RGBA", f"{path.name} is {im.mode}, want RGBA"
        return im.copy()


def test_second_run_keeps_existing_files(demo):
    before = {p: p.stat().st_mtime_ns for p in (demo / "assets").rglob("*") if p.is_file()}
    assert ma.make_assets(demo / "assets") == []
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_room_and_lighting_layers(demo):
    a = demo / "assets"
    with Image.open(a / "room.png") as room:
        assert room.size == ma.FRAME_SIZE and room.mode == "RGB"
        pixels = np.asarray(room)
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 200  # an illustration, not a flat fill
    for name in ("light_window.png", "vignette.png"):
        layer = _rgba(a / name)
        assert layer.size == ma.FRAME_SIZE
        alpha = np.asarray(layer.getchannel("A"))
        assert alpha.min() == 0 and alpha.max() > 100, name
    lamp = _rgba(a / "light_lamp.png")
    assert lamp.size == ma.LAMP_LAYER_SIZE
    x, y = ma.LAMP_LAYER_POSITION
    assert x + lamp.width <= ma.FRAME_SIZE[0] and y + lamp.height <= ma.FRAME_SIZE[1]
    alpha = np.asarray(lamp.getchannel("A"))
    cx, cy = ma.LAMP_CENTER[0] - x, ma.LAMP_CENTER[1] - y
    assert alpha[cy, cx] > 200 and alpha[0, 0] == 0  # glows at the shade, fades out


def test_character_sprites_present_distinct_and_fit(demo):
    ch = demo / "assets" / "character"
    base = _rgba(ch / "base.png")
    assert base.size == ma.CHARACTER_SIZE
    alpha = np.asarray(base.getchannel("A"))
    assert (
        alpha[0, 0] == 0 and alpha[-1, ma.CHARACTER_SIZE[0] // 2] == 255
    )  # cut out; shoulders reach the bottom
    soft = ((alpha > 0) & (alpha < 255)).sum()
    assert soft > 500  # anti-aliased edges
    for group, names, size, offset in (
        ("mouth", ma.MOUTH_SHAPES, ma.MOUTH_SIZE, ma.MOUTH_OFFSET),
        ("eyes", ma.EYE_STATES, ma.EYES_SIZE, ma.EYES_OFFSET),
    ):
        sprites = {n: np.asarray(_rgba(ch / f"{group}_{n}.png"), np.int16) for n in names}
        for n, s in sprites.items():
            assert s.shape[:2] == (size[1], size[0]), f"{group}_{n}"
            assert s[..., 3].max() == 255 and s[..., 3].min() == 0, (
                f"{group}_{n} needs opaque ink on a clear ground"
            )
            assert offset[0] + size[0] <= base.width and offset[1] + size[1] <= base.height
            # sprites sit on the face: the base is opaque skin wherever the sprite draws
            under = alpha[offset[1] : offset[1] + size[1], offset[0] : offset[0] + size[0]]
            assert (under[s[..., 3] > 0] == 255).all(), f"{group}_{n} overhangs the face"
        for (n1, s1), (n2, s2) in itertools.combinations(sprites.items(), 2):
            assert np.abs(s1 - s2).sum(axis=2).astype(bool).sum() > 100, f"{group} {n1} and {n2} look alike"

    # open mouths show more dark interior than closed ones
    def dark_px(n: str) -> int:
        s = np.asarray(_rgba(ch / f"mouth_{n}.png"))
        return int(((s[..., :3].max(axis=2) < 100) & (s[..., 3] > 200)).sum())

    dark = {n: dark_px(n) for n in "XADF"}
    assert dark["X"] < dark["F"] < dark["D"] and dark["A"] < dark["D"]


def test_bezel_has_a_clear_screen_hole_where_the_screen_is(demo):
    bezel = _rgba(demo / "assets" / "tv_bezel.png")
    alpha = np.asarray(bezel.getchannel("A"))
    x, y, w, h = ma.SCREEN_RECT
    ox, oy = ma.BEZEL_POSITION
    hole = alpha[y - oy : y - oy + h, x - ox : x - ox + w]
    assert hole.max() < 64 and (hole == 0).mean() > 0.5  # a faint glare at most
    assert (hole[h // 2 :, w // 2 :] == 0).all()  # the bottom-right quarter is untouched glass
    ring = np.concatenate(
        [alpha[y - oy - 4, x - ox : x - ox + w], alpha[y - oy + h + 3, x - ox : x - ox + w]]
    )
    assert (ring == 255).all()  # the frame is opaque right up to the hole


def test_clip_size_rate_duration_and_readable_frame_index(demo):
    with av.open(str(demo / "assets" / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == ma.CLIP_SIZE
        assert stream.average_rate == ma.CLIP_FPS
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == round(ma.CLIP_DURATION_S * ma.CLIP_FPS)
    assert [ma.clip_frame_index(f) for f in frames] == list(range(len(frames)))
    # it moves: consecutive frames differ, and not just in the code cells
    top = np.stack([f[:300].astype(np.int16) for f in frames[::30]])
    assert (np.abs(np.diff(top, axis=0)).mean(axis=(1, 2, 3)) > 1.0).all()
    # scaled to the TV screen (as the renderer shows it) the index still reads back
    x, y, w, h = ma.SCREEN_RECT
    scaled = np.asarray(Image.fromarray(frames[277]).resize((w, h), Image.BILINEAR))
    assert ma.clip_frame_index(scaled) == 277


def test_speech_length_and_captions_match_the_sentences(demo):
    speech, rate_hz = sf.read(demo / "assets" / "speech.wav", dtype="float32")
    duration_s = len(speech) / rate_hz
    assert 20.0 <= duration_s <= 40.0
    cues = parse_cues((demo / "assets" / "captions.srt").read_text())
    assert [c.text for c in cues] == list(ma.SENTENCES)
    assert all(0 <= c.start_s < c.end_s <= duration_s for c in cues)
    assert all(a.end_s < b.start_s for a, b in zip(cues, cues[1:]))

    def loud(t0: float, t1: float) -> float:
        return float(np.abs(speech[int(t0 * rate_hz) : int(t1 * rate_hz)]).max(initial=0.0))

    for c in cues:  # speech starts and ends with each cue, and the gaps between cues are silent
        assert loud(c.start_s, c.start_s + 0.1) > 0.02 and loud(c.end_s - 0.15, c.end_s) > 0.01, c.text
    gaps = [(0.0, cues[0].start_s)] + [(a.end_s, b.start_s) for a, b in zip(cues, cues[1:])]
    assert all(loud(a + 0.002, b - 0.002) < 0.02 for a, b in gaps)


def test_segment_yaml_references_only_made_files_and_loads(demo):
    doc = yaml.safe_load((demo / "segment.yaml").read_text())
    text = (demo / "segment.yaml").read_text()
    referenced = set(re.findall(r"assets/[\w/.-]+", text))
    assert len(referenced) >= 20
    for rel in referenced:
        assert (demo / rel).is_file(), rel
    # every feature of the schema is in use
    assert {layer["blend"] for layer in doc["scene"]["layers"]} >= {"add", "screen", "multiply"}
    assert set(doc["character"]["mouths"]) == set(ma.MOUTH_SHAPES)
    assert set(doc["character"]["eyes"]) == set(ma.EYE_STATES)
    assert doc["character"]["mouth_offset"] == list(ma.MOUTH_OFFSET)
    assert doc["character"]["eyes_offset"] == list(ma.EYES_OFFSET)
    assert doc["character"]["position"] == list(ma.CHARACTER_POSITION)
    assert doc["tv"]["screen"] == list(ma.SCREEN_RECT)
    assert doc["tv"]["overlay_position"] == list(ma.BEZEL_POSITION)
    clip = doc["tv"]["clips"][0]
    assert clip["at_end"] == "loop" and clip["end_s"] - clip["start_s"] > ma.CLIP_DURATION_S
    assert doc["captions"]["style"] and doc["blink"]["seed"] is not None
    spec = load_spec(demo / "segment.yaml")  # the renderer's own checks: sizes, geometry, media, times
    assert len(spec.cues) == len(ma.SENTENCES)
    assert 20.0 <= float(spec.duration_s) <= 40.0

"""The Spec that rendering gets is resolved once by load_spec: no raw model, nothing laid out
or parsed again downstream, and every check a render makes (``validate`` is load_spec)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from pydantic import BaseModel

from avatarrender.errors import AssetNotFoundError, MediaError, SpecError
from avatarrender.scene import Scene
from avatarrender.spec import Spec, load_spec

from conftest import make_tiny_segment, run_cli


def _edit(path: Path, fn) -> None:
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _walk(obj, where: str = "spec"):
    """(where, value) for ``obj`` and everything inside it."""
    yield where, obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), f"{where}.{f.name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{where}[{k!r}]")
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{where}[{i}]")


def test_spec_is_resolved_and_holds_no_raw_model(tiny_segment: Path):
    _edit(tiny_segment, lambda d: d["tv"]["clips"][0].pop("end_s"))
    spec = load_spec(tiny_segment)
    assert not hasattr(spec, "model") and not hasattr(spec, "path")
    values = list(_walk(spec))
    assert len(values) > 50
    for where, v in values:
        assert not isinstance(v, BaseModel), where
        if isinstance(v, Path):
            assert v.is_absolute() and v.is_file(), where
    # colours parsed, the font chain located, cues laid out (one layout each), clip end known
    style = spec.captions.style
    assert style.color == (255, 255, 255, 255) and style.box_color == (0, 0, 0, 0xB4)
    assert len(spec.captions.layouts) == len(spec.cues) == 2
    assert all(lay.chain.paths for lay in spec.captions.layouts)
    clip = spec.tv.clips[0]
    assert clip.end_s == pytest.approx(clip.start_s + clip.file_duration_s - clip.clip_start_s)
    assert clip.file_duration_s == pytest.approx(2.0, abs=0.05)
    assert spec.character.drawn_mouths == frozenset("XACD")
    assert spec.character.drawn_eyes == frozenset({"open", "closed"})
    # the preset's loudness under the audio block's unset values
    assert (spec.audio.loudness_lufs, spec.audio.true_peak_dbtp) == (
        spec.output.loudness_lufs,
        spec.output.true_peak_dbtp,
    )


def test_scene_draws_without_laying_out_parsing_or_resolving_again(tiny_segment: Path, monkeypatch):
    """After load_spec, drawing a caption state needs no layout, colour parse or path lookup."""
    spec = load_spec(tiny_segment)
    before = Scene(spec).state_frame((0, 0, 0)).to_rgb()  # cue 0 on screen

    def again(*args, **kwargs):
        raise AssertionError("resolved again after load_spec")

    for name, mod in list(sys.modules.items()):
        if name.startswith("avatarrender"):
            for attr in ("layout_caption", "parse_color", "resolve_asset", "parse_cues", "font_chain"):
                if hasattr(mod, attr):
                    monkeypatch.setattr(mod, attr, again)
    after = Scene(spec).state_frame((0, 0, 0)).to_rgb()
    assert np.array_equal(before, after)
    assert not np.array_equal(after, Scene(spec).state_frame((0, 0, -1)).to_rgb())  # the caption shows


def test_with_output_lays_captions_out_for_the_new_size(tiny_segment: Path):
    spec = load_spec(tiny_segment)
    small = spec.with_output(width=160, height=90)
    assert (
        small.captions.layouts
        == load_spec(tiny_segment, overrides={"width": 160, "height": 90}).captions.layouts
    )
    assert small.captions.layouts != spec.captions.layouts
    idle = spec.idle(2.0)
    assert idle.captions is None and idle.cues == () and idle.speech is None and idle.tv.clips == ()
    assert idle.spec_hash != spec.spec_hash and idle.frame_count == 60


def test_spec_pickles_without_opened_fonts(tiny_segment: Path):
    """The spec goes to every worker with each chunk: its font chains travel as paths."""
    import pickle

    spec = load_spec(tiny_segment)
    chain = spec.captions.layouts[0].chain
    assert chain.fonts  # opened by the layout
    back = pickle.loads(pickle.dumps(spec))
    assert "fonts" not in back.captions.layouts[0].chain.__dict__
    assert back.captions.layouts == spec.captions.layouts and back.spec_hash == spec.spec_hash
    assert back.captions.layouts[0].chain is back.captions.layouts[1].chain


def _mat5_speech(a: Path) -> None:
    """A file libsndfile reads (so its length is known) that ffmpeg cannot decode."""
    sf.write(a / "speech.wav", np.zeros(22050, np.float32), 22050, format="MAT5", subtype="FLOAT")


def _garbage(path: Path) -> None:
    path.write_bytes(b"not really a file of this type" * 10)


BAD = {
    "bad box colour": (
        lambda d, a: d["captions"]["style"].__setitem__("box_color", "#12345"),
        "captions.style.box_color",
        SpecError,
    ),
    "missing font": (
        lambda d, a: d["captions"]["style"].__setitem__("font", "assets/nope.ttf"),
        "captions.style.font",
        AssetNotFoundError,
    ),
    "font that is not a font": (
        lambda d, a: (_garbage(a / "x.ttf"), d["captions"]["style"].__setitem__("font", "assets/x.ttf")),
        "captions.style.font",
        MediaError,
    ),
    "missing layer image": (
        lambda d, a: d["scene"]["layers"][0].__setitem__("image", "assets/no.png"),
        "scene.layers[0].image",
        AssetNotFoundError,
    ),
    "missing subtitle track": (
        lambda d, a: d["captions"].__setitem__("tracks", [{"file": "assets/fr.vtt", "language": "fr"}]),
        "captions.tracks[0].file",
        AssetNotFoundError,
    ),
    "speech that does not decode": (lambda d, a: _mat5_speech(a), "speech.file", MediaError),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_load_spec_refuses_with_file_and_field(tiny_segment: Path, case: str):
    change, field, exc_type = BAD[case]
    _edit(tiny_segment, lambda d: change(d, tiny_segment.parent / "assets"))
    with pytest.raises(exc_type) as info:
        load_spec(tiny_segment)
    assert info.value.field == field and str(tiny_segment) in str(info.value)


def _states_segment(folder: Path, states: list[tuple[str, str]]) -> Path:
    yml = make_tiny_segment(folder, tv=False, captions=False)
    a = yml.parent / "assets"
    from PIL import Image

    for m, e in states:
        Image.new("RGBA", (40, 60), (200, 100, 50, 255)).save(a / f"st_{m}_{e}.png")
    _edit(
        yml,
        lambda d: d.__setitem__(
            "character", {"position": [200, 20], "states": "assets/st_{mouth}_{eyes}.png"}
        ),
    )
    return yml


def test_states_resolved_to_the_images_found(tmp_path: Path):
    yml = _states_segment(tmp_path / "ok", [("X", "open"), ("X", "closed"), ("A", "open"), ("A", "closed")])
    ch = load_spec(yml).character
    assert ch.drawn_mouths == frozenset("XA") and ch.drawn_eyes == frozenset({"open", "closed"})
    assert set(ch.states) == {("X", "open"), ("X", "closed"), ("A", "open"), ("A", "closed")}
    assert ch.base is None and not ch.mouths and not ch.eyes


def test_states_missing_a_pair_the_render_would_draw_is_refused(tmp_path: Path):
    """Mouth A is drawn (it has eyes open) and eyes closed are drawn (with mouth X): a blink
    while A shows needs A with eyes closed. The render used to fail on it mid-way."""
    yml = _states_segment(tmp_path / "bad", [("X", "open"), ("X", "closed"), ("A", "open")])
    with pytest.raises(SpecError) as info:
        load_spec(yml)
    assert info.value.field == "character.states" and "mouth A with eyes closed" in str(info.value)


def test_states_decoded_side_by_side_name_the_first_broken_one_and_keep_the_hash(tmp_path: Path):
    pairs = [(m, e) for m in "XABCDEFGH" for e in ("open", "half", "closed")]
    yml = _states_segment(tmp_path / "s", pairs)
    good = load_spec(yml)
    assert set(good.character.states) == set(pairs)
    assets = yml.parent / "assets"
    for name in ("st_D_half.png", "st_B_closed.png"):  # B closed comes first in the spec's order
        (assets / name).write_bytes((assets / name).read_bytes()[:60])  # cut short
    with pytest.raises(MediaError) as info:
        load_spec(yml)
    assert info.value.field == "character.states" and "st_B_closed.png" in str(info.value)
    again = _states_segment(tmp_path / "s2", pairs)  # the same bytes elsewhere: the same hash
    assert load_spec(again).spec_hash == good.spec_hash


@pytest.mark.slow  # two CLI processes per case
@pytest.mark.parametrize("case", ["bad box colour", "speech that does not decode"])
def test_validate_and_render_refuse_alike(tiny_segment: Path, tmp_path: Path, case: str):
    change, field, _ = BAD[case]
    _edit(tiny_segment, lambda d: change(d, tiny_segment.parent / "assets"))
    out = tmp_path / "out"
    lines = []
    for args in (["validate", str(tiny_segment)], ["render", str(tiny_segment), "-o", str(out), "-q"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        lines.append(proc.stderr.strip())
    assert lines[0] == lines[1] and len(lines[0].splitlines()) == 1
    assert str(tiny_segment) in lines[0] and field in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_spec_type_is_what_the_package_hands_on():
    import avatarrender

    assert avatarrender.Spec is Spec and avatarrender.load_spec is load_spec


def test_checked_speech_is_handed_to_the_next_read_once(tmp_path: Path):
    """load_spec decodes the speech to check it; the analysis's read gets those samples (no
    second decode) as an array of its own; a changed file is decoded afresh; the kept samples
    stay under their byte bound, least recently used out first."""
    from avatarrender import media

    path = tmp_path / "s.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 4800, dtype=np.float32), 48000)
    media.read_audio(path, sample_rate_hz=48000)  # what load_spec does to check it
    assert any(k[0] == str(path.resolve()) for k in media._AUDIO_CACHE)
    decoded = []
    real, bound = media._decode_audio, media._KEEP_AUDIO_BYTES
    media._decode_audio = lambda p, r: decoded.append(p) or real(p, r)
    try:
        a = media.read_audio(path, sample_rate_hz=48000)
        assert decoded == [] and all(v is not a for v in media._AUDIO_CACHE.values())
        a[:] = 1.0  # the caller's own array
        b = media.read_audio(path, sample_rate_hz=48000)
        assert decoded == [] and b.shape == (4800,) and abs(float(b[0]) + 0.5) < 1e-3
        sf.write(path, np.linspace(-0.5, 0.5, 9600, dtype=np.float32), 48000)  # changed
        assert media.read_audio(path, sample_rate_hz=48000).shape == (9600,) and decoded == [path]
        # rewritten in place, same size, mtime put back (cp -p, rsync -t): decoded afresh
        st = path.stat()
        sf.write(path, np.linspace(0.25, 0.25, 9600, dtype=np.float32), 48000)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size
        assert abs(float(media.read_audio(path, sample_rate_hz=48000)[0]) - 0.25) < 1e-3
        media._KEEP_AUDIO_BYTES = 3 * 9600 * 4
        for i in range(4):
            sf.write(tmp_path / f"o{i}.wav", np.zeros(9600, dtype=np.float32), 48000)
            media.read_audio(tmp_path / f"o{i}.wav", sample_rate_hz=48000)
        assert sum(v.nbytes for v in media._AUDIO_CACHE.values()) <= media._KEEP_AUDIO_BYTES
        assert [Path(k[0]).name for k in media._AUDIO_CACHE][-3:] == ["o1.wav", "o2.wav", "o3.wav"]
    finally:
        media._decode_audio = real
        media._KEEP_AUDIO_BYTES = bound


@pytest.mark.parametrize("kind", ["flac", "wav"])
def test_a_cut_off_speech_file_takes_the_length_that_decodes_with_a_warning(tmp_path: Path, kind: str):
    """A FLAC or WAV cut off half-way still says its whole length in its header (a WAV's data
    chunk; libsndfile counts the frames present): the segment takes the sound that decodes (not
    3 s of silence after it), and says so; a duration_s that cuts the speech short says so too."""
    yml = make_tiny_segment(tmp_path / "seg", speech_s=2.0, captions=False)
    doc = yaml.safe_load(yml.read_text())
    doc.pop("duration_s", None)
    t = np.arange(6 * 48000) / 48000
    whole = tmp_path / "seg" / "assets" / f"whole.{kind}"
    sf.write(whole, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(7 * t))).astype(np.float32), 48000)
    data = whole.read_bytes()
    (tmp_path / "seg" / "assets" / f"cut.{kind}").write_bytes(data[: len(data) // 2])
    doc["speech"]["file"] = f"assets/cut.{kind}"
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    assert 1.5 < float(spec.duration_s) < 4.5
    assert any("speech.file" in w and "header says 6.00 s" in w for w in spec.warnings), spec.warnings
    if kind == "wav":  # written while spoken (a streaming TTS): sizes unset, or as large as may be
        for riff, size in ((0xFFFFFFFF, 0xFFFFFFFF), (0x7FFFFFFF, 0x7FFFFFFF - 36), (0, 0)):
            streamed = bytearray(data)
            streamed[4:8] = riff.to_bytes(4, "little")
            at = streamed.index(b"data")
            streamed[at + 4 : at + 8] = size.to_bytes(4, "little")
            (tmp_path / "seg" / "assets" / "streamed.wav").write_bytes(streamed)
            doc["speech"]["file"] = "assets/streamed.wav"
            yml.write_text(yaml.safe_dump(doc, sort_keys=False))
            spec = load_spec(yml)
            assert abs(float(spec.duration_s) - 6.0) < 0.05  # (was called damaged or cut off)
            assert not [w for w in spec.warnings if "speech.file" in w], (hex(size), spec.warnings)
    doc["speech"]["file"] = f"assets/whole.{kind}"
    doc["duration_s"] = 4.0
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    assert float(spec.duration_s) == 4.0
    assert any(w.startswith("duration_s:") and "cuts the speech" in w for w in spec.warnings), spec.warnings


def test_srt_cues_keep_their_lines_and_lose_substation_tags_and_empty_cues():
    from avatarrender.spec import parse_cues

    cues = parse_cues(
        "1\n00:00:01,000 --> 00:00:02,000\n{\\an8}- Are you <i>coming</i>?\n- Yes, in a minute.\n\n"
        "2\n00:00:03,000 --> 00:00:04,000\n\n\n"
        "3\n00:00:05,000 --> 00:00:06,000\n{\\i1}A &amp; B{\\i0}\n"
    )
    assert [c.text for c in cues] == ["- Are you coming?\n- Yes, in a minute.", "A & B"]


def test_a_see_through_background_is_on_black_and_the_tv_off_image_is_fitted(tmp_path: Path):
    """Hidden colour under a background's transparent pixels does not show (it aired bright red);
    a 4:3 tv.off image on a 16:9 screen is fitted as clips are (contain: black bars), not
    stretched."""
    from PIL import Image

    yml = make_tiny_segment(tmp_path / "seg", captions=False)
    a = yml.parent / "assets"
    room = Image.open(a / "room.png").convert("RGBA")
    w, h = room.size
    px = np.asarray(room).copy()
    px[:, : w // 8] = (255, 0, 0, 0)  # red, but fully transparent
    Image.fromarray(px).save(a / "room.png")
    Image.new("RGBA", (400, 300), (0, 200, 0, 255)).save(a / "off43.png")
    doc = yaml.safe_load(yml.read_text())
    doc["scene"]["layers"] = []
    doc["tv"]["off"] = "assets/off43.png"
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    scene = Scene(load_spec(yml))
    rgb = np.asarray(scene.base_rgba.convert("RGB")).astype(int)
    assert rgb[h // 2, 2].max() < 8, rgb[h // 2, 2]  # black, not red
    x0, y0, x1, y1 = scene.screen
    mid = rgb[(y0 + y1) // 2]
    assert mid[x0 + 1].max() < 8 and mid[x1 - 2].max() < 8, (mid[x0 + 1], mid[x1 - 2])  # bars
    assert mid[(x0 + x1) // 2][1] > 150  # the image, whole, between them


def test_caption_files_in_utf16_are_read_and_latin1_is_refused_clearly(tmp_path: Path):
    """Subtitle editors save UTF-16 with a BOM: read. Latin-1 is refused with what to do (it
    was Python's codec message); a font path that is a folder says so."""
    yml = make_tiny_segment(tmp_path / "seg", captions=False)
    doc = yaml.safe_load(yml.read_text())
    srt = "1\n00:00:00,500 --> 00:00:01,500\nCafé crème\n"
    (yml.parent / "u16.srt").write_bytes(srt.encode("utf-16"))
    (yml.parent / "latin1.srt").write_bytes(srt.encode("latin-1"))
    doc["captions"] = {"file": "u16.srt"}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert [c.text for c in load_spec(yml).cues] == ["Café crème"]
    doc["captions"] = {"file": "latin1.srt"}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(MediaError) as err:
        load_spec(yml)
    assert (
        "captions.file" in str(err.value)
        and "not UTF-8" in str(err.value)
        and "save it as UTF-8" in str(err.value)
    )
    doc["captions"] = {"file": "u16.srt", "style": {"font": "assets"}}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(yml)
    assert "captions.style.font" in str(err.value) and "a folder, not a file" in str(err.value)


def test_characters_no_font_draws_are_a_warning_naming_the_cue(tmp_path: Path):
    """Hindi with no Devanagari font here shows as boxes: validate says which cue and which
    characters (it said nothing)."""
    yml = make_tiny_segment(tmp_path / "seg")
    doc = yaml.safe_load(yml.read_text())
    doc["captions"]["cues"][1]["text"] = "नमस्ते friends"
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    warned = [w for w in load_spec(yml).warnings if "no font here draws" in w]
    assert len(warned) == 1 and warned[0].startswith("captions.cues[1]:") and "न" in warned[0], warned
    doc["captions"]["cues"][1]["text"] = "Привет, مرحبا, 你好"  # Cyrillic, Arabic, Chinese: drawn
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not [w for w in load_spec(yml).warnings if "no font here draws" in w]


def test_stereo_speech_whose_channels_cancel_out_is_a_warning(tmp_path: Path):
    """One channel inverted sounds right on speakers and mixes to silence in mono (the mouth
    stayed shut and the speech aired silent, with only "the audio is silent")."""
    yml = make_tiny_segment(tmp_path / "seg", captions=False)
    t = np.arange(2 * 48000) / 48000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(yml.parent / "assets" / "speech.wav", np.stack([x, -x], axis=1), 48000)
    warned = [w for w in load_spec(yml).warnings if "cancel out" in w]
    assert len(warned) == 1 and warned[0].startswith("speech.file:"), warned
    sf.write(yml.parent / "assets" / "speech.wav", np.stack([x, x], axis=1), 48000)
    assert not [w for w in load_spec(yml).warnings if "cancel out" in w]
    # through a lossy codec the inverted channel leaves a residue (it aired 50 dB louder, unsaid)
    from avatarrender.media import ffmpeg_exe

    wav, m4a = yml.parent / "assets" / "inv.wav", yml.parent / "assets" / "speech.m4a"
    sf.write(wav, np.stack([x, -x], axis=1), 48000)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    doc = yaml.safe_load(yml.read_text())
    doc["speech"]["file"] = "assets/speech.m4a"
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert [w for w in load_spec(yml).warnings if "cancel out" in w]
    # quiet speech in one channel only (the other silent) is no cancelling
    sf.write(wav, np.stack([0.02 * x, 0 * x], axis=1), 48000)
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    assert not [w for w in load_spec(yml).warnings if "cancel out" in w]


def test_arabic_captions_without_libraqm_are_a_warning(tmp_path: Path, monkeypatch):
    from avatarrender import text

    yml = make_tiny_segment(tmp_path / "seg")
    doc = yaml.safe_load(yml.read_text())
    doc["captions"]["cues"][0]["text"] = "مرحبا بكم"
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setattr(text, "_RAQM", False)
    warned = [w for w in load_spec(yml).warnings if "libraqm" in w]
    assert len(warned) == 1 and warned[0].startswith("captions.cues[0]:"), warned
    monkeypatch.setattr(text, "_RAQM", True)
    assert not [w for w in load_spec(yml).warnings if "libraqm" in w]


def test_state_images_of_different_sizes_are_drawn_whole(tmp_path: Path):
    """A taller state image (a mouth drawn lower) is drawn whole: the character's box is the
    largest state's (its bottom rows were cut to the first state's size)."""
    from PIL import Image

    from avatarrender.spec import EYE_STATES, MOUTH_SHAPES

    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False)
    a = yml.parent / "assets"
    Image.new("RGBA", (40, 50), (90, 90, 90, 255)).save(a / "X_open.png")
    tall = Image.new("RGBA", (40, 60), (90, 90, 90, 255))
    tall.paste((255, 0, 0, 255), (0, 50, 40, 60))  # its bottom 10 rows red
    tall.save(a / "D_open.png")
    doc = yaml.safe_load(yml.read_text())
    doc["character"] = {"position": [100, 40], "states": "assets/{mouth}_{eyes}.png"}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    scene = Scene(load_spec(yml))
    state = (MOUTH_SHAPES.index("D"), EYE_STATES.index("open"), -1)
    rgb = scene.state_frame(state).to_rgb().astype(int)
    k = scene.k
    y = round((40 + 55) * k)  # in the red rows
    r, g, b = rgb[y, round((100 + 20) * k)]
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def test_a_see_through_caption_colour_goes_over_its_box(tmp_path: Path):
    """50 % red letters over a 25 % green box: under each letter both show (alpha 0.5 + 0.25 x
    0.5); the letters replaced the box under them (alpha 0.5, no green)."""
    yml = make_tiny_segment(tmp_path / "seg")
    doc = yaml.safe_load(yml.read_text())
    doc["captions"]["style"].update(color="#ff000080", box_color="#00ff0040", size_px=40)
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    scene = Scene(spec)
    img, _ = scene._render_caption(spec.captions.layouts[0])
    px = np.asarray(img).astype(int)
    inside = px[px[..., 3] == px[..., 3].max()]  # letters' full-coverage pixels
    assert abs(inside[0, 3] - 159) <= 3 and inside[0, 1] > 30, inside[0]  # green shows under red


def test_a_caption_files_cues_after_the_end_are_left_out_with_a_warning(tmp_path: Path):
    """A segment cut shorter than its SRT: the file's later cues are left out with a warning,
    in the main track and the extra ones alike (the main one was refused, the others dropped
    in silence); an inline cue after the end is still refused."""
    yml = make_tiny_segment(tmp_path / "seg", duration_s=3.0)
    srt = "1\n00:00:00,500 --> 00:00:01,500\nIn\n\n2\n00:00:05,000 --> 00:00:06,000\nAfter\n"
    (yml.parent / "a.srt").write_text(srt)
    (yml.parent / "b.srt").write_text(srt)
    doc = yaml.safe_load(yml.read_text())
    doc["captions"] = {"file": "a.srt", "tracks": [{"file": "b.srt", "language": "es"}]}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    assert [c.text for c in spec.cues] == ["In"]
    late = [w for w in spec.warnings if "after the segment's end" in w]
    assert [w.split(":")[0] for w in late] == ["captions.file", "captions.tracks[0].file"], late
    doc["captions"] = {"cues": [{"text": "After", "start_s": 5.0, "end_s": 6.0}]}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SpecError, match="lies outside the segment"):
        load_spec(yml)


@pytest.mark.parametrize(
    "text",
    [
        "Good evening, and welcome.\nTonight: the weather.\n",  # the script, not subtitles
        "[Script Info]\nTitle: x\n\n[Events]\nDialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Hi\n",
        "1\n\n2\n",
    ],
)
def test_a_caption_file_without_cues_is_refused(tmp_path: Path, text: str):
    """A plain-text script, an .ass file or junk given as captions.file (or a track's file)
    rendered with no captions and no word: refused, naming the field and the file."""
    yml = make_tiny_segment(tmp_path / "seg", captions=False)
    doc = yaml.safe_load(yml.read_text())
    (yml.parent / "words.srt").write_text(text)
    for caps in ({"file": "words.srt"}, {"tracks": [{"file": "words.srt", "language": "en"}]}):
        doc["captions"] = caps
        yml.write_text(yaml.safe_dump(doc, sort_keys=False))
        with pytest.raises(MediaError) as err:
            load_spec(yml)
        field = "captions.file" if "file" in caps else "captions.tracks[0].file"
        assert (
            field in str(err.value) and "words.srt" in str(err.value) and "no caption cues" in str(err.value)
        )


def test_a_caption_file_s_cue_of_no_length_is_left_out_with_a_warning(tmp_path: Path):
    """Subtitle editors leave cues that start and end at once: such a cue in a file is never
    shown, so it is left out with a warning (it stopped the render); one in the YAML is still
    an error, as it is the user's own."""
    yml = make_tiny_segment(tmp_path / "seg", captions=False)
    doc = yaml.safe_load(yml.read_text())
    (yml.parent / "c.srt").write_text(
        "1\n00:00:00,200 --> 00:00:00,900\nHello\n\n"
        "2\n00:00:01,000 --> 00:00:01,000\nblink\n\n"
        "3\n00:00:01,100 --> 00:00:01,800\nthere\n"
    )
    doc["captions"] = {"file": "c.srt"}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    assert [c.text for c in spec.cues] == ["Hello", "there"]
    warned = [w for w in spec.warnings if "no length" in w]
    assert len(warned) == 1 and warned[0].startswith("captions.file (cue 2)"), spec.warnings
    doc["captions"] = {"cues": [{"text": "x", "start_s": 1.0, "end_s": 1.0}]}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(yml)
    assert "captions.cues[0]" in str(err.value) and "no length" in str(err.value)


def test_a_tv_clip_far_larger_than_its_screen_is_a_warning(tmp_path: Path):
    """A 4K clip on a small screen is decoded in full every frame: a 1080p render of one fell
    below real time (0.47x) without a word. Over Full HD and 4x the screen's pixels: a warning
    with the command that makes a copy at the screen's size; the demo's clip says nothing."""
    from avatarrender.media import ffmpeg_exe

    yml = make_tiny_segment(tmp_path / "seg", speech_s=2.0, captions=False)
    clip = yml.parent / "assets" / "clip.mp4"
    assert not [w for w in load_spec(yml).warnings if "tv.clips[0].file" in w]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=2000x1100:r=30:d=1.5"]
    subprocess.run(
        [*cmd, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True
    )
    said = [
        w for w in load_spec(yml).warnings if w.startswith("tv.clips[0].file: clip.mp4 is 2000x1100 for a ")
    ]
    assert len(said) == 1 and "ffmpeg -i clip.mp4 -vf scale=-2:" in said[0], said

"""The segment spec's YAML side: pydantic models, the checks against the media, :func:`load_spec`.

Two passes. The YAML is parsed into pydantic models (types, ranges, unknown fields), then
:func:`load_spec` checks it against the media it names (files exist and decode, the TV screen
fits in the frame and sprites in the character's canvas, placed images show at least in part,
sizes that yuv420p needs even, caption times inside the segment). Every problem is raised as
:class:`~avatarrender.errors.SpecError` naming the YAML file and the field. What comes out is a
:class:`~avatarrender.spec.Spec`; nothing later sees these models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import string
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import AssetNotFoundError, MediaError, SpecError, warn
from .spec import (
    SpecWarning,
    EYE_STATES,
    MOUTH_SHAPES,
    PRESETS_DIR,
    RGBA,
    XY,
    AudioSettings,
    Blend,
    Blink,
    CaptionStyle,
    Captions,
    Character,
    Clip,
    ClipAudio,
    Cue,
    Layer,
    OutputSettings,
    Room,
    Spec,
    Speech,
    SubtitleTrack,
    TV,
    _layouts,
    parse_color,
    parse_cues,
)
from .timebase import frames_in, parse_fps

__all__ = ["load_spec", "load_preset", "read_yaml", "resolve_asset", "SegmentModel", "OutputModel"]


class _Model(BaseModel):
    # inf and nan compare false with every bound, so they would pass ge/le checks unnoticed
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: Any) -> Any:
        """``duration_s: true`` is a mistake, not 1 s (pydantic reads booleans as 1 and 0)."""
        flags = [value] if isinstance(value, bool) else []
        if isinstance(value, (list, tuple)):  # [x, y] positions, [x, y, w, h] screens
            flags = [v for v in value if isinstance(v, bool)]
        if flags and info.field_name:
            kinds = _kinds(cls.model_fields[info.field_name].annotation)
            if bool not in kinds and kinds & {int, float}:
                raise ValueError(f"expected a number, got {str(flags[0]).lower()}")
        return value


def _kinds(annotation: Any) -> set:
    """The plain types an annotation allows, its items' for a container (``int | float | None``
    -> {int, float, NoneType}; ``tuple[int, int]`` -> {int})."""
    import typing

    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    return set().union(*(_kinds(a) for a in args))


class OutputModel(_Model):
    preset: str = "1080p30"
    width: int | None = Field(None, ge=16, le=7680)
    height: int | None = Field(None, ge=16, le=4320)
    fps: int | float | str | None = None
    x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] | None = (
        None
    )
    crf: float | None = Field(None, ge=0, le=51)
    maxrate_kbps: int | None = Field(None, ge=100)
    segment_duration_s: float | None = Field(None, gt=0, le=10)
    segment_type: Literal["mpegts", "fmp4"] | None = None
    audio_bitrate_kbps: int | None = Field(None, ge=32, le=512)
    loudness_lufs: float | None = Field(None, ge=-70, le=0)  # EBU R 128 integrated target
    true_peak_dbtp: float | None = Field(None, ge=-20, le=0)  # true-peak ceiling
    # frames identical to the previous one written as H.264 skip frames, not by x264
    skip_identical_frames: bool | None = None


class LayerModel(_Model):
    image: str
    blend: Blend = "normal"
    opacity: float = Field(1.0, ge=0, le=1)
    position: XY = (0, 0)


class SceneModel(_Model):
    background: str
    layers: list[LayerModel] = []


class CharacterModel(_Model):
    position: XY = (0, 0)
    base: str | None = None
    mouths: dict[str, str] = {}
    mouth_offset: XY = (0, 0)
    eyes: dict[str, str] = {}
    eyes_offset: XY = (0, 0)
    states: str | None = None

    @field_validator("mouths")
    @classmethod
    def _mouth_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if k not in MOUTH_SHAPES or len(k) != 1]
        if bad:
            raise ValueError(f"unknown mouth shape(s) {bad}: use {', '.join(MOUTH_SHAPES)}")
        return v

    @field_validator("eyes")
    @classmethod
    def _eye_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if k not in EYE_STATES]
        if bad:
            raise ValueError(f"unknown eye state(s) {bad}: use open, half, closed")
        return v


class ClipAudioModel(_Model):
    """The clip's own sound, mixed under the speech (absent: the TV is silent)."""

    gain_db: float = Field(-12.0, ge=-60, le=20)
    duck_db: float = Field(-10.0, ge=-60, le=0)  # extra gain while the character speaks
    attack_s: float = Field(0.08, ge=0.001, le=5)  # how fast the duck goes down
    release_s: float = Field(0.4, ge=0.001, le=10)  # how fast it comes back


class ClipModel(_Model):
    file: str
    start_s: float = Field(0.0, ge=0)
    end_s: float | None = Field(None, gt=0)
    clip_start_s: float = Field(0.0, ge=0)
    at_end: Literal["loop", "hold"] = "hold"
    audio: ClipAudioModel | None = None


class TVModel(_Model):
    screen: tuple[int, int, int, int]
    # a clip of another shape: whole on black bars, filling the screen cut to it, or stretched
    fit: Literal["contain", "cover", "stretch"] = "contain"
    overlay: str | None = None
    overlay_position: XY = (0, 0)
    off: str | None = None
    clips: list[ClipModel] = []


class SpeechModel(_Model):
    file: str
    gain_db: float = Field(0.0, ge=-60, le=40)
    mouth_track: str | None = None
    text: str | None = None  # the words spoken (default: the captions'), aligned for the mouth
    language: str = "en-us"  # espeak-ng language of the words


class CueModel(_Model):
    text: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)


class CaptionStyleModel(_Model):
    font: str | None = None
    size_px: int = Field(44, ge=6, le=400)
    color: str = "#ffffff"
    box_color: str | None = "#000000b4"
    padding_px: int = Field(14, ge=0, le=200)
    position: XY | None = None
    max_width_px: int | None = Field(None, ge=50)
    max_lines: int = Field(3, ge=1, le=20)  # a longer caption is cut, with an ellipsis and a warning


class CaptionTrackModel(_Model):
    """A further subtitle track (another language): WebVTT only, never burned in."""

    file: str
    language: str = Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    name: str | None = None


class CaptionsModel(_Model):
    file: str | None = None
    cues: list[CueModel] = []
    style: CaptionStyleModel = CaptionStyleModel()
    burn: bool = True  # draw them into the picture (the WebVTT track is written either way)
    language: str = Field("en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")  # BCP 47
    name: str | None = None  # shown by players; default: the language tag
    tracks: list[CaptionTrackModel] = []


class AudioModel(_Model):
    """Loudness of the segment's audio; unset values come from the output preset."""

    normalise: bool = True
    loudness_lufs: float | None = Field(None, ge=-70, le=0)
    true_peak_dbtp: float | None = Field(None, ge=-20, le=0)


class BlinkModel(_Model):
    seed: int = 0
    mean_interval_s: float = Field(4.0, gt=0.5, le=60)


class SegmentModel(_Model):
    output: OutputModel = OutputModel()
    duration_s: float | None = Field(None, gt=0, le=6 * 3600)
    scene: SceneModel
    character: CharacterModel
    tv: TVModel | None = None
    speech: SpeechModel | None = None
    captions: CaptionsModel | None = None
    blink: BlinkModel = BlinkModel()
    audio: AudioModel = AudioModel()


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise KeyError(f"unknown preset {name!r}: known presets are {known}")
    return yaml.safe_load(path.read_text()) or {}


_FULL_HD_PX = 1920 * 1080  # a TV clip larger than this (and 4x its screen) is a warning


def _first_problem(errors: list[dict[str, Any]], root: Any = None) -> tuple[str | None, str]:
    """The one problem to report from pydantic's list: an unknown field before anything else,
    since a misspelt key (``charcter``) also makes the real one (``character``) look missing;
    the message then names the field it was probably meant to be."""
    import difflib

    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    err = unknown[0] if unknown else errors[0]
    field = _field(err["loc"]) or None
    if not unknown:
        return field, str(err["msg"]).removeprefix("Value error, ")  # (our validators' own words)
    parent, name = err["loc"][:-1], str(err["loc"][-1])
    missing = [
        str(e["loc"][-1]) for e in errors if e["type"] == "missing" and tuple(e["loc"][:-1]) == tuple(parent)
    ]
    model = _model_at(root or SegmentModel, parent)
    known = list(model.model_fields) if model is not None else missing
    guess = difflib.get_close_matches(name, missing or known, n=1, cutoff=0.6)
    if guess:
        return field, f"unknown field: did you mean {guess[0]!r}?"
    if known:
        return field, f"unknown field (a typo?): known fields here are {', '.join(known)}"
    return field, "unknown field (a typo?)"


def _model_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model class found at ``loc`` inside ``model`` (None if not a model)."""
    import typing

    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item type was taken at the list's field
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        while True:  # unwrap Optional[...] and list[...] to the model inside
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                break
            if not args:
                return None
            ann = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0])
        model = ann
    return model


# pydantic puts the member type of a union into an error's location (output.fps.int)
_TYPE_TAGS = {
    "int",
    "float",
    "str",
    "bool",
    "none",
    "list",
    "dict",
    "tuple",
    "function-after",
    "function-before",
    "function-plain",
    "function-wrap",
}


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and (part in _TYPE_TAGS or "[" in part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- media checks


def resolve_asset(source: Path, field: str | None, rel: str) -> Path:
    """``rel`` (a path of the YAML) made absolute; a symlink loop or an unusable path is a
    :class:`SpecError` naming the field, not a ``RuntimeError``."""
    try:
        return (source.parent / rel).resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # RuntimeError: "Symlink loop from ..."
        reason = "a symlink loop" if "loop" in str(exc).lower() else str(exc)
        raise SpecError(source, field, f"cannot resolve {rel!r}: {reason}") from None


class _Checker:
    """Checks the media a model names; every failure names the YAML and the field."""

    def __init__(self, source: Path, width: int, height: int):
        self.source = source
        self.width = width
        self.height = height
        self.hasher = hashlib.sha256()
        self.notes: list[str] = []  # warnings, for the caller

    def error(self, field: str, message: str) -> SpecError:
        return SpecError(self.source, field, message)

    def file(self, field: str, rel: str) -> Path:
        path = resolve_asset(self.source, field, rel)
        if path.is_dir():
            raise SpecError(self.source, field, f"a folder, not a file: {path}")
        if not path.is_file():
            raise AssetNotFoundError(self.source, field, f"file not found: {path}")
        self.hasher.update(field.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                self.hasher.update(block)
        return path

    def image_at(
        self, field: str, rel: str, before: Callable[[tuple[int, int]], None] | None = None
    ) -> tuple[Path, tuple[int, int]]:
        """The image's absolute path and its size (upright, as the scene will see it);
        ``before(size)`` checks the size its header gives before the image is decoded."""
        return self.images_at(field, [rel], before)[0]

    def images_at(
        self, field: str, rels: list[str], before: Callable[[tuple[int, int]], None] | None = None
    ) -> list[tuple[Path, tuple[int, int]]]:
        """:meth:`image_at` for several images of one field, decoded side by side (a character's
        27 full-size states: 0.14 s of PNG decoding on one core); the first that fails, in order,
        is the error."""
        from concurrent.futures import ThreadPoolExecutor

        from .images import decoded_size, header

        # decoded and converted as the scene will (upright, 8-bit): what it cannot use is
        # refused here, and the size is the upright one. Hashed in order, one after another.
        paths = [self.file(field, rel) for rel in rels]
        for path in paths:
            try:
                head, frames = header(path)
            except Exception:  # no image: the decoding below says so, naming the field
                continue
            if before is not None:
                before(head)
            if frames > 1:
                self.notes.append(
                    f"{field}: {path.name} is animated ({frames} frames): its first frame is shown, still"
                )

        def size(path: Path) -> tuple[int, int]:
            return decoded_size(path, field=field, source=self.source)

        if len(paths) < 4:
            return [(p, size(p)) for p in paths]
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            return list(zip(paths, pool.map(size, paths)))

    def on_frame(self, field: str, xy: tuple[int, int], size: tuple[int, int]) -> None:
        """An image placed at ``xy``: what lies outside the frame is cut off (a character's body
        below the frame's edge, one entering from the side); one wholly outside is a mistake."""
        x, y = xy
        w, h = size
        if x >= self.width or y >= self.height or x + w <= 0 or y + h <= 0:
            raise self.error(
                field,
                f"{w}x{h} at ({x}, {y}) lies wholly outside the {self.width}x{self.height} frame: "
                "nothing of it would show",
            )

    def inside(self, field: str, xy: tuple[int, int], size: tuple[int, int]) -> None:
        x, y = xy
        w, h = size
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise self.error(
                field,
                f"{w}x{h} at ({x}, {y}) reaches outside the {self.width}x{self.height} frame",
            )


def _resolve(model: SegmentModel, out: OutputSettings, source: Path) -> dict[str, Any]:
    """Check the media ``model`` names against ``out`` and resolve everything: the keyword
    arguments of :class:`Spec` but ``source``, ``output`` and ``warnings``."""
    from .media import (
        audio_duration_s,
        channels_cancel,
        check_video_decodes,
        cut_short,
        probe_video,
        read_audio,
    )
    from .timebase import AUDIO_RATE_HZ

    c = _Checker(source, out.width, out.height)
    notes = c.notes  # warnings, for the caller

    def shaped(bg: tuple[int, int]) -> None:  # told from the header: not after decoding 64 M pixels
        if abs(bg[0] * out.height - bg[1] * out.width) > max(bg[0], bg[1]) // 100:
            raise c.error(
                "scene.background",
                f"image is {bg[0]}x{bg[1]}, not the shape of the {out.width}x{out.height} output "
                "(the scene is drawn in the background's pixels and scaled to the output)",
            )

    bg_path, bg = c.image_at("scene.background", model.scene.background, shaped)
    shaped(bg)
    # Positions and sizes in the YAML are the background's pixels; the scene scales them.
    c.width, c.height = bg
    layers = []
    for i, layer in enumerate(model.scene.layers):
        path, size = c.image_at(f"scene.layers[{i}].image", layer.image)
        c.on_frame(f"scene.layers[{i}].position", layer.position, size)
        layers.append(
            Layer(image=path, blend=layer.blend, opacity=layer.opacity, position=tuple(layer.position))
        )
    room = Room(background=bg_path, background_size_px=tuple(bg), layers=tuple(layers))

    ch = model.character
    base_path = None
    mouths: dict[str, Path] = {}
    eyes: dict[str, Path] = {}
    states: dict[tuple[str, str], Path] = {}
    if ch.states:
        if ch.base or ch.mouths or ch.eyes:
            raise c.error("character.states", "give either states or base/mouths/eyes, not both")
        found = []
        try:  # only {mouth} and {eyes}, as written: a format spec ({eyes:>99999999999}) ran out of memory
            for _, name, spec_, conversion in string.Formatter().parse(ch.states):
                if name is not None and (name not in ("mouth", "eyes") or spec_ or conversion):
                    raise ValueError(
                        f"field {name!r}: only {{mouth}} and {{eyes}}, with no conversion or format spec"
                    )
        except ValueError as exc:
            raise c.error(
                "character.states",
                f"{ch.states!r} is not a pattern with {{mouth}} and {{eyes}} ({type(exc).__name__}: {exc})",
            ) from None
        if "{mouth}" not in ch.states:  # one image for every mouth: the character could not speak
            raise c.error(
                "character.states",
                f"{ch.states!r} has no {{mouth}} in it: one image per mouth x eyes state, e.g. states/{{mouth}}_{{eyes}}.png",
            )
        drawn = [
            (m, e, ch.states.format(mouth=m, eyes=e))
            for m in MOUTH_SHAPES
            for e in EYE_STATES
            if resolve_asset(source, "character.states", ch.states.format(mouth=m, eyes=e)).is_file()
        ]
        for (m, e, _), (path, size) in zip(drawn, c.images_at("character.states", [r for *_, r in drawn])):
            found.append((m, e, size))
            states[(m, e)] = path
        if not any(m == "X" and e == "open" for m, e, _ in found):
            raise c.error(
                "character.states",
                f"no image for mouth X with eyes open: {ch.states.format(mouth='X', eyes='open')}",
            )
        for m, e, size in found:
            c.on_frame("character.position", ch.position, size)
        drawn_mouths = frozenset(m for m in MOUTH_SHAPES if (m, "open") in states)
        drawn_eyes = frozenset(e for e in EYE_STATES if ("X", e) in states)
        for m in MOUTH_SHAPES:  # every pair the timeline can ask for (after fallbacks) is drawn
            for e in EYE_STATES:
                if m in drawn_mouths and e in drawn_eyes and (m, e) not in states:
                    raise c.error(
                        "character.states",
                        f"no image for mouth {m} with eyes {e}: "
                        f"{ch.states.format(mouth=m, eyes=e)} (mouth {m} is drawn with "
                        f"eyes open, eyes {e} with mouth X)",
                    )
    else:
        if not ch.base:
            raise c.error("character.base", "missing: give base, mouths and eyes (or states)")
        base_path, base = c.image_at("character.base", ch.base)
        c.on_frame("character.position", ch.position, base)
        if "X" not in ch.mouths:
            raise c.error("character.mouths", "needs at least X (the rest shape)")
        for e in ("open", "closed"):
            if e not in ch.eyes:
                raise c.error("character.eyes", f"needs at least open and closed; {e} is missing")
        for group, sprites, offset, into in (
            ("mouths", ch.mouths, ch.mouth_offset, mouths),
            ("eyes", ch.eyes, ch.eyes_offset, eyes),
        ):
            for name, rel in sprites.items():
                path, size = c.image_at(f"character.{group}.{name}", rel)
                into[name] = path
                ox, oy = offset
                if ox < 0 or oy < 0 or ox + size[0] > base[0] or oy + size[1] > base[1]:
                    raise c.error(
                        f"character.{group}.{name}",
                        f"{size[0]}x{size[1]} sprite at offset {offset} reaches outside the "
                        f"{base[0]}x{base[1]} character canvas",
                    )
        drawn_mouths, drawn_eyes = frozenset(mouths), frozenset(eyes)
    character = Character(
        position=tuple(ch.position),
        base=base_path,
        mouths=mouths,
        mouth_offset=tuple(ch.mouth_offset),
        eyes=eyes,
        eyes_offset=tuple(ch.eyes_offset),
        states=states,
        drawn_mouths=drawn_mouths,
        drawn_eyes=drawn_eyes,
    )

    tv = None
    if model.tv:
        x, y, w, h = model.tv.screen
        if w <= 0 or h <= 0:
            raise c.error("tv.screen", "width and height must be positive")
        if x % 2 or y % 2 or w % 2 or h % 2:
            raise c.error("tv.screen", f"{[x, y, w, h]} has odd numbers: yuv420p needs even ones")
        c.inside("tv.screen", (x, y), (w, h))
        overlay = off = None
        if model.tv.overlay:
            overlay, size = c.image_at("tv.overlay", model.tv.overlay)
            c.on_frame("tv.overlay_position", model.tv.overlay_position, size)
        if model.tv.off:
            off, _ = c.image_at("tv.off", model.tv.off)
        clips = []
        for i, clip in enumerate(model.tv.clips):
            field = f"tv.clips[{i}].file"
            path = c.file(field, clip.file)
            try:
                info = probe_video(path)
                # the part of the file the segment shows: from clip_start_s on, for as long
                # as the clip is on (a loop comes back to clip_start_s); to the file's end if
                # end_s is not given
                shown = None if clip.end_s is None else clip.clip_start_s + max(clip.end_s - clip.start_s, 0)
                check_video_decodes(path, from_s=clip.clip_start_s, until_s=shown)
            except MediaError as exc:
                raise MediaError(source, field, exc.message) from None
            if info.width * info.height > max(_FULL_HD_PX, 4 * w * h):
                # decoded every frame in full: a 4K HEVC clip on a 720x404 screen took a 1080p
                # render below real time (0.47x), the rest of the scene costing a fifth of it
                c.notes.append(
                    f"{field}: {path.name} is {info.width}x{info.height} for a {w}x{h} screen: "
                    "decoding it costs more than the rest of the render; a copy at the screen's "
                    f"size renders faster (ffmpeg -i {path.name} -vf scale=-2:{h} -c:v libx264 "
                    "-crf 18 -c:a copy small.mp4)"
                )
            if clip.clip_start_s >= info.duration_s:
                raise c.error(
                    f"tv.clips[{i}].clip_start_s",
                    f"{clip.clip_start_s} s is past the clip's end ({info.duration_s:.3f} s)",
                )
            if clip.end_s is not None and clip.end_s <= clip.start_s:
                raise c.error(f"tv.clips[{i}].end_s", "must be after start_s")
            if clip.audio is not None and not info.has_audio:
                raise c.error(
                    f"tv.clips[{i}].audio",
                    f"{path.name} has no audio stream: remove audio: or use a clip with sound",
                )
            end_s = (
                clip.end_s if clip.end_s is not None else clip.start_s + info.duration_s - clip.clip_start_s
            )
            sound = (
                None
                if clip.audio is None
                else ClipAudio(
                    gain_db=clip.audio.gain_db,
                    duck_db=clip.audio.duck_db,
                    attack_s=clip.audio.attack_s,
                    release_s=clip.audio.release_s,
                )
            )
            clips.append(
                Clip(
                    file=path,
                    start_s=clip.start_s,
                    end_s=end_s,
                    clip_start_s=clip.clip_start_s,
                    at_end=clip.at_end,
                    audio=sound,
                    file_duration_s=info.duration_s,
                )
            )
        tv = TV(
            screen=tuple(model.tv.screen),
            fit=model.tv.fit,
            overlay=overlay,
            overlay_position=tuple(model.tv.overlay_position),
            off=off,
            clips=tuple(clips),
        )

    speech = None
    speech_s = None
    if model.speech:
        path = c.file("speech.file", model.speech.file)
        try:
            header_s = audio_duration_s(path)
            # decoded to its end, as the render's analysis will (which gets these samples)
            mono = read_audio(path, sample_rate_hz=AUDIO_RATE_HZ)
        except MediaError as exc:
            raise MediaError(source, "speech.file", exc.message) from None
        speech_s = len(mono) / AUDIO_RATE_HZ
        if channels_cancel(path, mono):
            notes.append(
                "speech.file: its channels cancel out when mixed to mono (one inverted?): the "
                "speech airs silent; invert one channel or give one of them"
            )
        if short := cut_short(header_s, speech_s):
            notes.append(f"speech.file: {short}")
        if model.speech.language != "en-us":
            from .phonemes import has_language

            if has_language(model.speech.language) is False:
                raise c.error(
                    "speech.language",
                    f"espeak-ng has no language {model.speech.language!r} (espeak-ng --voices lists them)",
                )
        mouth_track_path = None
        if model.speech.mouth_track:
            mouth_track_path = c.file("speech.mouth_track", model.speech.mouth_track)
        speech = Speech(
            file=path,
            gain_db=model.speech.gain_db,
            mouth_track=mouth_track_path,
            text=model.speech.text,
            language=model.speech.language,
        )
    duration: float | Fraction
    if model.duration_s is not None:
        duration = model.duration_s  # as written: frames_in reads 0.3 as 3/10
    elif speech_s is not None:
        duration = speech_s
    else:
        raise c.error("duration_s", "missing: a segment without speech needs duration_s")
    n = frames_in(duration, out.fps)
    if n < 1:
        raise c.error("duration_s", "shorter than one frame")
    duration = Fraction(n) / out.fps
    if speech_s is not None and speech_s > float(duration) + 0.5:
        notes.append(
            f"duration_s: {float(duration):.2f} s cuts the speech ({speech_s:.2f} s) short "
            "(leave duration_s out to take the speech's length)"
        )
    for i, clip in enumerate(model.tv.clips if model.tv else ()):
        if clip.start_s >= float(duration):  # as for a caption: one that runs past the end is cut there
            raise c.error(
                f"tv.clips[{i}].start_s",
                f"{clip.start_s} s is not inside the segment (0-{float(duration):.3f} s): the clip would never show",
            )
    if speech is not None and speech.mouth_track is not None:
        from . import lipsync  # parsed now, as the analysis will: a bad track stops before any output

        try:
            lipsync.read_track(speech.mouth_track, fps=out.fps, n_frames=n)
        except SpecError as exc:
            raise SpecError(source, "speech.mouth_track", f"{speech.mouth_track}: {exc.message}") from None

    cues: list[Cue] = []
    cue_fields: list[str] = []  # the field that gave each cue, for messages
    captions = None
    if model.captions:
        cap = model.captions
        if cap.file:
            path = c.file("captions.file", cap.file)
            try:
                cues = parse_cues(_caption_text(path))
            except ValueError as exc:
                raise MediaError(source, "captions.file", f"{path}: {exc}") from None
            if not cues:
                raise MediaError(source, "captions.file", _NO_CUES.format(path=path))
        from_file = len(cues)
        cues += [Cue(q.text, q.start_s, q.end_s) for q in cap.cues]
        cue_fields = [_cue_field(i, from_file) for i in range(len(cues))]
        late: set[int] = set()  # a file's cues after the end (the segment cut shorter than its SRT)
        empty: list[int] = []  # a file's cues of no length (subtitle editors leave them): no caption
        for i, q in enumerate(cues):
            where = cue_fields[i]
            if q.end_s == q.start_s and i < from_file:
                empty.append(i)
                continue
            if q.end_s <= q.start_s:
                raise c.error(
                    where,
                    f"has no length (starts and ends at {q.start_s} s)"
                    if q.end_s == q.start_s
                    else f"ends ({q.end_s} s) before it starts ({q.start_s} s)",
                )
            if q.start_s >= float(duration):  # one that runs past the end is cut there
                if i < from_file:
                    late.add(i)
                    continue
                raise c.error(
                    where,
                    f"{q.start_s}-{q.end_s} s lies outside the segment (0-{float(duration):.3f} s)",
                )
        if late:
            notes.append(_late_cues("captions.file", [cues[i] for i in sorted(late)], duration))
        if empty:
            more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
            notes.append(
                f"{cue_fields[empty[0]]}: starts and ends at {cues[empty[0]].start_s} s{more}: "
                "no length, so never shown (left out)"
            )
        if late or empty:
            cues = [q for i, q in enumerate(cues) if i not in late and i not in empty]
            cue_fields = [f for i, f in enumerate(cue_fields) if i not in late and i not in empty]
        font_path = None
        if cap.style.font:
            from PIL import ImageFont

            font_path = c.file("captions.style.font", cap.style.font)
            try:
                ImageFont.truetype(str(font_path), cap.style.size_px)
            except Exception as exc:  # OSError "unknown file format", and others for odd files
                raise MediaError(
                    source, "captions.style.font", f"cannot load font {font_path}: {exc}"
                ) from None
        tracks = []
        # players list a group's subtitle tracks by name: two alike make an invalid master
        # playlist (RFC 8216 4.3.4.1.1), and one of them cannot be chosen
        names = {cap.name or cap.language: "the captions' own track"} if cues else {}  # (no cues: no track)
        for i, track in enumerate(cap.tracks):
            name = track.name or track.language
            if name in names:
                raise c.error(
                    f"captions.tracks[{i}].{'name' if track.name else 'language'}",
                    f"{name!r} names {names[name]} too: give this track a name of its own (name: ...)",
                )
            names[name] = f"captions.tracks[{i}]"
            path = c.file(f"captions.tracks[{i}].file", track.file)
            try:
                track_cues = parse_cues(_caption_text(path))
            except ValueError as exc:
                raise MediaError(source, f"captions.tracks[{i}].file", f"{path}: {exc}") from None
            if not track_cues:
                raise MediaError(source, f"captions.tracks[{i}].file", _NO_CUES.format(path=path))
            if after := [q for q in track_cues if q.start_s >= float(duration)]:
                notes.append(_late_cues(f"captions.tracks[{i}].file", after, duration))
            tracks.append(
                SubtitleTrack(
                    file=path,
                    language=track.language,
                    name=track.name or track.language,
                    cues=tuple(track_cues),
                )
            )
        colors: dict[str, RGBA | None] = {}
        for key in ("color", "box_color"):
            val = getattr(cap.style, key)
            colors[key] = None
            if val is not None:
                try:
                    colors[key] = parse_color(val)
                except ValueError as exc:
                    raise c.error(f"captions.style.{key}", str(exc)) from None
        s = cap.style
        style = CaptionStyle(
            font=font_path,
            size_px=s.size_px,
            color=colors["color"],
            box_color=colors["box_color"],
            padding_px=s.padding_px,
            position=tuple(s.position) if s.position else None,
            max_width_px=s.max_width_px,
            max_lines=s.max_lines,
        )
        captions = Captions(
            style=style,
            burn=cap.burn,
            language=cap.language,
            name=cap.name or cap.language,
            tracks=tuple(tracks),
        )
    a = model.audio
    audio = AudioSettings(
        normalise=a.normalise,
        loudness_lufs=a.loudness_lufs if a.loudness_lufs is not None else out.loudness_lufs,
        true_peak_dbtp=a.true_peak_dbtp if a.true_peak_dbtp is not None else out.true_peak_dbtp,
    )
    return dict(
        duration_s=duration,
        frame_count=frames_in(duration, out.fps),
        scene=room,
        character=character,
        tv=tv,
        speech=speech,
        captions=captions,
        audio=audio,
        blink=Blink(seed=model.blink.seed, mean_interval_s=model.blink.mean_interval_s),
        cues=tuple(cues),
        asset_hash=c.hasher.hexdigest()[:20],
        notes=notes,
        cue_fields=cue_fields,
    )


# a plain-text script, an .ass file or junk named .srt: no "-->" time line, so nothing to show
_NO_CUES = "{path}: no caption cues in it (SubRip or WebVTT: a time line 'start --> end', then the text)"


def _late_cues(field: str, late: list[Cue], duration: float | Fraction) -> str:
    """The warning for a caption file's cues that start after the segment's end (left out)."""
    n = len(late)
    return (
        f"{field}: {n} cue{'s' if n > 1 else ''} from {late[0].start_s:g} s on start after the "
        f"segment's end ({float(duration):.3f} s): left out"
    )


def _caption_text(path: Path) -> str:
    """A caption file's text: UTF-8 (a BOM or not), or UTF-16 with its BOM, as subtitle editors
    save it. Anything else is refused (ValueError) rather than guessed: a guess at Windows-1252
    would put mojibake on air for a Cyrillic or Greek file."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at {exc.start}: Latin-1 or "
            "Windows-1252?): save it as UTF-8"
        ) from None


def _cue_field(i: int, from_file: int) -> str:
    """The field that gave cue ``i`` of ``from_file`` cues from the file and then the inline
    ones (a file's cue counts from 1, as its own numbering does)."""
    return f"captions.file (cue {i + 1})" if i < from_file else f"captions.cues[{i - from_file}]"


def _output(model: OutputModel, source: Path) -> OutputSettings:
    try:
        values = load_preset(model.preset)
    except KeyError as exc:
        raise SpecError(source, "output.preset", exc.args[0]) from None
    values.update(model.model_dump(exclude_none=True, exclude={"preset"}))
    try:
        fps = parse_fps(values["fps"])
        if not 1 <= fps <= 240:
            raise ValueError(fps)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        raise SpecError(
            source,
            "output.fps",
            f"{values['fps']!r} is not a frame rate: use a "
            "number of frames per second from 1 to 240, such as 30 or 30000/1001",
        ) from None
    w, h = int(values["width"]), int(values["height"])
    if w % 2 or h % 2:
        raise SpecError(
            source, "output.width" if w % 2 else "output.height", f"{w}x{h}: yuv420p needs even sizes"
        )
    if values["segment_type"] != "mpegts":
        # fMP4 needs one shared init segment and per-fragment decode times across our
        # per-segment encoders; until that exists, refuse it rather than write TS silently.
        raise SpecError(
            source, "output.segment_type", f"{values['segment_type']} is not supported yet: use mpegts"
        )
    seg = Fraction(values["segment_duration_s"]).limit_denominator(1000)
    if (seg * fps).denominator != 1:
        whole = max(1, round(seg * fps))
        if model.segment_duration_s is None:
            # the preset's length (1 s) at an NTSC rate: the nearest whole frames (30 frames,
            # 1.001 s at 30000/1001), so that the documented rates work as they are
            seg = Fraction(whole) / fps
        else:
            raise SpecError(
                source,
                "output.segment_duration_s",
                f"{float(seg)} s is not a whole number of frames at {fps} fps: use "
                f"{float(Fraction(whole) / fps):.6g} ({whole} frames) or leave it out",
            )
    return OutputSettings(
        width=w,
        height=h,
        fps=fps,
        x264_preset=str(values["x264_preset"]),
        crf=float(values["crf"]),
        maxrate_kbps=int(values["maxrate_kbps"]),
        segment_duration_s=seg,
        segment_type=str(values["segment_type"]),
        audio_bitrate_kbps=int(values["audio_bitrate_kbps"]),
        loudness_lufs=float(values.get("loudness_lufs", -16.0)),
        true_peak_dbtp=float(values.get("true_peak_dbtp", -1.5)),
        skip_identical_frames=bool(values.get("skip_identical_frames", True)),
    )


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans, which
    would turn ``tv: {off: ...}`` into a ``False`` key. A key given twice in one mapping is an
    error (YAML 1.2 says keys are unique; PyYAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:  # as written: keys merged in by << may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: PyYAML's own check reports it
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first given at line {first.line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with YAML 1.2 booleans (also for schedules)."""
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Yaml12Loader)


def load_spec(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Spec:
    """Read, validate and resolve a ``segment.yaml`` (:func:`avatarrender.spec.load_spec`, which
    is this function imported on first use)."""
    try:
        source = Path(path).resolve()
    except (RuntimeError, OSError) as exc:
        raise SpecError(path, None, f"cannot resolve the segment file's path: {exc}") from None
    if source.is_dir():
        raise SpecError(source, None, "a folder, not a segment file: give its segment.yaml")
    if not source.is_file():
        raise AssetNotFoundError(source, None, "segment file not found")
    try:
        doc = read_yaml(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise SpecError(source, where, f"malformed YAML: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError:
        raise SpecError(source, None, "not UTF-8 text") from None
    if not isinstance(doc, dict):
        raise SpecError(source, None, "expected a mapping at the top (scene:, character:, ...)")
    if overrides:
        doc = {**doc, "output": {**(doc.get("output") or {}), **overrides}}
    try:
        model = SegmentModel.model_validate(doc)
    except ValidationError as exc:
        field, msg = _first_problem(exc.errors())
        raise SpecError(source, field, msg) from None
    out = _output(model.output, source)
    parts = _resolve(model, out, source)
    said: list[str] = parts.pop("notes")
    cue_fields: list[str] = parts.pop("cue_fields")
    captions = parts["captions"]
    if captions is not None and captions.burn:
        laid = _layouts(parts["cues"], captions.style, parts["scene"], out)
        parts["captions"] = dataclasses.replace(captions, layouts=tuple(lay for lay, _ in laid))
        from .text import unshaped

        flat = next((i for i, (_, cue) in enumerate(laid) if unshaped(cue.text)), None)
        if flat is not None:
            said.append(
                f"{cue_fields[flat]}: this Pillow has no libraqm: right-to-left and "
                "shaped scripts (Arabic, Hebrew, Indic) are drawn unjoined and left to right "
                "(install libraqm-dev and run scripts/setup.sh again; avatarrender doctor says so)"
            )
        no_font = [(i, miss) for i, (lay, cue) in enumerate(laid) if (miss := lay.chain.missing(cue.text))]
        if no_font:
            i, miss = no_font[0]
            more = f" (and {len(no_font) - 1} more cues)" if len(no_font) > 1 else ""
            said.append(
                f"{cue_fields[i]}: no font here draws {' '.join(miss[:12])}{more}: they show "
                "as boxes (give captions.style.font, or add fonts with AVATARRENDER_FALLBACK_FONTS)"
            )
        for i, (lay, cue) in enumerate(zip((lay for lay, _ in laid), parts["cues"])):
            if lay.wanted_lines > len(lay.lines):
                said.append(
                    f"{cue_fields[i]}: {len(cue.text)} characters need "
                    f"{lay.wanted_lines} lines; cut to {len(lay.lines)} with an ellipsis (shorten "
                    "the cue, split it, or raise captions.style.max_lines)"
                )
        # the picture has room for one caption at a time; a player stacks overlapping cues
        frame_s = float(1 / out.fps)
        order = sorted(range(len(parts["cues"])), key=lambda k: parts["cues"][k].start_s)
        overlaps = [
            (a, b, parts["cues"][a].end_s - parts["cues"][b].start_s)
            for a, b in zip(order, order[1:])
            if parts["cues"][a].end_s - parts["cues"][b].start_s > frame_s
        ]
        if overlaps:
            a, b, by_s = overlaps[0]
            more = f" (and {len(overlaps) - 1} more)" if len(overlaps) > 1 else ""
            said.append(
                f"{cue_fields[b]}: starts {by_s:.2f} s before "
                f"{cue_fields[a]} ends{more}: one caption is burned in at a time, "
                "the one that started last (the subtitle track has both)"
            )
    for note in said:  # to a script as to the command (whose warnings are one line each)
        warn(f"{source}: {note}", SpecWarning)
    return Spec(source=source, output=out, warnings=tuple(said), **parts)

"""The segment spec: ``segment.yaml`` validated into typed, frozen objects with every path resolved.

Two passes. The YAML is parsed into pydantic models (types, ranges, unknown fields), then
:func:`load_spec` checks it against the media it names (files exist and decode, the TV screen
fits in the frame, placed images show at least in part, sizes that yuv420p needs even, caption
times inside the segment). Every problem is raised as :class:`~avatarrender.errors.SpecError` naming the YAML file and the field.

This module holds :class:`Spec`: frozen dataclasses with everything resolved once (absolute
paths, parsed colours, the caption font located, caption cues laid out, clip ends), all a later
stage sees. The pydantic models and the checks live in :mod:`avatarrender.specload`, imported only
by :func:`load_spec`: a chunk worker unpickles a Spec without importing pydantic or PyYAML (about
0.15 s of each worker's start-up, before its first frame).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from .timebase import frames_in

__all__ = [
    "PRESETS_DIR",
    "AudioSettings",
    "Blink",
    "CaptionStyle",
    "Captions",
    "Character",
    "Clip",
    "ClipAudio",
    "Cue",
    "Layer",
    "OutputSettings",
    "Room",
    "Spec",
    "SpecWarning",
    "Speech",
    "SubtitleTrack",
    "TV",
    "load_spec",
    "parse_color",
    "parse_cues",
]

PRESETS_DIR = Path(__file__).resolve().parent / "presets"  # in a checkout: a link to ../presets

Blend = Literal["normal", "add", "screen", "multiply"]
XY = tuple[int, int]
MOUTH_SHAPES = "XABCDEFGH"
EYE_STATES = ("open", "half", "closed")


# --------------------------------------------------------------------------- resolved objects


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """Encoder and packaging settings, a preset with the spec's overrides applied."""

    width: int
    height: int
    fps: Fraction
    x264_preset: str
    crf: float
    maxrate_kbps: int
    segment_duration_s: Fraction
    segment_type: str
    audio_bitrate_kbps: int
    loudness_lufs: float = -16.0
    true_peak_dbtp: float = -1.5
    # A frame identical to the previous one is written as an all-P_Skip H.264 frame instead of
    # going through x264 (avatarrender.h264); off: x264 encodes every frame.
    skip_identical_frames: bool = True

    @property
    def frames_per_segment(self) -> int:
        return int(self.segment_duration_s * self.fps)


@dataclasses.dataclass(frozen=True)
class Cue:
    """One caption: text shown from ``start_s`` (inclusive) to ``end_s`` (exclusive)."""

    text: str
    start_s: float
    end_s: float


RGBA = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Layer:
    """A lighting or decor image blended once into the background (``scene.layers[i]``)."""

    image: Path
    blend: str  # normal, add, screen or multiply
    opacity: float  # 0-1
    position: XY  # top-left, background px


@dataclasses.dataclass(frozen=True)
class Room:
    """The static scene (``scene:``): the background and its layers.

    Attributes
    ----------
    background : Path
    background_size_px : (int, int)
        The background's upright size. The YAML's positions and sizes are in these pixels;
        the render scales them by ``output.width / background_size_px[0]``.
    layers : tuple of Layer
    """

    background: Path
    background_size_px: tuple[int, int]
    layers: tuple[Layer, ...] = ()


@dataclasses.dataclass(frozen=True)
class Character:
    """The character (``character:``): sprites over a base, or one pre-drawn image per state.

    Attributes
    ----------
    position : (int, int)
        Top-left of the character's canvas, background px.
    base : Path or None
        The body the sprites go on (None with ``states``).
    mouths, eyes : dict
        Shape letter (``X``, ``A``-``H``) or eye state (``open``, ``half``, ``closed``) -> image;
        empty with ``states``.
    mouth_offset, eyes_offset : (int, int)
        Sprite top-left inside the character's canvas, background px.
    states : dict
        (mouth, eyes) -> the pre-drawn image of that state, for every state the render can show
        (``character.states``); empty with sprites.
    drawn_mouths : frozenset of str
        The mouth shapes drawn (with states: those that have an image with eyes open).
    drawn_eyes : frozenset of str
        The eye states drawn (with states: those that have an image with mouth X).
    """

    position: XY
    base: Path | None
    mouths: dict[str, Path]
    mouth_offset: XY
    eyes: dict[str, Path]
    eyes_offset: XY
    states: dict[tuple[str, str], Path]
    drawn_mouths: frozenset[str]
    drawn_eyes: frozenset[str]


@dataclasses.dataclass(frozen=True)
class ClipAudio:
    """The clip's own sound under the speech (``tv.clips[i].audio``), in dB and seconds."""

    gain_db: float
    duck_db: float
    attack_s: float
    release_s: float


@dataclasses.dataclass(frozen=True)
class Clip:
    """A TV clip (``tv.clips[i]``), with its end resolved.

    Attributes
    ----------
    file : Path
    start_s, end_s : float
        When it is on screen in the segment; ``end_s`` is the YAML's, or where the file runs out
        (``start_s + file_duration_s - clip_start_s``) when not given.
    clip_start_s : float
        Where in the file it starts.
    at_end : str
        ``loop`` or ``hold`` (the last frame).
    audio : ClipAudio or None
        None: the TV is silent.
    file_duration_s : float
        Length of the file's video.
    """

    file: Path
    start_s: float
    end_s: float
    clip_start_s: float
    at_end: str
    audio: ClipAudio | None
    file_duration_s: float


@dataclasses.dataclass(frozen=True)
class TV:
    """The TV set (``tv:``). ``screen`` is (x, y, w, h) in background px."""

    screen: tuple[int, int, int, int]
    overlay: Path | None
    overlay_position: XY
    off: Path | None
    clips: tuple[Clip, ...] = ()
    fit: str = "contain"  # a clip of another shape: "contain", "cover" or "stretch"


@dataclasses.dataclass(frozen=True)
class Speech:
    """The speech (``speech:``): checked to decode to its end at load."""

    file: Path
    gain_db: float
    mouth_track: Path | None
    text: str | None  # the words spoken, aligned for the mouth (None: the captions', if any)
    language: str  # espeak-ng language of the words


@dataclasses.dataclass(frozen=True)
class CaptionStyle:
    """``captions.style`` with the font located and the colours parsed to (r, g, b, a)."""

    font: Path | None  # None: the default chain (DejaVu Sans where installed)
    size_px: int
    color: RGBA
    box_color: RGBA | None
    padding_px: int
    position: XY | None
    max_width_px: int | None
    max_lines: int


@dataclasses.dataclass(frozen=True)
class SubtitleTrack:
    """A further subtitle track (``captions.tracks[i]``), its cues parsed at load."""

    file: Path
    language: str  # BCP 47
    name: str  # shown by players (the language tag when not given)
    cues: tuple[Cue, ...]


@dataclasses.dataclass(frozen=True)
class Captions:
    """The captions (``captions:``); their cues are :attr:`Spec.cues`.

    Attributes
    ----------
    style : CaptionStyle
    burn : bool
        Drawn into the picture (the WebVTT track is written either way).
    language, name : str
        Of the captions' own subtitle track (``name`` defaults to the language tag).
    tracks : tuple of SubtitleTrack
        Further subtitle tracks, WebVTT only.
    layouts : tuple of CaptionLayout
        One per cue of :attr:`Spec.cues`, in output pixels: laid out once at load, drawn by the
        scene as laid out (empty when ``burn`` is false).
    """

    style: CaptionStyle
    burn: bool
    language: str
    name: str
    tracks: tuple[SubtitleTrack, ...]
    layouts: tuple[Any, ...] = ()  # text.CaptionLayout


@dataclasses.dataclass(frozen=True)
class AudioSettings:
    """Loudness of the segment's audio (``audio:`` over the output preset), LUFS and dBTP."""

    normalise: bool
    loudness_lufs: float
    true_peak_dbtp: float


@dataclasses.dataclass(frozen=True)
class Blink:
    """Blinks (``blink:``): seeded, so a spec always blinks the same."""

    seed: int
    mean_interval_s: float


@dataclasses.dataclass(frozen=True)
class Spec:
    """A validated segment, fully resolved: what every later stage reads (never the YAML's model).

    Paths are absolute, colours (r, g, b, a), the caption font located and opened once, caption
    cues laid out, clip ends known. :func:`load_spec` builds it; :meth:`idle` and
    :meth:`with_output` derive others.

    Attributes
    ----------
    source : Path
        The YAML file (for error messages).
    output : OutputSettings
    duration_s : Fraction
        Length of the segment, whole frames.
    frame_count : int
        ``duration_s * fps``.
    scene : Room
    character : Character
    tv : TV or None
    speech : Speech or None
    captions : Captions or None
    audio : AudioSettings
    blink : Blink
    cues : tuple of Cue
        The captions' cues (file, then inline), in the order the timeline indexes them.
    asset_hash : str
        Hash of the bytes of every file named.
    warnings : tuple of str
        ``"FIELD: what"``: rendered anyway, told to the user.
    """

    source: Path
    output: OutputSettings
    duration_s: Fraction
    frame_count: int
    scene: Room
    character: Character
    tv: TV | None
    speech: Speech | None
    captions: Captions | None
    audio: AudioSettings
    blink: Blink
    cues: tuple[Cue, ...]
    asset_hash: str
    warnings: tuple[str, ...] = ()

    @property
    def clip_durations_s(self) -> tuple[float, ...]:
        """Length of each TV clip's file, s."""
        return tuple(c.file_duration_s for c in self.tv.clips) if self.tv else ()

    def input_paths(self) -> set[Path]:
        """The YAML file and every file it names (images, fonts, clips, speech, captions)."""
        found = {self.source}

        def walk(obj: Any) -> None:
            if isinstance(obj, Path):
                found.add(obj)
            elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                for f in dataclasses.fields(obj):
                    walk(getattr(obj, f.name))
            elif isinstance(obj, dict):
                for v in obj.values():
                    walk(v)
            elif isinstance(obj, (tuple, list, frozenset, set)):
                for v in obj:
                    walk(v)

        for f in dataclasses.fields(self):
            if f.name not in ("source", "output"):
                walk(getattr(self, f.name))
        return found

    @functools.cached_property
    def spec_hash(self) -> str:
        """Content hash of everything that decides the output: settings, timing, asset bytes.

        Paths count relative to the YAML's folder, so a moved folder keeps its hash.
        """
        doc = {
            "spec": plain(
                self, base=self.source.parent, skip=("source", "output", "asset_hash", "warnings", "layouts")
            ),
            "output": {k: str(v) for k, v in dataclasses.asdict(self.output).items()},
            "assets": self.asset_hash,
            "v": 2,
        }
        blob = json.dumps(doc, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def idle(self, duration_s: float) -> Spec:
        """The same scene and character with silence, no captions and the TV off (the filler).

        Parameters
        ----------
        duration_s : float
            Length wanted, s; rounded to whole frames.
        """
        n = frames_in(duration_s, self.output.fps)
        return dataclasses.replace(
            self,
            speech=None,
            captions=None,
            tv=dataclasses.replace(self.tv, clips=()) if self.tv else None,
            duration_s=Fraction(n) / self.output.fps,
            frame_count=n,
            cues=(),
            warnings=(),
        )

    def cut(self, duration_s: float) -> Spec:
        """The first ``duration_s`` of this segment (the render service's warm-up): the cues
        that start in it, with their layouts; speech and clips are cut by the render itself.

        Parameters
        ----------
        duration_s : float
            Length wanted, s; rounded to whole frames, at most the segment's.
        """
        n = min(self.frame_count, frames_in(duration_s, self.output.fps))
        end_s = Fraction(n) / self.output.fps
        keep = [i for i, c in enumerate(self.cues) if c.start_s < end_s]
        captions = self.captions
        if captions is not None and captions.layouts:
            captions = dataclasses.replace(captions, layouts=tuple(captions.layouts[i] for i in keep))
        return dataclasses.replace(
            self,
            duration_s=end_s,
            frame_count=n,
            cues=tuple(self.cues[i] for i in keep),
            captions=captions,
            warnings=(),
        )

    def with_output(self, **overrides: Any) -> Spec:
        """A copy with output settings replaced (for tests and benchmarks: a small render); the
        captions are laid out again for the new frame size.

        Parameters
        ----------
        **overrides
            Fields of :class:`OutputSettings`.
        """
        out = dataclasses.replace(self.output, **overrides)
        n = frames_in(self.duration_s, out.fps)
        captions = self.captions
        if captions is not None and captions.burn:
            layouts = tuple(lay for lay, _ in _layouts(self.cues, captions.style, self.scene, out))
            captions = dataclasses.replace(captions, layouts=layouts)
        return dataclasses.replace(
            self, output=out, frame_count=n, duration_s=Fraction(n) / out.fps, captions=captions
        )


def plain(obj: Any, *, base: Path | None = None, skip: tuple[str, ...] = ()) -> Any:
    """``obj`` (resolved spec objects) as JSON-able data: dataclasses as dicts without the
    fields named in ``skip``, paths as text (relative to ``base`` when given), tuple keys
    joined with ``/``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: plain(getattr(obj, f.name), base=base, skip=skip)
            for f in dataclasses.fields(obj)
            if f.name not in skip
        }
    if isinstance(obj, Path):
        return os.path.relpath(obj, base) if base is not None else str(obj)
    if isinstance(obj, dict):
        return {
            ("/".join(k) if isinstance(k, tuple) else str(k)): plain(v, base=base, skip=skip)
            for k, v in sorted(obj.items())
        }
    if isinstance(obj, (tuple, list, frozenset, set)):
        items = sorted(obj) if isinstance(obj, (frozenset, set)) else obj
        return [plain(v, base=base, skip=skip) for v in items]
    if isinstance(obj, Fraction):
        return str(obj)
    return obj


# --------------------------------------------------------------------------- helpers

_COLOR = re.compile(r"^#([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")


def parse_color(value: str) -> tuple[int, int, int, int]:
    """``"#rrggbb"`` or ``"#rrggbbaa"`` -> (r, g, b, a)."""
    m = _COLOR.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a colour: use #rrggbb or #rrggbbaa")
    rgb = bytes.fromhex(m.group(1))
    a = int(m.group(2), 16) if m.group(2) else 255
    return rgb[0], rgb[1], rgb[2], a


_TS = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})")


def _ts_s(text: str) -> float:
    m = _TS.fullmatch(text.strip())
    if not m:
        raise ValueError(f"bad timestamp {text!r}")
    h, mnt, s, ms = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


# a cue's time line: 'start --> end' (then WebVTT's settings); text with an arrow in it is text
_TIME_LINE = re.compile(
    r"\s*(?:\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}\s*-->\s*(?:\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}(\s|$)"
)
_CUE_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")


def parse_cues(text: str) -> list[Cue]:
    """Parse SubRip (.srt) or WebVTT (.vtt) text into cues; styling tags are dropped and
    character references (``&lt;``, ``&amp;``, ``&nbsp;``, ...) read as the characters they stand for."""
    cues = []
    blocks = re.split(r"\r?\n\s*\r?\n", text.replace("\ufeff", "").strip())
    for block in blocks:
        lines = [ln for ln in block.splitlines() if ln.strip()]
        # every time line starts a cue: machine-made SRT files often leave out the blank lines
        # between cues (the next cue's number and times were drawn as the cue's text)
        arrows = [i for i, ln in enumerate(lines) if _TIME_LINE.match(ln)]
        # (none: a WEBVTT header, a NOTE or STYLE block, or a stray index line)
        for k, arrow in enumerate(arrows):
            text_lines = lines[arrow + 1 : arrows[k + 1] if k + 1 < len(arrows) else len(lines)]
            if k + 1 < len(arrows) and text_lines and text_lines[-1].strip().isdigit():
                text_lines = text_lines[:-1]  # the next cue's number
            start, end = lines[arrow].split("-->", 1)
            end = end.strip().split()[0]  # VTT cue settings follow the end time
            # tags out first (HTML-like, and SubStation's {\an8} / {\i1} that SRT files carry),
            # then the references in: "&lt;b&gt;" is text that shows as "<b>"; the cue's own
            # lines stay lines (two speakers' lines are two lines on screen)
            body = "\n".join(t for ln in text_lines if (t := html.unescape(_CUE_TAGS.sub("", ln)).strip()))
            if body:  # a cue with no text is no caption (it drew an empty box)
                cues.append(Cue(text=body, start_s=_ts_s(start), end_s=_ts_s(end)))
    return cues


class SpecWarning(UserWarning):
    """What the spec check found that renders anyway (a caption cut short, glyphs no font draws,
    an animated image shown still, speech cut off in its file): ``warnings.warn`` by
    :func:`avatarrender.load_spec`, the file and the field in its message; also kept in
    ``Spec.warnings``."""


def load_spec(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Spec:
    """Read, validate and resolve a ``segment.yaml``: every check a render makes, done here.

    ``avatarrender validate`` is this function; ``render`` calls it first, so both refuse the
    same inputs with the same message.

    Parameters
    ----------
    path : str or Path
        The YAML file. Relative paths inside it are resolved against its folder.
    overrides : dict, optional
        Values merged into the ``output`` mapping before validation (e.g. ``{"preset": "720p30"}``).

    Returns
    -------
    Spec
        Fully resolved: absolute paths, parsed colours, the caption font located and opened,
        captions laid out in output pixels; no trace of the YAML's own model.

    Raises
    ------
    SpecError
        For any problem, with the file and the field in its message (``AssetNotFoundError`` for
        a missing file, ``MediaError`` for one that does not decode).

    Warns
    -----
    SpecWarning
        For each of ``Spec.warnings``: what renders anyway but may not be what was meant.
    """
    from .specload import load_spec as load

    return load(path, overrides=overrides)


_IN_SPECLOAD = {"load_preset", "read_yaml", "resolve_asset", "SegmentModel", "OutputModel"}


def __getattr__(name: str) -> Any:
    """The YAML side (models, YAML reading, presets), loaded on first use."""
    if name in _IN_SPECLOAD:
        from . import specload

        return getattr(specload, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _layouts(
    cues: tuple[Cue, ...], style: CaptionStyle, room: Room, out: OutputSettings
) -> list[tuple[Any, Cue]]:
    """Each cue laid out in output pixels (font chain, wrapped and capped lines, box), once for
    the whole render: the scene draws these, the spec's warnings come from them."""
    from .text import layout_caption

    k = out.width / room.background_size_px[0]  # the scene's scale from background px
    font = str(style.font) if style.font else None
    return [
        (layout_caption(cue.text, style, k=k, frame_px=(out.width, out.height), font_path=font), cue)
        for cue in cues
    ]

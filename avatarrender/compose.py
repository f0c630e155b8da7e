"""Composing frames: a chunk's timeline and the scene become raw yuv420p frames, one buffer reused.

The :class:`~avatarrender.scene.Scene` (images decoded, scaled and blended, captions laid out) is
built once per render by the main process and pickled into the work folder; each worker loads it
for its first chunk (:func:`scene_for`). :func:`compose_frames` then writes every frame into one
buffer, refreshing only what can differ from the previous frame (mouth, eyes, caption, TV).
"""

from __future__ import annotations

import math

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import Timeline, analyse, segment_audio
from .encode import TVReader
from .scene import Frame, Scene
from .spec import Spec
from .timebase import as_written

__all__ = ["compose_frames", "repeated_frames", "preview_frame", "scene_for", "build_scene", "slice_timeline"]

_SCENES: dict[str, Scene] = {}


def scene_for(spec: Spec, path: str | None = None) -> Scene:
    """One Scene per spec per worker process: for the first chunk loaded from ``path`` (built
    once by the main process while it analysed the speech) or built, then reused."""
    key = spec.spec_hash
    scene = _SCENES.get(key)
    if scene is None:
        _SCENES.clear()
        if path and os.path.isfile(path):
            with open(path, "rb") as fh:
                scene = pickle.load(fh)  # our own file, in the render's own work folder
        else:
            scene = Scene(spec)
        _SCENES[key] = scene
    return scene


def build_scene(spec: Spec, path: Path) -> None:
    """Build the Scene once for all workers (images decoded and scaled, layers blended,
    captions laid out: 0.2-0.3 s at 1080p, which each worker would otherwise spend before its
    first frame)."""
    scene = Scene(spec)
    _SCENES.clear()
    _SCENES[spec.spec_hash] = scene  # for chunks rendered in this process (--jobs 1)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump(scene, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:  # a full disk, say: only a saving lost, each worker builds its own
        tmp.unlink(missing_ok=True)


def repeated_frames(spec: Spec, timeline: Timeline) -> np.ndarray:
    """Which frames repeat the frame before them, sample for sample, as composed.

    A frame repeats the one before when nothing that can differ was redrawn: the same (mouth,
    eyes, caption) state, and the TV off in both frames or showing the same clip frame again
    (:class:`~avatarrender.encode.TVReader` holds a clip frame while the time in the clip moves
    less than half a frame: a clip slower than the output). Known from the timeline, so free;
    comparing two 1080p frames byte for byte would cost about a millisecond a frame and a copy
    of the previous one.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=bool]  False for the first frame
    """
    tl = timeline
    out = np.zeros(tl.frame_count, dtype=bool)
    if tl.frame_count < 2:
        return out
    same = (
        (tl.mouth[1:] == tl.mouth[:-1]) & (tl.eyes[1:] == tl.eyes[:-1]) & (tl.caption[1:] == tl.caption[:-1])
    )
    if spec.tv and spec.tv.clips:
        clip, t = tl.tv_clip, tl.tv_time_s
        off = (clip[1:] < 0) & (clip[:-1] < 0)
        held = (
            (clip[1:] >= 0)
            & (clip[1:] == clip[:-1])
            & (np.abs(t[1:] - t[:-1]) < 0.5 / float(spec.output.fps))
        )
        same &= off | held
    out[1:] = same
    return out


def compose_frames(spec: Spec, timeline: Timeline, scene: Scene) -> Any:
    """Yield each frame as (flat yuv420p buffer, same_as_previous).

    The buffer is reused: consume it before the next. ``same_as_previous``: the frame is the
    one yielded before, sample for sample (:func:`repeated_frames`, or the TV reader gave the
    same clip frame again); it is not composed again.
    """
    tv = spec.tv
    reader = None
    if tv and tv.clips:
        x0, y0, x1, y1 = scene.screen  # in output pixels
        reader = TVReader([c.file for c in tv.clips], (x1 - x0, y1 - y0), spec.output.fps, tv.fit)
    buf = Frame.empty(spec.output.width, spec.output.height)
    fresh, screen_dirty = True, False  # one buffer, refreshed where frames can differ
    clips = reader.frames(timeline.tv_clip, timeline.tv_time_s) if reader else None
    repeats = repeated_frames(spec, timeline)
    try:
        for i in range(timeline.frame_count):
            planes = next(clips) if clips is not None else None
            same = bool(repeats[i]) and not fresh
            if planes is not None and not same and reader is not None and reader.repeated:
                # the clip gave its frame again (a clip slower than the output), the state held
                same = not fresh and screen_dirty and timeline.state_key(i) == timeline.state_key(i - 1)
            if not same:
                scene.compose(buf, timeline.state_key(i), planes, fresh=fresh, screen_dirty=screen_dirty)
            yield buf.data, same
            fresh, screen_dirty = False, planes is not None
    finally:
        if clips is not None:
            clips.close()


def slice_timeline(tl: Timeline, a: int, b: int) -> Timeline:
    """Frames ``[a, b)`` of ``tl`` (a chunk's part, or one frame for a preview)."""
    return dataclasses.replace(
        tl,
        mouth=tl.mouth[a:b],
        eyes=tl.eyes[a:b],
        caption=tl.caption[a:b],
        tv_clip=tl.tv_clip[a:b],
        tv_time_s=tl.tv_time_s[a:b],
    )


def preview_frame(spec: Spec, at_s: float) -> np.ndarray:
    """One composited frame as RGB (no encode): the same yuv the render would send to x264.

    Returns
    -------
    np.ndarray [shape=(height, width, 3), dtype=uint8]
    """
    # the frame showing at ``at_s`` as written: 0.7 s is frame 21 at 30 fps, though the double
    # nearest 0.7 lies a hair below 21/30
    n = min(spec.frame_count - 1, max(0, math.floor(as_written(at_s) * spec.output.fps)))
    timeline = analyse(spec, segment_audio(spec))
    scene = Scene(spec)
    one = slice_timeline(timeline, n, n + 1)
    data, _ = next(iter(compose_frames(spec, one, scene)))
    frame = Frame.wrap(np.array(data), spec.output.width, spec.output.height)
    return frame.to_rgb()

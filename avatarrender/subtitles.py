"""Captions as a segmented WebVTT subtitle rendition (RFC 8216 3.5, WebVTT).

One WebVTT file per media segment per language, each mapped onto the MPEG-TS clock with
``X-TIMESTAMP-MAP`` (the rendition's local time 0 is the first video frame's PTS, which the
muxer puts at 1.4 s = 126000 ticks); cue times count from the rendition's start, so every
file carries the same map and a cue that spans a segment boundary is repeated in both (players
merge identical cues). A subtitle media playlist per language, and the master playlist that
names them, are written by :mod:`avatarrender.rendition` from the manifest.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

from .plan import ChunkPlan
from .rendition import SubtitleRendition, atomic_write, subtitle_playlist
from .spec import Cue, Spec, parse_cues

__all__ = ["TS_START_90K", "escape", "vtt_segment", "caption_tracks", "write_subtitles",
           "timestamp_map"]

# The mpegts muxer's constant offset (max_delay 0.7 s x 2): the first frame's PTS.
TS_START_90K = 126000


def escape(text: str) -> str:
    """Text as a WebVTT cue payload: ``&``, ``<``, ``>`` escaped (``-->`` cannot occur then)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ts(t_s: Fraction | float) -> str:
    ms = int(round(float(t_s) * 1000))
    h, rem = divmod(ms, 3600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def timestamp_map(mpegts_90k: int) -> str:
    """The ``X-TIMESTAMP-MAP`` header line for local time 0 at ``mpegts_90k`` (33-bit clock)."""
    return f"X-TIMESTAMP-MAP=MPEGTS:{mpegts_90k % (1 << 33)},LOCAL:00:00:00.000"


def vtt_segment(cues: Sequence[Cue], start_s: Fraction, end_s: Fraction, *,
                duration_s: Fraction, mpegts_90k: int = TS_START_90K) -> str:
    """The WebVTT file of the media segment [start_s, end_s) of a rendition of ``duration_s``."""
    lines = ["WEBVTT", timestamp_map(mpegts_90k), ""]
    for cue in cues:
        c0, c1 = Fraction(cue.start_s), min(Fraction(cue.end_s), duration_s)
        if c0 < end_s and c1 > start_s and c1 > c0:
            lines += [f"{_ts(c0)} --> {_ts(c1)}", escape(cue.text), ""]
    return "\n".join(lines) + "\n"


def caption_tracks(spec: Spec) -> list[tuple[str, str, tuple[Cue, ...]]]:
    """(language, name, cues) of each subtitle track: the captions, then further tracks."""
    cap = spec.model.captions
    if cap is None:
        return []
    out = []
    if spec.cues:
        out.append((cap.language, cap.name or cap.language, spec.cues))
    for track in cap.tracks:
        cues = tuple(parse_cues(spec.path(track.file).read_text(encoding="utf-8")))
        out.append((track.language, track.name or track.language, cues))
    return out


def write_subtitles(spec: Spec, plan: ChunkPlan, folder: Path) -> tuple[SubtitleRendition, ...]:
    """Write every track's WebVTT segments and media playlist into ``folder``.

    Returns
    -------
    tuple of SubtitleRendition
        For the manifest (empty when the segment has no captions).
    """
    fps = spec.output.fps
    frames = plan.segment_frames()
    out = []
    used: set[str] = set()
    for k, (language, name, cues) in enumerate(caption_tracks(spec)):
        stem = f"sub_{language}"
        while stem in used:  # two tracks of one language
            stem += "_"
        used.add(stem)
        start, names, durations = 0, [], []
        for i, n in enumerate(frames):
            uri = f"{stem}_{i:05d}.vtt"
            atomic_write(folder / uri, vtt_segment(cues, Fraction(start) / fps,
                                                   Fraction(start + n) / fps,
                                                   duration_s=spec.duration_s))
            names.append(uri)
            durations.append(Fraction(n) / fps)
            start += n
        uri = f"{stem}.m3u8"
        atomic_write(folder / uri, subtitle_playlist(
            names, durations, target_duration_s=spec.output.segment_duration_s))
        out.append(SubtitleRendition(uri=uri, language=language, name=name, default=k == 0))
    return tuple(out)

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
from .spec import Cue, Spec

__all__ = [
    "TS_START_90K",
    "escape",
    "vtt_segment",
    "caption_tracks",
    "write_subtitles",
    "SubtitleWriter",
    "timestamp_map",
]

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


def vtt_segment(
    cues: Sequence[Cue],
    start_s: Fraction,
    end_s: Fraction,
    *,
    duration_s: Fraction,
    mpegts_90k: int = TS_START_90K,
) -> str:
    """The WebVTT file of the media segment [start_s, end_s) of a rendition of ``duration_s``."""
    lines = ["WEBVTT", timestamp_map(mpegts_90k), ""]
    for cue in sorted(cues, key=lambda q: q.start_s):  # WebVTT's cues in time order, as files may not be
        c0, c1 = Fraction(cue.start_s), min(Fraction(cue.end_s), duration_s)
        if c0 < end_s and c1 > start_s and c1 > c0:
            lines += [f"{_ts(c0)} --> {_ts(c1)}", escape(cue.text), ""]
    return "\n".join(lines) + "\n"


def caption_tracks(spec: Spec) -> list[tuple[str, str, tuple[Cue, ...]]]:
    """(language, name, cues) of each subtitle track: the captions, then further tracks."""
    cap = spec.captions
    if cap is None:
        return []
    out = []
    if spec.cues:
        out.append((cap.language, cap.name, spec.cues))
    out += [(track.language, track.name, track.cues) for track in cap.tracks]
    return out


class SubtitleWriter:
    """Writes every track's WebVTT segments and media playlist into a rendition's folder, in
    step with its media segments: a subtitle segment appears when its media segment is
    published (a full disk then stops both at the same place), and the playlists list what is
    written (with ENDLIST once all is).

    Parameters
    ----------
    spec : Spec
    plan : ChunkPlan
        The media segments' frames.
    folder : Path
        The (partial) rendition folder.

    Attributes
    ----------
    renditions : tuple of SubtitleRendition
        For the manifest (empty when the segment has no captions).
    """

    def __init__(self, spec: Spec, plan: ChunkPlan, folder: Path):
        self.spec, self.folder = spec, Path(folder)
        fps = spec.output.fps
        self._frames = plan.segment_frames()
        starts = [0]
        for n in self._frames:
            starts.append(starts[-1] + n)
        self._bounds = [(Fraction(a) / fps, Fraction(b) / fps) for a, b in zip(starts, starts[1:])]
        self._tracks: list[tuple[str, tuple[Cue, ...]]] = []
        out, used = [], set()
        for k, (language, name, cues) in enumerate(caption_tracks(spec)):
            stem = f"sub_{language}"
            while stem in used:  # two tracks of one language
                stem += "_"
            used.add(stem)
            self._tracks.append((stem, cues))
            out.append(SubtitleRendition(uri=f"{stem}.m3u8", language=language, name=name, default=k == 0))
        self.renditions = tuple(out)
        self.written = 0

    def write_upto(self, count: int) -> None:
        """Write the subtitle segments of media segments ``[written, count)`` and the playlists."""
        if not self._tracks:
            return
        count = min(count, len(self._frames))
        for stem, cues in self._tracks:
            for i in range(self.written, count):
                start_s, end_s = self._bounds[i]
                atomic_write(
                    self.folder / f"{stem}_{i:05d}.vtt",
                    vtt_segment(cues, start_s, end_s, duration_s=self.spec.duration_s),
                )
        for stem, _ in self._tracks:
            atomic_write(
                self.folder / f"{stem}.m3u8",
                subtitle_playlist(
                    [f"{stem}_{i:05d}.vtt" for i in range(count)],
                    [Fraction(n) / self.spec.output.fps for n in self._frames[:count]],
                    target_duration_s=self.spec.output.segment_duration_s,
                    complete=count == len(self._frames),
                ),
            )
        self.written = count


def write_subtitles(spec: Spec, plan: ChunkPlan, folder: Path) -> tuple[SubtitleRendition, ...]:
    """Write every track's WebVTT segments and media playlist into ``folder`` at once."""
    writer = SubtitleWriter(spec, plan, folder)
    writer.write_upto(len(plan.segment_frames()))
    return writer.renditions

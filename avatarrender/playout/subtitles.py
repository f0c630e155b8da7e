"""The channel's subtitle renditions: live WebVTT playlists in step with the video.

For every aired media segment the playout writes, per channel language, a WebVTT file of the
same sequence number: the rendition's own WebVTT segment for that language with its
``X-TIMESTAMP-MAP`` moved by the same offset the playout added to the segment's PTS
(:class:`~avatarrender.playout.tsrewrite.TimestampRewriter`'s ``offset_90k``), or an empty one
for a program without that language (the filler). The subtitle playlist lists exactly the
video playlist's closed segments: same media sequence, PROGRAM-DATE-TIME, durations and
discontinuities, so a player keeps them aligned across program changes and restarts.

Layout in the served folder::

    OUT/subs_LANG.m3u8             the live subtitle playlist of one language
    OUT/subs/LANG/NNNNNNNNN.vtt    its WebVTT segments (NNNNNNNNN = the video's sequence)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from avatarrender.playout.playlist import LivePlaylist, format_pdt
from avatarrender.rendition import RenderedSegment, atomic_write

__all__ = ["LiveSubtitles", "TS_START_90K", "shift_timestamp_map"]

# What a rendition's X-TIMESTAMP-MAP says when it has no subtitles of its own (the muxer's
# 1.4 s start; see avatarrender.subtitles).
TS_START_90K = 126000
_MAP = re.compile(r"^(X-TIMESTAMP-MAP=.*?MPEGTS:)(\d+)", re.M)


def shift_timestamp_map(vtt: str, offset_90k: int) -> str:
    """``vtt`` with its X-TIMESTAMP-MAP's MPEGTS moved by ``offset_90k`` (33-bit clock)."""
    return _MAP.sub(lambda m: f"{m.group(1)}{(int(m.group(2)) + offset_90k) % (1 << 33)}", vtt, count=1)


def _empty_vtt(offset_90k: int) -> str:
    return f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{(TS_START_90K + offset_90k) % (1 << 33)},LOCAL:00:00:00.000\n"


class LiveSubtitles:
    """Subtitle tracks of the channel (one per language, fixed for its life).

    Parameters
    ----------
    out : Path
        The served folder.
    tracks : sequence of (language, name)
        The channel's subtitle languages (BCP 47) and the names players show; the first is
        the default.
    """

    def __init__(self, out: Path, tracks: Sequence[tuple[str, str]]):
        self.out = Path(out)
        self.tracks = [(lang, name) for lang, name in tracks]

    def playlist_uri(self, language: str) -> str:
        return f"subs_{language}.m3u8"

    def segment_uri(self, language: str, sequence: int) -> str:
        return f"subs/{language}/{sequence:09d}.vtt"

    def media(self) -> list[tuple[str, str, str]]:
        """(language, name, playlist uri) of each track, for the master playlist."""
        return [(lang, name, self.playlist_uri(lang)) for lang, name in self.tracks]

    def write_segment(
        self, sequence: int, rendered: RenderedSegment | None, index: int, offset_90k: int
    ) -> None:
        """Write the WebVTT files of aired media segment ``sequence`` (media segment ``index``
        of ``rendered``, aired with its PTS moved by ``offset_90k``)."""
        for lang, _ in self.tracks:
            text = None
            source = _source_vtt(rendered, lang, index)
            if source is not None:
                try:
                    text = shift_timestamp_map(source.read_text(encoding="utf-8"), offset_90k)
                except (OSError, UnicodeDecodeError):
                    text = None  # the program airs without its subtitles rather than not at all
            path = self.out / self.segment_uri(lang, sequence)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text if text is not None else _empty_vtt(offset_90k), durable=False)

    def render(self, playlist: LivePlaylist, language: str) -> str:
        """The live subtitle playlist: the video playlist's closed segments, one for one. With
        parts (a low-latency channel) its server holds ``_HLS_msn`` reloads as the video's: a
        player in low-latency mode polled it every part target (Shaka: 5 requests a second)."""
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            f"#EXT-X-TARGETDURATION:{playlist.target_duration_s}",
        ]
        if playlist.part_target_s is not None:
            lines.append("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES")
        lines += [
            f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{playlist.discontinuity_sequence}",
        ]
        for s in playlist.segments:
            if s.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(s.pdt_s)}")
            lines += [f"#EXTINF:{float(s.duration_s):.5f},", self.segment_uri(language, s.sequence)]
        return "\n".join(lines) + "\n"

    def publish(self, playlist: LivePlaylist) -> dict[str, bytes]:
        """Write every track's playlist (after the video's); return them (uri -> text)."""
        if not playlist.segments:
            return {}
        texts = {}
        for lang, _ in self.tracks:
            text = self.render(playlist, lang)
            atomic_write(self.out / self.playlist_uri(lang), text, durable=False)
            texts[self.playlist_uri(lang)] = text.encode()
        return texts

    def delete(self, media_uri: str) -> None:
        """The video segment ``media_uri`` left the window for good: so do its WebVTT files."""
        stem = Path(media_uri).stem
        if not stem.isdigit():
            return
        for lang, _ in self.tracks:
            (self.out / self.segment_uri(lang, int(stem))).unlink(missing_ok=True)


def _source_vtt(rendered: RenderedSegment | None, language: str, index: int) -> Path | None:
    """The rendition's WebVTT file for media segment ``index`` in ``language``, if any."""
    if rendered is None or not rendered.manifest.subtitles:
        return None
    for sub in rendered.manifest.subtitles:
        if sub.language.lower() != language.lower():
            continue
        try:
            uris = [
                ln.strip()
                for ln in (rendered.folder / sub.uri).read_text().splitlines()
                if ln.strip() and not ln.startswith("#")
            ]
        except OSError:
            return None
        if index < len(uris) and "/" not in uris[index]:
            return rendered.folder / uris[index]
    return None

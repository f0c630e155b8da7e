"""The live sliding-window media playlist: a pure state machine driven by times you pass in.

Times are exact: seconds since the Unix epoch as :class:`~fractions.Fraction`, so
PROGRAM-DATE-TIME is the sum of exact frame durations and never drifts or goes backwards.
Nothing here reads the clock or touches files; the engine does both.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections import deque
from fractions import Fraction
from typing import Any, Sequence

__all__ = [
    "LivePart",
    "LiveSegment",
    "OpenSegment",
    "LivePlaylist",
    "format_pdt",
    "parse_pdt",
    "master_playlist",
]


def format_pdt(t_s: Fraction) -> str:
    """Epoch seconds -> ISO-8601 UTC with milliseconds (``2026-11-24T11:30:00.123Z``)."""
    ms = round(t_s * 1000)
    dt = _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_pdt(text: str) -> Fraction:
    """ISO-8601 date-time (with zone, or UTC if none) -> epoch seconds, exact to the microsecond."""
    dt = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    delta = dt - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 1_000_000)


@dataclasses.dataclass(frozen=True)
class LivePart:
    """One LL-HLS partial segment: a byte range of its parent media segment's file.

    Attributes
    ----------
    duration_s : Fraction
        Exact duration in seconds (whole frames).
    offset_bytes, size_bytes : int
        The byte range in the parent's file.
    independent : bool
        Starts with a keyframe (``INDEPENDENT=YES``).
    uri : str, optional
        The file it is a range of, when not its parent's: a segment cut short is written to a
        file of its own, and the parts published before the cut keep the file they named.
    """

    duration_s: Fraction
    offset_bytes: int
    size_bytes: int
    independent: bool
    uri: str | None = None

    def to_json(self) -> list[Any]:
        v = [str(self.duration_s), self.offset_bytes, self.size_bytes, int(self.independent)]
        return v + [self.uri] if self.uri is not None else v

    @classmethod
    def from_json(cls, v: list[Any]) -> LivePart:
        return cls(Fraction(v[0]), int(v[1]), int(v[2]), bool(v[3]), str(v[4]) if len(v) > 4 else None)


@dataclasses.dataclass(frozen=True)
class OpenSegment:
    """The media segment on air: its parts published so far (no EXTINF yet)."""

    sequence: int
    uri: str
    pdt_s: Fraction
    discontinuity: bool
    program: str
    parts: tuple[LivePart, ...] = ()

    @property
    def duration_s(self) -> Fraction:
        return sum((p.duration_s for p in self.parts), Fraction(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "uri": self.uri,
            "pdt_s": str(self.pdt_s),
            "discontinuity": self.discontinuity,
            "program": self.program,
            "parts": [p.to_json() for p in self.parts],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OpenSegment:
        return cls(
            sequence=int(d["sequence"]),
            uri=str(d["uri"]),
            pdt_s=Fraction(d["pdt_s"]),
            discontinuity=bool(d["discontinuity"]),
            program=str(d["program"]),
            parts=tuple(LivePart.from_json(p) for p in d["parts"]),
        )


@dataclasses.dataclass(frozen=True)
class LiveSegment:
    """One media segment of the live playlist.

    Attributes
    ----------
    sequence : int
        Media sequence number (unique for the life of the channel, also the file name).
    uri : str
        Relative to the playlist, e.g. ``media/000000042.ts``.
    duration_s : Fraction
        Exact duration in seconds.
    pdt_s : Fraction
        PROGRAM-DATE-TIME of its first frame, epoch seconds.
    discontinuity : bool
        Preceded by EXT-X-DISCONTINUITY (a change of program or of filler loop).
    program : str
        What it belongs to (a schedule entry's name, or ``filler``); for status and tests.
    parts : tuple of LivePart
        Its LL-HLS parts (empty when published whole); they add up to ``duration_s``.
    """

    sequence: int
    uri: str
    duration_s: Fraction
    pdt_s: Fraction
    discontinuity: bool
    program: str
    parts: tuple[LivePart, ...] = ()
    whole: str | None = None  # its whole file, when it was cut short into ``uri``

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "uri": self.uri,
            "whole": self.whole,
            "duration_s": str(self.duration_s),
            "pdt_s": str(self.pdt_s),
            "discontinuity": self.discontinuity,
            "program": self.program,
            "parts": [p.to_json() for p in self.parts],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LiveSegment:
        return cls(
            sequence=int(d["sequence"]),
            uri=str(d["uri"]),
            duration_s=Fraction(d["duration_s"]),
            pdt_s=Fraction(d["pdt_s"]),
            discontinuity=bool(d["discontinuity"]),
            program=str(d["program"]),
            parts=tuple(LivePart.from_json(p) for p in d.get("parts", ())),
            whole=d.get("whole"),
        )


class LivePlaylist:
    """Sliding-window live media playlist (RFC 8216 section 6.2.2).

    Parameters
    ----------
    target_duration_s : int
        EXT-X-TARGETDURATION, constant for the life of the channel; every appended segment's
        duration rounded to the nearest second must not exceed it.
    window_s : float
        Keep at least this much media in the playlist (raised to 3 target durations if less).
    hold_back_s : float
        EXT-X-SERVER-CONTROL HOLD-BACK (raised to 3 target durations if less, as RFC 8216 asks).
    media_dir : str
        Folder of the media segments, relative to the playlist.
    part_target_s : Fraction, optional
        LL-HLS PART-TARGET (RFC 8216bis 4.4.3.7); None: no parts, no blocking reload.
    part_hold_back_s : float
        PART-HOLD-BACK (raised to 3 PART-TARGETs if less).
    """

    def __init__(
        self,
        *,
        target_duration_s: int = 1,
        window_s: float = 6.0,
        hold_back_s: float = 3.0,
        media_dir: str = "media",
        part_target_s: Fraction | None = None,
        part_hold_back_s: float = 0.0,
    ):
        if target_duration_s < 1:
            raise ValueError("target_duration_s must be >= 1")
        self.target_duration_s = int(target_duration_s)
        self.window_s = Fraction(max(float(window_s), 3.0 * target_duration_s)).limit_denominator(1000)
        self.hold_back_s = max(float(hold_back_s), 3.0 * target_duration_s)
        self.media_dir = media_dir
        self.part_target_s = None if part_target_s is None else Fraction(part_target_s)
        if self.part_target_s is not None and not 0 < self.part_target_s <= self.target_duration_s:
            raise ValueError("part_target_s must be in (0, target duration]")
        # PART-TARGET as printed: rounded up, so that no part's printed DURATION exceeds it
        self.part_target_text = (
            "" if self.part_target_s is None else f"{math.ceil(self.part_target_s * 100000) / 100000:.5f}"
        )
        # RFC 8216bis 4.4.3.8: PART-HOLD-BACK at least 2x PART-TARGET, 3x recommended (enforced)
        self.part_hold_back_s = (
            max(float(part_hold_back_s), 3.0 * float(self.part_target_text))
            if self.part_target_s is not None
            else 0.0
        )
        self.segments: deque[LiveSegment] = deque()
        self.open: OpenSegment | None = None  # the segment on air, its parts published so far
        self.preload_hint: tuple[str, int, int] | None = None  # (uri, offset, size) of the next part
        self.media_sequence = 0  # sequence of the first segment in the window
        self.discontinuity_sequence = 0  # discontinuity tags removed from the head so far
        self.next_sequence = 0
        self.next_pdt_s: Fraction | None = None
        self.retired: list[tuple[str, Fraction]] = []  # (uri, delete at epoch s)

    # ------------------------------------------------------------------ state changes

    def uri_for(self, sequence: int, *, take: int = 0) -> str:
        """The URI a segment of sequence number ``sequence`` gets (``take`` > 0: the file of
        another media segment aired under that number after a restart, whose first take a
        preload hint had named), so that no file a player or a cache has seen ever changes."""
        return f"{self.media_dir}/{sequence:09d}{f'-{take}' if take else ''}.ts"

    @staticmethod
    def cut_uri(uri: str) -> str:
        """The file a media segment of file ``uri`` is written to when cut short."""
        return uri.removesuffix(".ts") + "-cut.ts"

    def files(self) -> set[str]:
        """Every media file the playlist names, or named and still keeps for late players."""
        out = {u for u, _ in self.retired}
        for s in [*self.segments, *([self.open] if self.open is not None else [])]:
            out |= self._files_of(s)
        return out

    def _files_of(self, s: LiveSegment | OpenSegment) -> set[str]:
        # a segment cut short still has its whole file, written when its slot began (a preload
        # hint named it), whether or not a part published before the cut is a range of it
        whole = getattr(s, "whole", None) or s.uri
        return {s.uri, whole, self.uri_for(s.sequence)} | {p.uri for p in s.parts if p.uri is not None}

    def _check_pdt(self, pdt_s: Fraction | None, discontinuity: bool) -> Fraction:
        if pdt_s is None:
            if self.next_pdt_s is None:
                raise ValueError("first segment needs pdt_s")
            return self.next_pdt_s
        pdt_s = Fraction(pdt_s)
        if self.next_pdt_s is not None:
            if pdt_s < self.next_pdt_s:
                raise ValueError("PROGRAM-DATE-TIME would go backwards")
            if pdt_s != self.next_pdt_s and not discontinuity:
                raise ValueError("a gap in PROGRAM-DATE-TIME needs a discontinuity")
        return pdt_s

    def add_part(
        self,
        part: LivePart,
        *,
        discontinuity: bool,
        program: str,
        pdt_s: Fraction | None = None,
        uri: str | None = None,
    ) -> OpenSegment:
        """Publish the next part of the media segment on air (opening it at the live edge).

        ``discontinuity``, ``program``, ``pdt_s`` and ``uri`` (its file, when not
        :meth:`uri_for` its sequence) are those of the parent segment and count for its first
        part only (as in :meth:`append`).
        """
        if self.part_target_s is None:
            raise ValueError("this playlist has no parts (part_target_s not set)")
        if part.duration_s <= 0 or part.duration_s > self.part_target_s:
            raise ValueError(
                f"part of {float(part.duration_s):.5f} s outside (0, PART-TARGET "
                f"{float(self.part_target_s):.5f} s]"
            )
        if self.open is None:
            self.open = OpenSegment(
                sequence=self.next_sequence,
                uri=uri or self.uri_for(self.next_sequence),
                pdt_s=self._check_pdt(pdt_s, discontinuity),
                discontinuity=bool(discontinuity),
                program=program,
            )
        if self.open.duration_s + part.duration_s > self.target_duration_s + Fraction(1, 2):
            raise ValueError("parts exceed the target duration")
        self.open = dataclasses.replace(self.open, parts=self.open.parts + (part,))
        return self.open

    def append(
        self,
        *,
        duration_s: Fraction,
        discontinuity: bool,
        program: str,
        now_s: Fraction,
        pdt_s: Fraction | None = None,
        uri: str | None = None,
    ) -> LiveSegment:
        """Add a media segment at the live edge and slide the window.

        Parameters
        ----------
        duration_s : Fraction
            Exact duration, seconds.
        discontinuity : bool
            Whether a timestamp/format discontinuity precedes it.
        program : str
            Label for status.
        now_s : Fraction
            Wall clock (epoch s) at publication: dates the deletion of segments leaving the window.
        pdt_s : Fraction, optional
            Force a PROGRAM-DATE-TIME (after a gap); must not be earlier than the live edge, and a
            gap needs ``discontinuity``.
        uri : str, optional
            Its file, when not :meth:`uri_for` its sequence (a segment cut short): its parts
            published before keep the file they named.
        """
        duration_s = Fraction(duration_s)
        if duration_s <= 0:
            raise ValueError("duration must be positive")
        if round(duration_s) > self.target_duration_s:
            raise ValueError(
                f"segment of {float(duration_s):.3f} s exceeds the target duration {self.target_duration_s} s"
            )
        parts: tuple[LivePart, ...] = ()
        whole = None
        if self.open is not None:  # the segment whose parts are out: its tags were fixed then
            if self.open.duration_s != duration_s:
                raise ValueError(
                    f"parts add up to {float(self.open.duration_s):.5f} s, "
                    f"not the segment's {float(duration_s):.5f} s"
                )
            pdt_s, discontinuity, parts = self.open.pdt_s, self.open.discontinuity, self.open.parts
            if uri is not None and uri != self.open.uri:
                parts = tuple(p if p.uri else dataclasses.replace(p, uri=self.open.uri) for p in parts)
                whole = self.open.uri
            self.open = None
        else:
            pdt_s = self._check_pdt(pdt_s, discontinuity)
        uri = uri or self.uri_for(self.next_sequence)
        parts = tuple(dataclasses.replace(p, uri=None) if p.uri == uri else p for p in parts)
        seg = LiveSegment(
            sequence=self.next_sequence,
            uri=uri,
            duration_s=duration_s,
            pdt_s=pdt_s,
            discontinuity=bool(discontinuity),
            program=program,
            parts=parts,
            whole=whole,
        )
        if not self.segments:
            self.media_sequence = seg.sequence
        self.segments.append(seg)
        self.next_sequence += 1
        self.next_pdt_s = pdt_s + duration_s
        self._slide(Fraction(now_s))
        return seg

    def _slide(self, now_s: Fraction) -> None:
        total = sum((s.duration_s for s in self.segments), Fraction(0))
        # RFC 8216 6.2.2: never shorter than 3 target durations; the grace period is the
        # segment's duration plus the longest playlist that contained it.
        longest_playlist_s = self.window_s + self.target_duration_s
        while len(self.segments) > 1 and total - self.segments[0].duration_s >= self.window_s:
            head = self.segments.popleft()
            total -= head.duration_s
            self.media_sequence = head.sequence + 1
            if head.discontinuity:
                self.discontinuity_sequence += 1
            until = now_s + head.duration_s + longest_playlist_s + 1
            for uri in sorted(self._files_of(head)):
                self.retired.append((uri, until))

    def due_deletions(self, now_s: Fraction) -> list[str]:
        """Pop and return the URIs of retired segments whose grace period has passed."""
        due = [u for u, t in self.retired if t <= now_s]
        self.retired = [(u, t) for u, t in self.retired if t > now_s]
        return due

    # ------------------------------------------------------------------ output

    @property
    def duration_s(self) -> Fraction:
        """Media in the window, seconds."""
        return sum((s.duration_s for s in self.segments), Fraction(0))

    @property
    def edge_s(self) -> Fraction | None:
        """PROGRAM-DATE-TIME of the end of the last published media (part or segment)."""
        if self.open is not None:
            return self.open.pdt_s + self.open.duration_s
        return self.next_pdt_s

    def position(self) -> tuple[int, int]:
        """(sequence of the segment on air, parts of it published): what blocking reloads wait for."""
        return self.next_sequence, len(self.open.parts) if self.open is not None else 0

    def render(self, reports: Sequence[str] = ()) -> str:
        """The media playlist text (empty window: ValueError; the engine never writes one).

        ``reports``: the URIs of the subtitle playlists, each reported (EXT-X-RENDITION-REPORT)
        at the last closed media segment, which is where they end (with parts only)."""
        if not self.segments:
            raise ValueError("empty playlist")
        control = f"HOLD-BACK={self.hold_back_s:.3f}"
        if self.part_target_s is not None:
            control = (
                f"CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK="
                f"{math.ceil(self.part_hold_back_s * 1000) / 1000:.3f},{control}"
            )
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:6",
            f"#EXT-X-TARGETDURATION:{self.target_duration_s}",
            f"#EXT-X-SERVER-CONTROL:{control}",
        ]
        if self.part_target_s is not None:
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={self.part_target_text}")
        lines += [
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        # RFC 8216bis 6.2.2: parts listed only while within 3 target durations of the end
        end_s = self.open.duration_s if self.open is not None else Fraction(0)
        end_s += self.duration_s
        parts_from_s = end_s - 3 * self.target_duration_s
        t = Fraction(0)
        for s in self.segments:
            if s.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(s.pdt_s)}")
            t = self._part_lines(lines, s.uri, s.parts, t, parts_from_s, s.duration_s)
            lines.append(f"#EXTINF:{float(s.duration_s):.5f},")
            lines.append(s.uri)
        if self.open is not None and self.open.parts:
            if self.open.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(self.open.pdt_s)}")
            self._part_lines(lines, self.open.uri, self.open.parts, t, Fraction(-1), None)
        if self.preload_hint is not None and self.part_target_s is not None:
            uri, off, size = self.preload_hint
            lines.append(
                f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{uri}",BYTERANGE-START={off},BYTERANGE-LENGTH={size}'
            )
        if self.part_target_s is not None:
            last = self.segments[-1].sequence
            lines += [f'#EXT-X-RENDITION-REPORT:URI="{uri}",LAST-MSN={last}' for uri in reports]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _part_lines(
        lines: list[str],
        uri: str,
        parts: tuple[LivePart, ...],
        t: Fraction,
        from_s: Fraction,
        duration_s: Fraction | None,
    ) -> Fraction:
        start = t
        for p in parts:
            if start >= from_s:  # a segment's parts are listed all or none
                lines.append(
                    f'#EXT-X-PART:DURATION={float(p.duration_s):.5f},URI="{p.uri or uri}",'
                    f'BYTERANGE="{p.size_bytes}@{p.offset_bytes}"'
                    + (",INDEPENDENT=YES" if p.independent else "")
                )
            t += p.duration_s
        return start + duration_s if duration_s is not None else t

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "target_duration_s": self.target_duration_s,
            "media_sequence": self.media_sequence,
            "discontinuity_sequence": self.discontinuity_sequence,
            "next_sequence": self.next_sequence,
            "next_pdt_s": None if self.next_pdt_s is None else str(self.next_pdt_s),
            "segments": [s.to_json() for s in self.segments],
            "retired": [[u, str(t)] for u, t in self.retired],
            "open": None if self.open is None else self.open.to_json(),
        }

    def restore(self, d: dict[str, Any]) -> None:
        """Load state saved by :meth:`to_json` (same target duration required)."""
        if int(d["target_duration_s"]) != self.target_duration_s:
            raise ValueError(
                f"saved state has target duration {d['target_duration_s']} s, not {self.target_duration_s} s"
            )
        self.media_sequence = int(d["media_sequence"])
        self.discontinuity_sequence = int(d["discontinuity_sequence"])
        self.next_sequence = int(d["next_sequence"])
        self.next_pdt_s = None if d["next_pdt_s"] is None else Fraction(d["next_pdt_s"])
        self.segments = deque(LiveSegment.from_json(s) for s in d["segments"])
        self.retired = [(str(u), Fraction(t)) for u, t in d["retired"]]
        self.open = OpenSegment.from_json(d["open"]) if d.get("open") else None


def master_playlist(
    *,
    media_uri: str,
    bandwidth_bps: int,
    width: int,
    height: int,
    codecs: str,
    frame_rate: float = 30.0,
    subtitles: Sequence[tuple[str, str, str]] = (),
) -> str:
    """A one-rendition master playlist with BANDWIDTH, CODECS, RESOLUTION and FRAME-RATE, and
    its subtitle tracks: ``subtitles`` is (language, name, playlist uri), the first the default."""
    media = "".join(
        f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="{lang}",NAME="{name}",'
        f'DEFAULT={"YES" if i == 0 else "NO"},AUTOSELECT=YES,URI="{uri}"\n'
        for i, (lang, name, uri) in enumerate(subtitles)
    )
    return (
        f"#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n{media}"
        f'#EXT-X-STREAM-INF:BANDWIDTH={int(bandwidth_bps)},CODECS="{codecs}",'
        f"RESOLUTION={width}x{height},FRAME-RATE={frame_rate:.3f}"
        + (',SUBTITLES="subs"' if subtitles else "")
        + f"\n{media_uri}\n"
    )

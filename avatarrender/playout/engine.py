"""The playout loop: clock, catalog of rendered folders, filler, publishing files, saved state.

Output folder layout (what the HTTP server or nginx serves)::

    OUT/master.m3u8      one-rendition master playlist (BANDWIDTH, CODECS, RESOLUTION)
    OUT/live.m3u8        the live sliding-window media playlist
    OUT/media/NNNNNNNNN.ts   aired media segments: copies of the rendered ones on one continuous
                         channel clock (PTS/DTS/PCR shifted, continuity counters continued)
    OUT/media/NNNNNNNNN-cut.ts   a filler segment cut short for a program (see below)
    OUT/media/NNNNNNNNN-1.ts     a segment aired after a restart under a number whose first file
                         a preload hint had named (that file never changes)
    OUT/status.json      what is on air, next, render-ahead, errors (also at /status)
    OUT/index.html, monitor.js, vendor/hls.min.js   the monitor page
    OUT/.state.json      saved state for a restart (dot files are never served)
    OUT/.filler/         the idle loop rendered from the schedule's filler spec
    OUT/.renders/NAME/   render-ahead of entries given as a segment.yaml (by the renderer the
                         caller hands in, see render_ahead.py: the playout never renders itself)

A media segment of slot [t, t + d) is rewritten onto the channel clock and written whole when its
slot starts (so the preload hint names a file that exists); each LL-HLS part of it (a byte range,
see parts.py) is published when the clock reaches the part's end, and the segment when the clock
reaches t + d, as a live encoder would: PROGRAM-DATE-TIME is wall-clock time and the on-air
latency is the player's hold-back. While filler airs, a program that becomes ready starts at the
next part boundary: the filler's segment is cut short there, as a clean shorter media segment
written to a file of its own (``NNNNNNNNN-cut.ts``): the whole file, which a preload hint named
and a cache may hold, never changes, and the parts published before the cut stay ranges of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from avatarrender.errors import AvatarRenderError, MediaError, SpecError
from avatarrender.playout.feed import LiveFeed, Snapshot
from avatarrender.playout.metrics import Counters
from avatarrender.playout.mpegts import SegmentFacts, inspect_segment
from avatarrender.playout.parts import Part, cut_parts, shorten, video_frames
from avatarrender.playout.playlist import LivePart, LivePlaylist, format_pdt, master_playlist
from avatarrender.playout.render_ahead import Renderer, RenderJob
from avatarrender.playout.schedule import (
    FILLER,
    Availability,
    Decision,
    Schedule,
    Scheduler,
)
from avatarrender.playout.subtitles import LiveSubtitles
from avatarrender.playout.tsrewrite import TimestampRewriter
from avatarrender.rendition import (
    FAILED_NAME,
    RenderedSegment,
    check_not_failed,
    partial_path,
    read_rendered,
    render_running,
    verify_media_file,
)
from avatarrender.rendition import atomic_write

__all__ = ["Playout", "FolderCatalog", "prepare_filler", "WEB_DIR"]

log = logging.getLogger("avatarrender.playout")

WEB_DIR = Path(__file__).resolve().parent / "web"
STATE_NAME = ".state.json"
MEDIA_PLAYLIST = "live.m3u8"
MASTER_PLAYLIST = "master.m3u8"
# written into a spool item's folder once the channel is done with it (aired to its end, or skipped)
DONE_NAME = ".done"
# a folder copied in file by file (a spool item, a schedule entry's) that is not yet whole is
# taken once nothing in it has changed for this long (seconds): aired, or refused for what it lacks
SETTLE_S = Fraction(3)


def write_atomic(path: Path, data: str | bytes) -> None:
    """The package's atomic write, without fsync: what the playout writes is rewritten every
    second and rebuilt after a restart, and an fsync on the publication path costs latency."""
    atomic_write(path, data, durable=False)


def _rate(fps: Fraction) -> str:
    """``30``, ``29.97`` (30000/1001): a frame rate as people write it."""
    return str(fps.numerator) if fps.denominator == 1 else f"{float(fps):.3f}".rstrip("0")


class FolderCatalog:
    """The scheduler's view of rendered folders on disk (see :class:`~.schedule.Catalog`).

    Parameters
    ----------
    width, height, target_duration_s : int
        The channel's format: a rendered segment of another size or longer media segments is
        refused (one rendition; constant TARGETDURATION).
    fps : Fraction
        The channel's frame rate: a rendered segment of another rate is refused (its frames
        would be stamped at the channel's frame length).
    """

    def __init__(self, *, width: int, height: int, target_duration_s: int, fps: Fraction = Fraction(30)):
        self.width, self.height, self.target_duration_s = width, height, target_duration_s
        self.fps = fps
        self.folders: dict[str, tuple[Path, Path]] = {}  # key -> (complete, partial)
        self.rendered_ahead: set[str] = set()  # keys whose folder a render-ahead will create
        self.rendered: dict[str, RenderedSegment] = {}
        self._verified: dict[tuple[str, int], tuple[int, int, int]] = {}  # -> (dev, ino, size)
        self._facts: dict[tuple[str, int], SegmentFacts] = {}  # what each verified file holds
        self._failed: dict[tuple[str, int], tuple[tuple[int, int, int], str]] = {}  # -> (ident, why)
        self.bandwidth_bps = 0
        self.bad: dict[str, str] = {}  # key -> why it was refused at publication
        self.now_s = Fraction(0)  # the channel's clock (the engine sets it every tick): settle times
        self._whole: set[str] = set()  # finished folders found whole (every listed file there)
        # folders copied in file by file, not yet whole: key -> (what they held, since when)
        self._arriving: dict[str, tuple[Any, Fraction]] = {}

    def add(
        self, key: str, folder: Path, *, hidden_partial: bool = False, rendered_ahead: bool = False
    ) -> None:
        self.folders[key] = (folder, partial_path(folder, hidden=hidden_partial))
        if rendered_ahead:
            self.rendered_ahead.add(key)

    @staticmethod
    def whole(folder: Path) -> bool:
        """Whether ``folder``'s manifest says complete and every media segment it lists is
        there at its size (``render --into`` and ``mv`` put a folder in place so; ``cp -r`` and
        rsync get there file by file, the manifest perhaps first)."""
        try:
            r = read_rendered(folder)
            return r.complete and all(os.stat(s.path).st_size == s.size_bytes for s in r.segments)
        except (MediaError, OSError, ValueError):
            return False

    def settled(self, key: str, folder: Path) -> bool:
        """Whether nothing in ``folder`` (names, sizes, times) has changed for
        :data:`SETTLE_S` of the channel's clock; the first look is never settled."""
        try:
            held = sorted(
                (os.path.relpath(os.path.join(d, f), folder), st.st_size, st.st_mtime_ns)
                for d, _, files in os.walk(folder)
                for f in files
                for st in (os.stat(os.path.join(d, f)),)
            )
        except OSError:  # a file went as it was listed: still changing
            held = None
        before = self._arriving.get(key)
        if before is None or held is None or before[0] != held:
            if before is None:
                log.info("%s: arriving (aired once whole, or unchanged for %s s)", key, SETTLE_S)
            self._arriving[key] = (held, self.now_s)
            return False
        return self.now_s - before[1] >= SETTLE_S

    def forget_arriving(self, keys: set[str]) -> None:
        """Drop what was noted of arriving folders other than ``keys`` (gone meanwhile)."""
        self._arriving = {k: v for k, v in self._arriving.items() if k in keys}

    def forget(self, key: str) -> None:
        self.folders.pop(key, None)
        self.rendered.pop(key, None)
        self.bad.pop(key, None)
        self._whole.discard(key)
        self._arriving.pop(key, None)
        self._verified = {k: v for k, v in self._verified.items() if k[0] != key}
        self._facts = {k: v for k, v in self._facts.items() if k[0] != key}
        self._failed = {k: v for k, v in self._failed.items() if k[0] != key}

    def verified(self, key: str, index: int) -> bool:
        """Whether media segment ``index`` of ``key`` was checked already (good or bad)."""
        return (key, index) in self._verified or (key, index) in self._failed

    def _read(self, key: str) -> RenderedSegment | None:
        complete, partial = self.folders[key]
        if complete.is_dir():
            if key not in self._whole:
                if not self.whole(complete) and not self.settled(key, complete):
                    return None  # still arriving (copied in file by file): not ready yet
                self._whole.add(key)  # or settled: aired, or refused for what it lacks
                self._arriving.pop(key, None)
            r = read_rendered(complete)
            if not r.complete:
                raise MediaError(
                    complete / "manifest.json", "complete", "a finished folder whose manifest says incomplete"
                )
        elif partial.is_dir():
            check_not_failed(partial)  # its render gave up: refuse it now, not after max_late_s
            try:
                r = read_rendered(partial)
            except MediaError:
                return None  # a render still starting: not ready yet (the late policy applies)
        else:
            return None  # not there yet (see availability)
        if (r.width, r.height) != (self.width, self.height):
            raise MediaError(
                r.folder, "width/height", f"{r.width}x{r.height} on a {self.width}x{self.height} channel"
            )
        if r.fps != self.fps:
            raise MediaError(
                r.folder / "manifest.json",
                "fps",
                f"rendered at {_rate(r.fps)} fps "
                f"on a {_rate(self.fps)} fps channel; render it at the channel's rate",
            )
        longest = max((s.duration_s for s in r.segments), default=Fraction(0))
        if round(longest) > self.target_duration_s:
            raise MediaError(
                r.folder,
                "segments",
                f"media segments of {float(longest):.2f} s on a "
                f"channel with target duration {self.target_duration_s} s",
            )
        self.bandwidth_bps = max(self.bandwidth_bps, r.bandwidth_bps)
        return r

    def availability(self, key: str) -> Availability:
        if key in self.bad:
            return Availability(error=self.bad[key])
        if key not in self.folders:
            return Availability(error="not in the schedule (removed from it while it aired?)")
        try:
            r = self._read(key)
        except MediaError as exc:
            return Availability(error=str(exc))
        except Exception as exc:  # noqa: BLE001 - whatever a folder holds, it refuses only itself
            complete, _ = self.folders[key]
            return Availability(error=f"{complete}: unreadable: {type(exc).__name__}: {exc}")
        if r is None:
            self.rendered.pop(key, None)
            complete, partial = self.folders[key]
            if key in self.rendered_ahead or key == FILLER or partial.is_dir() or complete.is_dir():
                return Availability()  # its render has not started, or not finished a segment
            # said when it is due, with the path, not only "late" after max_late_s of filler
            return Availability(waiting_for=f"{complete}: rendered folder not found (nor {partial.name})")
        self.rendered[key] = r
        return Availability(durations_s=tuple(s.duration_s for s in r.segments), complete=r.complete)

    def verify(self, key: str, index: int) -> str | None:
        r = self.rendered.get(key)
        if r is None or index >= len(r.segments):
            return "not listed"
        info = r.segments[index]
        try:
            st = os.stat(info.path)
            ident = (st.st_dev, st.st_ino, st.st_size)
            if self._verified.get((key, index)) == ident:
                return None
            failed = self._failed.get((key, index))
            if failed is not None and failed[0] == ident:
                return failed[1]
            try:
                verify_media_file(info.path, info)
                self._check_frames(key, index, info)
            except (MediaError, ValueError) as exc:
                self._failed[(key, index)] = (ident, str(exc))
                raise
        except FileNotFoundError:
            # the partial folder was just renamed to its final name: look again
            self.availability(key)
            r2 = self.rendered.get(key)
            if r2 is None or index >= len(r2.segments) or r2.segments[index].path == info.path:
                return f"{info.path}: media segment missing"
            return self.verify(key, index)
        except MediaError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - an unreadable file refuses only its entry
            return f"{info.path}: {type(exc).__name__}: {exc}"
        self._verified[(key, index)] = ident
        return None

    def _check_frames(self, key: str, index: int, info: Any) -> None:
        """The file holds the frames its manifest lists, on one clock with the one before.

        The sha256 only proves the file is the one the manifest was written for: a render cut
        short, or a segment copied from elsewhere, carries a matching hash and would air with a
        hole in its timestamps (no discontinuity tag covers a hole inside a program).

        Raises
        ------
        MediaError
            Malformed TS, a frame count other than the manifest's, a PTS hole inside the file
            or between it and the previous media segment of the same rendition.
        """
        frame_90k = Fraction(90000) / self.fps
        facts = inspect_segment(info.path.read_bytes(), info.path, frame_90k=frame_90k, frames=info.frames)
        prev = self._facts.get((key, index - 1))
        if prev is not None and abs(facts.first_pts_90k - prev.end_pts_90k) > 1:
            raise MediaError(
                info.path,
                "video PTS",
                f"starts {facts.first_pts_90k - prev.end_pts_90k}"
                " ticks (90 kHz) away from where the previous media segment ends: "
                "frames are missing between them",
            )
        self._facts[(key, index)] = facts

    def read_checked(self, key: str, index: int) -> bytes:
        """The bytes of media segment ``index`` of ``key``, checked against the manifest.

        Raises
        ------
        MediaError
            The file changed since it was verified (size, sha256 or sync bytes).
        OSError
            It cannot be read.
        """
        info = self.rendered[key].segments[index]
        try:
            data = info.path.read_bytes()
        except FileNotFoundError:
            self.availability(key)  # renamed from .partial to its final name meanwhile
            info = self.rendered[key].segments[index]
            data = info.path.read_bytes()
        if len(data) != info.size_bytes or hashlib.sha256(data).hexdigest() != info.sha256:
            raise MediaError(info.path, "sha256", "changed after it was checked")
        return data


def _spool_stamp(folder: Path) -> str | None:
    """A finished spool folder's render, as the quarantine tells renders apart (its manifest's
    modification time); None while there is no finished folder."""
    m = _mtime_ns(folder / "manifest.json")
    return None if m is None else f"complete:{m}"


# writes working this long after a disk error end it (said once: no flapping on a disk kept full)
DISK_CLEAR_S = Fraction(5)

# a spool item's folder gone this long (neither NAME nor .NAME.partial) was removed, not swapped
GONE_S = Fraction(1)
# The spool folder is listed again at least this often even when its mtime says it is unchanged
SPOOL_RESCAN_S = Fraction(1)


def _is_dir(entry: os.DirEntry) -> bool:
    """``Path.is_dir`` of a listed entry (from the listing's file type: no stat but for links)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def prepare_filler(
    schedule: Schedule,
    out_dir: Path,
    *,
    filler_dir: Path | None = None,
    filler_spec: Path | None = None,
    renderer: Renderer | None = None,
) -> Path:
    """The filler's rendered folder: given, or rendered once (idle loop) from a segment.yaml.

    Parameters
    ----------
    renderer : Renderer, optional
        Renders the idle loop when the filler is given as a segment.yaml.

    Raises
    ------
    SpecError, MediaError
        No filler configured, no renderer for a filler spec, or the render fails.
    """
    from avatarrender.errors import SpecError

    folder = filler_dir or (None if filler_spec else schedule.filler_dir)
    spec_path = filler_spec or (None if filler_dir else schedule.filler_spec)
    if folder is not None:
        return Path(folder)
    if spec_path is None:
        raise SpecError(
            schedule.path,
            "filler",
            "no filler: give 'filler:' in the schedule, --filler DIR or --filler-spec segment.yaml",
        )
    if renderer is None:
        raise SpecError(
            schedule.path,
            "filler",
            f"the filler is a segment.yaml ({spec_path}) "
            "but no renderer was given: give a rendered folder instead",
        )
    duration_s = schedule.model.filler.duration_s if schedule.model.filler else 10.0
    log.info("filler: the %.1f s idle loop of %s, under %s", duration_s, spec_path, out_dir / ".filler")
    return renderer.render_filler(Path(spec_path), duration_s, out_dir / ".filler")


@dataclasses.dataclass
class _OnAir:
    """The media segment being aired part by part (already written to its file)."""

    decision: Decision
    sequence: int
    pdt_s: Fraction | None  # forced PROGRAM-DATE-TIME (after downtime), else None
    rebase: bool  # its timestamps follow what aired, not the segment before it as rendered
    tagged: bool  # aired after EXT-X-DISCONTINUITY (rebased, but for a filler loop's restart)
    original: bytes  # as rendered: a shortened prefix is rewritten from it
    rewriter_before: dict[str, Any]  # the rewriter's state before this segment
    parts: tuple[Part, ...] | None  # None: published whole, without parts
    frame_s: Fraction  # one video frame, seconds
    published: int = 0  # parts published (or 1 once published whole)
    uri: str = ""  # the file its next parts come from: its own, or the one it was cut short into
    whole: str = ""  # the file it was written to whole when its slot began

    @property
    def count(self) -> int:
        return len(self.parts) if self.parts else 1

    def end_s(self, k: int) -> Fraction:
        """Seconds from the segment's start to the end of part ``k``."""
        if not self.parts:
            return self.decision.duration_s
        return sum((p.frames for p in self.parts[: k + 1]), 0) * self.frame_s

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {
            "key": d.key,
            "index": d.index,
            "duration_s": str(d.duration_s),
            "discontinuity": d.discontinuity,
            "sequence": self.sequence,
            "pdt_s": None if self.pdt_s is None else str(self.pdt_s),
            "rebase": self.rebase,
            "tagged": self.tagged,
            "rewriter_before": self.rewriter_before,
            "frame_s": str(self.frame_s),
            "parts": None if self.parts is None else [p.to_json() for p in self.parts],
            "published": self.published,
            "uri": self.uri,
            "whole": self.whole,
        }


class Playout:
    """The live channel: call :meth:`tick` with the clock (or :meth:`run` for real time).

    Parameters
    ----------
    schedule : Schedule
        Entries, settings, spool.
    out_dir : Path
        The served folder.
    filler : Path
        A complete rendered folder looped when nothing else is ready.
    renderer : Renderer, optional
        Renders ahead the entries given as a segment.yaml (without one, such entries are
        refused with an error).
    """

    def __init__(
        self, schedule: Schedule, out_dir: str | Path, *, filler: Path, renderer: Renderer | None = None
    ):
        self.schedule = schedule
        self.out = Path(out_dir)
        self.media = self.out / "media"
        self.media.mkdir(parents=True, exist_ok=True)
        m = schedule.model
        filler_r = read_rendered(filler)
        if not filler_r.complete:
            raise MediaError(filler / "manifest.json", "complete", "the filler must be a finished render")
        for info in filler_r.segments:
            verify_media_file(info.path, info)
        self.catalog = FolderCatalog(
            width=filler_r.width,
            height=filler_r.height,
            target_duration_s=m.target_duration_s,
            fps=filler_r.fps,
        )
        self.catalog.add(FILLER, Path(filler))
        if self.catalog.availability(FILLER).error:
            raise MediaError(filler, None, self.catalog.availability(FILLER).error or "")
        self.filler = filler_r
        self.codecs = filler_r.codecs
        self._check_channel_format(filler)
        self._entry_folders = {e.key: e.folder for e in schedule.entries if e.folder is not None}
        for e in schedule.entries:
            self.catalog.add(e.key, e.folder, rendered_ahead=e.spec is not None)
            if (
                e.spec is None
                and e.folder is not None
                and not e.folder.is_dir()
                and not partial_path(e.folder).is_dir()
            ):
                log.warning(
                    "%s: rendered folder %s not found (yet): it is refused if still missing when due",
                    e.key,
                    e.folder,
                )
        fps = self._fps()
        self.part_target_s = Fraction(m.part_frames) / fps if m.part_frames else None
        if self.part_target_s is not None and self.part_target_s > m.target_duration_s:
            raise SpecError(
                schedule.path,
                "part_frames",
                f"{m.part_frames} frames at {fps} fps "
                f"is longer than the target duration {m.target_duration_s} s",
            )
        self.playlist = LivePlaylist(
            target_duration_s=m.target_duration_s,
            window_s=m.window_s,
            hold_back_s=m.hold_back_s,
            part_target_s=self.part_target_s,
            part_hold_back_s=m.part_hold_back_s,
        )
        self.feed = LiveFeed()  # playlist and status in memory, for the built-in server
        self._air: _OnAir | None = None
        self._force_rebase = False  # the last segment was cut short: the next one rebases
        self.scheduler: Scheduler | None = None
        self.rewriter = TimestampRewriter(video_frame_90k=round(90000 / self._fps()))
        # subtitle tracks in step with the video (subtitles.py); none unless the schedule asks
        self.subtitles = LiveSubtitles(self.out, [(t.language, t.name or t.language) for t in m.subtitles])
        self.errors: list[dict[str, str]] = []
        self.counters = Counters()  # for /metrics; the server counts its requests here too
        self.publish_hooks: list[Callable[[Path], None]] = []  # called with each published file
        self.status_extras: dict[str, Callable[[], Any]] = {}  # more /status keys (the restream)
        self.renderer = renderer
        self.render_job: RenderJob | None = None
        self.render_key: str | None = None
        # entries whose render-ahead failed -> their segment.yaml's mtime then (changed: tried again)
        self.renders_failed: dict[str, int | None] = {}
        self.on_air: dict[str, Any] = {}
        self.disk_error: str | None = None
        self._resume_pdt_s: Fraction | None = None
        self._stalled = False  # the next media segment could not be written (a disk error)
        self._missed_left_s = Fraction(0)  # missed, not yet skipped (see _go_on_from_clock)
        self._missed_segments = 0  # media segments of the program on air skipped meanwhile
        self._last_status_s = Fraction(0)
        self._now_s = Fraction(0)  # the clock of the current tick (for error dates)
        # added to the system clock after it went back (an NTP step, an operator's date): the
        # channel's time never goes back, or it would stand still for as long as the step
        self.clock_offset_s = Fraction(0)
        self.next_due_s: Fraction | None = None  # when the next part (or segment) is published
        self._master_bandwidth = 0
        self._wrote = self._write_failed = False  # this tick's writes (see _disk_error)
        self._disk_ok_since: Fraction | None = None  # writes work again since (a disk error said)
        self._lost_out = False  # the media folder was made again: the master and page too
        # called then too: whoever holds the folder's lock (the api's playout) takes it again
        self.on_out_lost: Callable[[], None] | None = None
        self._undeleted: list[str] = []  # media files left the window but not yet deleted
        self._topics: dict[str, str] = {}  # lasting conditions already logged (see _error)
        self._filler_data: dict[int, bytes] = {}  # the filler's media segments, checked
        self.quarantined: dict[str, str] = {}  # key -> why it was refused; kept in the saved state
        self._gone_since: dict[str, Fraction] = {}  # spool items whose folder vanished, since when
        self._orphans: set[Path] = set()  # spool partials without a render, said once
        # the spool's last listing: (folder's dev, inode, mtime), when, keys, (hidden, key, name)
        self._spool_listing: tuple[tuple[int, int, int], Fraction, set[str], list] | None = None
        self._q_stamps: dict[str, str | None] = {}  # refused spool items: the render refused
        self._check_filler()

    # ------------------------------------------------------------------ start and state

    def start(self, now_s: float | Fraction) -> None:
        """Load saved state (or start fresh), write the master playlist and the monitor page."""
        now = Fraction(now_s)
        self._now_s = now
        self.scheduler = Scheduler(
            self.schedule.entries,
            filler_durations_s=[s.duration_s for s in self.filler.segments],
            max_late_s=self.schedule.max_late_s,
            start_s=now,
            min_start_s=Fraction(self.schedule.model.target_duration_s),
        )
        state_path = self.out / STATE_NAME
        state = None
        if state_path.exists():
            try:
                state = json.loads(state_path.read_text())
            except (OSError, ValueError) as exc:
                raise MediaError(
                    state_path, None, f"unreadable saved state ({exc}); move it away to start a new channel"
                ) from exc
        if state:
            self.playlist.restore(state["playlist"])
            self.scheduler.restore(state["scheduler"])
            self.on_air = state.get("on_air", {})
            if state.get("rewriter"):
                self.rewriter.restore(state["rewriter"])
            self._force_rebase = bool(state.get("force_rebase"))
            # what failed before is not tried again (it could fail the same way on every start)
            self.quarantined = {str(k): str(v) for k, v in (state.get("quarantine") or {}).items()}
            stamps = state.get("quarantine_stamps") or {}
            self._q_stamps = {k: v for k, v in stamps.items() if k.startswith("spool/")}
            for key in list(self.quarantined):
                if key.startswith("entry/") and stamps.get(key) != self._stamp(key):
                    # a schedule entry refused before: tried again once what it names changed
                    # (another folder, a new render) or it left the schedule; a spool item
                    # when a new render comes under its name (_poll_spool)
                    del self.quarantined[key]
                    if key in self.catalog.folders:
                        log.info(
                            "%s: refused before the restart, but what it names changed: tried again", key
                        )
            for key, why in self.quarantined.items():
                self.catalog.bad[key] = why
            for key in self.scheduler.spool_known | {k for k, _ in self.scheduler.spool_queue}:
                if key.startswith("spool/") and self.schedule.spool:
                    self.catalog.add(key, self.schedule.spool / key[6:], hidden_partial=True)
            if self.playlist.open is not None:
                self._close_after_restart(state.get("air"), now)
            elif state.get("air"):
                # the segment on air had no part out yet: it is chosen and rewritten again
                self.rewriter.restore(state["air"]["rewriter_before"])
            edge = self.playlist.next_pdt_s or now
            if edge > now + 1:  # saved ahead of the clock: it went back while the playout was down
                self.clock_offset_s = edge - now
                now = self._now_s = edge
                log.warning(
                    "the system clock is %.1f s behind the saved channel: the channel keeps its own "
                    "time, that far ahead of the clock, until a restart once the clock has caught up",
                    float(self.clock_offset_s),
                )
            if self._go_on_from_clock(now):
                # down for a while: continue the sequences, jump PROGRAM-DATE-TIME to the clock
                log.warning(
                    "restarted after %.1f s: media sequence %d, discontinuity sequence %d",
                    float(now - edge),
                    self.playlist.next_sequence,
                    self.playlist.discontinuity_sequence,
                )
        else:
            # a fresh channel starts with a window's worth of filler so the playlist is never empty
            start = self._existing_max_sequence() + 1
            self.playlist.next_sequence = self.playlist.media_sequence = start
            self.playlist.next_pdt_s = now - self.playlist.window_s
            self.scheduler.hold_until_s = now  # that window is filler: programs start from now on
        self.media.mkdir(parents=True, exist_ok=True)  # (removed since the constructor made it)
        self._clean_orphans()
        self._install_web()
        self._write_master()

    def _channel_format(self) -> dict[str, Any]:
        """What players of this channel decode: its size and rate (the filler's)."""
        return {"width": self.filler.width, "height": self.filler.height, "fps": str(self.filler.fps)}

    def _check_channel_format(self, filler: Path) -> None:
        """A restart with a filler of another size or rate than the channel saved in ``OUT`` would
        change the channel under its players and refuse every item queued for it (a whole spool,
        each refusal kept in the saved state): refused, before anything airs."""
        try:
            saved = json.loads((self.out / STATE_NAME).read_text()).get("channel")
        except (OSError, ValueError, AttributeError):
            return  # none, or unreadable: start() says so
        if not isinstance(saved, dict) or saved == self._channel_format():
            return
        now = self._channel_format()

        def rate(fps: object) -> str:
            try:
                return _rate(Fraction(str(fps)))
            except (ValueError, ZeroDivisionError):
                return str(fps)

        raise SpecError(
            None,
            "filler",
            f"{filler}: {now['width']}x{now['height']} at {rate(now['fps'])} fps, but the channel in "
            f"{self.out} airs {saved.get('width')}x{saved.get('height')} at {rate(saved.get('fps'))} fps: "
            "give a filler rendered as the channel is, or "
            f"start a new channel (another --out, or remove {self.out / STATE_NAME}: players reload)",
        )

    def _existing_max_sequence(self) -> int:
        seqs = [int(p.stem) for p in self.media.glob("*.ts") if p.stem.isdigit()]
        return max(seqs, default=-1)

    def _clean_orphans(self) -> None:
        keep = {Path(u).name for u in self.playlist.files()}
        # the next segment's file, written whole before the stop, may have been named by the
        # preload hint: it stays as it is (what airs under its number goes to another file)
        keep.add(Path(self.playlist.uri_for(self.playlist.next_sequence)).name)
        for p in self.media.iterdir():
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def _install_web(self) -> None:
        for name in ("index.html", "monitor.js"):
            shutil.copyfile(WEB_DIR / name, self.out / name)
        hls = WEB_DIR / "vendor" / "hls.min.js"
        if hls.exists():
            (self.out / "vendor").mkdir(exist_ok=True)
            shutil.copyfile(hls, self.out / "vendor" / "hls.min.js")
        else:
            log.warning("hls.js missing (%s): run scripts/setup.sh; the monitor page will not play", hls)

    def _check_filler(self) -> None:
        """Every filler media segment is checked, rewritten and cut once before the channel
        starts: the filler is what airs when anything else fails, so it must not fail itself.

        Raises
        ------
        MediaError
            Naming the file and what is wrong with it.
        """
        trial = TimestampRewriter(video_frame_90k=self.rewriter.video_frame_90k)
        for i, info in enumerate(self.filler.segments):
            why = self.catalog.verify(FILLER, i)
            if why:
                raise MediaError(self.filler.folder, "filler", why)
            d = Decision(key=FILLER, index=i, duration_s=info.duration_s, discontinuity=True)
            data = info.path.read_bytes()
            aired = trial.rewrite(data, rebase=True, where=info.path)
            self._cut_plan(aired, d, info.path)
            # kept: the filler airs from memory (a few MB), so its folder removed or damaged
            # under the running channel (.filler in --out) cannot take the channel off air
            self._filler_data[i] = data

    def _fps(self) -> Fraction:
        return self.filler.fps  # the channel's frame rate: every entry is checked against it

    def _write_master(self) -> None:
        bw = max(self.catalog.bandwidth_bps, self.filler.bandwidth_bps, 1)
        if bw <= self._master_bandwidth:
            return
        fps = self._fps()
        write_atomic(
            self.out / MASTER_PLAYLIST,
            master_playlist(
                media_uri=MEDIA_PLAYLIST,
                bandwidth_bps=bw,
                width=self.filler.width,
                height=self.filler.height,
                codecs=self.codecs,
                frame_rate=float(fps),
                subtitles=self.subtitles.media(),
            ),
        )
        self._master_bandwidth = bw

    # ------------------------------------------------------------------ inputs

    def _poll_spool(self, now: Fraction) -> None:
        spool = self.schedule.spool
        if spool is None or self.scheduler is None:
            return
        listed = self._list_spool(spool, now)
        if listed is None:  # said once, and on /status, until it is back: nothing arrives meanwhile
            self._error(
                f"the spool {spool} is gone: nothing new can air until it is back", "warning", topic="spool"
            )
            return
        self._clear("spool", f"the spool {spool} is back")
        present, found = listed
        for hidden, key, name in found:
            if key in self.scheduler.spool_known and key not in self.quarantined:
                continue  # (most of a day's spool: aired or queued, nothing to look at)
            if key in self.quarantined and not hidden:
                stamp = _spool_stamp(spool / name)
                if stamp is not None and stamp != self._q_stamps.get(key):
                    # a new render under a refused name (a withdrawn or failed one's): a new item
                    self.quarantined.pop(key, None)
                    self._q_stamps.pop(key, None)
                    self.catalog.bad.pop(key, None)
                    self.catalog.forget(key)
                    self.scheduler.spool_known.discard(key)
                    log.info("%s: a new render under a refused name: taken as a new item", key)
            if key not in self.scheduler.spool_known:
                if not hidden and not self._arrived(spool / name, key):
                    continue
                self.catalog.add(key, spool / name, hidden_partial=True)
                if key in self.quarantined:  # refused before a restart: not tried again
                    self.catalog.bad[key] = self.quarantined[key]
                self.scheduler.add_spool(key, discovered_s=now)
                log.info("spool: %s queued", name)
        self._drop_removed(present, now)
        self.scheduler.forget_spool(present)
        self.catalog.forget_arriving(present | set(self.catalog.folders))
        for key in list(self.catalog.folders):
            if key.startswith("spool/") and key not in self.scheduler.spool_known:
                self.catalog.forget(key)
                if not (spool / f".{key[6:]}.refused").exists():
                    # the operator removed the refused folder: a new one of that name may come
                    self.quarantined.pop(key, None)

    def _list_spool(self, spool: Path, now: Fraction) -> tuple[set[str], list[tuple[bool, str, str]]] | None:
        """The spool's items: their keys, and (hidden, key, name) in name order; None if the
        folder is gone. Listed again only when the folder changed (its mtime: every item comes,
        goes or is published by a rename in it) or :data:`SPOOL_RESCAN_S` after the last listing
        (a change within one tick of a coarse file-system clock, a network file system): a day's
        1440 items took 5-6 ms a tick to list, stat and sort."""
        try:
            st = os.stat(spool)
        except FileNotFoundError:
            self._spool_listing = None
            return None
        sig = (st.st_dev, st.st_ino, st.st_mtime_ns)
        last = self._spool_listing
        if last is not None and last[0] == sig and 0 <= now - last[1] < SPOOL_RESCAN_S:
            return last[2], last[3]
        present: set[str] = set()
        found: list[tuple[bool, str, str]] = []
        try:
            with os.scandir(spool) as it:
                entries = sorted((e.name, e) for e in it)
        except FileNotFoundError:
            self._spool_listing = None
            return None
        for n, entry in entries:
            if n.startswith(".") and n.endswith(".partial"):
                name = n[1 : -len(".partial")]
                if render_running(spool / name) or (spool / n / FAILED_NAME).exists():
                    self._orphans.discard(spool / n)  # (a failed one is refused, saying why)
                elif self.scheduler is not None and self.scheduler.current == f"spool/{name}":
                    # on air: its render was stopped or killed mid-way (the render service
                    # restarted, crashed): the program waits on filler for its next media
                    # segment, as for a slow render, and goes on when its render resumes (it
                    # was refused as removed, then aired again from its start, its first
                    # seconds twice); after max_late_s its rest is skipped
                    self._orphan(spool / n, airing=True)
                else:
                    # its render was stopped or killed: nothing more comes (it held the channel
                    # on filler for max_late_s, then was skipped for good); `render --into SPOOL
                    # --name NAME` resumes it, and it is queued then
                    self._orphan(spool / n)
                    continue
            elif not n.startswith(".") and not n.endswith(".partial") and _is_dir(entry):
                name = n  # (NAME.partial: `render -o SPOOL/NAME` in progress, not an item of its own)
            else:
                continue
            key = f"spool/{name}"
            present.add(key)
            found.append((n.startswith("."), key, name))
        self._spool_listing = (sig, now, present, found)
        return present, found

    def _orphan(self, partial: Path, *, airing: bool = False) -> None:
        """Say once that a spool render in progress has no render behind it any more."""
        if partial in self._orphans:
            return
        self._orphans.add(partial)
        log.warning(
            "spool: %s: no render is running into it (stopped or killed): %s; "
            "`avatarrender render SEGMENT --into %s --name %s` (or the render service's restart) "
            "resumes it",
            partial.name,
            "on air, it waits on filler for its next media segment (max_late_s)" if airing else "not aired",
            partial.parent,
            partial.name[1 : -len(".partial")],
        )

    def _drop_removed(self, present: set[str], now: Fraction) -> None:
        """A queued or airing spool item whose folder is gone (the operator removed or renamed
        it) for :data:`GONE_S` is dropped: the next item follows at once instead of filler for
        ``max_late_s`` (a render's swap into place leaves neither name for an instant)."""
        assert self.scheduler is not None
        sch = self.scheduler
        queued = {k for k, _ in sch.spool_queue} | ({sch.current} if sch.current else set())
        for key in queued:
            if not key.startswith("spool/") or key in present or key in self.catalog.bad:
                self._gone_since.pop(key, None)
                continue
            since = self._gone_since.setdefault(key, now)
            if now - since < GONE_S:
                continue
            del self._gone_since[key]
            if key == sch.current:
                # refused mid-air at the next slot, without a wait for media segments nobody makes
                self.catalog.bad[key] = "its folder was removed from the spool while it aired"
            else:
                sch.spool_queue = [(k, d) for k, d in sch.spool_queue if k != key]
                log.warning("%s: its folder was removed from the spool before it aired: dropped", key)

    def _arrived(self, folder: Path, key: str) -> bool:
        """Whether a folder that appeared in the spool under its own name may be queued: whole
        (:meth:`FolderCatalog.whole`), or unchanged for :data:`SETTLE_S` (then it airs, or is
        refused for what it lacks). Until then it is not queued, so a slow copy runs up no
        lateness."""
        return self.catalog.whole(folder) or self.catalog.settled(key, folder)

    def _poll_renders(self, now: Fraction) -> None:
        """Render ahead entries given as a segment.yaml, one at a time, in schedule order."""
        if self.render_job is not None:
            if not self.render_job.poll():
                return
            try:
                self.render_job.result()
            except AvatarRenderError as exc:
                self._render_failed(self.render_key or "", f"render failed: {exc}")
            self.render_job = None
            self.render_key = None
        assert self.scheduler is not None
        lead = Fraction(self.schedule.model.render_lead_s)
        for i, e in enumerate(self.schedule.entries):
            # an entry airs at its time or after one with a time: past the lead, so is the rest
            # (an 'after' entry behind a far-off one rendered at once, hours early)
            if e.at_s is not None and e.at_s - now > lead:
                break
            # the entry on air too: after a restart its render is no longer running, and the
            # rest of the program would wait for media segments nobody makes (the render resumes
            # from its .partial folder)
            on_air = e.key == self.scheduler.current
            if (self.scheduler.passed(i) and not on_air) or e.spec is None:
                continue
            if e.key in self.renders_failed:
                if self.renders_failed[e.key] == _mtime_ns(e.spec) or e.key in self.quarantined:
                    continue
                # its segment.yaml changed since (fixed, say): rendered again, if not yet refused
                log.info("%s: %s changed since its render failed: rendering it again", e.key, e.spec)
                del self.renders_failed[e.key]
                self.catalog.bad.pop(e.key, None)
            if e.folder is None:
                continue
            if (e.folder / "manifest.json").exists():
                continue
            if self.renderer is None:
                self._render_failed(
                    e.key,
                    f"given as a segment.yaml ({e.spec}) but this playout has "
                    "no renderer: render it first and give its folder",
                )
                continue
            e.folder.parent.mkdir(parents=True, exist_ok=True)
            log.info("%s: rendering ahead: %s into %s", e.key, e.spec, e.folder)
            try:
                self.render_job = self.renderer.render_ahead(e.spec, e.folder)
            except (AvatarRenderError, OSError) as exc:
                self._render_failed(e.key, f"render failed to start: {exc}")
                continue
            self.render_key = e.key
            return

    def _render_failed(self, key: str, why: str) -> None:
        """An entry's render-ahead failed: said on /status. If it published nothing, the entry
        is refused when due (at once, with this line, not after max_late_s of filler waiting
        for media nobody makes), unless its segment.yaml changes before then (it is rendered
        again). What it did publish airs, then the rest is refused (its folder is marked failed:
        rendition.mark_failed)."""
        self._error(f"{key}: {why}")
        entry = next((e for e in self.schedule.entries if e.key == key), None)
        self.renders_failed[key] = _mtime_ns(entry.spec) if entry is not None and entry.spec else None
        folder = entry.folder if entry is not None else None
        if folder is None or not any((f / "manifest.json").exists() for f in (folder, partial_path(folder))):
            self.catalog.bad[key] = why.splitlines()[0] if why else "render failed"

    # ------------------------------------------------------------------ the tick

    def _error(self, message: str, level: str = "error", *, topic: str | None = None) -> None:
        """Log ``message`` and list it on /status.

        With a ``topic`` (a lasting condition: the disk is full, a program's segments cannot be
        cut, the tick keeps failing) it is logged once when the condition starts and not again
        until :meth:`_clear` ends it; each repeat is still counted for /metrics.
        """
        if level in ("error", "warning"):
            self.counters.error(level)
        if topic is not None:
            if topic in self._topics:
                return
            self._topics[topic] = message
        getattr(log, level if level in ("error", "warning", "info") else "error")(message)
        if level in ("error", "warning"):
            self.errors.append({"at": format_pdt(self._now_s), "level": level, "message": message})
            del self.errors[:-20]

    def _clear(self, topic: str, message: str | None = None) -> None:
        """The condition ``topic`` is over: log ``message`` once (if given)."""
        if self._topics.pop(topic, None) is not None and message:
            log.info(message)

    def tick(self, now_s: float | Fraction) -> int:
        """Publish every part and media segment whose end the clock has reached; returns how many
        parts (or whole segments) were published."""
        assert self.scheduler is not None, "call start() first"
        now = Fraction(now_s) + self.clock_offset_s
        step = now - self._now_s
        if step < -1:
            # the clock went back: the channel goes on at its own pace (PROGRAM-DATE-TIME never
            # goes back, and waiting for the clock would hold the channel that long)
            self.clock_offset_s -= step
            now -= step
            log.warning(
                "the system clock went back %.1f s: the channel keeps its own time, %.1f s ahead "
                "of the clock",
                float(-step),
                float(self.clock_offset_s),
            )
        else:
            if step > 1 and self.clock_offset_s > 0:
                # ahead of the clock since it went back, and now it comes forward (set right
                # again, say): the channel goes on at its pace, that much less ahead of the clock
                # (it skipped the time, ahead of the clock still, back and forth for good). Over
                # 1 s, as a step back counts (a tick that late while ahead pauses the channel)
                taken = min(self.clock_offset_s, step)
                self.clock_offset_s -= taken
                now -= taken
                step -= taken
                log.warning(
                    "the system clock came forward %.1f s: the channel goes on at its pace, %.1f s "
                    "ahead of the clock now",
                    float(taken),
                    float(self.clock_offset_s),
                )
            if step > 2 * self.playlist.target_duration_s:
                # the clock jumped ahead (or the process was stopped): what the clock skipped is
                # skipped, after a discontinuity, as after a restart; not listed at once, backdated
                log.warning(
                    "the clock jumped %.1f s ahead (a clock step, or the process was stopped): the "
                    "channel goes on from it after a discontinuity",
                    float(step),
                )
                self._stalled = True
        self._now_s = now
        self._wrote = self._write_failed = False
        self.catalog.now_s = now
        self._poll_spool(now)
        self._poll_renders(now)
        published = 0
        while published < 100_000:
            if self._air is None and not self._open(now):
                # a disk error: try again in a quarter second, not on every loop (run() would spin)
                self.next_due_s = now + Fraction(1, 4)
                break
            air = self._air
            assert air is not None
            op = self.playlist.open
            start = (
                op.pdt_s
                if op is not None
                else (air.pdt_s if air.pdt_s is not None else self.playlist.next_pdt_s)
            )
            assert start is not None
            self.next_due_s = start + air.end_s(air.published)
            if now < self.next_due_s:
                break
            # a program is ready: the filler ends with this part, the program starts after it
            if (
                air.decision.key == FILLER
                and air.published + 1 < air.count
                and self._program_due(self.next_due_s)
                and self._shorten(air, keep=air.published + 1, carry_audio=True)
            ):
                log.info(
                    "filler media segment %d cut after %d parts for the next program", air.sequence, air.count
                )
            self._publish_part(air)
            published += 1
            if air.published == air.count:
                self._close(air, now)
        # Not while the next media segment cannot be written: the playlist would end at a closed
        # segment with neither the next one's parts nor a preload hint. hls.js takes such a last
        # segment for the next one (its fragmentHint) and stops for good, "media sequence
        # mismatch", at the next reload that lists the following segment. What was published
        # meanwhile goes out with the next segment, once one can be written.
        if published and not (self._stalled and self.part_target_s is not None):
            self._save_and_publish(now)
        self._undeleted += self.playlist.due_deletions(now)
        for i, uri in enumerate(self._undeleted):
            try:
                (self.out / uri).unlink(missing_ok=True)
                self.subtitles.delete(uri)
            except OSError as exc:  # a read-only or failing disk: kept to try again
                self._disk_error(f"cannot delete {uri}: {exc}")
                del self._undeleted[:i]
                break
        else:
            self._undeleted.clear()
        if self._lost_out and self._wrote and not self._write_failed:
            # the output folder (or its media/) was removed: its other files come back too
            self._lost_out = False
            try:
                self._master_bandwidth = 0  # written again whatever it says
                self._write_master()
                self._install_web()
            except OSError as exc:
                self._disk_error(f"cannot write the master playlist and page again: {exc}")
            else:
                log.warning("%s: its media folder was removed while on air: made again", self.out)
            if self.on_out_lost is not None:
                try:
                    self.on_out_lost()
                except Exception as exc:  # another playout took the folder meanwhile: said
                    self._error(str(exc), "warning")
        if self._write_failed:
            self._disk_ok_since = None
        elif self.disk_error is not None and self._wrote:
            # said once writes have worked for a while: on a disk kept full by another writer,
            # each segment the window deletes lets one more be written (an operator saw 5
            # "work again" lines in 12 s on a disk still full)
            self._disk_ok_since = self._disk_ok_since if self._disk_ok_since is not None else now
            if now - self._disk_ok_since >= DISK_CLEAR_S:
                self._clear("disk", "writes work again: the playlist moves on")
                self.disk_error = self._disk_ok_since = None
        if published or now - self._last_status_s >= 1:
            self._write_status(now)
        self._verify_ahead()
        return published

    def _open(self, now: Fraction) -> bool:
        """:meth:`_open_next`, going on from the clock after a stall (see _go_on_from_clock)."""
        if self._stalled:
            self._go_on_from_clock(now)
        if not self._open_next():
            self._stalled = True
            return False
        if self._missed_segments and self._air is not None:
            if self._air.decision.index:
                log.info(
                    "%s: resumed at media segment %d, %d missed",
                    self._air.decision.key,
                    self._air.decision.index,
                    self._missed_segments,
                )
            else:  # what was missed was the time of what aired before (or filler): this airs whole
                log.info(
                    "%s: on air from its start, after %d media segments' time missed",
                    self._air.decision.key,
                    self._missed_segments,
                )
        self._stalled, self._missed_left_s, self._missed_segments = False, Fraction(0), 0
        return True

    def _go_on_from_clock(self, now: Fraction) -> bool:
        """After the channel stood still for over two target durations (the playout down, or no
        media segment could be written: a full disk), it goes on from the clock, after a
        discontinuity, a target duration behind it, the program on air moved on by as much as
        was missed: not all of it listed at once, backdated (a burst of media segments mostly
        past the window already). True if so. Called again on each try while the disk is full:
        what a try could not skip (less than a media segment) is carried to the next."""
        assert self.scheduler is not None
        edge = self.playlist.next_pdt_s
        if edge is None or now - edge <= 2 * self.playlist.target_duration_s:
            return False
        since = self._resume_pdt_s if self._resume_pdt_s is not None else edge
        resume = max(since, now - self.playlist.target_duration_s)
        if resume > since:
            cursor = self.scheduler.cursor
            self._missed_left_s = self.scheduler.catch_up(resume - since + self._missed_left_s, self.catalog)
            self._missed_segments += self.scheduler.cursor - cursor
            self._resume_pdt_s = resume
        return True

    def _verify_ahead(self, budget_s: float = 0.02) -> None:
        """Check the media segments of the program on air and of the next one ahead of their
        turn, a few per tick (about 3 ms each at 1080p): a long program is not checked all at
        once in the tick that starts it (1800 segments would hold publication for seconds)."""
        sch = self.scheduler
        if sch is None:
            return
        keys = [k for k in (sch.current, (sch.upcoming(self._now_s) or {}).get("key")) if k]
        deadline = time.perf_counter() + budget_s
        for key in keys:
            r = self.catalog.rendered.get(key)  # read by the scheduler or the status, if at all
            if r is None or key in self.catalog.bad:
                continue
            for i in range(len(r.segments)):
                if self.catalog.verified(key, i):
                    continue
                self.catalog.verify(key, i)
                if time.perf_counter() > deadline:
                    return

    def _open_next(self) -> bool:
        """Choose, rewrite and write the next media segment (whole); False on a disk error."""
        assert self.scheduler is not None
        slot = self._resume_pdt_s if self._resume_pdt_s is not None else self.playlist.next_pdt_s
        assert slot is not None
        for _ in range(10_000):
            d = self.scheduler.peek(slot, self.catalog)
            self._drain_events()
            seq = self.playlist.next_sequence
            uri = self.playlist.uri_for(seq)
            take = 0
            while (self.out / uri).exists() and take < 1000:
                # written before a restart, none of its parts out but a preload hint named it:
                # what airs under its number now goes to a file of its own
                take += 1
                uri = self.playlist.uri_for(seq, take=take)
            dest = self.out / uri
            jump = self._resume_pdt_s is not None or self._force_rebase
            rebase = d.discontinuity or jump
            saved = self.rewriter.to_json()
            where: Path | None = None
            try:
                if d.key == FILLER and d.index in self._filler_data:
                    data, where = self._filler_data[d.index], self.filler.segments[d.index].path
                else:
                    data = self.catalog.read_checked(d.key, d.index)
                    where = self.catalog.rendered[d.key].segments[d.index].path
                aired = self.rewriter.rewrite(data, rebase=rebase, where=where)
                parts, frame_s = self._cut_plan(aired, d, where)
            except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
                self.rewriter.restore(saved)
                if d.key == FILLER:
                    raise MediaError(exc.filename, None, f"the filler cannot be read: {exc}") from exc
                self._quarantine(d.key, f"{exc.filename}: {exc.strerror}")
                continue
            except OSError as exc:
                self.rewriter.restore(saved)
                self._disk_error(f"cannot read media segment {d.index} of {d.key}: {exc}")
                return False
            except Exception as exc:  # no item may stop the channel
                self.rewriter.restore(saved)
                if d.key == FILLER:
                    raise MediaError(self.filler.folder, None, f"the filler is unusable: {exc}") from exc
                why = (
                    str(exc)
                    if isinstance(exc, AvatarRenderError)
                    else f"{where or f'media segment {d.index}'}: {type(exc).__name__}: {exc}"
                )
                self._quarantine(d.key, why)
                continue  # the next peek refuses the entry: filler or the next entry airs
            try:
                if not self.media.is_dir():  # the folder was removed under the channel
                    self.media.mkdir(parents=True, exist_ok=True)
                    self._lost_out = True
                write_atomic(dest, aired)
            except OSError as exc:
                self.rewriter.restore(saved)  # not aired: the channel clock stays put
                self._disk_error(f"cannot publish media segment {seq}: {exc}")
                return False
            try:  # its WebVTT, moved onto the channel clock by the same offset as its PTS
                self.subtitles.write_segment(
                    seq, self.catalog.rendered.get(d.key), d.index, self.rewriter.offset_90k or 0
                )
            except OSError as exc:
                self._error(f"cannot write the subtitles of media segment {seq}: {exc}", "warning")
            self._air = _OnAir(
                decision=d,
                sequence=seq,
                pdt_s=self._resume_pdt_s,
                rebase=rebase,
                tagged=(d.discontinuity and not d.seamless) or jump,
                original=data,
                rewriter_before=saved,
                parts=parts,
                frame_s=frame_s,
                uri=uri,
                whole=uri,
            )
            self._force_rebase = False
            self._set_hint()
            return True
        raise RuntimeError("no media segment could be opened")  # pragma: no cover

    def _cut_plan(
        self, aired: bytes, d: Decision, where: Path | None = None
    ) -> tuple[tuple[Part, ...] | None, Fraction]:
        """Parts of an aired media segment, each at most PART-TARGET; None: publish it whole."""
        if self.part_target_s is None:
            return None, Fraction(0)
        n_frames = len(video_frames(aired, where))
        if not n_frames:
            return None, Fraction(0)
        frame_s = d.duration_s / n_frames
        parts = cut_parts(aired, part_frames=max(1, int(self.part_target_s / frame_s)))
        if parts is None:
            # once per program, not once per media segment
            self._error(
                f"{d.key}: media segments cannot be cut into parts of "
                f"{float(self.part_target_s):.3f} s: published whole",
                "warning",
                topic=f"uncut:{d.key}",
            )
        return parts, frame_s

    def _stamp(self, key: str) -> str | None:
        """What a schedule entry names, as the quarantine remembers it: its folder and when its
        manifest (or, before one, the folder) last changed. None for a key not in the schedule."""
        folder = self._entry_folders.get(key)
        if folder is None:
            return None
        return f"{folder}:{_mtime_ns(folder / 'manifest.json') or _mtime_ns(folder)}"

    def _quarantine(self, key: str, why: str) -> None:
        """Refuse ``key`` for good: the scheduler drops it at its next peek, the saved state
        remembers it (a restart does not try it again unless, for a schedule entry, what it
        names changed), and a finished spool folder is renamed to a hidden ``.NAME.refused``
        (the spool ignores it; the operator finds it)."""
        for prefix in (f"{key}: ", "refused: "):  # said again with the key when it is due
            why = why.removeprefix(prefix)
        self.catalog.bad[key] = why
        self.quarantined[key] = why
        while len(self.quarantined) > 200:  # bounded: the oldest go first
            self._q_stamps.pop(next(iter(self.quarantined)), None)
            del self.quarantined[next(iter(self.quarantined))]
        folder, _ = self.catalog.folders.get(key, (None, None))
        if key.startswith("spool/") and folder is not None:
            self._q_stamps[key] = _spool_stamp(folder)  # what was refused (a later render is new)
        if key.startswith("spool/") and folder is not None and folder.is_dir():
            try:
                folder.rename(folder.with_name(f".{folder.name}.refused"))
                why += f" (moved to .{folder.name}.refused)"
                self.catalog.bad[key] = why
            except OSError as exc:
                log.warning("%s: could not move the refused folder aside: %s", key, exc)

    def _set_hint(self) -> None:
        air = self._air
        if air is None or not air.parts or air.published >= len(air.parts):
            self.playlist.preload_hint = None
            return
        p = air.parts[air.published]
        self.playlist.preload_hint = (air.uri, p.offset_bytes, p.size_bytes)

    def _publish_part(self, air: _OnAir) -> None:
        if air.parts:
            p = air.parts[air.published]
            self.playlist.add_part(
                LivePart(
                    duration_s=p.frames * air.frame_s,
                    offset_bytes=p.offset_bytes,
                    size_bytes=p.size_bytes,
                    independent=p.independent,
                    uri=air.uri if air.uri != air.whole else None,
                ),
                discontinuity=air.tagged,
                program=air.decision.key,
                pdt_s=air.pdt_s,
                uri=air.whole,
            )
        air.published += 1
        self._resume_pdt_s = None
        self._set_hint()
        op = self.playlist.open
        if op is not None and self.on_air.get("key") != air.decision.key:  # on air from its first part
            self.on_air = {"key": air.decision.key, "since": format_pdt(op.pdt_s)}

    def _close(self, air: _OnAir, now: Fraction) -> None:
        """The segment's last part is out: list it whole and move the scheduler past it."""
        assert self.scheduler is not None
        duration_s = air.end_s(air.count - 1)
        self.playlist.append(
            duration_s=duration_s,
            discontinuity=air.tagged,
            program=air.decision.key,
            now_s=now,
            pdt_s=None if air.parts else air.pdt_s,
            uri=air.uri,
        )
        self.counters.published(
            air.decision.key,
            duration_s,
            # filler inside a program that has begun (a media segment not rendered in time); not
            # the filler segment cut short where a program starts (every start counted a stall)
            stalled=air.decision.key == FILLER
            and self.scheduler.current is not None
            and self.scheduler.cursor > 0,
        )
        self.scheduler.commit(air.decision)
        for hook in self.publish_hooks:  # must not block: the restream only queues the path
            hook(self.out / air.uri)
        if self.on_air.get("key") != air.decision.key:
            self.on_air = {"key": air.decision.key, "since": format_pdt(self.playlist.segments[-1].pdt_s)}
        self._air = None
        self.playlist.preload_hint = None

    def _program_due(self, at_s: Fraction) -> bool:
        """Would something other than filler air from ``at_s`` (a part boundary)?"""
        assert self.scheduler is not None
        d = self.scheduler.peek(at_s, self.catalog)
        self._drain_events()
        return d.key != FILLER

    def _shorten(self, air: _OnAir, *, keep: int, carry_audio: bool) -> bool:
        """Rewrite the segment's file as its first ``keep`` parts (see parts.shorten); False
        (and the segment airs whole) if its bytes cannot be cut."""
        assert air.parts is not None
        state = self.rewriter.to_json()
        try:
            # the parts are byte ranges of the aired file, which may lack the first audio frame
            # of the rendered one (tsrewrite drops audio that would overlap what aired): cut the
            # rendered file at the same frames, rewrite it, and check the published parts hold
            pf = max(p.frames for p in air.parts)
            rendered_parts = cut_parts(air.original, part_frames=pf)
            if rendered_parts is None or [p.frames for p in rendered_parts] != [p.frames for p in air.parts]:
                raise ValueError("the rendered file's parts are not the aired ones")
            data, _ = shorten(air.original, rendered_parts, keep, carry_audio=carry_audio)
            self.rewriter.restore(air.rewriter_before)
            aired = self.rewriter.rewrite(data, rebase=air.rebase)
            parts = cut_parts(aired, part_frames=pf)
            if parts is None or len(parts) != keep or parts[: keep - 1] != air.parts[: keep - 1]:
                raise ValueError("the shortened file would change parts already published")
        except Exception as exc:  # noqa: BLE001 - checked before air; if not, it airs whole
            self.rewriter.restore(state)
            self._error(
                f"{air.decision.key}: media segment {air.decision.index} could not be "
                f"cut short ({exc}): it airs whole",
                "warning",
            )
            return False
        # to a file of its own: the whole one, which players and caches may hold, never changes
        cut = self.playlist.cut_uri(air.uri)
        try:
            write_atomic(self.out / cut, aired)
        except OSError as exc:  # the file stays whole: so does the segment, as listed
            self.rewriter.restore(state)
            self._disk_error(f"cannot shorten media segment {air.sequence}: {exc}")
            return False
        air.parts, air.uri = parts, cut
        self._force_rebase = True  # what follows does not continue the cut-away frames
        self._set_hint()
        return True

    def _close_after_restart(self, air_state: dict[str, Any] | None, now: Fraction) -> None:
        """A segment was on air when the playout stopped: close it after its published parts."""
        assert self.scheduler is not None and self.playlist.open is not None
        op = self.playlist.open
        if not op.parts or not air_state:
            self.playlist.open = None
            return
        d = Decision(
            key=air_state["key"],
            index=int(air_state["index"]),
            duration_s=Fraction(air_state["duration_s"]),
            discontinuity=bool(air_state["discontinuity"]),
        )
        parts = tuple(Part.from_json(p) for p in air_state["parts"] or ())
        air = _OnAir(
            decision=d,
            sequence=op.sequence,
            pdt_s=None,
            rebase=bool(air_state.get("rebase", op.discontinuity)),
            tagged=op.discontinuity,
            original=b"",
            rewriter_before=air_state["rewriter_before"],
            parts=parts,
            frame_s=Fraction(air_state["frame_s"]),
            published=len(op.parts),
            uri=str(air_state.get("uri") or op.uri),
            whole=str(air_state.get("whole") or op.uri),
        )
        try:
            self.catalog.availability(d.key)
            air.original = self.catalog.read_checked(d.key, d.index)
            if not self._shorten(air, keep=len(op.parts), carry_audio=False):
                raise MediaError(None, None, "cannot be cut")
        except Exception:  # noqa: BLE001 - whatever the saved state or the file, restart
            # the rendered file is gone: keep the aired prefix as it is, rebase what follows
            end = parts[len(op.parts) - 1].offset_bytes + parts[len(op.parts) - 1].size_bytes
            cut = self.playlist.cut_uri(air.uri)
            try:
                write_atomic(self.out / cut, (self.out / air.uri).read_bytes()[:end])
                air.uri = cut
            except OSError:
                pass
            air.parts = parts[: len(op.parts)]
            self._force_rebase = True
        if len(air.parts or ()) < len(parts):
            log.warning(
                "media segment %d (%s) cut after %d parts at restart", op.sequence, d.key, len(op.parts)
            )
        self._close(air, now)

    def _drain_events(self) -> None:
        assert self.scheduler is not None
        events = list(self.scheduler.events)
        for level, msg in events:
            self._error(msg, level)
        self.scheduler.events.clear()
        for ev in self.scheduler.aired:
            log.info("%s %s at %s", ev["key"], ev["event"], format_pdt(ev["at_s"]))
            self.counters.aired(ev, target_duration_s=self.playlist.target_duration_s)
            if ev["event"] in ("ended", "skipped") and ev["key"].startswith("spool/"):
                self._mark_done(ev["key"], ev["event"], ev["at_s"])
            if (
                ev["event"] == "refused"
                and ev["key"] not in self.quarantined
                and (ev["key"] in self.catalog.folders or ev["key"] == FILLER)
            ):
                # whatever refused it (manifest, check, rewrite), a restart does not try it again
                key = ev["key"]
                why = next((m for _, m in reversed(events) if m.startswith(f"{key}: ")), "refused")
                self._quarantine(key, why)
        self.scheduler.aired.clear()

    def _mark_done(self, key: str, event: str, at_s: Fraction) -> None:
        """Write ``SPOOL/NAME/.done`` (``ended`` or ``skipped``, and when) for a spool item the
        channel is done with: what a cleanup removes after a while (``examples/crontab``). Its
        folder's time says nothing of that: a folder copied in with ``cp -a`` or ``rsync -a``
        keeps its old time, and the crontab's line removed such items unaired, or on air."""
        folders = self.catalog.folders.get(key)
        if folders is None or not folders[0].is_dir():
            return
        try:
            write_atomic(folders[0] / DONE_NAME, f"{event} {format_pdt(at_s)}\n")
        except OSError as exc:  # a read-only spool: the item stays, nothing else is lost
            log.debug("%s: cannot write %s: %s", key, DONE_NAME, exc)

    def _disk_error(self, message: str) -> None:
        """A write failed: logged once until a tick writes without a failure (the playlist in
        one folder may still be writable while media files in another are not: no flapping)."""
        self._write_failed = True
        self.counters.error("disk")
        hint = " (disk full?)" if "No such file" not in message else " (was the output folder removed?)"
        self._error(message + hint + ": the playlist stays as it was", topic="disk")
        self.disk_error = message

    def _save_and_publish(self, now: Fraction) -> None:
        assert self.scheduler is not None
        state = {
            "format": "avatarrender.playout-state/1",
            "saved_at": format_pdt(now),
            "channel": self._channel_format(),
            "playlist": self.playlist.to_json(),
            "scheduler": self.scheduler.to_json(),
            "on_air": self.on_air,
            "rewriter": self.rewriter.to_json(),
            "air": None if self._air is None else self._air.to_json(),
            "force_rebase": self._force_rebase,
            "quarantine": self.quarantined,
            "quarantine_stamps": {
                k: self._q_stamps.get(k) if k.startswith("spool/") else self._stamp(k)
                for k in self.quarantined
            },
        }
        try:
            # state before playlist: a restart never reuses a sequence number a player has seen
            write_atomic(self.out / STATE_NAME, json.dumps(state))
            text = self.playlist.render(reports=[uri for _, _, uri in self.subtitles.media()])
            write_atomic(self.out / MEDIA_PLAYLIST, text)
            renditions = self.subtitles.publish(self.playlist)
            self._write_master()
            self._wrote = True
            seq, parts = self.playlist.position()
            self.feed.publish(
                Snapshot(
                    playlist=text.encode(),
                    next_sequence=seq,
                    parts_published=parts,
                    part_counts={
                        s.sequence: len(s.parts) for s in list(self.playlist.segments)[-8:] if s.parts
                    },
                    target_duration_s=self.playlist.target_duration_s,
                    part_target_s=None if self.part_target_s is None else float(self.part_target_s),
                    renditions=renditions,
                )
            )
        except OSError as exc:
            self._disk_error(f"cannot write the playlist: {exc}")

    # ------------------------------------------------------------------ status

    def status(self, now_s: float | Fraction) -> dict[str, Any]:
        """What is on air, what is next, how far rendering is ahead, recent errors."""
        assert self.scheduler is not None
        now = Fraction(now_s)
        sch = self.scheduler
        ahead = Fraction(0)
        if sch.current is not None:
            av = self.catalog.availability(sch.current)
            ahead = sum(av.durations_s[sch.cursor :], Fraction(0))
        nxt = sch.upcoming(now)
        if nxt is not None:
            av = self.catalog.availability(nxt["key"])
            nxt["ready_s"] = round(float(sum(av.durations_s, Fraction(0))), 3)
            nxt["complete"] = av.complete
            nxt["error"] = av.error
            # still rendering: it starts once this much of it is out (see Scheduler.hold_s)
            nxt["starts_when_ready_s"] = round(float(sch.hold_s), 3)
        edge = self.playlist.edge_s
        _, parts = self.playlist.position()
        return {
            "now": format_pdt(now),
            "live_edge": format_pdt(edge) if edge is not None else None,
            "on_air": {
                **self.on_air,
                "index": sch.cursor if sch.current else sch.filler_index,
                "render_ahead_s": round(float(ahead), 3),
            },
            "next": nxt,
            "media_sequence": self.playlist.media_sequence,
            "discontinuity_sequence": self.playlist.discontinuity_sequence,
            "next_sequence": self.playlist.next_sequence,
            "parts_published": parts,
            "part_target_s": None if self.part_target_s is None else round(float(self.part_target_s), 5),
            "target_duration_s": self.playlist.target_duration_s,
            "spool_queue": [k for k, _ in sch.spool_queue],
            "rendering": self.render_key,
            "disk_error": self.disk_error,
            "errors": self.errors[-10:],
            **{k: f() for k, f in self.status_extras.items()},
        }

    def _write_status(self, now: Fraction) -> None:
        self._last_status_s = now
        doc = json.dumps(self.status(now), indent=1)
        self.feed.set_status(doc.encode())
        try:
            write_atomic(self.out / "status.json", doc)
        except OSError:
            pass  # the disk error is reported by the playlist write

    # ------------------------------------------------------------------ real time

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        interval_s: float = 0.05,
    ) -> None:
        """Tick on the real clock until ``stop`` is set; a render-ahead is stopped on exit."""
        stop = stop or threading.Event()
        self.start(clock())
        try:
            while not stop.is_set():
                try:
                    self.tick(clock())
                    self._clear("tick", "the playout ticks again")
                except Exception as exc:  # the channel stays up; said once
                    log.debug("tick failed", exc_info=True)
                    self._error(
                        str(exc) if isinstance(exc, AvatarRenderError) else f"{type(exc).__name__}: {exc}",
                        topic="tick",
                    )
                    self.next_due_s = (
                        Fraction(clock()) + self.clock_offset_s + Fraction(1, 2)
                    )  # retry, not spin
                # wake at the next publication, not up to an interval after it
                due = (
                    float(self.next_due_s - self.clock_offset_s) - clock()
                    if self.next_due_s is not None
                    else interval_s
                )
                stop.wait(min(interval_s, max(0.002, due)))
        finally:
            if self.render_job is not None:
                self.render_job.terminate()

"""The schedule (what airs when) and the scheduler (what airs in the next media-segment slot).

The scheduler is pure: it asks a :class:`Catalog` what is ready, is told the slot's
PROGRAM-DATE-TIME, and answers with a :class:`Decision`. The engine gives it a catalog over real
folders; the soak test gives it a synthetic one and a clock it controls.

Late policy (documented in the README):

* An entry airs at the first media-segment boundary at or after its air time (``at``), or right
  after the previous entry ends (``after: previous``), or, for a spool item, as soon as the
  channel is free after it appears. While filler airs, that boundary is the next LL-HLS part
  boundary: the filler's media segment is cut short there (programs are never cut).
* If it is not ready then (no finished media segment yet), filler airs until it is. If it is still
  not ready ``max_late_s`` after it became due, it is skipped (an error is logged); an absolute
  entry that could not start within ``max_late_s`` of its air time is skipped even if ready later.
* A program rendering ahead (partial) whose next media segment is not finished when needed: filler,
  then it resumes where it stopped; after ``max_late_s`` of waiting the rest is skipped.
* A corrupt or incomplete rendered segment (bad manifest, missing file, size or sha256 mismatch,
  malformed MPEG-TS, frames other than the manifest's, a PTS hole) is refused before it airs:
  filler instead, an error logged, the next entry follows.
* An entry whose folder does not exist at all when it is due (neither it nor its partial form)
  is said at once, with the path; the late policy then applies (it may still appear).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from avatarrender.specload import _first_problem, read_yaml

from avatarrender.errors import SpecError
from avatarrender.playout.playlist import format_pdt, parse_pdt

__all__ = [
    "EntryModel",
    "FillerModel",
    "ScheduleModel",
    "Entry",
    "Schedule",
    "load_schedule",
    "Availability",
    "Catalog",
    "Decision",
    "Scheduler",
    "FILLER",
]

FILLER = "filler"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FillerModel(_Strict):
    """``filler:``: a pre-rendered folder, or a segment.yaml to render once as an idle loop."""

    dir: str | None = None
    spec: str | None = None
    duration_s: float = Field(10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _one(self) -> FillerModel:
        if (self.dir is None) == (self.spec is None):
            raise ValueError("give exactly one of 'dir' (rendered folder) or 'spec' (segment.yaml)")
        return self


class EntryModel(_Strict):
    """One ``entries:`` item."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    at: _dt.datetime | None = None
    after: Literal["previous"] | None = None
    segment: str | None = None
    spec: str | None = None
    title: str | None = Field(None, min_length=1, max_length=500)  # programme guide
    description: str | None = Field(None, min_length=1, max_length=5000)  # programme guide

    @field_validator("at", mode="before")
    @classmethod
    def _not_a_number(cls, v: Any) -> Any:
        # pydantic reads a number as epoch seconds (or milliseconds): `at: 20261203` aired in
        # 1970, skipped with a line that did not say what time it read
        if isinstance(v, str):
            try:
                float(v)  # "20261203" (quoted) is read as a number too
            except ValueError:
                return v
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            raise ValueError(
                f"{v!r} is a number: give a date and time, ISO 8601 with its offset, such as "
                "2026-12-03T20:00:00Z or 2026-12-03T21:00:00+01:00 (YAML reads an unquoted 20:00 "
                "as the number 1200: quote a time)"
            )
        return v

    @field_validator("at", mode="after")
    @classmethod
    def _with_offset(cls, v: _dt.datetime | None) -> _dt.datetime | None:
        # a time without an offset aired at that hour UTC, whatever the operator's zone
        if v is not None and v.utcoffset() is None:
            raise ValueError(
                f"{v.isoformat()} has no offset: say which zone it is in, such as "
                f"{v.isoformat()}Z (UTC) or {v.isoformat()}+01:00"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> EntryModel:
        if (self.segment is None) == (self.spec is None):
            raise ValueError("give exactly one of 'segment' (rendered folder) or 'spec' (segment.yaml)")
        if self.at is not None and self.after is not None:
            raise ValueError("give 'at' or 'after', not both")
        return self


class SubtitleTrackModel(_Strict):
    """One ``subtitles:`` item: a subtitle track the channel carries (the programs' WebVTT
    captions of that language; empty while a program has none, or the filler airs)."""

    language: str = Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")  # BCP 47
    name: str | None = Field(None, min_length=1, max_length=100)  # shown by players


class LateModel(_Strict):
    max_late_s: float = Field(30.0, ge=0)


class ScheduleModel(_Strict):
    """The schedule YAML."""

    target_duration_s: int = Field(1, ge=1, le=10)
    window_s: float = Field(6.0, gt=0)
    hold_back_s: float = Field(3.0, ge=0)
    # LL-HLS PART-TARGET in frames: 6 at 30 fps is 0.2 s, the shortest part Apple advises; a
    # viewer on hls.js defaults starts PART-HOLD-BACK (3 parts) behind the edge, so the part
    # sets the latency. 0 publishes whole media segments only, without parts or blocking reload
    part_frames: int = Field(6, ge=0, le=600)
    part_hold_back_s: float = Field(0.0, ge=0)  # raised to 3 PART-TARGETs if less
    late: LateModel = LateModel()
    filler: FillerModel | None = None
    spool: str | None = None
    render_lead_s: float = Field(600.0, ge=0)
    channel: str | None = Field(None, min_length=1, max_length=200)  # its name in the programme guide
    subtitles: list[SubtitleTrackModel] = []  # the channel's subtitle tracks, the first the default
    entries: list[EntryModel] = []

    @model_validator(mode="after")
    def _unique(self) -> ScheduleModel:
        names = [e.name for e in self.entries]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"entry names must be unique: {sorted(dup)}")
        return self


@dataclasses.dataclass(frozen=True)
class Entry:
    """A schedule entry with paths resolved and time exact.

    Attributes
    ----------
    key : str
        Stable identity (``entry/NAME`` or ``spool/NAME``), used in the saved state.
    name : str
        The entry's name.
    at_s : Fraction or None
        Absolute air time, epoch seconds; None: after the previous entry.
    folder : Path or None
        The rendered folder (complete name; the partial one is derived from it).
    spec : Path or None
        A segment.yaml to render ahead into ``folder``.
    """

    key: str
    name: str
    at_s: Fraction | None
    folder: Path | None
    spec: Path | None = None


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A loaded schedule: settings, entries, filler and spool paths."""

    path: Path | None
    model: ScheduleModel
    entries: tuple[Entry, ...]
    filler_dir: Path | None
    filler_spec: Path | None
    spool: Path | None

    @property
    def max_late_s(self) -> Fraction:
        return Fraction(self.model.late.max_late_s).limit_denominator(1000)


def load_schedule(path: str | Path, *, renders_dir: str | Path | None = None) -> Schedule:
    """Read a schedule YAML; relative paths are relative to its folder.

    Parameters
    ----------
    renders_dir : path, optional
        Where entries given as ``spec:`` are rendered to (``renders_dir/NAME``).

    Raises
    ------
    SpecError
        Unreadable YAML or an invalid field (the message names it).
    """
    path = Path(path)
    try:
        doc = read_yaml(path) or {}  # YAML 1.2 booleans, as segment.yaml
    except FileNotFoundError as exc:
        raise SpecError(path, None, "schedule not found") from exc
    except yaml.YAMLError as exc:
        # one line: where and what (PyYAML's own message spans 5-7 lines with a source excerpt)
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(path, where, f"not valid YAML: {what}") from None
    except UnicodeDecodeError:
        raise SpecError(path, None, "not UTF-8 text") from None
    except IsADirectoryError:
        raise SpecError(path, None, "a folder, not a schedule file") from None
    try:
        model = ScheduleModel.model_validate(doc)
    except ValidationError as exc:
        field, msg = _first_problem(exc.errors(), ScheduleModel)
        raise SpecError(path, field, msg) from None
    base = path.resolve().parent
    renders = Path(renders_dir) if renders_dir else base / ".renders"

    def rel(p: str | None) -> Path | None:
        return None if p is None else (base / p).resolve()

    entries = []
    last_at: tuple[int, Fraction] | None = None  # the last absolute time, and its entry
    for i, e in enumerate(model.entries):
        at_s = None
        if e.at is not None:
            at_s = parse_pdt(e.at.isoformat())
            if last_at is not None and at_s < last_at[1]:
                # entries air in their order: one due before an earlier entry would be skipped
                # as late, and the guide would go back in time
                raise SpecError(
                    path,
                    f"entries[{i}].at",
                    f"{e.at.isoformat()} is before entries[{last_at[0]}].at: entries air in the "
                    "order they are listed; list it earlier",
                )
            last_at = (i, at_s)
        folder = rel(e.segment) if e.segment else (renders / e.name)
        entries.append(Entry(key=f"entry/{e.name}", name=e.name, at_s=at_s, folder=folder, spec=rel(e.spec)))
    f = model.filler
    return Schedule(
        path=path,
        model=model,
        entries=tuple(entries),
        filler_dir=rel(f.dir) if f else None,
        filler_spec=rel(f.spec) if f else None,
        spool=rel(model.spool),
    )


# ---------------------------------------------------------------------------- scheduler


@dataclasses.dataclass(frozen=True)
class Availability:
    """What a catalog knows of an entry's media right now.

    Attributes
    ----------
    durations_s : tuple of Fraction
        Durations of the finished media segments (a prefix while rendering).
    complete : bool
        No more media segments will come.
    error : str or None
        Why the entry is refused (corrupt, malformed); None when fine so far.
    waiting_for : str or None
        Why nothing is ready yet when that deserves saying (its folder does not exist).
    """

    durations_s: tuple[Fraction, ...] = ()
    complete: bool = False
    error: str | None = None
    waiting_for: str | None = None


class Catalog(Protocol):
    """Where the scheduler learns about media. Real folders in the engine; synthetic in tests."""

    def availability(self, key: str) -> Availability: ...

    def verify(self, key: str, index: int) -> str | None:
        """Check media segment ``index`` of ``key`` before it airs: None if good, else why not."""
        ...


@dataclasses.dataclass(frozen=True)
class Decision:
    """What airs in the next slot.

    Attributes
    ----------
    key : str
        Entry key, or ``FILLER``.
    index : int
        Media segment index within it.
    duration_s : Fraction
        Its exact duration, seconds.
    discontinuity : bool
        Whether it does not follow the previously aired media segment.
    seamless : bool
        The filler's loop starting over: it does not follow the last segment's timestamps (so
        it is rebased), but the same stream goes on (one rendition, its timestamps made
        continuous by the playout), so the playlist marks no discontinuity. Each one was a
        player's hiccup: VLC 3 froze for 11-14 s on two discontinuities a second apart (a
        program's end, and the filler's loop that resumed where it had left off).
    """

    key: str
    index: int
    duration_s: Fraction
    discontinuity: bool
    seamless: bool = False


class Scheduler:
    """Decides, slot by slot, which media segment airs next.

    Parameters
    ----------
    entries : sequence of Entry
        The scheduled entries in order.
    filler_durations_s : sequence of Fraction
        Durations of the filler loop's media segments.
    max_late_s : Fraction
        The late policy's limit (see the module docstring).
    start_s : Fraction
        Wall clock (epoch s) when the channel starts: the due time of a first ``after`` entry.
    min_start_s : Fraction
        An entry still being rendered starts only once this much of it is rendered (a complete
        one at once): its render then has the time that airs to deliver what follows. Starting
        on a render's first short media segment alone aired filler inside the program when the
        next one came a little late.
    max_hold_s : Fraction
        The hold for entries still being rendered adapts to how fast renders keep up on this
        machine: it starts at ``min_start_s``; a program that started while rendering and then
        had a media segment come late (filler inside it) raises it by :attr:`HOLD_STEP_S` for
        the next ones, up to this; one that aired whole lowers it by as much as its render had
        to spare at the closest (the seconds of it rendered beyond the media segment taken, at
        each media segment taken while it rendered), at most half a step, down to
        ``min_start_s``. A machine that renders barely faster than real time (a busy one) then
        holds new programs a little longer instead of airing filler inside each of them; a
        program that aired whole with nothing to spare keeps the hold (lowered after any whole
        one, a hold one step above what the machine needs aired filler in one program of three).
    """

    #: how much one late media segment raises the hold for programs still rendering
    HOLD_STEP_S = Fraction(1, 2)

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        filler_durations_s: Sequence[Fraction],
        max_late_s: Fraction,
        start_s: Fraction,
        min_start_s: Fraction = Fraction(0),
        max_hold_s: Fraction = Fraction(4),
    ):
        if not filler_durations_s:
            raise ValueError("the filler needs at least one media segment")
        self.entries = list(entries)
        self.filler_durations_s = [Fraction(d) for d in filler_durations_s]
        self.max_late_s = Fraction(max_late_s)
        self.min_start_s = Fraction(min_start_s)
        # never so long that waiting for it would skip the program (see the start rule)
        self.max_hold_s = max(self.min_start_s, min(Fraction(max_hold_s), self.max_late_s / 2))
        self.hold_s = self.min_start_s  # what an entry still rendering must have out to start
        self.current_rendering = False  # the current entry started before its render completed
        self.current_late = False  # and a media segment of it came late
        # the least of it rendered beyond the media segment taken, while it rendered (None: never)
        self.current_spare_s: Fraction | None = None
        self.next_entry = 0
        self.done: set[str] = set()  # identities (:meth:`_identity`) of the entries passed
        self.prev_end_s = Fraction(start_s)
        self.spool_queue: list[tuple[str, Fraction]] = []  # (key, due)
        self.spool_known: set[str] = set()
        self.current: str | None = None
        self.current_due_s: Fraction | None = None
        self.cursor = 0
        self.stall_since_s: Fraction | None = None
        self.filler_index = 0
        self.last_aired: tuple[str, int] | None = None
        # a fresh channel backfills its first window with filler: nothing starts before this
        # (else the first program would start a window in the past, its opening seconds unseen)
        self.hold_until_s: Fraction | None = None
        self.events: list[tuple[str, str]] = []  # (level, message), drained by the engine
        self.aired: list[dict[str, Any]] = []  # program starts/ends, drained by the engine
        self._told: set[str] = set()  # keys whose waiting_for was logged

    # ---------------------------------------------------------------- inputs

    def add_spool(self, key: str, *, discovered_s: Fraction) -> bool:
        """Queue a spool item (once per key). Returns whether it was new."""
        if key in self.spool_known:
            return False
        self.spool_known.add(key)
        self.spool_queue.append((key, Fraction(discovered_s)))
        return True

    def forget_spool(self, present: set[str]) -> None:
        """Drop memory of spool keys no longer in the spool folder and not queued (bounded state)."""
        queued = {k for k, _ in self.spool_queue} | {self.current}
        self.spool_known = {k for k in self.spool_known if k in present or k in queued}

    # ---------------------------------------------------------------- decisions

    def _log(self, level: str, msg: str) -> None:
        self.events.append((level, msg))

    def _finish(self, slot_s: Fraction, how: str) -> None:
        if (
            how == "ended"
            and self.current_rendering
            and not self.current_late
            and self.hold_s > self.min_start_s
        ):
            # it started while rendering and aired whole: the hold may come down by what its
            # render had to spare (none: it came just in time, and the hold stays)
            spare = self.current_spare_s if self.current_spare_s is not None else self.HOLD_STEP_S
            lowered = max(self.min_start_s, self.hold_s - min(self.HOLD_STEP_S / 2, spare))
            if lowered < self.hold_s:
                self.hold_s = lowered
                self._log(
                    "info",
                    f"{self.current} aired whole while rendering: programs still rendering now "
                    f"start once {float(self.hold_s):g} s of them is out",
                )
        self.current_rendering = self.current_late = False
        self.current_spare_s = None
        self.aired.append({"key": self.current, "event": how, "at_s": slot_s})
        self.current = None
        self.current_due_s = None
        self.cursor = 0
        self.stall_since_s = None
        self.prev_end_s = slot_s

    def _next_due(self, slot_s: Fraction) -> tuple[str, Fraction, bool] | None:
        """The next entry due at ``slot_s``: (key, due_s, is_absolute), or None."""
        if self.next_entry < len(self.entries):
            e = self.entries[self.next_entry]
            due = e.at_s if e.at_s is not None else self.prev_end_s
            if due <= slot_s:
                return e.key, due, e.at_s is not None
            if e.at_s is None:
                return None
        if self.spool_queue:
            key, due = self.spool_queue[0]
            return key, max(due, self.prev_end_s), False
        return None

    def _identity(self, i: int) -> str:
        """Entry ``i`` as the saved state knows it: its key and air time, or, for an ``after``
        entry, the air time of the last absolute entry before it (names are unique in a
        schedule; a reused name on another day is another entry)."""
        e = self.entries[i]
        if e.at_s is not None:
            return f"{e.key}@{e.at_s}"
        anchor = next(
            (self.entries[j].at_s for j in range(i - 1, -1, -1) if self.entries[j].at_s is not None), None
        )
        return f"{e.key}@after:{anchor}"

    def passed(self, i: int) -> bool:
        """Entry ``i`` aired, was skipped or refused (or is on air)."""
        return i < self.next_entry or self._identity(i) in self.done

    def _pop_due(self, key: str, *, dropped_at_s: Fraction | None = None) -> None:
        self._told.discard(key)
        if dropped_at_s is not None:  # an entry that never aired: the next 'after' one is due now
            self.prev_end_s = dropped_at_s
        if self.next_entry < len(self.entries) and self.entries[self.next_entry].key == key:
            self.done.add(self._identity(self.next_entry))
            self.next_entry += 1
            while self.next_entry < len(self.entries) and self._identity(self.next_entry) in self.done:
                self.next_entry += 1  # (after a restart: passed before it)
        else:
            self.spool_queue = [(k, d) for k, d in self.spool_queue if k != key]

    def peek(self, slot_s: Fraction, catalog: Catalog) -> Decision:
        """What airs in the slot starting at ``slot_s`` (epoch s).

        Time-determined changes (starting, finishing or skipping an entry) happen here and are
        idempotent for a given ``slot_s``; :meth:`commit` advances past the returned segment.
        """
        slot_s = Fraction(slot_s)
        if self.current is None and self.hold_until_s is not None and slot_s < self.hold_until_s:
            return self._filler_decision()
        for _ in range(10_000):  # each pass retires an entry; bounded for safety
            if self.current is not None:
                key = self.current
                av = catalog.availability(key)
                if av.error:
                    self._log("error", f"{key}: refused mid-air: {av.error}")
                    self._finish(slot_s, "refused")
                    continue
                if self.cursor < len(av.durations_s):
                    why = catalog.verify(key, self.cursor)
                    if why:
                        self._log("error", f"{key}: media segment {self.cursor} refused: {why}")
                        self._finish(slot_s, "refused")
                        continue
                    self.stall_since_s = None
                    if self.current_rendering and not av.complete:
                        spare = sum(av.durations_s[self.cursor + 1 :], Fraction(0))
                        if self.current_spare_s is None or spare < self.current_spare_s:
                            self.current_spare_s = spare
                    return self._decision(key, self.cursor, av.durations_s[self.cursor])
                if av.complete:
                    self._finish(slot_s, "ended")
                    continue
                if self.stall_since_s is None:
                    self.stall_since_s = slot_s  # logged when filler actually airs (commit)
                if slot_s - self.stall_since_s > self.max_late_s:
                    self._log("error", f"{key}: stalled over {float(self.max_late_s):g} s: rest skipped")
                    self._finish(slot_s, "skipped")
                    continue
                return self._filler_decision()
            nxt = self._next_due(slot_s)
            if nxt is None:
                return self._filler_decision()
            key, due_s, absolute = nxt
            late_s = slot_s - due_s
            av = catalog.availability(key)
            if av.error:
                self._log("error", f"{key}: refused: {av.error}")
                self._pop_due(key, dropped_at_s=slot_s)
                self.aired.append({"key": key, "event": "refused", "at_s": slot_s})
                continue
            because = f" ({av.waiting_for})" if av.waiting_for else ""
            if av.waiting_for and key not in self._told and late_s <= self.max_late_s:
                self._told.add(key)  # at once, not after max_late_s of filler
                self._log(
                    "error",
                    f"{key}: {av.waiting_for}: filler until it appears, for at "
                    f"most {float(self.max_late_s):g} s",
                )
            if absolute and late_s > self.max_late_s:
                self._log(
                    "error",
                    f"{key}: could not start within {float(self.max_late_s):g} s "
                    f"of its air time: skipped{because}",
                )
                self._pop_due(key, dropped_at_s=slot_s)
                self.aired.append({"key": key, "event": "skipped", "at_s": slot_s})
                continue
            # the hold, unless waiting for it would take the program past max_late_s: then the
            # least (a skipped program never airs whole to bring the hold down again)
            hold = self.hold_s if late_s + self.hold_s < self.max_late_s else self.min_start_s
            if av.durations_s and (av.complete or sum(av.durations_s) >= hold):
                bad = next((why for i in range(len(av.durations_s)) if (why := catalog.verify(key, i))), None)
                if bad:
                    self._log("error", f"{key}: refused: {bad}")
                    self._pop_due(key, dropped_at_s=slot_s)
                    self.aired.append({"key": key, "event": "refused", "at_s": slot_s})
                    continue
                self._pop_due(key)
                self.current, self.current_due_s, self.cursor = key, due_s, 0
                self.current_rendering, self.current_late = not av.complete, False
                self.current_spare_s = None
                self.aired.append({"key": key, "event": "started", "at_s": slot_s, "due_s": due_s})
                continue
            if av.complete:  # complete and empty cannot air
                self._log("error", f"{key}: refused: no media segments")
                self._pop_due(key, dropped_at_s=slot_s)
                continue
            if late_s > self.max_late_s:
                self._log(
                    "error", f"{key}: not ready {float(self.max_late_s):g} s after due: skipped{because}"
                )
                self._pop_due(key, dropped_at_s=slot_s)
                self.aired.append({"key": key, "event": "skipped", "at_s": slot_s})
                continue
            return self._filler_decision()
        raise RuntimeError("scheduler did not settle")  # pragma: no cover

    def _decision(self, key: str, index: int, duration_s: Fraction) -> Decision:
        # the channel's very first media segment follows nothing: no discontinuity to announce
        disc = self.last_aired is not None and self.last_aired != (key, index - 1)
        wrap = key == FILLER and index == 0 and self.last_aired == (FILLER, len(self.filler_durations_s) - 1)
        return Decision(
            key=key, index=index, duration_s=Fraction(duration_s), discontinuity=disc, seamless=wrap
        )

    def _filler_decision(self) -> Decision:
        i = self.filler_index % len(self.filler_durations_s)
        return self._decision(FILLER, i, self.filler_durations_s[i])

    def commit(self, decision: Decision) -> None:
        """The segment of ``decision`` was published: move past it."""
        if decision.key == FILLER:
            self.filler_index = (decision.index + 1) % len(self.filler_durations_s)
            if self.current is not None and self.last_aired and self.last_aired[0] == self.current:
                msg = f"{self.current}: media segment {self.cursor} not rendered in time: filler until it is"
                if self.current_rendering and not self.current_late:
                    self.current_late = True  # once per program
                    raised = min(self.max_hold_s, self.hold_s + self.HOLD_STEP_S)
                    if raised > self.hold_s:
                        self.hold_s = raised
                        msg += (
                            f"; its render fell behind the air: programs still rendering now start "
                            f"once {float(self.hold_s):g} s of them is out"
                        )
                self._log("warning", msg)
        else:
            self.cursor = decision.index + 1
        self.last_aired = (decision.key, decision.index)

    def catch_up(self, gap_s: Fraction, catalog: Catalog) -> Fraction:
        """After downtime of ``gap_s``: move the current program on by as much as was missed
        (whole media segments); return the seconds left over, less than one segment."""
        if self.current is None or gap_s <= 0:
            return Fraction(0)
        av = catalog.availability(self.current)
        left = Fraction(gap_s)
        while self.cursor < len(av.durations_s) and left >= av.durations_s[self.cursor]:
            left -= av.durations_s[self.cursor]
            self.cursor += 1
        return left

    # ---------------------------------------------------------------- status and persistence

    def upcoming(self, slot_s: Fraction) -> dict[str, Any] | None:
        """The next entry after the current one: key and due time (None if none known)."""
        if self.next_entry < len(self.entries):
            e = self.entries[self.next_entry]
            return {"key": e.key, "due": format_pdt(e.at_s) if e.at_s is not None else "after current"}
        if self.spool_queue:
            return {"key": self.spool_queue[0][0], "due": "next"}
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "next_entry_key": (
                self.entries[self.next_entry].key if self.next_entry < len(self.entries) else None
            ),
            "next_entry": self.next_entry,
            "done": sorted(self.done),
            "prev_end_s": str(self.prev_end_s),
            "spool_queue": [[k, str(d)] for k, d in self.spool_queue],
            "spool_known": sorted(self.spool_known),
            "current": self.current,
            "current_due_s": None if self.current_due_s is None else str(self.current_due_s),
            "cursor": self.cursor,
            "stall_since_s": None if self.stall_since_s is None else str(self.stall_since_s),
            "filler_index": self.filler_index,
            "last_aired": list(self.last_aired) if self.last_aired else None,
            "hold_s": str(self.hold_s),
            "current_rendering": self.current_rendering,
            "current_late": self.current_late,
            "current_spare_s": None if self.current_spare_s is None else str(self.current_spare_s),
        }

    def restore(self, d: dict[str, Any]) -> None:
        """Load saved state. Entries are matched by :meth:`_identity` (name and air time), so an
        edited schedule resumes sensibly: the first entry not passed yet is next, one inserted
        or moved before it included, and a new day's entries are new even under old names."""
        ids = [self._identity(i) for i in range(len(self.entries))]
        if "done" in d:
            self.done = set(d["done"]) & set(ids)  # bounded: only what this schedule holds
            self.next_entry = next((i for i, k in enumerate(ids) if k not in self.done), len(ids))
        else:  # a state saved before identities: by the next entry's key, else its index
            keys = [e.key for e in self.entries]
            nk = d.get("next_entry_key")
            if nk in keys:
                self.next_entry = keys.index(nk)
            else:
                self.next_entry = min(int(d.get("next_entry", 0)), len(self.entries))
            self.done = set(ids[: self.next_entry])
        self.prev_end_s = Fraction(d["prev_end_s"])
        self.spool_queue = [(str(k), Fraction(t)) for k, t in d.get("spool_queue", [])]
        self.spool_known = set(d.get("spool_known", []))
        self.current = d.get("current")
        self.current_due_s = None if d.get("current_due_s") is None else Fraction(d["current_due_s"])
        self.cursor = int(d.get("cursor", 0))
        self.stall_since_s = None if d.get("stall_since_s") is None else Fraction(d["stall_since_s"])
        self.filler_index = int(d.get("filler_index", 0)) % len(self.filler_durations_s)
        la = d.get("last_aired")
        self.last_aired = (str(la[0]), int(la[1])) if la else None
        try:
            hold = Fraction(d.get("hold_s", self.min_start_s))
        except (TypeError, ValueError, ZeroDivisionError):
            hold = self.min_start_s  # an unreadable figure: start again from the least
        self.hold_s = min(self.max_hold_s, max(self.min_start_s, hold))
        self.current_rendering = bool(d.get("current_rendering", False))
        self.current_late = bool(d.get("current_late", False))
        try:
            spare = d.get("current_spare_s")
            self.current_spare_s = None if spare is None else Fraction(spare)
        except (TypeError, ValueError, ZeroDivisionError):
            self.current_spare_s = Fraction(0)  # unreadable: as if it came just in time

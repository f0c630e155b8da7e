"""The programme guide: XMLTV (``xmltv.dtd`` 0.5) from the schedule and what the playout knows.

Two pure steps: :func:`plan_guide` places programmes on the clock (entries at their air time or
after the previous one, spool items when the channel is free, filler in the gaps, the late policy's
skips left out), and :func:`xmltv` writes them as XML (ElementTree escapes ``& < > "``; characters
XML 1.0 cannot carry are dropped). :func:`epg_xml` gathers the inputs from a running playout (for
``/epg.xml``), :func:`schedule_guide` from a schedule file alone (``avatarrender epg``).

A programme whose length is not known yet (not rendered, still rendering) has no ``stop``; the
entries that follow it ``after: previous`` cannot be placed and are left out until it is known.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from avatarrender.errors import AvatarRenderError
from avatarrender.playout.playlist import parse_pdt
from avatarrender.playout.schedule import FILLER, Schedule

__all__ = [
    "CONTENT_TYPE",
    "FILLER_TITLE",
    "GuideEntry",
    "Programme",
    "plan_guide",
    "xmltv",
    "guide_entries",
    "schedule_guide",
    "epg_xml",
    "channel_id_for",
]

#: the Content-Type a server should send with :func:`epg_xml`
CONTENT_TYPE = "application/xml; charset=utf-8"
FILLER_TITLE = "Filler"
FILLER_DESC = "The idle loop, aired between programmes."
DAY_S = Fraction(24 * 3600)


@dataclasses.dataclass(frozen=True)
class GuideEntry:
    """Something to place in the guide.

    Attributes
    ----------
    key : str
        ``entry/NAME`` or ``spool/NAME``.
    title, description : str
        As shown in the guide (the entry's name when it has no title).
    at_s : Fraction or None
        Absolute air time, epoch seconds; None: after the previous programme.
    duration_s : Fraction or None
        Its length in seconds; None while unknown.
    """

    key: str
    title: str
    description: str | None = None
    at_s: Fraction | None = None
    duration_s: Fraction | None = None


@dataclasses.dataclass(frozen=True)
class Programme:
    """One programme of the guide; ``stop_s`` None when its length is not known yet."""

    start_s: Fraction
    stop_s: Fraction | None
    title: str
    description: str | None = None
    filler: bool = False
    key: str | None = None


def _filler(start_s: Fraction, stop_s: Fraction | None) -> Programme:
    return Programme(start_s, stop_s, FILLER_TITLE, FILLER_DESC, filler=True, key=FILLER)


def plan_guide(
    entries: Sequence[GuideEntry],
    *,
    start_s: Fraction,
    spool: Sequence[GuideEntry] = (),
    on_air: Programme | None = None,
    max_late_s: Fraction = Fraction(30),
    horizon_s: Fraction = DAY_S,
) -> list[Programme]:
    """Place programmes on the clock from ``start_s`` to ``start_s + horizon_s``.

    Parameters
    ----------
    entries : sequence of GuideEntry
        The schedule entries still to air, in schedule order.
    start_s : Fraction
        Now (epoch s): nothing is placed before it except ``on_air``.
    spool : sequence of GuideEntry
        Spool items in the order they will air (``at_s`` ignored).
    on_air : Programme, optional
        What is on air now (filler or a programme), from the playout.
    max_late_s : Fraction
        The late policy: an entry that cannot start within this of its air time is skipped.
    horizon_s : Fraction
        How far ahead the guide reaches; the last filler ends there.

    Returns
    -------
    list of Programme
        In time order, without overlaps; adjacent filler merged into one programme.
    """
    start_s = Fraction(start_s)
    end_s = start_s + Fraction(horizon_s)
    out: list[Programme] = []
    cursor: Fraction | None = start_s
    if on_air is not None:
        out.append(on_air)
        if not on_air.filler:
            cursor = on_air.stop_s
    elif entries:
        # without the playout's word (the epg command): the schedule is played from its first
        # timed entry, so what has aired is known and what airs now is shown from its time (an
        # 'after: previous' entry behind one that had ended was placed at now, the entry on air
        # left out as late, and the guide depended on the minute cron ran it: a review)
        timed = [g.at_s for g in entries if g.at_s is not None]
        if timed and min(timed) < start_s:
            cursor = min(timed)
    queue = list(spool)

    def place(g: GuideEntry, at: Fraction) -> Fraction | None:
        stop = at + g.duration_s if g.duration_s is not None else None
        out.append(Programme(at, stop, g.title, g.description, key=g.key))
        return stop

    def place_spooled(at: Fraction) -> Fraction | None:
        if at < start_s:  # the spool holds what airs from now on
            out.append(_filler(at, start_s))
            at = start_s
        return place(queue.pop(0), at)

    for g in entries:
        if g.at_s is not None:
            # spool items air while the channel waits for an absolute entry
            while queue and cursor is not None and max(cursor, start_s) < min(g.at_s, end_s):
                cursor = place_spooled(cursor)
            if cursor is None:
                at = g.at_s  # the one before has no known length: assume it ends in time
            else:
                if g.at_s + max_late_s < cursor:
                    continue  # would be skipped by the late policy
                if g.at_s >= end_s:
                    break  # past the guide's end (its gap was filled twice, overlapping)
                if cursor < g.at_s:
                    out.append(_filler(cursor, g.at_s))
                at = max(cursor, g.at_s)
        elif cursor is None:
            continue
        else:
            at = cursor
        if at >= end_s:
            break
        cursor = place(g, at)
    while queue and cursor is not None and cursor < end_s:
        cursor = place_spooled(cursor)
    if cursor is not None and cursor < end_s:
        out.append(_filler(cursor, end_s))
    # what ended before now is not in the guide (played above only to know what came after it)
    out = [p for p in out if p.stop_s is None or p.stop_s > start_s or p is on_air]
    # a filler on air ends where the next programme starts; neighbouring fillers are one
    merged: list[Programme] = []
    for p in sorted(out, key=lambda p: p.start_s):
        if merged and merged[-1].filler and merged[-1].stop_s is None:
            merged[-1] = dataclasses.replace(merged[-1], stop_s=p.start_s)
        if merged and p.filler and merged[-1].filler and merged[-1].stop_s == p.start_s:
            merged[-1] = dataclasses.replace(merged[-1], stop_s=p.stop_s)
            continue
        merged.append(p)
    if merged and merged[-1].filler and merged[-1].stop_s is None:
        merged[-1] = dataclasses.replace(merged[-1], stop_s=end_s)
    return merged


# XML 1.0 allows these characters only (a control character would make the file invalid)
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _xmltv_time(t_s: Fraction) -> str:
    """Epoch seconds -> ``YYYYmmddHHMMSS +0000`` (XMLTV's format, whole seconds, UTC)."""
    dt = _dt.datetime.fromtimestamp(int(t_s // 1), tz=_dt.timezone.utc)
    return dt.strftime("%Y%m%d%H%M%S +0000")


def channel_id_for(name: str) -> str:
    """An XMLTV channel id (RFC 2838 style, ``name.domain``) from a channel name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "channel"
    return f"{slug}.avatarrender"


def xmltv(
    programmes: Sequence[Programme], *, channel_id: str, channel_name: str, generator: str = "avatarrender"
) -> str:
    """The guide as XMLTV text (UTF-8 declaration, ``<!DOCTYPE tv SYSTEM "xmltv.dtd">``)."""
    tv = ET.Element("tv", {"generator-info-name": _text(generator)})
    ch = ET.SubElement(tv, "channel", {"id": _text(channel_id)})
    ET.SubElement(ch, "display-name").text = _text(channel_name)
    for p in programmes:
        attrs = {"start": _xmltv_time(p.start_s)}
        if p.stop_s is not None:
            attrs["stop"] = _xmltv_time(p.stop_s)
        attrs["channel"] = _text(channel_id)
        el = ET.SubElement(tv, "programme", attrs)
        ET.SubElement(el, "title").text = _text(p.title) or (p.key or "untitled")
        if p.description and _text(p.description):
            ET.SubElement(el, "desc").text = _text(p.description)
        if p.filler:
            ET.SubElement(el, "category").text = FILLER_TITLE
    ET.indent(tv)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n'
        + ET.tostring(tv, encoding="unicode")
        + "\n"
    )


# ---------------------------------------------------------------------------- inputs


def guide_entries(
    schedule: Schedule,
    *,
    durations_s: Mapping[str, Fraction | None],
    first: int = 0,
    exclude: frozenset[str] = frozenset(),
) -> list[GuideEntry]:
    """The schedule's entries from index ``first`` on, with titles and the lengths given."""
    models = {e.name: e for e in schedule.model.entries}
    out = []
    for e in schedule.entries[first:]:
        if e.key in exclude:
            continue
        m = models.get(e.name)
        out.append(
            GuideEntry(
                key=e.key,
                title=(m.title if m and m.title else e.name),
                description=m.description if m else None,
                at_s=e.at_s,
                duration_s=durations_s.get(e.key),
            )
        )
    return out


def _channel_name(schedule: Schedule) -> str:
    if schedule.model.channel:
        return schedule.model.channel
    return schedule.path.stem if schedule.path is not None else "avatarrender"


def schedule_guide(
    schedule: Schedule, *, now_s: Fraction, horizon_s: Fraction = DAY_S, channel_id: str | None = None
) -> str:
    """XMLTV for a schedule file alone (no playout running): lengths from the rendered
    folders' manifests, or from the segment.yaml of entries the playout renders ahead."""
    from avatarrender.rendition import read_rendered

    durations: dict[str, Fraction | None] = {}
    for e in schedule.entries:
        dur = None
        if e.folder is not None and (e.folder / "manifest.json").is_file():
            try:
                r = read_rendered(e.folder)
                if r.complete:
                    dur = sum((s.duration_s for s in r.segments), Fraction(0))
            except AvatarRenderError:
                dur = None
        if dur is None and e.spec is not None:
            import warnings

            from avatarrender.spec import SpecWarning, load_spec

            try:
                with warnings.catch_warnings():  # the render says them; the guide wants a length
                    warnings.simplefilter("ignore", SpecWarning)
                    dur = load_spec(e.spec).duration_s
            except AvatarRenderError:
                dur = None  # `avatarrender validate` says why; the guide just cannot time it
        durations[e.key] = dur
    progs = plan_guide(
        guide_entries(schedule, durations_s=durations),
        start_s=Fraction(now_s),
        max_late_s=schedule.max_late_s,
        horizon_s=horizon_s,
    )
    name = _channel_name(schedule)
    return xmltv(progs, channel_id=channel_id or channel_id_for(name), channel_name=name)


def _catalog_duration_s(playout: Any, key: str) -> Fraction | None:
    """Length of a catalogued item: exact when complete, else the planned count of full media
    segments (over by less than one media segment); None when unknown or refused."""
    av = playout.catalog.availability(key)
    if av.error:
        return None
    if av.complete:
        return sum(av.durations_s, Fraction(0))
    rendered = getattr(playout.catalog, "rendered", {}).get(key)  # read by availability()
    if not av.durations_s or rendered is None:
        return None
    return av.durations_s[0] * rendered.planned_segments


def epg_xml(playout: Any, *, now_s: Fraction | None = None, horizon_s: Fraction = DAY_S) -> str:
    """``/epg.xml`` for a running :class:`~avatarrender.playout.engine.Playout`: what is on air,
    the entries still to come, spool items once they are known, filler in the gaps."""
    sch = playout.scheduler
    schedule: Schedule = playout.schedule
    now = Fraction(now_s) if now_s is not None else Fraction(playout._now_s)
    name = _channel_name(schedule)
    if sch is None:  # not started
        return xmltv([], channel_id=channel_id_for(name), channel_name=name)
    since_s = now
    if playout.on_air.get("since"):
        since_s = parse_pdt(playout.on_air["since"])
    durations = {e.key: _catalog_duration_s(playout, e.key) for e in schedule.entries}
    on_air = None
    if sch.current is not None:
        dur = _catalog_duration_s(playout, sch.current)
        if sch.current.startswith("spool/"):
            g = GuideEntry(key=sch.current, title=sch.current[len("spool/") :], duration_s=dur)
        else:
            g = next(
                (x for x in guide_entries(schedule, durations_s=durations) if x.key == sch.current),
                GuideEntry(sch.current, sch.current),
            )
        start = since_s if playout.on_air.get("key") == sch.current else now
        on_air = Programme(start, start + dur if dur is not None else None, g.title, g.description, key=g.key)
    elif playout.on_air.get("key") == FILLER:
        on_air = _filler(since_s, None)
    passed = {e.key for i, e in enumerate(schedule.entries) if i >= sch.next_entry and sch.passed(i)}
    entries = guide_entries(
        schedule,
        durations_s=durations,
        first=sch.next_entry,
        exclude=frozenset(({sch.current} | passed) - {None}),
    )
    entries = [g for g in entries if not playout.catalog.availability(g.key).error]
    spool = [
        GuideEntry(key=k, title=k[len("spool/") :], duration_s=_catalog_duration_s(playout, k))
        for k, _ in sch.spool_queue
        if k != sch.current
    ]
    progs = plan_guide(
        entries, start_s=now, spool=spool, on_air=on_air, max_late_s=schedule.max_late_s, horizon_s=horizon_s
    )
    return xmltv(progs, channel_id=channel_id_for(name), channel_name=name)

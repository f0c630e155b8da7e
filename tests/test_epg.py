"""The programme guide: placement on the clock (pure), XMLTV validated against the XMLTV DTD
through lxml plus the rules tv_validate_file adds, the CLI, and /epg.xml from a running playout."""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
from lxml import etree

from avatarrender.playout.engine import Playout
from avatarrender.playout.epg import FILLER_TITLE, GuideEntry, Programme, epg_xml, plan_guide, xmltv
from avatarrender.playout.schedule import load_schedule
from conftest import ROOT, run_cli
from playout_media import make_rendered

DTD = etree.DTD(str(ROOT / "tests/data/xmltv.dtd"))
T0 = Fraction(1_800_000_000)  # 2027-01-15T08:00:00Z
_TIME = re.compile(r"^\d{14} \+0000$")


def at(offset_s: float) -> str:
    return dt.datetime.fromtimestamp(float(T0) + offset_s, tz=dt.timezone.utc).isoformat()


def _t(text: str) -> Fraction:
    return Fraction(int(dt.datetime.strptime(text, "%Y%m%d%H%M%S %z").timestamp()))


def validate(text: str) -> list[dict]:
    """Parse and validate like tv_validate_file: DTD, declared channels, times, order."""
    root = etree.fromstring(text.encode("utf-8"))
    assert DTD.validate(root), DTD.error_log.filter_from_errors()
    channels = {c.get("id") for c in root.iter("channel")}
    assert all(re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", c) for c in channels), channels
    progs = []
    for p in root.iter("programme"):
        assert p.get("channel") in channels
        assert _TIME.match(p.get("start")), p.get("start")
        start = _t(p.get("start"))
        stop = _t(p.get("stop")) if p.get("stop") else None
        assert stop is None or stop > start, (p.get("start"), p.get("stop"))
        progs.append(
            {
                "start": start,
                "stop": stop,
                "title": p.findtext("title"),
                "desc": p.findtext("desc"),
                "category": p.findtext("category"),
            }
        )
    for a, b in zip(progs, progs[1:]):
        assert a["stop"] is None or a["stop"] <= b["start"], "overlapping programmes"
    return progs


def test_absolute_after_and_filler_gaps() -> None:
    entries = [
        GuideEntry("entry/a", "A", at_s=T0 + 60, duration_s=Fraction(30)),
        GuideEntry("entry/b", "B", duration_s=Fraction(45, 2)),
        GuideEntry("entry/c", "C", at_s=T0 + 3600, duration_s=Fraction(10)),
    ]
    got = plan_guide(entries, start_s=T0, horizon_s=Fraction(7200))
    assert [(p.title, p.start_s - T0, None if p.stop_s is None else p.stop_s - T0) for p in got] == [
        (FILLER_TITLE, 0, 60),
        ("A", 60, 90),
        ("B", 90, Fraction(225, 2)),
        (FILLER_TITLE, Fraction(225, 2), 3600),
        ("C", 3600, 3610),
        (FILLER_TITLE, 3610, 7200),
    ]
    assert [p.filler for p in got] == [True, False, False, True, False, True]


def test_unknown_length_late_policy_and_spool() -> None:
    entries = [
        GuideEntry("entry/late", "Late", at_s=T0 - 100, duration_s=Fraction(5)),  # skipped
        GuideEntry("entry/ok", "Ok", at_s=T0 - 10, duration_s=Fraction(20)),  # on air since T0 - 10
        GuideEntry("entry/u", "Unrendered", duration_s=None),
        GuideEntry("entry/x", "After unknown", duration_s=Fraction(5)),  # unplaceable
        GuideEntry("entry/d", "Dated", at_s=T0 + 600, duration_s=Fraction(5)),
    ]
    spool = [GuideEntry("spool/s1", "s1", duration_s=Fraction(8))]
    got = plan_guide(entries, start_s=T0, spool=spool, max_late_s=Fraction(30), horizon_s=Fraction(3600))
    titles = [p.title for p in got]
    assert titles == ["Ok", "Unrendered", "Dated", "s1", FILLER_TITLE]
    assert got[0].start_s == T0 - 10 and got[1].start_s == T0 + 10
    assert got[1].stop_s is None and got[2].start_s == T0 + 600
    assert got[3].start_s == T0 + 605  # the spool airs when the channel is free


def test_an_entry_past_the_guides_end_and_one_on_air_without_the_playouts_word() -> None:
    """An entry timed beyond the guide's end had the gap before it filled as well as the guide's
    tail: two fillers overlapping (tv_sort: "overlapping programmes"). Without the playout's
    word (the epg command), an entry whose time came 2 minutes ago and lasts 5 was left out as
    late, Filler shown instead of what airs (a review)."""
    far = [GuideEntry("entry/t", "Tomorrow", at_s=T0 + 2 * 86400, duration_s=Fraction(60))]
    spool = [GuideEntry("spool/s", "s", duration_s=Fraction(60))]
    for got in (
        plan_guide(far, start_s=T0, horizon_s=Fraction(3600)),
        plan_guide(far, start_s=T0, spool=spool, horizon_s=Fraction(3600)),
    ):
        assert all(a.stop_s <= b.start_s for a, b in zip(got, got[1:])), got
        assert got[-1].stop_s == T0 + 3600 and got[-1].filler
        assert "Tomorrow" not in [p.title for p in got]
    now = [
        GuideEntry("entry/old", "Old", at_s=T0 - 900, duration_s=Fraction(300)),  # over
        GuideEntry("entry/n", "News", at_s=T0 - 120, duration_s=Fraction(300)),
        GuideEntry("entry/w", "Weather", duration_s=Fraction(60)),
    ]
    got = plan_guide(now, start_s=T0, horizon_s=Fraction(3600))
    assert [(p.title, p.start_s - T0, p.stop_s - T0) for p in got] == [
        ("News", -120, 180),
        ("Weather", 180, 240),
        (FILLER_TITLE, 240, 3600),
    ]
    # the playout's word wins: it says what is on air
    on_air = Programme(T0 - 5, None, FILLER_TITLE, filler=True, key="filler")
    got = plan_guide(now, start_s=T0, on_air=on_air, horizon_s=Fraction(3600))
    assert "News" not in [p.title for p in got]


def test_without_the_playouts_word_the_schedule_is_played_from_its_first_timed_entry() -> None:
    """A review: at 11:00, News (10:00, 13 s) and Weather (after it) were over and Movie
    (10:30-12:30) on air, but the guide listed Weather at 11:00 and left Movie out; at 10:00:20
    it moved News to 10:00:20. The same schedule gave another guide for each minute cron ran."""
    sched = [
        GuideEntry("entry/news", "News", at_s=T0, duration_s=Fraction(40, 3)),
        GuideEntry("entry/wx", "Weather", duration_s=Fraction(40, 3)),
        GuideEntry("entry/movie", "Movie", at_s=T0 + 1800, duration_s=Fraction(7200)),
    ]
    spool = [GuideEntry("spool/s", "s", duration_s=Fraction(60))]

    def rows(start: Fraction, **kw) -> list:
        got = plan_guide(sched, start_s=start, horizon_s=Fraction(3600), **kw)
        assert all(a.stop_s <= b.start_s for a, b in zip(got, got[1:])), got
        return [(p.title, p.start_s - T0, p.stop_s - T0) for p in got]

    assert rows(T0 + 3600) == [("Movie", 1800, 9000)]
    assert rows(T0 + 20) == [
        ("Weather", Fraction(40, 3), Fraction(80, 3)),
        (FILLER_TITLE, Fraction(80, 3), 1800),
        ("Movie", 1800, 9000),
    ]
    assert rows(T0 + 5)[0] == ("News", 0, Fraction(40, 3))
    # spool items air from now, in the wait before Movie, never in the past
    assert rows(T0 + 60, spool=spool)[:2] == [("s", 60, 120), (FILLER_TITLE, 120, 1800)]


def test_spool_fills_the_wait_before_an_absolute_entry_and_filler_on_air_merges() -> None:
    on_air = Programme(T0 - 5, None, FILLER_TITLE, filler=True, key="filler")
    entries = [GuideEntry("entry/n", "News", at_s=T0 + 100, duration_s=Fraction(60))]
    spool = [
        GuideEntry("spool/a", "a", duration_s=Fraction(30)),
        GuideEntry("spool/b", "b", duration_s=Fraction(90)),
    ]
    got = plan_guide(entries, start_s=T0, spool=spool, on_air=on_air, horizon_s=Fraction(600))
    assert [(p.title, p.start_s - T0) for p in got] == [
        (FILLER_TITLE, -5),
        ("a", 0),
        ("b", 30),
        ("News", 120),
        (FILLER_TITLE, 180),
    ]
    assert got[0].stop_s == T0  # the filler on air ends when the spool item starts


def test_xml_specials_are_escaped_and_the_file_validates() -> None:
    title = "Tom & Jerry <live> \"quoted\" 'single' ]]> \x00\x1b end"
    progs = [
        Programme(T0, T0 + 30, title, "a < b && c > d", key="entry/x"),
        Programme(T0 + 30, T0 + 60, FILLER_TITLE, "idle", filler=True, key="filler"),
    ]
    text = xmltv(progs, channel_id="my-chan.avatarrender", channel_name="My <Chan> & Co")
    got = validate(text)
    assert got[0]["title"] == "Tom & Jerry <live> \"quoted\" 'single' ]]>  end"  # controls dropped
    assert got[0]["desc"] == "a < b && c > d"
    assert got[1]["category"] == FILLER_TITLE
    assert "<live>" not in text and "&amp; Jerry" in text


def test_validator_rejects_a_broken_guide() -> None:
    """The DTD check is real: a programme without a title is refused."""
    text = xmltv([Programme(T0, T0 + 1, "x")], channel_id="c.avatarrender", channel_name="c")
    with pytest.raises(AssertionError):
        validate(text.replace("<title>x</title>", ""))


def _schedule(folder: Path, body: str) -> Path:
    p = folder / "schedule.yaml"
    p.write_text(
        "channel: Pip & Friends\nfiller: {dir: filler}\nlate: {max_late_s: 5}\n" + textwrap.dedent(body)
    )
    return p


def test_cli_writes_a_valid_guide(tmp_path: Path) -> None:
    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    make_rendered(tmp_path / "a", pattern="testsrc", seconds=3.5)
    sched = _schedule(
        tmp_path,
        f"""
        entries:
          - {{name: a, at: "{at(60)}", segment: a, title: "Morning <News> & more",
              description: "Headlines"}}
          - {{name: b, after: previous, segment: a}}
          - {{name: c, at: "{at(3600)}", segment: not-rendered-yet}}
        """,
    )
    out = tmp_path / "guide.xml"
    proc = run_cli("epg", "--schedule", str(sched), "-o", str(out), "--start", at(0), "--hours", "2")
    assert proc.returncode == 0, proc.stderr
    got = validate(out.read_text())
    assert [(g["title"], g["start"] - T0, g["stop"] and g["stop"] - T0) for g in got] == [
        (FILLER_TITLE, 0, 60),
        ("Morning <News> & more", 60, 63),  # XMLTV: whole seconds
        ("b", 63, 67),
        (FILLER_TITLE, 67, 3600),
        ("c", 3600, None),
    ]
    assert got[1]["desc"] == "Headlines"
    assert "display-name>Pip &amp; Friends<" in out.read_text()
    bad = run_cli("epg", "--schedule", str(sched), "-o", str(out), "--start", "yesterday")
    assert bad.returncode == 2 and "--start" in bad.stderr


def test_playout_serves_on_air_spool_and_filler(tmp_path: Path) -> None:
    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    make_rendered(tmp_path / "a", pattern="testsrc", seconds=3.5)
    (tmp_path / "spool").mkdir()
    sched = _schedule(
        tmp_path,
        f"""
        spool: spool
        entries:
          - {{name: a, at: "{at(2)}", segment: a, title: "A & B"}}
          - {{name: later, at: "{at(600)}", segment: a, title: "Later"}}
        """,
    )
    p = Playout(load_schedule(sched), tmp_path / "out", filler=tmp_path / "filler")
    p.start(T0)
    now = T0
    for _ in range(12):  # to 3 s: entry a on air
        now += Fraction(1, 4)
        p.tick(now)
    make_rendered(tmp_path / "spool" / "clip1", pattern="bars", seconds=2)
    now += Fraction(1, 4)
    p.tick(now)
    got = validate(epg_xml(p, now_s=now))
    titles = [g["title"] for g in got]
    assert titles[:3] == ["A & B", "clip1", FILLER_TITLE] and "Later" in titles
    a = got[0]
    assert a["start"] <= now < a["stop"] and a["stop"] - a["start"] in (3, 4)  # 3.5 s, whole seconds
    assert got[1]["start"] == a["stop"] or abs(got[1]["start"] - a["stop"]) <= 1
    later = next(g for g in got if g["title"] == "Later")
    assert later["start"] == T0 + 600
    for _ in range(40):  # past a and the spool item: filler on air
        now += Fraction(1, 4)
        p.tick(now)
    got = validate(epg_xml(p, now_s=now))
    assert got[0]["title"] == FILLER_TITLE and got[0]["start"] <= now
    assert [g["title"] for g in got][:2] == [FILLER_TITLE, "Later"]

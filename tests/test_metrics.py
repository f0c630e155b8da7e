"""``/metrics``: the playout's state and counters in the Prometheus text format, parsed with
prometheus_client's own parser, on a playout driven by a clock the test controls."""

from __future__ import annotations

import json

import datetime as dt
import shutil
import textwrap
from fractions import Fraction
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from avatarrender.playout.engine import Playout
from avatarrender.playout.metrics import Counters, metrics_text, request_kind
from avatarrender.playout.schedule import load_schedule
from playout_media import make_rendered
from procs import start_playout, stop_command

T0 = Fraction(1_800_000_000)


def at(offset_s: float) -> str:
    return dt.datetime.fromtimestamp(float(T0) + offset_s, tz=dt.timezone.utc).isoformat()


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def value(m: dict, name: str, **labels: str) -> float:
    return m[(name, frozenset(labels.items()))]


def test_metrics_follow_the_playout(tmp_path: Path) -> None:
    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    make_rendered(tmp_path / "src", pattern="testsrc", seconds=3.5)
    shutil.copytree(tmp_path / "src", tmp_path / "a")
    shutil.copytree(tmp_path / "src", tmp_path / "d")
    (tmp_path / "d" / "manifest.json").write_text("{not json")
    (tmp_path / "spool").mkdir()
    sched = tmp_path / "schedule.yaml"
    sched.write_text(
        "filler: {dir: filler}\nlate: {max_late_s: 5}\nspool: spool\n"
        + textwrap.dedent(f"""
        entries:
          - {{name: a, at: "{at(2)}", segment: a}}
          - {{name: b, at: "{at(8)}", segment: b}}
          - {{name: c, at: "{at(20)}", segment: c}}
          - {{name: d, at: "{at(40)}", segment: d}}
        """)
    )
    p = Playout(load_schedule(sched), tmp_path / "out", filler=tmp_path / "filler")
    before = parse(metrics_text(p, now_s=T0))
    assert value(before, "avatarrender_playout_up") == 0
    p.start(T0)
    now = T0

    def run(seconds: float) -> None:
        nonlocal now
        for _ in range(int(seconds * 4)):
            now += Fraction(1, 4)
            p.tick(now)

    run(11)
    shutil.copytree(tmp_path / "src", tmp_path / "b")  # b ready 3 s after its air time: late
    run(34)  # c never appears: skipped 5 s after its time; d is refused (corrupt)
    weird = 'we"ird\\name\nx'
    make_rendered(tmp_path / "spool" / weird, pattern="bars", seconds=2)
    run(1.5)  # the spool item (2 s) is on air
    m = parse(metrics_text(p, now_s=now))
    st = p.status(now)
    assert value(m, "avatarrender_playout_up") == 1
    assert value(m, "avatarrender_on_air", key=f"spool/{weird}", kind="spool") == 1
    assert st["on_air"]["key"] == f"spool/{weird}"
    assert value(m, "avatarrender_render_ahead_seconds") == st["on_air"]["render_ahead_s"] > 0
    assert value(m, "avatarrender_programmes_total", event="started") == 3  # a, b, spool
    assert value(m, "avatarrender_programmes_total", event="ended") == 2
    assert value(m, "avatarrender_programmes_total", event="skipped") == 1  # c
    assert value(m, "avatarrender_programmes_total", event="refused") == 1  # d
    assert value(m, "avatarrender_late_starts_total") == 1  # b
    assert 2 <= value(m, "avatarrender_late_start_seconds_total") < 4  # slot-aligned
    assert value(m, "avatarrender_errors_total", source="playout", kind="error") >= 2
    # every published media segment is counted once, and their seconds add up to the channel's
    segs = sum(
        value(m, "avatarrender_media_segments_total", what=w) for w in ("programme", "filler", "stall")
    )
    assert segs == p.playlist.next_sequence
    # every program here aired whole once begun: the filler cut where one starts, and the wait
    # for the late one, are no stall (each start counted one)
    assert value(m, "avatarrender_media_segments_total", what="stall") == 0
    aired = sum(
        value(m, "avatarrender_aired_seconds_total", what=w) for w in ("programme", "filler", "stall")
    )
    assert abs(aired - float(p.playlist.next_pdt_s - (T0 - p.playlist.window_s))) < 1e-6
    assert value(m, "avatarrender_media_segments_total", what="programme") == 4 + 4 + st["on_air"]["index"]
    # lag: zero right after a tick; grows with the clock when the playout stops publishing
    assert value(m, "avatarrender_publication_lag_seconds") == 0
    m2 = parse(metrics_text(p, now_s=now + 7))
    assert value(m2, "avatarrender_publication_lag_seconds") == float(now + 7 - p.next_due_s)
    assert value(m2, "avatarrender_live_edge_age_seconds") == float(now + 7 - p.playlist.next_pdt_s)


def test_metrics_measure_in_the_channels_time_after_the_clock_went_back(tmp_path: Path, monkeypatch) -> None:
    """After the system clock went back the channel keeps its own time, ahead of the clock:
    /metrics measured against the system clock and read the live edge's age -299 s and a lag
    of 0 while the channel stood still (a review: a stall alert would not fire). It measures in
    the channel's time, and says the offset."""
    import avatarrender.playout.metrics as metrics

    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    sched = tmp_path / "schedule.yaml"
    sched.write_text("filler: {dir: filler}\n")
    p = Playout(load_schedule(sched), tmp_path / "out", filler=tmp_path / "filler")
    p.start(T0)
    clock = T0
    for _ in range(40):  # 10 s on air
        clock += Fraction(1, 4)
        p.tick(clock)
    clock -= 60  # the system clock steps back a minute
    for _ in range(20):
        clock += Fraction(1, 4)
        p.tick(clock)
    monkeypatch.setattr(metrics.time, "time", lambda: float(clock))
    m = parse(metrics_text(p))
    assert 59 <= value(m, "avatarrender_clock_offset_seconds") <= 61
    assert value(m, "avatarrender_publication_lag_seconds") == 0
    assert -1 <= value(m, "avatarrender_live_edge_age_seconds") <= 1
    clock += 30  # the channel stands still (no ticks) for 30 s of the clock
    m = parse(metrics_text(p))
    assert 28 <= value(m, "avatarrender_publication_lag_seconds") <= 30
    assert 29 <= value(m, "avatarrender_live_edge_age_seconds") <= 31


def test_requests_by_kind_and_http_errors() -> None:
    c = Counters()
    for path, code in [
        ("/live.m3u8?_HLS_msn=5&_HLS_part=1", 200),
        ("/master.m3u8", 200),
        ("/media/00012.ts", 200),
        ("/media/00013.ts", 404),
        ("/status", 200),
        ("/epg.xml", 500),
        ("/metrics", 200),
        ("/", 200),
        ("/../etc", 403),
    ]:
        c.request(request_kind(path), code)

    class NotStarted:
        scheduler = None
        counters = c

    m = parse(metrics_text(NotStarted(), now_s=0))
    assert value(m, "avatarrender_http_requests_total", kind="playlist", code="200") == 1
    assert value(m, "avatarrender_http_requests_total", kind="media", code="404") == 1
    assert value(m, "avatarrender_http_requests_total", kind="other", code="403") == 1
    assert value(m, "avatarrender_errors_total", source="http", kind="epg") == 1
    kinds = {dict(k[1]).get("kind") for k in m if k[0] == "avatarrender_http_requests_total"}
    assert kinds == {"playlist", "master", "media", "status", "epg", "metrics", "page", "other"}


def test_render_service_metrics_from_its_status(tmp_path: Path) -> None:
    """`avatarrender metrics --service INBOX`: the render service's status as Prometheus text."""
    from avatarrender.service import RenderService, submit
    from conftest import make_tiny_segment, run_cli

    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False, speech_s=1.0, duration_s=1.0)
    submit(yml, inbox, name="good")
    (inbox / "broken.yaml").write_text("scene: [unclosed\n")
    service = RenderService(inbox, spool, jobs=1)
    hold = service._hold_inbox()  # as its run() does: the lock says it runs, not the status's pid
    for path in service.pending():
        service.render_one(path)
    submit(yml, inbox, name="waiting")
    service._write_status()  # as the service does after each event
    prom = tmp_path / "textfile" / "avatarrender.prom"
    prom.parent.mkdir()
    proc = run_cli("metrics", "--service", str(inbox), "-o", str(prom))
    assert proc.returncode == 0, proc.stderr
    m = parse(prom.read_text())
    # -o -: stdout, as epg's (it wrote a file named -)
    dash = run_cli("metrics", "--service", str(inbox), "-o", "-", cwd=tmp_path)
    assert dash.returncode == 0 and dash.stdout == prom.read_text() and not (tmp_path / "-").exists()
    assert value(m, "avatarrender_service_rendering") == 0
    assert value(m, "avatarrender_service_pending_submissions") == 1
    assert value(m, "avatarrender_service_workers") == 1
    assert value(m, "avatarrender_service_recent_failures") == 1
    assert value(m, "avatarrender_service_last_failure_timestamp_seconds") > 1.7e9
    assert value(m, "avatarrender_service_last_render_seconds") > 0
    assert value(m, "avatarrender_service_last_render_realtime_factor") > 0
    # the service (this test's process) holds the inbox: up
    assert value(m, "avatarrender_service_up") == 1
    assert value(m, "avatarrender_service_held") == 0
    service._held = "the Dask cluster at tcp://127.0.0.1:9 is not reachable (OSError)"
    service._write_status()
    run_cli("metrics", "--service", str(inbox), "-o", str(prom))
    assert value(parse(prom.read_text()), "avatarrender_service_held") == 1  # waits, none failed
    # its process gone: down, and what waits counted from the inbox itself
    hold.release()
    status = json.loads((inbox / ".status.json").read_text())
    (inbox / ".status.json").write_text(json.dumps({**status, "pending": []}))
    submit(yml, inbox, name="more")
    m = parse(run_cli("metrics", "--service", str(inbox)).stdout)
    assert (
        value(m, "avatarrender_service_up") == 0 and value(m, "avatarrender_service_pending_submissions") == 2
    )
    missing = run_cli("metrics", "--service", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_playout_serves_metrics_and_epg_and_counts_requests(tmp_path: Path) -> None:
    """The real command: /metrics parses and counts the requests before it; /epg.xml validates."""
    import urllib.error
    import urllib.request

    from lxml import etree

    from conftest import ROOT

    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    (tmp_path / "schedule.yaml").write_text("filler: {dir: filler}\n")
    log = tmp_path / "playout.log"
    proc, url = start_playout(
        "--schedule", str(tmp_path / "schedule.yaml"), "--out", str(tmp_path / "out"), log_path=log
    )
    try:
        for _ in range(3):
            urllib.request.urlopen(url + "/live.m3u8", timeout=5).read()
        try:
            urllib.request.urlopen(url + "/nothing-here.ts", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            m = parse(r.read().decode())
        with urllib.request.urlopen(url + "/epg.xml", timeout=10) as r:
            guide = etree.fromstring(r.read())
    finally:
        stop_command(proc, log)
    requests = {
        dict(labels).get("kind"): v
        for (name, labels), v in m.items()
        if name.startswith("avatarrender_http_requests") and dict(labels).get("code", "200") == "200"
    }
    assert requests.get("playlist", 0) >= 4, m
    assert any(
        name.startswith("avatarrender_http_requests") and dict(labels).get("code") == "404"
        for (name, labels) in m
    ), m
    dtd = etree.DTD(str(ROOT / "tests/data/xmltv.dtd"))
    assert dtd.validate(guide), dtd.error_log.filter_from_errors()
    assert guide.findall("programme"), "the filler is in the guide"

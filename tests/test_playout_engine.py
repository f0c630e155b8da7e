"""The playout engine on real rendered folders (small ffmpeg-made media) and a clock the test drives."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from avatarrender.errors import MediaError, SpecError
from avatarrender.playout.engine import Playout
from avatarrender.playout.schedule import load_schedule
from playout_check import check_transition, parse_live
from playout_media import hold_render_lock, make_partial, make_rendered, write_manifest

T0 = Fraction(1_800_000_000)  # 2027-01-15T08:00:00Z
ROOT = Path(__file__).resolve().parent.parent


def at(offset_s: float) -> str:
    return dt.datetime.fromtimestamp(float(T0) + offset_s, tz=dt.timezone.utc).isoformat()


@pytest.fixture()
def media(tmp_path: Path) -> Path:
    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    make_rendered(tmp_path / "a", pattern="testsrc", seconds=3.5)
    make_rendered(tmp_path / "b", pattern="bars", seconds=2)
    return tmp_path


def schedule(folder: Path, body: str) -> Path:
    p = folder / "schedule.yaml"
    p.write_text("filler: {dir: filler}\nlate: {max_late_s: 5}\n" + textwrap.dedent(body))
    return p


class Driver:
    """Ticks a Playout on a fake clock and checks every published playlist."""

    def __init__(self, folder: Path, sched: Path, *, out: str = "out", renderer=None):
        self.out = folder / out
        self.playout = Playout(load_schedule(sched), self.out, filler=folder / "filler", renderer=renderer)
        self.prev = None
        self.aired: list[tuple[int, str, bool]] = []

    def start(self, now: Fraction) -> None:
        self.playout.start(now)
        self.now = now
        self.tick(Fraction(0))

    def tick(self, step: Fraction = Fraction(1, 4)) -> None:
        self.now += step
        self.playout.tick(self.now)
        text = (self.out / "live.m3u8").read_text()
        cur = parse_live(text)
        check_transition(self.prev, cur)
        known = {a[0] for a in self.aired}
        for s in cur.segments:
            if s["seq"] not in known:
                prog = next(x.program for x in self.playout.playlist.segments if x.sequence == s["seq"])
                self.aired.append((s["seq"], prog, s["disc"]))
                assert (self.out / s["uri"]).exists()
        self.prev = cur

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds * 4)):
            self.tick()

    def programs(self) -> list[str]:
        out = []
        for _, prog, disc in self.aired:
            if not out or out[-1] != prog:
                out.append(prog)
        return out

    def status(self) -> dict:
        return json.loads((self.out / "status.json").read_text())


def test_schedule_airs_in_order_with_filler_and_bounded_disk(media: Path) -> None:
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: a, at: "{at(5)}", segment: a}}
          - {{name: b, segment: b}}
          - {{name: a2, at: "{at(12)}", segment: a}}
        """,
    )
    d = Driver(media, sched)
    d.start(T0)
    d.run(40)
    assert d.programs() == ["filler", "entry/a", "entry/b", "filler", "entry/a2", "filler"]
    first_a = next(x for x in d.playout.playlist.segments) if False else None  # noqa: F841
    # media copied under the playout's own names: sources can go, what is on air stays
    master = (d.out / "master.m3u8").read_text()
    assert 'CODECS="avc1.640028,mp4a.40.2"' in master and "RESOLUTION=320x180" in master
    n_files = len(list((d.out / "media").iterdir()))
    assert n_files <= 6 + 9 + 1, f"{n_files} media files kept"  # + the one on air (written whole)
    # sources are hard links: same inode, no copy
    st = d.status()
    assert st["on_air"]["key"] == "filler" and st["media_sequence"] > 30
    assert not st["errors"]


def _corrupt(folder: Path, how: str) -> None:
    seg = folder / "seg_00001.ts"
    if how == "flip":
        data = bytearray(seg.read_bytes())
        data[5000] ^= 0xFF
        seg.write_bytes(bytes(data))
    elif how == "missing":
        seg.unlink()
    elif how == "truncated":
        seg.write_bytes(seg.read_bytes()[:-188])
    elif how == "manifest":
        (folder / "manifest.json").write_text("{not json")
    elif how == "incomplete":
        doc = json.loads((folder / "manifest.json").read_text())
        doc["complete"] = False
        (folder / "manifest.json").write_text(json.dumps(doc))
    elif how == "not-ts":
        doc = json.loads((folder / "manifest.json").read_text())
        data = b"\x00" * 188 * 10
        seg.write_bytes(data)
        import hashlib

        doc["segments"][1].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        (folder / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("how", ["flip", "missing", "truncated", "manifest", "incomplete", "not-ts"])
def test_corrupt_segment_is_refused_before_air(media: Path, how: str) -> None:
    _corrupt(media / "a", how)
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: a, at: "{at(3)}", segment: a}}
          - {{name: b, segment: b}}
        """,
    )
    d = Driver(media, sched)
    d.start(T0)
    d.run(10)
    assert d.programs() == ["filler", "entry/b", "filler"]
    errors = d.status()["errors"]
    assert any("entry/a" in e["message"] and "refused" in e["message"] for e in errors), errors


def test_render_ahead_partial_airs_while_rendering(media: Path) -> None:
    """A partial folder airs as its media segments finish, then continues after the rename."""
    src = media / "a"
    live = media / "live_a"
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: a, at: "{at(2)}", segment: live_a}}
        """,
    )
    d = Driver(media, sched)
    d.start(T0)
    partial = make_partial(src, media / "live_a.partial", finished=1)
    d.run(4.5)  # a0 airs, a1 not ready: filler
    doc = json.loads((src / "manifest.json").read_text())
    segs = [{"uri": s["uri"], "frames": s["frames"]} for s in doc["segments"]]
    for s in segs[1:3]:
        shutil.copyfile(src / s["uri"], partial / s["uri"])
    write_manifest(partial, segs[:3], complete=False, planned=4, width=320, height=180)
    d.run(1.5)
    shutil.copyfile(src / segs[3]["uri"], partial / segs[3]["uri"])
    write_manifest(partial, segs, complete=True, planned=4, width=320, height=180)
    shutil.rmtree(partial / ".work")
    partial.rename(live)  # the renderer's final rename, mid-air
    d.run(6)
    a = [(prog, disc) for _, prog, disc in d.aired if prog == "entry/a"]
    assert len(a) == 4, d.aired
    idx = [i for i, (_, prog, _) in enumerate(d.aired) if prog == "entry/a"]
    assert d.aired[idx[1] - 1][1] == "filler", "waited on filler for the late media segment"
    assert [disc for _, disc in a] == [True, True, False, False]
    assert not [e for e in d.status()["errors"] if e["level"] == "error"]


def test_spool_item_removed_before_or_while_it_airs_is_dropped_at_once(media: Path) -> None:
    """A queued spool folder the operator removes is dropped (it was waited for max_late_s, 5
    s here, on filler), and one removed while on air ends there: the next follows at once."""
    spool = media / "spool"
    spool.mkdir()
    d = Driver(media, schedule(media, "spool: spool\n"))
    d.start(T0)
    d.run(1)
    for name in ("x", "y", "z"):
        shutil.copytree(media / "a", spool / name)  # 3.5 s each
        d.run(0.25)
    d.run(1)
    assert d.programs()[-1] == "spool/x"
    shutil.rmtree(spool / "y")
    d.run(5)
    assert d.programs()[-2:] == ["spool/x", "spool/z"], d.programs()
    shutil.copytree(media / "a", spool / "w")
    d.run(0.5)
    shutil.rmtree(spool / "z")  # on air
    d.run(3)
    progs = d.programs()
    assert progs[-3:] == ["spool/x", "spool/z", "spool/w"] or progs[-4:] == [
        "spool/x",
        "spool/z",
        "filler",
        "spool/w",
    ]
    fillers = [p for _, p, _ in d.aired[-12:] if p == "filler"]
    assert len(fillers) <= 2, d.aired[-12:]


def test_the_example_crontab_clears_only_what_aired_a_day_ago(tmp_path: Path) -> None:
    """examples/crontab's cleanup line, run as cron runs it: it removed spool items by their
    folder's time, and a folder copied in with cp -a keeps its old time (a review: an item on air
    was removed, "refused mid-air"). It goes by the playout's NAME/.done now."""
    import subprocess
    import time

    from conftest import ROOT

    lines = [ln for ln in (ROOT / "examples/crontab").read_text().splitlines() if "find /srv/spool" in ln]
    assert len(lines) == 2, lines  # what aired a day ago; renders stopped and left for a week
    commands = [
        ln.split(None, 5)[5].replace("\\%", "%").replace("/srv/spool", str(tmp_path / "spool"))
        for ln in lines
    ]
    old = time.time() - 2 * 86400
    for name, done in (
        ("aired-long-ago", old),
        ("aired-just-now", None),
        ("old-copy-unaired", "never"),
        (".killed-last-week.partial", "never"),
    ):
        folder = tmp_path / "spool" / name
        folder.mkdir(parents=True)
        (folder / "index.m3u8").write_text("#EXTM3U\n")
        if done != "never":
            (folder / ".done").write_text("ended 2027-01-15T08:00:00.000Z\n")
            if done is not None:
                os.utime(folder / ".done", (done, done))
        then = old - (7 * 86400 if name.endswith(".partial") else 0)
        os.utime(folder / "index.m3u8", (then, then))
        os.utime(folder, (then, then))  # as cp -a leaves it
    (tmp_path / "spool" / ".rendering.partial").mkdir()  # a render writing into it now
    for command in commands:
        subprocess.run(["sh", "-c", command], check=True, timeout=60)
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == [
        ".rendering.partial",
        "aired-just-now",
        "old-copy-unaired",
    ]


def test_spool_airs_in_order_of_arrival(media: Path) -> None:
    spool = media / "spool"
    spool.mkdir()
    sched = schedule(media, "spool: spool\n")
    d = Driver(media, sched)
    d.start(T0)
    d.run(2)
    shutil.copytree(media / "b", spool / "zz-first")
    d.run(0.5)
    make_partial(media / "a", spool / ".aa-second.partial", finished=4)  # hidden while rendering
    (spool / ".aa-second.partial" / ".work").rmdir()
    rendering = hold_render_lock(spool / "aa-second")
    d.run(0.5)
    shutil.copytree(media / "b", spool / ".junk")  # dot files are ignored
    d.run(10)
    assert d.programs() == ["filler", "spool/zz-first", "spool/aa-second", "filler"]
    # a finished one says it is done (what the crontab's cleanup goes by), and when; the one
    # whose render stopped part-way (skipped once its 5 s were up) is left for the operator
    assert (spool / "zz-first" / ".done").read_text().startswith("ended 20")
    assert not list(spool.glob("*/.done"))[1:] and not (spool / ".junk" / ".done").exists()
    # a second playout restarted on the same folder does not air them again
    d.run(2)
    d2 = Driver(media, sched)
    d2.prev = d.prev
    d2.aired = list(d.aired)
    d2.start(d.now + 1)
    d2.run(5)
    assert d2.programs() == ["filler", "spool/zz-first", "spool/aa-second", "filler"]
    os.close(rendering)


def _spool_channel(media: Path) -> tuple[Path, Driver]:
    """A channel of filler and a spool (max_late_s 30), a second on air."""
    spool = media / "spool"
    spool.mkdir()
    (media / "schedule.yaml").write_text("filler: {dir: filler}\nlate: {max_late_s: 30}\nspool: spool\n")
    d = Driver(media, media / "schedule.yaml")
    d.start(T0)
    d.run(1)
    return spool, d


def test_a_spool_render_stopped_or_killed_is_not_waited_for(media: Path, caplog) -> None:
    """An operator's review: `render --into` stopped (or killed) left `.NAME.partial`, which was
    queued and held the channel on filler for max_late_s, then skipped for good (its resumed
    render never aired). Without a render behind it, it is not queued, and said once; the render
    resumed under its name, it airs."""
    spool, d = _spool_channel(media)
    part = make_partial(media / "a", spool / ".aa-stopped.partial", finished=1)
    with caplog.at_level(logging.WARNING):
        d.run(1)
        shutil.copytree(media / "b", spool / "bb-next")
        d.run(4)
    assert d.programs() == ["filler", "spool/bb-next", "filler"], d.programs()  # not 30 s of filler
    said = [r.getMessage() for r in caplog.records if "aa-stopped" in r.getMessage()]
    assert len(said) == 1 and "no render is running into it" in said[0] and "--name aa-stopped" in said[0]
    rendering = hold_render_lock(spool / "aa-stopped")  # resumed: it comes, and airs
    try:
        d.run(1)
        shutil.rmtree(part)
        shutil.copytree(media / "a", spool / "aa-stopped")
        d.run(6)
        assert "spool/aa-stopped" in d.programs(), d.programs()
    finally:
        os.close(rendering)


def test_restart_continues_sequences_and_schedule(media: Path) -> None:
    long = make_rendered(media / "long", pattern="testsrc", seconds=20)
    assert long.exists()
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: long, at: "{at(4)}", segment: long}}
        """,
    )
    d = Driver(media, sched)
    d.start(T0)
    d.run(8)
    before = parse_live((d.out / "live.m3u8").read_text())
    cursor = d.playout.scheduler.cursor
    # down for 6 s; a new process takes over the same folder
    d2 = Driver(media, sched)
    d2.prev, d2.aired = d.prev, list(d.aired)
    d2.start(d.now + 6)
    d2.run(2)
    after = parse_live((d2.out / "live.m3u8").read_text())
    check_transition(before, after)
    new = [s for s in after.segments if s["seq"] > before.segments[-1]["seq"]]
    assert new[0]["seq"] == before.segments[-1]["seq"] + 1
    assert new[0]["disc"], "a gap in time is a discontinuity"
    assert new[0]["pdt_s"] >= d.now + 6 - 1
    # resumed where the clock is: about 6 s of the program skipped
    resumed = d2.playout.scheduler.cursor - 2
    assert resumed - cursor in (5, 6, 7), (cursor, resumed)


def test_filler_and_format_checks(media: Path, tmp_path: Path) -> None:
    make_rendered(media / "small", pattern="red", seconds=2, size="160x90")
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: small, at: "{at(2)}", segment: small}}
        """,
    )
    d = Driver(media, sched)
    d.start(T0)
    d.run(5)
    assert "entry/small" not in d.programs()
    assert any("160x90" in e["message"] for e in d.status()["errors"])
    _corrupt(media / "filler", "flip")
    with pytest.raises(MediaError):
        Playout(load_schedule(sched), tmp_path / "out2", filler=media / "filler")
    bad = media / "bad.yaml"
    bad.write_text("entries:\n  - {name: x, segment: a, spec: b.yaml}\n")
    with pytest.raises(SpecError, match=r"entries\[0\]: give exactly one of 'segment'"):
        load_schedule(bad)
    # an absolute time before an earlier entry's: it would be skipped, the guide go back in time
    bad.write_text(
        f'entries:\n  - {{name: x, at: "{at(60)}", segment: a}}\n  - {{name: y, after: previous, segment: b}}\n'
        f'  - {{name: z, at: "{at(30)}", segment: b}}\n'
    )
    with pytest.raises(SpecError, match=r"entries\[2\]\.at: .* is before entries\[0\]\.at"):
        load_schedule(bad)
    # a number as the time: read as epoch seconds (1970), skipped without saying what it read
    for number in ("20261203", "1800000000000", "1.5e9", '"20261203"'):
        bad.write_text(f"entries:\n  - {{name: x, at: {number}, segment: a}}\n")
        with pytest.raises(
            SpecError, match=r"entries\[0\]\.at: .*is a number: give a date and time, ISO 8601"
        ):
            load_schedule(bad)
    # a time without an offset (or a bare date): it aired at that hour UTC, whatever the zone
    for naive in ('"2026-12-03T20:00:00"', "2026-12-03", '"2026-12-03 20:00"'):
        bad.write_text(f"entries:\n  - {{name: x, at: {naive}, segment: a}}\n")
        with pytest.raises(SpecError, match=r"entries\[0\]\.at: 2026-12-03T.* has no offset: say which zone"):
            load_schedule(bad)


def test_entry_at_another_frame_rate_is_refused_while_filler_airs(tmp_path: Path) -> None:
    """A segment really rendered at 25 fps on a 30 fps channel (the filler's rate): refused with
    an error naming the manifest and both rates, on status and in the entry's availability."""
    from avatarrender.render import render
    from avatarrender.spec import load_spec
    from conftest import make_tiny_segment

    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    yml = make_tiny_segment(
        tmp_path / "seg",
        speech_s=2.0,
        tv=False,
        captions=False,
        extra={
            "output": {"preset": "720p30", "width": 320, "height": 180, "fps": 25, "x264_preset": "ultrafast"}
        },
    )
    man = render(load_spec(yml), tmp_path / "pal", jobs=1)
    assert man["fps"] == "25/1" and (man["width"], man["height"]) == (320, 180)
    sched = schedule(
        tmp_path,
        f"""
        entries:
          - {{name: pal, at: "{at(2)}", segment: pal}}
        """,
    )
    d = Driver(tmp_path, sched)
    d.start(T0)
    d.run(6)
    assert d.programs() == ["filler"]
    assert d.playout.rewriter.video_frame_90k == 3000  # the channel keeps the filler's 30 fps
    why = d.playout.catalog.availability("entry/pal").error
    assert why and "manifest.json: fps: rendered at 25 fps on a 30 fps channel" in why, why
    errors = d.status()["errors"]
    assert any(
        "entry/pal" in e["message"]
        and "refused" in e["message"]
        and "25 fps on a 30 fps channel" in e["message"]
        for e in errors
    ), errors


def test_full_disk_keeps_the_playlist_valid(media: Path) -> None:
    """Writes fail with EFBIG (a file-size limit stands in for a full disk): error, valid playlist."""
    sched = schedule(media, "")
    script = textwrap.dedent(f"""
        import resource, signal, sys, json
        from fractions import Fraction
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from avatarrender.playout.engine import Playout
        from avatarrender.playout.schedule import load_schedule
        from playout_check import parse_live, check_transition
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        out = Path({str(media / "out")!r})
        p = Playout(load_schedule({str(sched)!r}), out, filler=Path({str(media / "filler")!r}))
        t = Fraction({int(T0)})
        p.start(t)
        for i in range(20):
            t += Fraction(1, 2); p.tick(t)
        before = parse_live((out / "live.m3u8").read_text())
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, resource.RLIM_INFINITY))
        for i in range(10):
            t += Fraction(1, 2); p.tick(t)
        during = parse_live((out / "live.m3u8").read_text())
        assert during.segments == before.segments, "the old playlist stays"
        assert p.disk_error and "disk full" in p.errors[-1]["message"], p.errors
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        for i in range(12):  # (the error ends once writes have worked for DISK_CLEAR_S)
            t += Fraction(1, 2); p.tick(t)
        after = parse_live((out / "live.m3u8").read_text())
        check_transition(before, after)
        assert after.segments[-1]["seq"] > before.segments[-1]["seq"] and p.disk_error is None
        print("ok", p.errors[-1]["message"])
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ok" in r.stdout


def test_example_schedule_loads() -> None:
    s = load_schedule(ROOT / "examples" / "schedule.yaml")
    assert [e.name for e in s.entries] == ["morning-news", "weather", "evening"]
    assert s.entries[1].at_s is None and s.entries[1].spec is not None
    assert s.filler_spec is not None and s.spool is not None


def test_aired_media_is_one_continuous_stream(media: Path) -> None:
    """Across programs and filler loops: timestamps only go forward and ffmpeg reads it cleanly."""
    from avatarrender.media import ffmpeg_exe
    from avatarrender.playout.tsrewrite import read_pts

    sched = schedule(
        media,
        f"""
        window_s: 30
        entries:
          - {{name: a, at: "{at(2)}", segment: a}}
          - {{name: b, segment: b}}
        """,
    )
    d = Driver(media, sched)
    d.start(T0)
    d.run(14)
    segs = d.prev.segments
    # filler -> a -> b -> filler (the filler's loop starting over is no discontinuity)
    assert sum(s["disc"] for s in segs) == 3
    last = {"video": -1, "audio": -1}
    first_video = []
    for s in segs:
        pts = read_pts((d.out / s["uri"]).read_bytes())
        for kind in ("video", "audio"):
            assert min(pts[kind]) > last[kind], (s, kind)
            last[kind] = max(pts[kind])
        first_video.append(min(pts["video"]))
    # the picture stays on the programme-date clock across every join: each media segment's first
    # frame is exactly its EXTINF durations after the first one's (a join placed after the audio,
    # up to an AAC frame past the picture, put a player on defaults 21 ms further behind each time)
    ends = [round(sum(x["duration_s"] for x in segs[:i]) * 90000) for i in range(len(segs))]
    assert [v - first_video[0] for v in first_video] == ends, (first_video, ends)
    vod = d.out / "vod.m3u8"
    vod.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
        + "".join(f"#EXTINF:{s['duration_s']:.5f},\n{s['uri']}\n" for s in segs)
        + "#EXT-X-ENDLIST\n"
    )
    r = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "warning", "-i", str(vod), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_real_renderer_filler_and_render_ahead(tmp_path: Path) -> None:
    """With the real renderer: the filler is rendered from a segment.yaml, an entry given as a
    segment.yaml is rendered ahead by the playout, and both air (their media validated)."""
    import time

    from avatarrender.playout.engine import prepare_filler
    from avatarrender.render import ProcessRenderer
    from conftest import make_tiny_segment

    yml = make_tiny_segment(tmp_path / "seg", speech_s=3.0)
    sched_path = tmp_path / "schedule.yaml"
    sched_path.write_text(
        f"filler: {{spec: {yml}, duration_s: 2}}\nlate: {{max_late_s: 120}}\n"
        f"entries:\n  - {{name: talk, spec: {yml}}}\n"
    )
    out = tmp_path / "out"
    sched = load_schedule(sched_path, renders_dir=out / ".renders")
    renderer = ProcessRenderer()
    filler = prepare_filler(sched, out, renderer=renderer)
    assert filler.parent == out / ".filler"
    p = Playout(sched, out, filler=filler, renderer=renderer)
    p.start(time.time())
    prev, aired = None, []
    deadline = time.time() + 90
    while time.time() < deadline and aired.count("entry/talk") < 3:
        p.tick(time.time())
        cur = parse_live((out / "live.m3u8").read_text())
        check_transition(prev, cur)
        seen = {s["seq"] for s in prev.segments} if prev else set()
        aired += [
            x.program
            for x in p.playlist.segments
            if x.sequence not in seen and x.sequence >= (max(seen) + 1 if seen else 0)
        ]
        prev = cur
        time.sleep(0.05)
    p.tick(time.time())
    assert aired.count("entry/talk") >= 3, (aired, p.errors)
    assert (out / ".renders" / "talk" / "manifest.json").exists()
    assert not [e for e in p.errors if e["level"] == "error"], p.errors


def test_render_ahead_waits_for_another_render_and_outlives_its_playout(tmp_path: Path) -> None:
    """A render-ahead whose output another render holds (one a killed playout left running)
    waits for it instead of failing the entry; and one whose playout is gone (its stdout pipe
    closed) ends cleanly, its render kept, without a traceback."""
    import time

    from avatarrender.render import RenderProcess
    from avatarrender.rendition import FolderLock, lock_path
    from conftest import make_tiny_segment

    yml = make_tiny_segment(tmp_path / "seg", speech_s=3.0, width=128, height=72)
    out = tmp_path / "out"
    held = FolderLock(lock_path(out))
    job = RenderProcess(yml, out)
    try:
        time.sleep(3)
        assert not job.poll(), "the render-ahead gave up on a held output"
    finally:
        held.release()
    job._proc.wait(120)
    job.result()  # raises if it failed
    assert json.loads((out / "manifest.json").read_text())["complete"]

    # the playout killed: nobody reads the outcome line
    code = "import sys; from avatarrender.render import _render_ahead_exit; _render_ahead_exit(*sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(yml), str(tmp_path / "out2")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    # its warnings as the playout's log lines: stamped, one line each (the tiny speech does not
    # fit its captions' words), no Python source line
    lines = [ln for ln in err.splitlines() if ln.strip()]
    # (in UTC, with its Z: as the messages' own times, and unambiguous in a DST fall-back hour)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING "
    assert lines and all(re.match(stamp, ln) for ln in lines), err
    assert json.loads((tmp_path / "out2" / "manifest.json").read_text())["complete"]


def test_sound_is_contiguous_across_every_join(media: Path) -> None:
    """At every program change and filler loop the aired audio goes on exactly where the last
    ended (players filled each hole, up to an AAC frame, with silence and a warning), the new
    audio moved by at most half an AAC frame against its picture; the filler's loop starting
    over is no discontinuity."""
    from avatarrender.playout.mpegts import get_ts, packets
    from avatarrender.playout.tsrewrite import _audio_end, _pes_rows

    sched = schedule(
        media,
        f'window_s: 40\nentries:\n  - {{name: a, at: "{at(5)}", segment: a}}\n  - {{name: b, segment: b}}\n',
    )
    d = Driver(media, sched)
    d.start(T0)
    shifts = set()
    for _ in range(64):  # 16 s
        d.tick()
        shifts.add(d.playout.rewriter.audio_shift_90k)
    assert max(abs(x) for x in shifts) <= 960 and len(shifts) > 1, shifts  # half a frame at most
    joins, prev_end = 0, None
    for seq, prog, disc in d.aired:
        a = packets((d.out / f"media/{seq:09d}.ts").read_bytes())
        pes = [(r, sid, get_ts(a[r], pi)) for r, sid, pi, _ in _pes_rows(a)]
        audio = [(r, t) for r, sid, t in pes if sid < 0xE0]
        video = [t for _, sid, t in pes if sid >= 0xE0]
        assert audio and video, seq
        if prev_end is not None:
            assert audio[0][1] == prev_end, (seq, prog, disc, (audio[0][1] - prev_end) / 90, "ms")
        joins += bool(disc and prev_end is not None)
        prev_end = max(_audio_end(a, r, t) for r, t in audio)
    assert joins >= 3 and d.programs()[:4] == ["filler", "entry/a", "entry/b", "filler"]
    # a change of program is marked; the filler's loop starting over is not (one stream goes on)
    pairs = list(zip(d.aired, d.aired[1:]))
    assert all(disc for (_, p0, _), (_, p, disc) in pairs if p != p0)
    wraps = [disc for (_, p0, _), (_, p, disc) in pairs if p == p0 == "filler"]
    assert len(wraps) >= 8 and not any(wraps)


def test_program_starts_at_the_next_part_boundary(media: Path) -> None:
    """A spool item that is ready while filler airs starts at the next LL-HLS part boundary: the
    filler's media segment is cut short there, as a clean shorter file; every playlist on the way
    obeys the part rules (the Driver checks each one)."""
    from avatarrender.media import ffmpeg_exe

    spool = media / "spool"
    spool.mkdir()
    d = Driver(media, schedule(media, "spool: spool\npart_frames: 8\n"))
    d.start(T0)
    d.run(2)  # T0 + 2 s: a filler segment [2, 3) on air, no part out yet
    whole = d.out / d.playout.playlist.uri_for(d.playout.playlist.next_sequence)
    whole_bytes = whole.read_bytes()  # written whole when its slot began
    shutil.copytree(media / "b", spool / "prog")
    d.run(3)  # seen at the tick of T0 + 2.25 s
    segs = list(d.playout.playlist.segments)
    i = next(k for k, s in enumerate(segs) if s.program == "spool/prog")
    cut, first = segs[i - 1], segs[i]
    part_s = Fraction(8, 30)
    assert cut.program == "filler" and cut.pdt_s == T0 + 2
    assert cut.duration_s == part_s and len(cut.parts) == 1, "cut at the first part boundary after"
    assert first.discontinuity and first.pdt_s == cut.pdt_s + cut.duration_s
    assert first.parts[0].independent and first.duration_s == 1
    assert (d.out / cut.uri).stat().st_size == cut.parts[-1].offset_bytes + cut.parts[-1].size_bytes
    # into a file of its own: the whole one, which a preload hint named and a CDN may hold, never
    # changes (so nginx may call every media file immutable); both go when the segment leaves
    assert cut.uri.endswith("-cut.ts") and whole.read_bytes() == whole_bytes
    assert cut.parts[0].uri is None and len(whole_bytes) > (d.out / cut.uri).stat().st_size
    assert {cut.uri, whole.relative_to(d.out).as_posix()} <= d.playout.playlist.files()
    r = subprocess.run(
        [ffmpeg_exe(), "-v", "warning", "-i", str(d.out / cut.uri), "-map", "0:v", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sum(1 for ln in r.stdout.splitlines() if ln and not ln.startswith("#")) == 8
    assert not r.stderr.strip(), r.stderr
    # programs are never cut: every segment of the program keeps its rendered length
    assert [s.duration_s for s in segs if s.program == "spool/prog"] == [1, 1]
    d.run(30)  # out of the window and past the grace period: both files are deleted
    assert cut.sequence < d.playout.playlist.media_sequence
    assert not (d.out / cut.uri).exists() and not whole.exists()


def test_a_system_clock_step_neither_freezes_nor_bursts_the_channel(media: Path, caplog) -> None:
    """An operator review set the clock back 60 s (the channel stood still, /status frozen, no
    log line) and forward 300 s (300 media segments published in one tick, a program "aired" in
    2 s). Back: the channel keeps its own time and goes on at once. Ahead: it goes on from the
    clock after one discontinuity, as after a restart. One log line each; every playlist valid."""
    d = Driver(media, schedule(media, "window_s: 10\n"))
    d.start(T0)
    d.run(3)
    n_before = d.playout.playlist.next_sequence
    with caplog.at_level("WARNING", logger="avatarrender.playout"):
        d.tick(Fraction(-60))  # the clock went back a minute
        d.run(3)
    assert d.playout.playlist.next_sequence >= n_before + 2, "the channel stood still"
    assert d.playout.clock_offset_s == 60
    assert sum("went back" in r.message for r in caplog.records) == 1, caplog.text
    caplog.clear()
    seq = d.playout.playlist.next_sequence
    edge = d.playout.playlist.edge_s
    with caplog.at_level("WARNING", logger="avatarrender.playout"):
        d.tick(Fraction(300))  # and ahead five minutes (the minute it was ahead taken out first)
    jumped_at = d.now
    assert d.playout.playlist.next_sequence <= seq + 3, "the missed time listed at once"
    assert d.playout.clock_offset_s == 0
    d.run(2)
    segs = [s for s in d.playout.playlist.segments if s.sequence >= seq]
    jump = next(s for s in segs if s.pdt_s > edge + 100)
    assert jump.discontinuity and jump.pdt_s >= jumped_at - 2 * d.playout.playlist.target_duration_s
    assert sum("jumped" in r.message for r in caplog.records) == 1, caplog.text


def test_a_clock_set_back_and_then_right_again_leaves_the_channel_on_the_clock(media: Path, caplog) -> None:
    """Back a minute (the channel keeps its own time, a minute ahead), then forward the same
    minute (the clock set right again): the channel went on at its pace, skipped that minute
    after a discontinuity and stayed a minute ahead of the clock for good. The step forward is
    taken out of what it is ahead: no discontinuity, on the clock again; so is a step of 1.5 s,
    under the jump's two target durations (it stayed 1.5 s ahead, a review)."""
    d = Driver(media, schedule(media, "window_s: 10\n"))
    d.start(T0)
    d.run(3)
    d.tick(Fraction(-60))
    d.run(3)
    assert d.playout.clock_offset_s == 60
    seq, edge = d.playout.playlist.next_sequence, d.playout.playlist.edge_s
    with caplog.at_level("WARNING", logger="avatarrender.playout"):
        d.tick(Fraction(60))
        d.run(3)
    assert d.playout.clock_offset_s == 0
    segs = [s for s in d.playout.playlist.segments if s.sequence >= seq]
    assert segs and not any(s.discontinuity for s in segs), "a discontinuity for nothing skipped"
    assert all(b.pdt_s == a.pdt_s + a.duration_s for a, b in zip(segs, segs[1:]))
    assert edge <= segs[0].pdt_s <= edge + 1 and abs(d.playout.playlist.edge_s - d.now) <= 2
    assert not any("jumped" in r.message for r in caplog.records), caplog.text
    assert sum("came forward" in r.message for r in caplog.records) == 1, caplog.text
    d.tick(Fraction(-3, 2))
    d.run(1)
    assert d.playout.clock_offset_s == Fraction(3, 2)
    d.tick(Fraction(3, 2))
    d.run(1)
    assert d.playout.clock_offset_s == 0 and abs(d.playout.playlist.edge_s - d.now) <= 1


def test_a_restart_airs_a_hinted_segment_anew_from_a_file_of_its_own(media: Path) -> None:
    """Stopped when a media segment was written whole and named by the preload hint, none of its
    parts out: after the restart what airs under its number goes to another file (NNN-1.ts), so
    the first one, which a player or an nginx cache may hold as immutable, never changes."""
    sched = schedule(media, "window_s: 30\n")
    d = Driver(media, sched)
    d.start(T0)
    d.run(5)  # T0 + 5 s: the segment of [5, 6) written, its first part not out
    pl = d.playout.playlist
    assert pl.open is None and pl.preload_hint is not None and pl.preload_hint[1] == 0
    hinted = d.out / pl.preload_hint[0]
    before = hinted.read_bytes()
    d2 = Driver(media, sched)
    d2.prev, d2.aired = d.prev, list(d.aired)
    d2.start(d.now + Fraction(1, 2))
    d2.run(3)
    assert hinted.read_bytes() == before
    seg = next(s for s in d2.playout.playlist.segments if s.sequence == int(hinted.stem))
    assert seg.uri.endswith(f"{int(hinted.stem):09d}-1.ts"), seg.uri
    assert {seg.uri, hinted.relative_to(d2.out).as_posix()} <= d2.playout.playlist.files()


@pytest.mark.parametrize("stop_after_s", [5, 5.5])
def test_restart_mid_segment_keeps_one_clean_stream(media: Path, stop_after_s: float) -> None:
    """Stopped with a segment on air (no part out yet, or some parts out) and restarted soon after:
    the playlists stay valid across the restart and the aired files read as one clean stream."""
    from avatarrender.media import ffmpeg_exe
    from avatarrender.playout.tsrewrite import read_pts

    sched = schedule(media, "window_s: 30\n")
    d = Driver(media, sched)
    d.start(T0)
    d.run(stop_after_s)
    d2 = Driver(media, sched)
    d2.prev, d2.aired = d.prev, list(d.aired)
    d2.start(d.now + Fraction(1, 2))
    d2.run(4)
    segs = d2.prev.segments
    last = {"video": -1, "audio": -1}
    for s in segs:
        pts = read_pts((d2.out / s["uri"]).read_bytes())
        for kind in ("video", "audio"):
            if pts[kind]:  # a segment cut at restart after one part may hold no audio PES
                assert min(pts[kind]) > last[kind], (s, kind)
                last[kind] = max(pts[kind])
        assert pts["video"]
    vod = d2.out / "vod.m3u8"
    vod.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
        + "".join(f"#EXTINF:{s['duration_s']:.5f},\n{s['uri']}\n" for s in segs)
        + "#EXT-X-ENDLIST\n"
    )
    r = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "warning", "-i", str(vod), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_failed_render_ahead_shows_its_error_line(media: Path) -> None:
    """An entry whose segment.yaml cannot render: the render's own error line on status (not an
    exit code), filler airs, and the playout itself imports nothing of the renderer."""
    import time

    from avatarrender.render import ProcessRenderer
    from conftest import make_tiny_segment

    yml = make_tiny_segment(media / "seg", speech_s=2.0, tv=False, captions=False)
    (yml.parent / "assets" / "room.png").unlink()
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: broken, spec: {yml}}}
          - {{name: after, segment: b}}
        """,
    )
    d = Driver(media, sched, renderer=ProcessRenderer())
    d.start(T0)
    deadline = time.monotonic() + 120
    while d.playout.render_key is None and time.monotonic() < deadline:
        d.tick()
    assert d.playout.render_key == "entry/broken"
    while d.playout.render_key is not None and time.monotonic() < deadline:
        time.sleep(0.1)
        d.tick()
    d.run(2)
    errors = [e["message"] for e in d.status()["errors"]]
    line = next((m for m in errors if m.startswith("entry/broken: render failed: ")), None)
    assert line and "segment.yaml: scene.background: file not found" in line, errors
    # refused at once with that line (not after max_late_s of filler: it will never be ready),
    # and the next entry follows
    refused = next((m for m in errors if m.startswith("entry/broken: refused: ")), None)
    assert refused and "scene.background: file not found" in refused, errors
    assert not [m for m in errors if "not ready" in m and "broken" in m], errors
    d.run(3)
    assert "entry/broken" not in d.programs() and d.programs()[:2] == ["filler", "entry/after"]
    # the channel side stays independent of the renderer and the CLI
    import ast

    for path in (ROOT / "avatarrender" / "playout").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in names if m == "avatarrender.render" or {"cli", "_cli"} & set(m.split("."))], (
            path
        )
        assert "cli.main" not in path.read_text() and "_cli" not in path.read_text(), path


def test_spool_item_whose_render_failed_is_refused_at_once(media: Path) -> None:
    """A render that gives up midway marks its partial folder (rendition.mark_failed): the playout
    airs what it had, then refuses the rest at once with the render's error line, not after
    max_late_s of filler; the next spool item follows."""
    from avatarrender.rendition import mark_failed

    spool = media / "spool"
    spool.mkdir()
    sched = media / "schedule.yaml"  # a long wait: without the mark, filler would air 30 s
    sched.write_text("filler: {dir: filler}\nlate: {max_late_s: 30}\nspool: spool\n")
    d = Driver(media, sched)
    d.start(T0)
    d.run(2)
    part = make_partial(media / "a", spool / ".aa-broken.partial", finished=2)
    rendering = hold_render_lock(spool / "aa-broken")
    d.run(1.5)
    mark_failed(part, "talk.yaml: tv.clips[0].file: clip.mp4 cannot be decoded at 3.2 s\nmore")
    os.close(rendering)  # the failed render ends
    d.run(1)
    shutil.copytree(media / "b", spool / "bb-next")
    d.run(5)
    progs = d.programs()
    assert "spool/aa-broken" in progs and "spool/bb-next" in progs
    errors = [e["message"] for e in d.playout.errors]
    assert any("aa-broken" in m and "FAILED" in m and "cannot be decoded at 3.2 s" in m for m in errors), (
        errors
    )
    aired_broken = [s for s in d.playout.playlist.segments if s.program == "spool/aa-broken"]
    assert len(aired_broken) <= 2, "nothing past what was published before the failure"
    # rendered again under the name (the failed partial still there): a new item, it airs (the
    # refusal stuck to the name for good); a visible NAME.partial (`render -o`) is no item
    shutil.copytree(media / "b", spool / "aa-broken.partial")
    shutil.copytree(media / "b", spool / "aa-broken")
    d.run(8)
    assert d.programs()[-2:] == ["spool/aa-broken", "filler"], d.programs()
    assert not [p for p in d.programs() if p.endswith(".partial")]


def test_entry_folder_copied_in_while_due_airs_once_whole(media: Path) -> None:
    """A schedule entry's folder that arrives by copy (rsync: the manifest first) while the
    entry waits is not refused half-copied: it airs once whole, within the late policy."""
    d = Driver(media, schedule(media, f'entries: [{{name: copied, at: "{at(4)}", segment: arriving}}]\n'))
    d.start(T0)
    d.run(3)
    src, dst = media / "b", media / "arriving"
    dst.mkdir()
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    for name in sorted(p.name for p in src.iterdir() if p.name != "manifest.json"):
        d.run(0.5)
        shutil.copy2(src / name, dst / name)
    d.run(6)
    assert "entry/copied" in d.programs(), (d.programs(), d.playout.errors)
    assert not [e for e in d.playout.errors if "refused" in e["message"]], d.playout.errors


def test_failed_render_ahead_is_rendered_again_once_its_segment_yaml_changes(media: Path) -> None:
    """Fixed before it is due (the missing image put back, the YAML saved), an entry whose
    render failed is rendered again and airs at its time."""
    import os
    import time

    from avatarrender.render import ProcessRenderer
    from conftest import make_tiny_segment

    yml = make_tiny_segment(media / "seg", speech_s=2.0, tv=False, captions=False)
    room = yml.parent / "assets" / "room.png"
    kept = room.read_bytes()
    room.unlink()
    sched = schedule(
        media,
        f"""
        entries:
          - {{name: later, at: "{at(40)}", spec: {yml}}}
        """,
    )
    d = Driver(media, sched, renderer=ProcessRenderer())
    d.start(T0)
    deadline = time.monotonic() + 120

    def failures() -> int:
        return sum(m["message"].startswith("entry/later: render failed") for m in d.playout.errors)

    while not failures() and time.monotonic() < deadline:
        time.sleep(0.05)
        d.tick(Fraction(1, 20))
    assert failures() == 1
    room.write_bytes(kept)
    st = yml.stat()
    os.utime(yml, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    folder = d.playout.schedule.entries[0].folder
    while d.playout.render_key is not None or not (folder / "manifest.json").exists():
        assert time.monotonic() < deadline, "not rendered again"
        time.sleep(0.05)
        d.tick(Fraction(1, 20))
    assert failures() == 1
    d.run(40 - float(d.now - T0) + 3)
    assert "entry/later" in d.programs(), d.programs()


def test_fresh_channel_backfills_filler_and_starts_programs_from_now(media: Path) -> None:
    """The playlist opens with a window of filler (never empty), but a program waiting at start-up
    starts at the start time, not a window earlier where a viewer joining now would miss its
    opening; and the channel's first media segment carries no discontinuity."""
    spool = media / "spool"
    spool.mkdir()
    shutil.copytree(media / "b", spool / "ready")  # there before the channel starts
    d = Driver(media, schedule(media, "spool: spool\n"))
    d.start(T0)
    segs = d.playout.playlist.segments
    assert segs and all(s.program == "filler" for s in segs)  # the backfilled window
    assert segs[0].pdt_s < T0
    d.run(6)
    first = next(s for s in d.playout.playlist.segments if s.program == "spool/ready")
    assert first.pdt_s >= T0
    assert d.programs() == ["filler", "spool/ready", "filler"]
    assert d.aired[0][2] is False, "the first media segment follows nothing: no discontinuity"


def test_spool_folder_copied_file_by_file_waits_until_whole(media: Path) -> None:
    """``cp -r`` into a live spool fills the folder a file at a time (the manifest may come
    first): it is not refused half-copied, it airs once whole. A folder that stays broken is
    refused once it has stopped changing."""
    spool = media / "spool"
    spool.mkdir()
    d = Driver(media, schedule(media, "spool: spool\n"))
    d.start(T0)
    d.run(2)
    src, dst = media / "b", spool / "copied"
    dst.mkdir()
    files = sorted(p.name for p in src.iterdir())
    files.remove("manifest.json")
    shutil.copy2(src / "manifest.json", dst / "manifest.json")  # the manifest first
    for name in files:
        d.run(1)  # a slow copy: a second a file, longer than the settle time in all
        shutil.copy2(src / name, dst / name)
    d.run(6)
    assert "spool/copied" in d.programs(), d.programs()
    assert not [e for e in d.playout.errors if "copied" in e["message"]], d.playout.errors
    assert (spool / "copied").is_dir()
    # a folder whose manifest lists a media segment that never comes: refused once settled
    broken = spool / "broken"
    shutil.copytree(src, broken)
    seg = next(p for p in sorted(broken.iterdir()) if p.suffix == ".ts")
    seg.unlink()
    d.run(2)
    assert not (spool / ".broken.refused").exists(), "refused while it could still be arriving"
    d.run(4)
    assert (spool / ".broken.refused").is_dir()
    assert any("broken" in e["message"] and "missing" in e["message"] for e in d.playout.errors)


def test_an_after_entry_behind_a_far_off_one_is_not_rendered_before_its_lead(media: Path) -> None:
    """An `after: previous` entry given as a segment.yaml airs no sooner than the timed entry
    before it: its render waits for that one's render_lead_s (it started at once, hours early)."""

    class Job:
        def poll(self) -> bool:
            return False

        def terminate(self) -> None:
            pass

    class Renderer:
        def __init__(self) -> None:
            self.asked: list[Path] = []

        def render_ahead(self, spec_path: Path, out_dir: Path) -> Job:
            self.asked.append(out_dir)
            return Job()

    (media / "later.yaml").write_text("{}\n")
    for ahead_s, rendered in ((3600, False), (300, True)):
        body = f"render_lead_s: 600\nentries:\n  - {{name: far, at: '{at(ahead_s)}', segment: b}}\n"
        body += "  - {name: later, after: previous, spec: later.yaml}\n"
        r = Renderer()
        d = Driver(media, schedule(media, body), out=f"out{ahead_s}", renderer=r)
        d.start(T0)
        d.run(1)
        assert bool(r.asked) is rendered, (ahead_s, r.asked)


def test_a_spool_render_that_stops_on_air_is_waited_for_and_goes_on(media: Path, caplog) -> None:
    """The render service restarted (or crashed) while its program aired: the program was
    refused as 'removed from the spool while it aired', and aired again from its start once the
    service resumed it (a review). It now waits on filler, as for a slow render, and goes on
    where it was when its render resumes."""
    spool, d = _spool_channel(media)
    rendering = hold_render_lock(spool / "talk")
    part = make_partial(media / "a", spool / ".talk.partial", finished=2)
    d.run(2.5)
    assert d.programs()[-1] == "spool/talk", d.programs()
    os.close(rendering)  # the service stopped, kill -9 or restart
    with caplog.at_level(logging.WARNING):
        d.run(4)
    said = [r.getMessage() for r in caplog.records if "talk" in r.getMessage()]
    assert any("on air, it waits on filler" in m for m in said), said
    assert not [e for e in d.status()["errors"] if e["level"] == "error"], d.status()["errors"]
    rendering = hold_render_lock(spool / "talk")  # resumed: the rest of it comes
    try:
        shutil.rmtree(part)
        shutil.copytree(media / "a", spool / "talk")
        d.run(6)
    finally:
        os.close(rendering)
    assert not [e for e in d.status()["errors"] if e["level"] == "error"], d.status()["errors"]
    assert d.programs()[-4:] == ["spool/talk", "filler", "spool/talk", "filler"], d.programs()
    aired = [s for s, p, _ in d.aired if p == "spool/talk"]
    doc = json.loads((media / "a" / "manifest.json").read_text())
    # every media segment once: it went on where it was, not from its start again
    assert len(aired) == len(doc["segments"]), (len(aired), len(doc["segments"]))

"""``avatarrender new``: the scaffolded channel validates, renders through its own crontab line,
airs through its own schedule, and an existing folder is never overwritten."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import jsonschema
from PIL import Image

from avatarrender.media import ffmpeg_exe
from avatarrender.playout.engine import Playout, prepare_filler
from avatarrender.playout.schedule import load_schedule
from avatarrender.render import ProcessRenderer
from avatarrender.spec import read_yaml
from conftest import run_cli
from playout_check import check_transition, parse_live


def _frames(playlist: Path) -> int:
    r = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(playlist),
            "-map",
            "0:v",
            "-f",
            "framemd5",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    return sum(1 for ln in r.stdout.splitlines() if ln and not ln.startswith("#"))


def test_new_channel_renders_and_airs_as_it_is(tmp_path: Path) -> None:
    # in a folder whose path has a space and a % (the crontab's words are quoted: a review's
    # render line sent its log to a file named after the path's first word and never ran)
    (tmp_path / "my 100% chans").mkdir()
    chan = tmp_path / "my 100% chans" / "mychan"
    proc = run_cli("new", str(chan), "--duration-s", "2")
    assert proc.returncode == 0, proc.stderr
    assert not list(chan.parent.glob(".*partial"))

    # art drawn like the demo's: full-frame room, the character canvas, all mouths and eyes
    assert Image.open(chan / "assets/room.png").size == (1920, 1080)
    assert Image.open(chan / "assets/character/base.png").size == (600, 700)
    assert len(list((chan / "assets/character").glob("mouth_*.png"))) == 9
    # editors: the modeline is the first line and the schema beside it accepts the file
    for kind in ("segment", "schedule"):
        text = (chan / f"{kind}.yaml").read_text()
        assert text.splitlines()[0] == f"# yaml-language-server: $schema={kind}.schema.json"
        schema = json.loads((chan / f"{kind}.schema.json").read_text())
        jsonschema.validate(read_yaml(chan / f"{kind}.yaml"), schema, cls=jsonschema.Draft202012Validator)

    proc = run_cli("validate", str(chan / "segment.yaml"))
    assert proc.returncode == 0 and "2.000 s, 60 frames at 1920x1080" in proc.stdout, proc.stderr
    proc = run_cli("epg", "--schedule", str(chan / "schedule.yaml"), "-o", "-", "--hours", "1")
    assert proc.returncode == 0, proc.stderr
    assert "<display-name>mychan</display-name>" in proc.stdout
    assert "<title>Hello from mychan</title>" in proc.stdout

    # the crontab line, run as cron would (a shell), renders into the spool
    line = [ln for ln in (chan / "crontab").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(line) == 3 and " render " in line[0]
    assert all(ln.split(None, 5)[5].startswith("find ") for ln in line[1:])
    command = line[0].split(None, 5)[5].replace("\\%", "%")  # as cron hands it to sh
    subprocess.run(["sh", "-c", command], check=True, timeout=300)
    # the daily clean-ups, run now (as cron runs them: its \% is a %), leave what just rendered
    for ln in line[1:]:
        subprocess.run(["sh", "-c", ln.split(None, 5)[5].replace("\\%", "%")], check=True, timeout=60)
    assert len(list((chan / "spool").iterdir())) == 1
    summary = json.loads((chan / "render.log").read_text().splitlines()[-1])
    spooled = Path(summary["output"])
    assert spooled.parent == chan / "spool" and summary["segments"] == 2
    assert _frames(spooled / "index.m3u8") == 60

    # airs: filler (the idle loop), the schedule's entry rendered ahead, then the spool item
    out = chan / "live"
    sched = load_schedule(chan / "schedule.yaml", renders_dir=out / ".renders")
    renderer = ProcessRenderer()
    p = Playout(sched, out, filler=prepare_filler(sched, out, renderer=renderer), renderer=renderer)
    p.start(time.time())
    prev, aired = None, []
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not (
            aired.count("entry/mychan") >= 2 and any(a.startswith("spool/") for a in aired)
        ):
            p.tick(time.time())
            cur = parse_live((out / "live.m3u8").read_text())
            check_transition(prev, cur)
            seen = max((s["seq"] for s in prev.segments), default=-1) if prev else -1
            aired += [x.program for x in p.playlist.segments if x.sequence > seen]
            prev = cur
            time.sleep(0.05)
    finally:
        if p.render_job is not None:
            p.render_job.terminate()
    assert aired.count("entry/mychan") >= 2, (aired, p.errors)
    assert any(a.startswith("spool/") for a in aired), (aired, p.errors)
    assert not [e for e in p.errors if e["level"] == "error"], p.errors


def test_new_refuses_an_existing_folder(tmp_path: Path) -> None:
    mine = tmp_path / "taken"
    mine.mkdir()
    (mine / "segment.yaml").write_text("mine\n")
    proc = run_cli("new", str(mine))
    assert proc.returncode == 2
    assert str(mine) in proc.stderr and "already exists" in proc.stderr
    assert [p.name for p in mine.iterdir()] == ["segment.yaml"]
    assert (mine / "segment.yaml").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written beside it


def test_new_refuses_a_bad_name(tmp_path: Path) -> None:
    proc = run_cli("new", str(tmp_path / "my channel!"))
    assert proc.returncode == 2 and "NAME" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_stop_signal_leaves_no_half_made_channel(tmp_path: Path):
    # `new` had no handler: SIGTERM (or SIGHUP) killed it outright, no line, and its half-drawn
    # `.NAME.partial` stayed (4 of 4 tries, 1-6 s into its 7 s)
    import signal

    from procs import start_command, stop_command

    log = tmp_path / "new.log"
    proc = start_command("new", str(tmp_path / "chan"), log_path=log)
    assets, deadline = tmp_path / ".chan.partial" / "assets", time.monotonic() + 30
    while not assets.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    stop_command(proc, log, sig=signal.SIGTERM)
    assert log.read_text() == "avatarrender: stopped by SIGTERM\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.log"]

"""``avatarrender doctor``: steal arithmetic on /proc/stat readings, the verdicts and exit codes
of assess() on measured-fact sets, and the real command (short probe) with its JSON shape."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from avatarrender.doctor import assess, busy_pct, parse_proc_stat, steal_pct
from conftest import ROOT, run_cli

STAT_A = "cpu  1000 0 500 8000 100 0 0 400 0 0\ncpu0 500 0 250 4000 50 0 0 200 0 0\nintr 12345\n"
# 10 s later on 2 cores (2000 jiffies): 90 % steal, the old system's worst day
STAT_B = "cpu  1100 0 550 8030 100 0 20 2200 50 0\n"


def test_steal_from_proc_stat() -> None:
    a, b = parse_proc_stat(STAT_A), parse_proc_stat(STAT_B)
    assert a["steal"] == 400 and a["guest"] == 0
    assert steal_pct(a, b) == pytest.approx(90.0)  # guest (in user already) is not counted twice
    assert busy_pct(a, b) == pytest.approx(8.5)
    assert steal_pct(a, a) == 0.0
    short = parse_proc_stat("cpu  1 2 3 4\n")  # old kernels: fewer fields
    assert short["steal"] == 0
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1\n")


GOOD = {
    "cpu": {
        "cores": 2,
        "model": "x",
        "avx2": True,
        "steal_pct": 0.5,
        "busy_pct": 3.0,
        "steal_measured_s": 3.0,
        "loadavg_1m": 0.1,
    },
    "pillow": {"version": "12.1.1.post0", "simd": True, "error": None, "alpha_composite_1080p_ms": 2.0},
    "ffmpeg": {"path": "/x/ffmpeg", "version": "ffmpeg 9", "libx264": True, "x264_core": 165, "error": None},
    "pyav": {"version": "18.1.0", "x264_core": 165, "error": None},
    "disk": [{"role": "output", "path": "/srv/live", "free_bytes": 80e9, "hours_at_maxrate": 30.0}],
    "probe": {
        "preset": "1080p30",
        "width": 1920,
        "height": 1080,
        "fps": "30",
        "x264_preset": "veryfast",
        "duration_s": 10.0,
        "frames": 300,
        "jobs": 2,
        "wall_s": 8.0,
        "render_fps": 37.5,
        "realtime_factor": 1.25,
        "steady_realtime_factor": 1.5,
        "steal_pct": 0.3,
    },
}


def facts(**changes) -> dict:
    f = copy.deepcopy(GOOD)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = f
        for p in parents:
            node = node[p]
        node[last] = value
    return f


def checks(report: dict) -> dict[str, str]:
    return {p["check"]: p["severity"] for p in report["problems"]}


def test_a_good_machine() -> None:
    r = assess(facts())
    assert (r["verdict"], r["ok"], r["exit_code"], r["problems"]) == ("ok", True, 0, [])
    assert "1.50 times faster than air time" in r["summary"]
    assert "can keep a 24/7 channel fed" in r["summary"] and "33 %" in r["summary"]


@pytest.mark.parametrize(
    "steady,verdict,code,words",
    [
        (1.1, "tight", 0, "but only just"),
        (0.8, "cannot-keep-up", 1, "cannot keep a 24/7 channel fed"),
        (None, "cannot-keep-up", 1, "start-up included"),  # no steady figure: the whole render's 0.9
    ],
)
def test_speed_verdicts(steady, verdict, code, words) -> None:
    f = facts(probe__steady_realtime_factor=steady)
    if steady is None:
        f["probe"]["realtime_factor"] = 0.9
    r = assess(f)
    assert (r["verdict"], r["exit_code"]) == (verdict, code)
    assert words in r["summary"]
    assert checks(r)["speed"] == ("error" if code else "warning")


def test_no_avx2_says_so_with_the_fix() -> None:
    r = assess(facts(cpu__avx2=False))
    p = next(p for p in r["problems"] if p["check"] == "avx2")
    assert "no AVX2" in p["message"] and "AVX2" in p["fix"]
    assert r["exit_code"] == 0  # fast enough anyway: a warning, not a failure


def test_stock_pillow_is_broken_with_the_fix() -> None:
    r = assess(facts(pillow__error="stock pillow 11.0 is installed beside Pillow-SIMD", pillow__simd=False))
    assert (r["verdict"], r["exit_code"]) == ("broken", 1)
    p = next(p for p in r["problems"] if p["check"] == "pillow")
    assert "pillow-simd" in p["fix"] and "-mavx2" in p["fix"]


def test_pillow_without_libraqm_is_a_warning_with_the_fix() -> None:
    """A wheel install can build Pillow-SIMD without libraqm: Arabic captions are then drawn
    unjoined; the doctor said "ok"."""
    r = assess(facts(pillow__raqm=False))
    p = next(p for p in r["problems"] if p["check"] == "pillow")
    assert p["severity"] == "warning" and "libraqm" in p["message"] and "libraqm-dev" in p["fix"]
    assert not [p for p in assess(facts(pillow__raqm=True))["problems"] if p["check"] == "pillow"]


def test_slow_compositing_means_a_build_without_avx2() -> None:
    r = assess(facts(pillow__alpha_composite_1080p_ms=16.0))
    assert checks(r) == {"pillow": "warning"} and r["exit_code"] == 0


@pytest.mark.parametrize(
    "change,check,severity",
    [
        ({"cpu__steal_pct": 90.0}, "steal", "warning"),
        ({"cpu__busy_pct": 80.0}, "load", "warning"),
        ({"ffmpeg__libx264": False}, "ffmpeg", "error"),
        ({"pyav__x264_core": 164}, "x264", "warning"),
        ({"pyav__error": "no libx264"}, "pyav", "error"),
    ],
)
def test_other_checks(change, check, severity) -> None:
    r = assess(facts(**change))
    assert checks(r)[check] == severity
    assert r["exit_code"] == (1 if severity == "error" else 0)


def test_low_disk_and_no_probe() -> None:
    f = facts(probe=None)
    f["disk"][0].update(free_bytes=2e9, hours_at_maxrate=0.7)
    r = assess(f)
    assert (r["verdict"], r["exit_code"]) == ("unknown", 0)
    assert checks(r) == {"disk": "warning"} and "/srv/live" in r["problems"][0]["message"]


def test_a_full_disk_is_an_error() -> None:
    """A review: 0 bytes free on the output and spool said 'ok ... can keep a 24/7 channel fed',
    exit 0 (monitoring reads the exit code)."""
    f = facts()
    f["disk"][0].update(free_bytes=0, hours_at_maxrate=0.0)
    r = assess(f)
    assert checks(r)["disk"] == "error" and r["exit_code"] == 1 and r["verdict"] != "ok"


@pytest.mark.parametrize(
    "role,kind,bad", [("spool", "missing", True), ("output", "missing", False), ("output", "file", True)]
)
def test_a_spool_that_is_not_there_or_a_file_for_a_folder_is_an_error(role, kind, bad) -> None:
    """What the playout and a render would refuse is an error (exit 1), not "51.8 GB free";
    an output not made yet is fine (a render makes it)."""
    f = facts()
    f["disk"] = [dict(f["disk"][0], role=role, path="/srv/x", kind=kind)]
    r = assess(f)
    assert (checks(r).get("disk") == "error") == bad and r["exit_code"] == (1 if bad else 0)
    if bad:
        assert "/srv/x" in r["problems"][0]["message"]
        # the install is fine: the verdict says what is wrong, not "broken"
        assert r["verdict"] == "wrong-folder" and "A folder it was given is wrong" in r["summary"]


def test_the_command_json_shape_and_exit_code(tmp_path: Path) -> None:
    proc = run_cli(
        "doctor",
        "--json",
        "--probe-s",
        "1",
        "--steal-s",
        "0.2",
        "--output",
        str(tmp_path / "not-yet" / "out"),
        "--spool",
        str(tmp_path),
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == report["exit_code"] == (0 if report["ok"] else 1), proc.stderr
    assert set(report) >= {
        "cpu",
        "pillow",
        "ffmpeg",
        "pyav",
        "disk",
        "probe",
        "verdict",
        "ok",
        "exit_code",
        "summary",
        "problems",
    }
    assert report["verdict"] in ("ok", "tight", "cannot-keep-up")
    cpu = report["cpu"]
    assert cpu["cores"] >= 1 and isinstance(cpu["avx2"], bool) and 0 <= cpu["steal_pct"] <= 100
    assert report["pillow"]["simd"] and report["pillow"]["alpha_composite_1080p_ms"] > 0
    assert report["ffmpeg"]["libx264"] and report["ffmpeg"]["x264_core"] >= 100
    assert report["pyav"]["x264_core"] == report["ffmpeg"]["x264_core"]  # the pinned pair
    assert [d["role"] for d in report["disk"]] == ["output", "spool"]
    assert all(d["free_bytes"] > 0 for d in report["disk"])
    assert "silent" not in proc.stderr, proc.stderr  # its own probe's placeholder speech
    probe = report["probe"]
    assert (probe["width"], probe["height"], probe["frames"]) == (1920, 1080, 30)
    assert probe["realtime_factor"] > 0 and "air time" in report["summary"]
    for p in report["problems"]:
        assert set(p) == {"severity", "check", "message", "fix"} and p["fix"]


def test_the_command_finds_stock_pillow(tmp_path: Path) -> None:
    """A stock pillow distribution beside Pillow-SIMD (as `pip install matplotlib` leaves it):
    the doctor says the install is broken, with the fix, and exits 1 (no probe is run)."""
    dist = tmp_path / "pillow-11.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pillow\nVersion: 11.0.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    proc = run_cli("doctor", "--probe-s", "1", "--steal-s", "0", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verdict   broken" in proc.stdout
    assert "stock pillow 11.0.0" in proc.stdout and "fix: pip uninstall -y pillow" in proc.stdout


def test_a_stop_signal_during_the_probe_leaves_nothing(tmp_path: Path) -> None:
    # doctor had no handler: SIGTERM or SIGHUP killed it outright, no line, and its probe's
    # folder (avatarrender-doctor-*, a render and its scene) stayed in /tmp (4 of 4 tries)
    import signal
    import subprocess
    import sys
    import time

    from procs import stop_command

    tmp, log = tmp_path / "tmp", tmp_path / "doctor.log"
    tmp.mkdir()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from cli.main import main; main()", "doctor", "--probe-s", "2"]
            + ["--steal-s", "0", "--jobs", "2", "--output", str(tmp_path)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    deadline = time.monotonic() + 60  # once the probe's scene is being drawn
    while not list(tmp.glob("avatarrender-doctor-*/assets")) and proc.poll() is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    stop_command(proc, log, sig=signal.SIGHUP)
    assert log.read_text() == "avatarrender: stopped by SIGHUP\n"
    assert list(tmp.iterdir()) == []

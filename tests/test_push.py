"""Restream (--push): the aired media, not re-encoded, reach a real RTMP server (Debian's nginx
with libnginx-mod-rtmp on a free loopback port, recording what it receives) and play
continuously across a programme change and across a forced restart of the ingest, while the HLS
output keeps time; the stream key appears in no log line and no status."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import signal
import socket
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from avatarrender.media import ffmpeg_exe
from avatarrender.playout.engine import Playout
from avatarrender.playout.push import Pusher, push_command, redact
from avatarrender.playout.schedule import load_schedule
from conftest import run_cli
from playout_media import make_rendered
from procs import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
KEY = "sk-live-7f3a9c2e"


def test_redaction() -> None:
    assert redact("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl") == "rtmp://a.rtmp.youtube.com/live2/***"
    assert (
        redact("rtmps://live.twitch.tv:443/app/live_123_Xyz?bandwidthtest=true")
        == "rtmps://live.twitch.tv:443/app/***?bandwidthtest=true"
    )
    shown = redact("srt://ingest.example:9000?streamid=%23%21%3A%3Ar%3Dlive%2FKEY9&passphrase=hunter2hunter2")
    assert "KEY9" not in shown and "hunter2" not in shown and shown.startswith("srt://ingest.example:9000?")
    assert redact("rtmp://bob:s3cret@host/app/k3y") == "rtmp://bob:***@host/app/***"
    assert push_command("ffmpeg", "srt://h:9000?streamid=x")[-3:] == [
        "-f",
        "mpegts",
        "srt://h:9000?streamid=x",
    ]
    cmd = push_command("ffmpeg", "rtmp://h/app/k")
    assert cmd[cmd.index("-c") + 1] == "copy" and cmd[-3:-1] == ["-f", "flv"]


def test_cli_refuses_a_bad_url(tmp_path: Path) -> None:
    proc = run_cli("playout", "--out", str(tmp_path / "out"), "--push", f"http://host/app/{KEY}")
    assert proc.returncode == 2 and "--push" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout


class Ingest:
    """nginx-rtmp on loopback, recording each publishing session to its own FLV file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rec = folder / "rec"
        self.rec.mkdir(parents=True)
        self.port = free_port()
        self.conf = folder / "nginx.conf"
        self.conf.write_text(f"""
load_module {RTMP_MODULE};
daemon off;
master_process off;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.port};
    application live {{ live on; record all; record_path {self.rec}; record_unique on; }}
  }}
}}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(self.conf), "-p", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.folder / "error.log").read_text()
                time.sleep(0.05)
        raise AssertionError("nginx-rtmp did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # an ingest that drops dead, mid-stream
            self.proc.wait(10)


def _frames(path: Path, stream: str) -> tuple[list[int], Fraction]:
    """Presentation times of every frame of ``stream`` (v or a) as the file carries them (FLV:
    milliseconds), in order, and their time base; the frames also decode, all of them."""
    import av

    r = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:{stream}:0",
            "-f",
            "framemd5",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    decoded = sum(1 for ln in r.stdout.splitlines() if ln and not ln.startswith("#"))
    with av.open(str(path)) as c:
        st = c.streams.video[0] if stream == "v" else c.streams.audio[0]
        pts = sorted(p.pts for p in c.demux(st) if p.pts is not None and p.size)
        tb = st.time_base
    assert abs(decoded - len(pts)) <= 1, (path.name, stream, decoded, len(pts))  # a cut last one
    return pts, Fraction(tb)


def _thumbs(path: Path) -> np.ndarray:
    r = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-vf",
            "scale=8:8",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return np.frombuffer(r.stdout, np.uint8).reshape(-1, 8 * 8 * 3).astype(np.int32)


def _continuous(path: Path) -> int:
    """Assert both streams of a recording play on without a jump; return its video frames.

    The aired stream itself (the playout's timestamp rewriter) leaves steps where programmes and
    filler loops join (no stream may overlap what aired): up to about two frames at a segment
    boundary, and up to one AAC frame (21 ms: the media has one PES per AAC frame, and the one
    that starts before the cut is carried) where a program cuts the filler at an LL-HLS part
    boundary. A jump back, a repeat or a longer gap would be a break of another kind.
    """
    pts, tb = _frames(path, "v")
    steps_ms = [float((b - a) * tb) * 1000 for a, b in zip(pts, pts[1:])]
    assert steps_ms and 33 <= min(steps_ms) and max(steps_ms) < 100, (path.name, sorted(set(steps_ms)))
    assert sum(s > 34 for s in steps_ms) <= len(steps_ms) // 20  # joins only, not everywhere
    apts, atb = _frames(path, "a")
    asteps_ms = [float((b - a) * atb) * 1000 for a, b in zip(apts, apts[1:])]
    assert min(asteps_ms) > 0 and max(asteps_ms) < 100, (path.name, sorted(set(asteps_ms)))
    assert abs(float((pts[-1] - pts[0]) * tb) - float((apts[-1] - apts[0]) * atb)) < 0.2
    return len(pts)


@pytest.mark.skipif(
    not (Path(NGINX).exists() and RTMP_MODULE.exists()),
    reason="needs Debian's nginx and libnginx-mod-rtmp (scripts/setup.sh --test)",
)
def test_push_to_rtmp_across_programme_change_and_ingest_restart(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="avatarrender.playout.push")
    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    make_rendered(tmp_path / "a", pattern="testsrc", seconds=3.5)
    make_rendered(tmp_path / "b", pattern="bars", seconds=2)
    refs = {k: _thumbs(tmp_path / k / "index.m3u8") for k in ("filler", "a", "b")}

    def label(thumb: np.ndarray) -> str:
        return min(refs, key=lambda k: np.abs(refs[k] - thumb).sum(axis=1).min())

    ingest = Ingest(tmp_path / "ingest")
    ingest.start()
    start = time.time()
    sched = tmp_path / "schedule.yaml"
    at_a = dt.datetime.fromtimestamp(start + 4, tz=dt.timezone.utc).isoformat()
    sched.write_text(
        "filler: {dir: filler}\nlate: {max_late_s: 30}\n"
        f'entries:\n  - {{name: a, at: "{at_a}", segment: a}}\n'
        "  - {name: b, after: previous, segment: b}\n"
    )
    p = Playout(load_schedule(sched), tmp_path / "out", filler=tmp_path / "filler")
    pusher = Pusher(f"rtmp://127.0.0.1:{ingest.port}/live/{KEY}", backoff_s=(0.5, 1, 1), stable_s=5)
    p.publish_hooks.append(pusher.offer)
    p.status_extras["push"] = pusher.status
    pusher.start()
    p.start(start)
    worst_lag_s = 0.0
    statuses = []

    def run_until(done, timeout_s: float) -> None:
        nonlocal worst_lag_s
        deadline = time.time() + timeout_s
        while time.time() < deadline and not done():
            p.tick(time.time())
            # the HLS output keeps time whatever the ingest does: everything due is published
            worst_lag_s = max(worst_lag_s, time.time() - float(p.next_due_s))
            statuses.append((p.out / "status.json").read_text())
            time.sleep(0.05)

    try:
        programmes = lambda: [s.program for s in p.playlist.segments]  # noqa: E731
        run_until(lambda: "entry/b" in programmes() and programmes()[-3:] == ["filler"] * 3, 60)
        assert pusher.status()["state"] == "live", pusher.status()
        sent_before = pusher.sent
        ingest.kill()
        run_until(lambda: pusher.status()["state"] == "retrying", 30)
        st = pusher.status()
        assert st["state"] == "retrying" and st["warning"], st
        run_until(lambda: False, 2.5)  # down a while: connection refused, retried with backoff
        assert pusher.restarts >= 2
        ingest.start()
        run_until(lambda: pusher.status()["state"] == "live" and pusher.sent >= sent_before + 5, 40)
        assert pusher.sent >= sent_before + 5, pusher.status()
        run_until(lambda: False, 2)
    finally:
        pusher.stop()
        ingest.kill()

    assert worst_lag_s < 0.5, worst_lag_s
    files = sorted(ingest.rec.glob("*.flv"), key=lambda f: f.stat().st_mtime)
    assert len(files) >= 2, files
    # session 1: continuous through filler -> a -> b -> filler, no re-encoding needed to splice
    frames = _continuous(files[0])
    runs: list[str] = []
    for thumb in _thumbs(files[0]):
        lab = label(thumb)
        if not runs or runs[-1] != lab:
            runs.append(lab)
    assert "a" in runs and runs[runs.index("a") - 1 : runs.index("a") + 3] == [
        "filler",
        "a",
        "b",
        "filler",
    ], runs
    assert frames >= 30 * 5.5  # all of a (3.5 s) and b (2 s)
    # after the ingest came back: a new session, continuous, airing the filler again
    last = files[-1]
    assert _continuous(last) >= 60
    assert {label(t) for t in _thumbs(last)} == {"filler"}
    # the stream key: in no log line, no status, no error text
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert any("reconnecting" in r.getMessage() for r in caplog.records)
    assert all(KEY not in s for s in statuses)
    assert any(json.loads(s).get("push", {}).get("state") == "retrying" for s in statuses)
    assert KEY not in json.dumps(pusher.status())


def test_unreachable_ingest_never_holds_up_the_caller(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="avatarrender.playout.push")
    src = make_rendered(tmp_path / "src", pattern="testsrc", seconds=2)
    segs = sorted(src.glob("*.ts"))
    pusher = Pusher(
        f"rtmp://127.0.0.1:{free_port()}/live/{KEY}", backoff_s=(0.2, 0.4), queue_segments=3
    ).start()
    try:
        for i in range(200):  # far more than it can take: offer() drops, it does not wait
            pusher.offer(segs[i % len(segs)])
        st = pusher.status()
        assert st["queued"] <= 3 and st["dropped_segments"] >= 197 - 3
        deadline = time.time() + 60
        while time.time() < deadline and pusher.restarts < 2:
            pusher.offer(segs[0])  # ffmpeg needs input before it tries to connect
            time.sleep(0.2)
        st = pusher.status()
        assert pusher.restarts >= 2 and st["last_error"], st
        assert KEY not in json.dumps(st)
    finally:
        pusher.stop()
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert any("reconnecting" in r.getMessage() for r in caplog.records)


def test_push_over_srt_to_an_ffmpeg_listener(tmp_path: Path) -> None:
    """srt:// goes out as MPEG-TS, not re-encoded: an ffmpeg SRT listener receives every frame."""
    src = make_rendered(tmp_path / "src", pattern="testsrc", seconds=3)
    port = free_port()
    got = tmp_path / "got.ts"
    listener = subprocess.Popen(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "mpegts",
            "-i",
            f"srt://127.0.0.1:{port}?mode=listener&timeout=30000000",
            "-c",
            "copy",
            "-f",
            "mpegts",
            str(got),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20  # SRT is UDP: wait until the listener's socket is bound
    while time.time() < deadline and f":{port:04X} " not in Path("/proc/net/udp").read_text():
        assert listener.poll() is None
        time.sleep(0.05)
    pusher = Pusher(f"srt://127.0.0.1:{port}?streamid={KEY}", backoff_s=(0.3,)).start()
    try:
        for seg in sorted(src.glob("*.ts")):
            pusher.offer(seg)
        deadline = time.time() + 30
        while time.time() < deadline and not (pusher.sent == 3 and pusher.state == "live"):
            time.sleep(0.1)
        assert pusher.sent == 3 and pusher.restarts == 0, pusher.status()
        assert KEY not in json.dumps(pusher.status())
    finally:
        pusher.stop()  # closes ffmpeg's input: the stream ends cleanly
        try:
            listener.wait(30)
        except subprocess.TimeoutExpired:
            listener.kill()
            listener.wait()
    pts, tb = _frames(got, "v")
    # continuous (90 kHz, 30 fps); closing the SRT connection at stop may cut the last frames
    assert len(pts) >= 85 and {b - a for a, b in zip(pts, pts[1:])} == {3000}, len(pts)

"""The warm render service: submissions rendered into a spool, bad ones reported, signals, resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avatarrender.service import read_submission, submit
from avatarrender.errors import SpecError

from conftest import make_slow_segment, make_tiny_segment
from media_check import frame_hashes
from test_chunks import _cli, _descendants, _published, _wait_for


def _serve(inbox: Path, spool: Path, *extra: str) -> subprocess.Popen:
    log = open(inbox.parent / f"serve-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(
        _cli("serve", "--inbox", str(inbox), "--spool", str(spool), "--jobs", "2", *extra),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _submit(yml: Path, inbox: Path, name: str) -> None:
    res = subprocess.run(
        _cli("submit", str(yml), "--inbox", str(inbox), "--name", name),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def _alive(pids: list[int]) -> list[int]:
    return [
        p
        for p in pids
        if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes().lower()
    ]


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    tree = _descendants(proc.pid)
    os.kill(proc.pid, sig)
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(tree) == [], "processes left behind"
    return code


def test_submission_file_names_spec_and_spool_name(tmp_path):
    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False)
    path = submit(yml, tmp_path / "inbox", name="talk-1")
    sub = read_submission(path)
    assert sub.spec == yml.resolve() and sub.name == "talk-1"
    with pytest.raises(SpecError, match="already waiting"):
        submit(yml, tmp_path / "inbox", name="talk-1")
    with pytest.raises(SpecError, match="name"):
        submit(yml, tmp_path / "inbox", name="../escape")
    with pytest.raises(SpecError, match="no such segment.yaml"):
        submit(tmp_path / "missing.yaml", tmp_path / "inbox")


def test_service_renders_submissions_and_goes_on_after_a_bad_one(tmp_path):
    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    inbox.mkdir()
    (inbox / "broken.yaml").write_text("scene: [unclosed\n")
    (inbox / ".done").mkdir()  # rendered 8 days and 6 days ago: the first is pruned
    for name, days in (("old.submit", 8), ("recent.submit", 6)):
        (inbox / ".done" / name).write_text("{}")
        os.utime(inbox / ".done" / name, (time.time() - days * 86400,) * 2)
    proc = _serve(inbox, spool)
    try:
        err = _wait_for(
            lambda: (inbox / "broken.error").is_file() and (inbox / "broken.error").read_text(),
            what="the bad submission's .error",
        )
        assert "broken.yaml" in err and len(err.strip().splitlines()) == 1, err
        assert (inbox / ".failed" / "broken.yaml").is_file()
        assert not (spool / "broken").exists()
        # the service goes on: a good submission renders into the spool, as render --into would
        yml = make_tiny_segment(tmp_path / "seg")
        _submit(yml, inbox, "good")
        _wait_for(lambda: (spool / "good" / "manifest.json").is_file(), what="the render in the spool")
        status = _wait_for(
            lambda: json.loads((inbox / ".status.json").read_text())["done"], what="status listing the render"
        )
        assert status[-1]["name"] == "good"
        failed = json.loads((inbox / ".status.json").read_text())["failed"]
        assert "broken.yaml" in failed[-1]["error"]
    finally:
        code = _stop(proc)
    assert code == 143
    assert json.loads((spool / "good" / "manifest.json").read_text())["complete"] is True
    # what 'render --into' with the service's short first segment gives, frame for frame
    from avatarrender.render import render
    from avatarrender.spec import load_spec

    from avatarrender.service import RenderService

    lead = RenderService(inbox, spool).lead_frames  # the service's default, as started above
    ref = render(load_spec(yml), tmp_path / "ref", jobs=1, lead_frames=lead)
    assert [s["frames"] for s in ref["segments"]][0] == lead
    assert frame_hashes(spool / "good" / "index.m3u8") == frame_hashes(tmp_path / "ref" / "index.m3u8")
    assert (inbox / ".done" / "good.submit").is_file() and not (inbox / "good.submit").exists()
    assert time.time() - (inbox / ".done" / "good.submit").stat().st_mtime < 600
    assert sorted(p.name for p in (inbox / ".done").iterdir()) == ["good.submit", "recent.submit"]
    # a restarted service still reports the failure its .error records
    assert [f["file"] for f in RenderService(inbox, spool).failed] == [failed[-1]["file"]]
    # a name in the spool is taken (on air, it would be swapped mid-program; aired, never aired)
    with pytest.raises(SpecError, match="in the spool already"):
        submit(yml, inbox, name="good")
    # a name that failed is tried again when submitted again (it waited forever, silently)
    submit(yml, inbox, name="broken")
    assert not (inbox / "broken.error").exists()
    assert [p.name for p in RenderService(inbox, spool).pending()] == ["broken.submit"]


def test_service_warms_a_scene_at_launch_out_of_the_playouts_sight(tmp_path):
    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    inbox.mkdir()
    # a bad --warm spec stops the service before it starts anything, naming the file and field
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration_s: soon\n")
    res = subprocess.run(
        _cli("serve", "--inbox", str(inbox), "--spool", str(spool), "--warm", str(bad)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert "bad.yaml" in res.stderr and "duration_s" in res.stderr, res.stderr
    assert not spool.exists()  # refused before anything was made
    # a good one: its first seconds are rendered where the playout does not look (a hidden
    # folder without .partial, see engine._poll_spool), then thrown away
    yml = make_tiny_segment(tmp_path / "seg")
    from avatarrender.service import _HOST

    spool.mkdir()
    stale = spool / f".warm-up-{_HOST}-999999999"  # left by a service killed mid warm-up
    (stale / "scene.partial").mkdir(parents=True)
    alive = spool / f".warm-up-{_HOST}-{os.getpid()}"  # a live process's (this test's): kept
    alive.mkdir()
    proc = _serve(inbox, spool, "--warm", str(yml))
    seen: set[str] = set()
    try:
        log = next(tmp_path.glob("serve-*.log"))

        def up() -> bool:
            if spool.is_dir():
                seen.update(os.listdir(spool))
            return "watching" in log.read_text()

        _wait_for(up, what="the service to watch its inbox")
        text = log.read_text()
        assert f"scene of {yml} warm" in text and "warning" not in text, text  # a cut: quiet
        assert seen and all(n.startswith(".warm-up-") and not n.endswith(".partial") for n in seen), seen
        assert os.listdir(spool) == [alive.name]  # nothing left for the playout, nor stale
        alive.rmdir()
        _submit(yml, inbox, "after")
        _wait_for(lambda: (spool / "after" / "manifest.json").is_file(), what="the render in the spool")
    finally:
        assert _stop(proc) == 143


# systemd's stop (a closed session's SIGHUP and Ctrl-C's SIGINT take the same handler:
# test_robust's stop-signal tests of render; 20-30 s more of the suite each)
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)])
def test_service_stopped_mid_render_leaves_no_process_and_resumes(tmp_path, sig, code):
    yml = make_slow_segment(tmp_path / "seg", speech_s=8.0)
    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    submit(yml, inbox, name="slow")
    proc = _serve(inbox, spool, "--chunk-segments", "1")
    part = spool / ".slow.partial"
    try:
        _wait_for(lambda: _published(part) >= 2, what="2 published segments")
    finally:
        assert _stop(proc, sig) == code
    done_before = _published(part)
    assert (inbox / "slow.submit").is_file()  # still waiting: it is resumed
    proc = _serve(inbox, spool, "--chunk-segments", "1")
    try:
        _wait_for(lambda: (spool / "slow" / "manifest.json").is_file(), what="the resumed render")
    finally:
        _stop(proc)
    man = json.loads((spool / "slow" / "manifest.json").read_text())
    assert man["complete"] and man["render"]["chunks_reused"] >= done_before


_ENTRY = """import sys
from avatarrender._cli import main
try:
    main()
finally:
    print(sorted(m for m in ('numpy', 'typer', 'pydantic') if m in sys.modules), file=sys.stderr)
"""


def _entry(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The console script's own entry point (``avatarrender._cli:main``), as installed."""
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_submit_command_is_answered_without_the_cli_framework(tmp_path):
    """``avatarrender submit`` runs on the way from a new segment to the screen: it writes the
    same submission as the library call without importing typer, pydantic or numpy, and any
    usage it does not plainly understand is left to the full CLI's error."""
    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False)
    inbox = tmp_path / "inbox"
    r = _entry("submit", str(yml), "--inbox", str(inbox), "--name=quick-1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "quick-1" and r.stderr.splitlines()[-1] == "[]"
    assert "warning: no render service has run on" in r.stderr  # nobody watches this inbox
    sub = read_submission(inbox / "quick-1.submit")
    assert sub.spec == yml.resolve() and sub.name == "quick-1"
    # the same error line and code as the library's refusal, still without the framework
    r = _entry("submit", str(yml), "--inbox", str(inbox), "--name", "quick-1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines()[0].startswith("avatarrender: error: ")
    assert "already waiting" in r.stderr and r.stderr.splitlines()[-1] == "[]"
    # usage errors and --help: the typer app answers (and was loaded to do so)
    r = _entry("submit", str(yml), cwd=tmp_path)
    assert r.returncode == 2 and "Missing option '--inbox'" in r.stderr and "typer" in r.stderr
    r = _entry("submit", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--inbox" in r.stdout and "--name" in r.stdout
    r = _entry("submit", str(yml), "--inbox", str(inbox), "--bogus", cwd=tmp_path)
    assert r.returncode == 2 and "--bogus" in r.stderr
    assert sorted(p.name for p in inbox.iterdir()) == ["quick-1.submit"]


def test_a_withdrawn_submission_stops_its_render_and_the_service_goes_on(tmp_path):
    """Removing NAME.submit while it renders stops the render (what it published is marked
    failed, so a playout refuses the rest at once) and the service goes on; it crashed when
    the render ended and moved the missing file. A render of the name that another process
    holds the lock of is not marked failed by this one, and submit refuses such a name."""
    import fcntl

    from avatarrender.rendition import partial_path
    from avatarrender.service import RenderService

    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    spool.mkdir()
    yml = make_tiny_segment(tmp_path / "seg", duration_s=4.0)
    service = RenderService(inbox, spool, jobs=1, chunk_segments=1)
    path = submit(yml, inbox, name="talk")
    calls = []

    def withdraw(done: int, total: int) -> None:
        calls.append(done)
        path.unlink(missing_ok=True)  # the operator's rm, as the first media segment is out

    assert service.render_one(path, progress=withdraw) is None
    assert len(calls) == 1 and not (spool / "talk").exists()
    assert (partial_path(spool / "talk", hidden=True) / "FAILED").is_file()
    assert "removed while it rendered" in service.failed[-1]["error"]
    assert not (inbox / "talk.error").exists() and not (inbox / ".failed" / "talk.submit").exists()
    submit(yml, inbox, name="talk")  # a new try under the name: taken (its failed partial is no render)
    (inbox / "talk.submit").unlink()
    # another render (render --into) holds the name: refused, and its folder left alone
    other = partial_path(spool / "news", hidden=True)
    other.mkdir()
    fd = os.open(spool / ".news.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(SpecError, match="being rendered"):
            submit(yml, inbox, name="news")
        path = inbox / "news.submit"
        path.write_text(json.dumps({"spec": str(yml.resolve()), "name": "news"}) + "\n")
        assert service.render_one(path) is None
        assert "another render" in service.failed[-1]["error"]
        assert not (other / "FAILED").exists()
    finally:
        os.close(fd)


def test_a_submission_to_an_inbox_no_service_watches_is_a_warning(tmp_path):
    """Into a mistyped inbox, or one whose service is down, a submission waits unseen: the
    command says so (it exited 0 in silence)."""
    from avatarrender.service import STATUS_NAME, _HOST, unwatched

    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False)
    inbox = tmp_path / "typo-inbox"
    res = subprocess.run(
        _cli("submit", str(yml), "--inbox", str(inbox), "--name", "x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and res.stdout.strip() == "x"
    assert "warning" in res.stderr and "no render service has run on" in res.stderr, res.stderr
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (inbox / STATUS_NAME).write_text(json.dumps({"pid": dead.pid, "host": _HOST}))
    assert "is not running" in unwatched(inbox)
    # a status whose pid another process has taken since (a service that was a container's pid
    # 1, killed: /proc/1 is then the reader's own init), or written under another host name (a
    # sidecar container sharing the inbox): both were taken for a live service
    (inbox / STATUS_NAME).write_text(json.dumps({"pid": os.getpid(), "host": _HOST}))
    assert "is not running" in unwatched(inbox)
    (inbox / STATUS_NAME).write_text(json.dumps({"pid": dead.pid, "host": "sidecar"}))
    assert "is not running" in unwatched(inbox)
    from avatarrender.rendition import FolderLock

    hold = FolderLock(inbox / ".lock", keep=True)  # what a running service holds
    try:
        assert unwatched(inbox) is None
    finally:
        hold.release()
    assert "is not running" in unwatched(inbox)


def _one_submission(tmp_path):
    """(inbox, spool, segment.yaml, a RenderService on them, the submission file of "talk")."""
    from avatarrender.service import RenderService

    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    spool.mkdir()
    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False, duration_s=1.0)
    service = RenderService(inbox, spool, jobs=1)
    return inbox, spool, yml, service, submit(yml, inbox, name="talk")


def test_a_full_disk_keeps_the_submission_for_another_try(tmp_path, monkeypatch):
    """A full spool is not the submission's fault: it stays in the inbox, not in .failed, and
    renders once there is room (it was failed for good, with all its segments rendered)."""
    import avatarrender.render as render_module
    from avatarrender.errors import DiskFullError

    inbox, spool, yml, service, path = _one_submission(tmp_path)
    real = render_module.render

    def full(*args, **kwargs):
        raise DiskFullError(f"{spool}: no space left on the disk")

    monkeypatch.setattr(render_module, "render", full)
    assert service.render_one(path) is None
    assert path.is_file() and not (inbox / "talk.error").exists() and not service.failed
    assert service._full_until > time.monotonic()  # not tried again at once
    monkeypatch.setattr(render_module, "render", real)
    assert service.render_one(path)["complete"] and (spool / "talk" / "manifest.json").is_file()


def test_done_submissions_are_pruned_hourly_whatever_the_wall_clock_does(tmp_path, monkeypatch):
    """INBOX/.done/ is pruned once an hour: an hour measured by the wall clock, which a step
    back stopped for as long as it went back (a review); by the monotonic clock now."""
    import avatarrender.service as service

    done = tmp_path / "inbox" / ".done"
    done.mkdir(parents=True)
    svc = service.RenderService(tmp_path / "inbox", tmp_path / "spool")
    wall, mono = [2_000_000_000.0], [1000.0]
    monkeypatch.setattr(service.time, "time", lambda: wall[0])
    monkeypatch.setattr(service.time, "monotonic", lambda: mono[0])

    def old(name: str) -> Path:
        p = done / name
        p.write_text("{}")
        age = wall[0] - service.DONE_KEEP_S - 86400
        os.utime(p, (age, age))
        return p

    first = old("a.submit")
    svc._prune_done(done)
    assert not first.exists()
    wall[0] -= 86400  # the clock steps back a day
    mono[0] += 1800
    second = old("b.submit")
    svc._prune_done(done)
    assert second.exists(), "pruned twice within the hour"
    mono[0] += 1801  # an hour after the first pruning
    svc._prune_done(done)
    assert not second.exists(), "the step back stopped the pruning"


def test_a_spool_it_cannot_write_or_a_cluster_gone_holds_the_queue(tmp_path, monkeypatch):
    """A read-only spool (a remount, an NFS blip) and a Dask cluster gone (its scheduler killed)
    are the machine's state, not the submissions': all five of a queue went to .failed for good
    (a review). They wait in the inbox, said once and on the status, and render once it is back."""
    import errno

    import avatarrender.render as render_module

    inbox, spool, yml, service, path = _one_submission(tmp_path)
    real = render_module.render

    def read_only(spec, out_dir, **kwargs):
        raise render_module._not_writable(Path(out_dir), OSError(errno.EROFS, "Read-only file system"))

    monkeypatch.setattr(render_module, "render", read_only)
    assert service.render_one(path) is None
    assert path.is_file() and not (inbox / ".failed").exists() and not service.failed
    assert "Read-only file system" in json.loads((inbox / ".status.json").read_text())["held"]
    assert service._full_until > time.monotonic()

    class Gone:  # the client of a cluster whose scheduler was killed
        status = "closed"

        def close(self, timeout=None):
            pass

    def lost(spec, out_dir, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'ncores'")  # what joblib said

    service.scheduler, service._client = "tcp://127.0.0.1:9", Gone()
    monkeypatch.setattr(service, "_parallel_config", contextlib.nullcontext)
    monkeypatch.setattr(render_module, "render", lost)
    assert service.render_one(path) is None
    assert path.is_file() and not (inbox / ".failed").exists() and not service.failed
    assert "Dask cluster at tcp://127.0.0.1:9 is not reachable" in service.status()["held"]
    assert service._client is None  # made again before the next try
    assert not service._connect()  # nobody listens there: still held, no traceback
    # the same error with the cluster up is the render's own: failed as before
    service.scheduler = None
    assert service.render_one(path) is None
    assert not path.exists() and (inbox / ".failed" / "talk.submit").is_file()
    path = submit(yml, inbox, name="talk2")
    monkeypatch.setattr(render_module, "render", real)
    assert service.render_one(path)["complete"] and service.status()["held"] is None


def test_submissions_of_one_name_at_the_same_moment_one_is_taken(tmp_path):
    """Eight `submit --name same` at once: each said it was taken and one was kept (the file
    was replaced, a review). One is taken, the others refused; nothing is left beside it."""
    import threading

    from avatarrender.errors import SpecError

    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    barrier, took, refused = threading.Barrier(8), [], []

    def one(k: int) -> None:
        barrier.wait()
        try:
            took.append(submit(yml, inbox, name="same"))
        except SpecError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(took) == 1 and len(refused) == 7, (took, refused)
    assert all("already waiting" in m for m in refused)
    assert sorted(p.name for p in inbox.iterdir()) == ["same.submit"]


def test_a_submission_rewritten_while_it_renders_is_not_filed_as_rendered(tmp_path, monkeypatch):
    """An inbox NAME.yaml rewritten while it rendered: the spool got the version read at the
    start and the edit went to .done as if rendered, nothing said (a review). The edit goes to
    .failed with a line saying so; the render stands."""
    import avatarrender.render as render_module
    from avatarrender.service import RenderService

    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    inbox.mkdir()
    spool.mkdir()
    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False, duration_s=1.0)
    dropped = inbox / "ed.yaml"
    dropped.write_text(yml.read_text().replace("assets/", f"{yml.parent}/assets/"))
    service = RenderService(inbox, spool, jobs=1)
    real = render_module.render

    def edited_meanwhile(*args, **kwargs):
        manifest = real(*args, **kwargs)
        dropped.write_text(dropped.read_text() + "\n# edited\n")
        return manifest

    monkeypatch.setattr(render_module, "render", edited_meanwhile)
    assert service.render_one(dropped)["complete"]
    assert (spool / "ed" / "manifest.json").is_file()  # the render stands
    assert not (inbox / ".done" / "ed.yaml").exists() and (inbox / ".failed" / "ed.yaml").is_file()
    assert "changed while it rendered" in (inbox / "ed.error").read_text()


def test_a_second_service_on_one_inbox_is_refused_naming_the_first(tmp_path):
    """Two services on one inbox: the second failed the submission the first was rendering (it
    could not take the lock on its name) and the first took that for a withdrawal, so the
    playout refused the program on air (a review). The second is refused at its start, exit 2,
    naming the holder; once the first is gone the inbox is free again."""
    from avatarrender.rendition import FolderLock
    from conftest import run_cli

    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    inbox.mkdir()
    first = FolderLock(inbox / ".lock", keep=True)  # as a running service holds it
    try:
        proc = run_cli("serve", "--inbox", str(inbox), "--spool", str(spool))
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert (
            "\n" not in line
            and "--inbox" in line
            and f"another render service watches this inbox (pid {os.getpid()})" in line
        )
    finally:
        first.release()
    from avatarrender.service import RenderService

    svc = RenderService(inbox, spool)
    hold = svc._hold_inbox()  # free again (the file stays: the next service locks it)
    hold.release()


def test_the_log_is_clean_after_a_sighup_to_the_group_and_after_a_kill(tmp_path):
    """A SIGHUP to the service's group (a closed session, systemd) killed loky's and
    multiprocessing's resource trackers, started by the workers' pool: joblib started new
    ones, told to forget what they never knew, a KeyError traceback each into the log (10 of
    10 tries). After a kill -9 the trackers said "leaked folder objects" as they cleaned up,
    into the log of the service that followed (3 of 3)."""
    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    inbox.mkdir()

    def started() -> tuple[subprocess.Popen, Path]:
        proc = _serve(inbox, spool)
        log = max(tmp_path.glob("serve-*.log"), key=lambda p: p.stat().st_mtime_ns)
        _wait_for(lambda: "watching" in log.read_text(), what="the service's start")
        return proc, log

    proc, log = started()
    tree = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5  # the trackers clean up after it, then end
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(tree) == [], "processes left behind"
    proc, log = started()
    tree = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=30) == 129
    deadline = time.monotonic() + 5  # what the trackers would say comes as they end
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(tree) == [], "processes left behind"
    text = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "Traceback" not in text and "leaked" not in text and "Warning" not in text, text

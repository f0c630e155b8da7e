"""Chunked rendering: seamless, deterministic, resumable, locked, streaming, and on Dask."""

from __future__ import annotations

import dataclasses

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avatarrender.plan import plan_chunks
from avatarrender.render import render
from avatarrender.rendition import partial_path
from avatarrender.spec import load_spec

from conftest import make_slow_segment, make_tiny_segment
from media_check import frame_hashes, parse_playlist, sha256, stream_facts, x264_clip


@pytest.fixture(scope="module")
def long_segment(tmp_path_factory) -> Path:
    """A 10 s tiny segment (TV, captions, speech) for the chunking tests."""
    return make_tiny_segment(tmp_path_factory.mktemp("long") / "seg", speech_s=10.0, width=256, height=144)


@pytest.fixture(scope="module")
def slow_segment(tmp_path_factory) -> tuple[Path, list[str]]:
    """A segment that takes a few seconds (720p, x264 medium), so it can be interrupted;
    with the frame hashes of a plain one-process render."""
    yml = make_slow_segment(tmp_path_factory.mktemp("slow") / "seg", speech_s=10.0)
    out = tmp_path_factory.mktemp("slowref") / "out"
    render(load_spec(yml), out, jobs=2, chunk_segments=2)
    return yml, frame_hashes(out / "index.m3u8")


@pytest.fixture(scope="module")
def reference(long_segment, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("ref") / "out"
    render(load_spec(long_segment), out, jobs=1, chunk_segments=10)
    return out, frame_hashes(out / "index.m3u8")


@pytest.mark.parametrize("jobs,chunk_segments", [(2, 1), (4, 3)])
def test_same_frames_whatever_jobs_and_chunk_size(long_segment, reference, tmp_path, jobs, chunk_segments):
    out = tmp_path / "out"
    man = render(load_spec(long_segment), out, jobs=jobs, chunk_segments=chunk_segments)
    assert man["render"]["chunks"] == len(
        plan_chunks(load_spec(long_segment), chunk_segments=chunk_segments).chunks
    )
    hashes = frame_hashes(out / "index.m3u8")
    assert len(hashes) == 300
    assert hashes == reference[1]
    # one continuous stream: frame timestamps advance by exactly one frame across every boundary
    facts = stream_facts(out / "index.m3u8")
    assert facts["video_frames"] == 300
    assert abs(facts["video_end_s"] - facts["video_start_s"] - 10.0) < 1e-6
    assert abs(facts["audio_end_s"] - facts["video_end_s"]) < 1 / 30


def test_same_frames_whatever_jobs_with_a_long_gop_clip(tmp_path):
    """A clip as downloads come (x264's default GOP of 250 frames, B-frames, 25 fps shown at
    30): a worker decodes on from chunk to chunk or seeks, depending on which chunks it got;
    the frames are the same either way."""
    yml = make_tiny_segment(tmp_path / "seg", speech_s=6.0, width=256, height=144)
    x264_clip(yml.parent / "assets" / "clip.mp4", fps=25, gop=250, bframes=3, duration_s=2.0)
    hashes = []
    for jobs, chunk_segments in [(1, 10), (2, 1)]:
        out = tmp_path / f"out{jobs}"
        render(load_spec(yml), out, jobs=jobs, chunk_segments=chunk_segments)
        hashes.append(frame_hashes(out / "index.m3u8"))
    assert len(hashes[0]) == 180 and hashes[0] == hashes[1]
    assert len(set(hashes[0][30:105])) > 60  # the clip plays (1 s to 3.5 s)


def test_event_playlist_grows_while_rendering(long_segment, tmp_path):
    out = tmp_path / "out"
    seen = []

    def on_publish(manifest):
        part = partial_path(out)
        pl = parse_playlist(part / "index.m3u8")
        on_disk = json.loads((part / "manifest.json").read_text())
        seen.append(
            (
                pl["tags"].get("EXT-X-PLAYLIST-TYPE"),
                "EXT-X-ENDLIST" in pl["tags"],
                len(pl["segments"]),
                on_disk["complete"],
                out.exists(),
            )
        )
        for uri, _ in pl["segments"]:  # every listed segment is whole under its final name
            assert (part / uri).stat().st_size % 188 == 0

    spec = load_spec(long_segment)
    render(spec, out, jobs=2, chunk_segments=2, on_publish=on_publish)
    plan = plan_chunks(spec, chunk_segments=2)
    # short first chunks (the first segment is listed early), single last ones (workers end together)
    assert [len(c.segment_frames) for c in plan.chunks] == [1, 2, 2, 2, 1, 1, 1]
    assert [s[2] for s in seen] == [1, 3, 5, 7, 8, 9, 10]
    assert all(s[0] == "EVENT" and not s[1] and s[3] is False and not s[4] for s in seen)
    assert parse_playlist(out / "index.m3u8")["tags"]["EXT-X-PLAYLIST-TYPE"] == "VOD"
    assert not partial_path(out).exists()


def _cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("avatarrender")), *args]


def _wait_for(pred, timeout_s: float = 120.0, what: str = "condition"):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _published(part: Path) -> int:
    try:
        return len(json.loads((part / "manifest.json").read_text())["segments"])
    except (OSError, ValueError, KeyError):
        return 0


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    kids: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        kids.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            found.append(k)
            todo.append(k)
    return found


def test_killed_render_resumes_with_only_missing_chunks(slow_segment, tmp_path):
    long_segment, ref_hashes = slow_segment
    out = tmp_path / "out"
    part = partial_path(out)
    proc = subprocess.Popen(
        _cli("render", str(long_segment), "-o", str(out), "-q", "--jobs", "1", "--chunk-segments", "1"),
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _published(part) >= 3, what="3 published segments")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its workers and every ffmpeg at once
        proc.wait()
    assert not out.exists()
    man = json.loads((part / "manifest.json").read_text())
    assert man["complete"] is False
    for seg in man["segments"]:  # what is visible under a final name is whole
        assert sha256(part / seg["uri"]) == seg["sha256"]
    done_before = len(man["segments"])
    res = subprocess.run(
        _cli("render", str(long_segment), "-o", str(out), "--json", "--chunk-segments", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    final = json.loads((out / "manifest.json").read_text())
    assert final["render"]["chunks_reused"] >= done_before
    assert final["render"]["chunks_rendered"] <= 10 - done_before
    assert frame_hashes(out / "index.m3u8") == ref_hashes


def test_worker_killed_mid_render_is_retried(slow_segment, tmp_path):
    long_segment, ref_hashes = slow_segment
    out = tmp_path / "out"
    part = partial_path(out)
    proc = subprocess.Popen(
        _cli("render", str(long_segment), "-o", str(out), "--json", "--jobs", "2", "--chunk-segments", "1"),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _published(part) >= 1, what="a first segment")
        workers = [
            p
            for p in _descendants(proc.pid)
            if b"loky" in Path(f"/proc/{p}/cmdline").read_bytes()
            or b"joblib" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert workers, "no joblib worker found"
        os.kill(workers[0], signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert frame_hashes(out / "index.m3u8") == ref_hashes


def test_ctrl_c_reaps_every_process(slow_segment, tmp_path):
    long_segment, ref_hashes = slow_segment
    out = tmp_path / "out"
    part = partial_path(out)
    # a shell's background jobs inherit SIGINT ignored; a terminal's foreground job does not
    proc = subprocess.Popen(
        _cli("render", str(long_segment), "-o", str(out), "-q", "--jobs", "2", "--chunk-segments", "1"),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for(lambda: _published(part) >= 1, what="a first segment")
    tree = _descendants(proc.pid)
    assert tree
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    assert proc.wait(timeout=60) != 0
    time.sleep(1.0)
    alive = [
        p
        for p in tree
        if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes().lower()
    ]
    try:
        assert alive == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in alive]
    finally:
        for p in alive:
            os.kill(p, signal.SIGKILL)
    assert not out.exists()


def test_second_render_of_same_output_is_refused(long_segment, tmp_path):
    out = tmp_path / "out"
    import fcntl

    with open(out.with_name(f".{out.name}.lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running render holds it
        res = subprocess.run(
            _cli("render", str(long_segment), "-o", str(out), "-q"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 3
    assert "another render" in res.stderr and str(out) in res.stderr
    assert not out.exists() and not partial_path(out).exists()


def test_encoder_failure_carries_its_log(long_segment, tmp_path):
    out = tmp_path / "out"
    spec = load_spec(long_segment)
    bad = spec.with_output(x264_preset="nosuchpreset")  # past our model, refused by x264 itself
    from avatarrender.errors import FFmpegError

    with pytest.raises(FFmpegError) as info:
        render(bad, out, jobs=1)
    msg = str(info.value)
    assert "libx264" in msg and "ffmpeg said" in msg and "nosuchpreset" in msg, msg
    assert not out.exists()


@pytest.mark.parametrize("where", ["on_publish", "progress", "publish"])
def test_an_error_taking_a_result_in_is_raised_as_it_is(long_segment, tmp_path, monkeypatch, where):
    """A caller's callback that raises, or publishing that fails (a spool made read-only
    mid-render: EPERM), is that error, at once: it was retried as a dead worker and came out as
    joblib's 'executor has been shutdown' RuntimeError (the service then failed the submission
    for good instead of holding the queue on the read-only spool)."""
    import avatarrender.render as render_mod
    from avatarrender.errors import OutputError

    spec = load_spec(long_segment)
    out = tmp_path / "out"
    kw = {}
    if where == "publish":
        calls = []
        real = render_mod.Publisher.publish

        def publish(self, result):
            calls.append(1)
            if len(calls) == 2:
                raise PermissionError(errno.EPERM, "Operation not permitted", str(partial_path(out)))
            return real(self, result)

        monkeypatch.setattr(render_mod.Publisher, "publish", publish)
        expected = OutputError
    else:

        def boom(*a):
            raise ValueError(f"{where} boom")

        kw[where] = boom
        expected = ValueError
    with pytest.raises(expected) as info:
        render(spec, out, jobs=2, chunk_segments=2, **kw)
    assert "executor" not in str(info.value)
    if where == "publish":
        assert "cannot write" in str(info.value), info.value
    else:
        assert str(info.value) == f"{where} boom"
    assert not out.exists()


def test_stop_render_from_a_callback_keeps_the_workers_and_the_next_render_completes(
    long_segment, reference, tmp_path
):
    """StopRender (the service's withdrawal) from progress: the chunks not begun are skipped, the
    loky workers stay (a withdrawal ended them: the next submission started cold, its first
    media segment 0.42 -> 1.34 s in a review), and a render of the same output afterwards goes
    on whole (the stop mark does not outlive it)."""
    from avatarrender.errors import StopRender

    def pids() -> set[int]:  # this process's loky workers
        found = set()
        for d in Path("/proc").iterdir():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (d / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == os.getpid() and b"LokyProcess" in cmd:
                found.add(int(d.name))
        return found

    spec = load_spec(long_segment)
    render(spec, tmp_path / "warm", jobs=2, chunk_segments=1)
    before = pids()
    assert len(before) == 2
    out = tmp_path / "out"
    calls = []

    def stop(done, total):
        calls.append(done)
        if done:  # after the first chunk (the first call, before any, stops it too)
            raise StopRender("withdrawn")

    with pytest.raises(StopRender):
        render(spec, out, jobs=2, chunk_segments=1, progress=stop)
    assert len(calls) == 2 and calls[1] > 0 and pids() == before
    assert (partial_path(out) / ".work" / ".stop").exists()  # the chunks not begun were skipped
    render(spec, out, jobs=2, chunk_segments=1)
    assert frame_hashes(out / "index.m3u8") == reference[1]
    assert pids() == before  # (joblib ends an abandoned pool's workers when it is next used)


@pytest.mark.parametrize("kw", [{"jobs": "2"}, {"chunk_segments": 0}, {"jobs": 1.5}, {"threads": -1}])
def test_bad_render_arguments_are_refused_naming_them_before_anything_is_written(long_segment, tmp_path, kw):
    from avatarrender.errors import SpecError

    out = tmp_path / "out"
    with pytest.raises(SpecError) as info:
        render(load_spec(long_segment), out, **kw)
    assert next(iter(kw)) in str(info.value) and "whole number" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _render_on_a_local_cluster(segment: Path, out: Path, workers: int, *extra: str):
    """``avatarrender render --backend dask`` against a LocalCluster of ``workers`` processes."""
    import distributed

    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        return subprocess.run(
            _cli(
                "render",
                str(segment),
                "-o",
                str(out),
                "--backend",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
                *extra,
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )


def test_dask_cluster_gives_the_same_frames(long_segment, reference, tmp_path):
    out = tmp_path / "out"
    res = _render_on_a_local_cluster(long_segment, out, 2, "--json", "--chunk-segments", "2")
    assert res.returncode == 0, res.stderr
    assert frame_hashes(out / "index.m3u8") == reference[1]


def test_dask_cluster_without_workers_is_one_line_and_writes_nothing(long_segment, tmp_path):
    """A scheduler with no worker: one line naming --scheduler and what to do, exit 1, within
    about 10 s (it was joblib's paragraph about parallel_config after 20 s), nothing written."""
    out = tmp_path / "out"
    res = _render_on_a_local_cluster(long_segment, out, 0)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--scheduler" in lines[0] and "no worker" in lines[0], res.stderr
    assert "parallel_config" not in res.stderr
    assert not out.exists() and not partial_path(out).exists()


def test_a_dask_render_stopped_leaves_no_chunk_writing_after_it(tmp_path):
    """SIGTERM to `render --backend dask` exited 143 while the chunks in flight on the cluster's
    workers (not the command's children: nothing ended them) went on, and renamed themselves
    into OUT.partial/.work a second after the exit (2 of 2 in flight, 1 of 1 tries)."""
    import distributed

    yml = make_slow_segment(tmp_path / "seg", speech_s=6.0)
    out = tmp_path / "out"
    work = partial_path(out) / ".work"

    def writing() -> list[str]:
        return sorted(p.name for p in work.glob("*.tmp*") if p.is_dir()) if work.is_dir() else []

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        args = ["render", str(yml), "-o", str(out), "--backend", "dask", "-q"]
        proc = subprocess.Popen(
            _cli(*args, "--scheduler", cluster.scheduler_address), stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for(writing, timeout_s=120, what="a chunk at work")
            time.sleep(0.3)  # into its frames
        finally:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143 and err.splitlines()[-1].startswith("avatarrender: stopped by SIGTERM")
        left = sorted(p.name for p in work.iterdir())
        assert writing() == [], left
        time.sleep(2)  # a chunk that went on would have published itself meanwhile
        assert sorted(p.name for p in work.iterdir()) == left


@pytest.mark.parametrize("chunk_segments", [1, 2, 4, 7])
def test_plan_covers_every_frame_once(long_segment, chunk_segments):
    spec = load_spec(long_segment)
    plan = plan_chunks(spec, chunk_segments=chunk_segments)
    frames = [f for c in plan.chunks for f in range(c.frame_start, c.frame_end)]
    assert frames == list(range(spec.frame_count))
    assert all(len(c.segment_frames) <= chunk_segments for c in plan.chunks)
    assert [c.first_segment for c in plan.chunks] == sorted({c.first_segment for c in plan.chunks})


@pytest.fixture
def tiny_disk(tmp_path):
    """A 160 kB tmpfs: the 10 s render needs about 250 kB with its work files (the tests run as root on a machine of our own)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_a_clear_error_and_finished_segments_stay_valid(long_segment, tiny_disk):
    out = tiny_disk / "out"
    res = subprocess.run(
        _cli("render", str(long_segment), "-o", str(out), "-q", "--jobs", "1", "--chunk-segments", "1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "no space left on device" in line and str(partial_path(out)) in line, res.stderr
    assert not out.exists()
    man = json.loads((partial_path(out) / "manifest.json").read_text())
    assert 0 < len(man["segments"]) < 10
    for seg in man["segments"]:
        assert sha256(partial_path(out) / seg["uri"]) == seg["sha256"]
    pl = parse_playlist(partial_path(out) / "index.m3u8")
    assert [u for u, _ in pl["segments"]] == [s["uri"] for s in man["segments"]]


@pytest.mark.parametrize("fps,segment_s", [("30000/1001", 1.001), ("25", 1.0)])
def test_other_frame_rates_stay_continuous_across_chunks(tmp_path, fps, segment_s):
    """29.97 and 25 fps: every media segment starts on a keyframe at its place, frame timestamps
    run on across chunk boundaries, and audio ends with the video."""
    from fractions import Fraction

    yml = make_tiny_segment(
        tmp_path / "seg",
        speech_s=6.0,
        width=128,
        height=72,
        extra={"output": {"fps": fps, "segment_duration_s": segment_s}},
    )
    spec = load_spec(yml)
    out = tmp_path / "out"
    man = render(spec, out, jobs=2, chunk_segments=2)
    rate = Fraction(fps)
    facts = stream_facts(out / "index.m3u8")
    assert facts["video_frames"] == spec.frame_count == man["frame_count"]
    assert facts["fps"] == rate
    assert abs(facts["video_end_s"] - facts["video_start_s"] - spec.frame_count / rate) < 1e-3
    assert abs(facts["audio_end_s"] - facts["video_end_s"]) < 1 / rate
    starts = [facts["video_start_s"]]
    for seg in man["segments"][:-1]:
        starts.append(starts[-1] + seg["frames"] / rate)
    assert len(facts["keyframe_times_s"]) == len(man["segments"])
    assert all(abs(k - s) < 1e-3 for k, s in zip(facts["keyframe_times_s"], starts))


def test_lead_frames_split_only_the_first_media_segments(long_segment, reference, tmp_path):
    """The render service's plan: 8 frames, then the rest of a segment, then the next
    LEAD_HALVED_SEGMENTS segments in halves, every media segment a chunk of its own; every later
    boundary and every later decoded frame as in a plain render, and seamless audio."""
    from avatarrender.plan import LEAD_HALVED_SEGMENTS as H

    spec = load_spec(long_segment)
    plain = plan_chunks(spec).segment_frames()
    plan = plan_chunks(spec, lead_frames=8)
    halves = [n for f in plain[1 : 1 + H] for n in (f // 2, f - f // 2)]
    assert plan.segment_frames() == [8, plain[0] - 8, *halves, *plain[1 + H :]]
    assert [c.frame_start for c in plan.chunks][:2] == [0, 8]
    # every media segment a chunk of its own: none waits for a later frame of its chunk
    assert all(len(c.segment_frames) == 1 for c in plan.chunks)
    assert sum(c.frame_count for c in plan.chunks) == spec.frame_count
    # a chosen chunk size holds after the halves; a short last segment is never halved
    sized = plan_chunks(spec, lead_frames=8, chunk_segments=3)
    assert [len(c.segment_frames) for c in sized.chunks][: 2 + 2 * H + 1] == [1] * (2 + 2 * H) + [3]
    short = dataclasses.replace(spec, frame_count=plain[0] + 5)
    assert plan_chunks(short, lead_frames=8).segment_frames() == [8, plain[0] - 8, 5]
    out = tmp_path / "out"
    man = render(spec, out, jobs=2, lead_frames=8)
    assert [s["frames"] for s in man["segments"]] == plan.segment_frames()
    pl = parse_playlist(out / "index.m3u8")
    assert int(pl["tags"]["EXT-X-TARGETDURATION"]) == 1
    assert [round(d * 30) for _, d in pl["segments"]][: 2 + 2 * H] == [8, plain[0] - 8, *halves]
    hashes = frame_hashes(out / "index.m3u8")
    ref_out, ref_hashes = reference
    assert len(hashes) == len(ref_hashes) == spec.frame_count
    later = sum(plain[: 1 + H])  # only the split segments are encoded otherwise
    assert hashes[later:] == ref_hashes[later:]
    facts = stream_facts(out / "index.m3u8")
    assert abs(facts["audio_end_s"] - facts["video_end_s"]) < 1 / 30
    # a render resumed with another cut starts again instead of mixing the two
    man2 = render(spec, out, jobs=2, force=True)
    assert [s["frames"] for s in man2["segments"]] == plain

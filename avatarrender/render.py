"""Chunked render: analyse once, render chunks in parallel (joblib), publish in air order.

The output is a rendition (:mod:`avatarrender.rendition` owns its layout): an in-progress
folder that grows in air order, renamed to ``OUT`` when complete. Frames are composed by
:mod:`avatarrender.compose` and the audio track comes from :mod:`avatarrender.audiotrack`; this
module runs the chunks in parallel (joblib workers), under a lock per output.

Chunks are content-addressed (spec hash, frame range, encoder settings, audio), rendered into
``.work/KEY.tmpPID`` and renamed to ``.work/KEY`` when whole, so a render killed at any point
and started again renders only what is missing.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from .analysis import Timeline, analyse, segment_audio
from .audiotrack import AudioSource, encode_track, failed_path
from .compose import build_scene, compose_frames, scene_for, slice_timeline
from .encode import ChunkEncoder, SegmentJob
from .errors import AvatarRenderError, DiskFullError, FFmpegError, RenderLockedError
from .plan import DEFAULT_CHUNK_SEGMENTS, Chunk, ChunkPlan, plan_chunks
from .rendition import Manifest, Publisher, partial_path, read_manifest, utc_now_iso
from .soundtrack import manifest_loudness, soundtrack
from .spec import Spec
from .subtitles import SubtitleWriter

__all__ = ["render", "render_chunk", "ChunkTask", "Progress", "ProcessRenderer", "RenderProcess"]

Progress = Callable[[int, int], None]  # (frames done, frames total)


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for one chunk; small (paths, not media) so it travels cheaply."""

    spec: Spec
    chunk: Chunk
    key: str
    work_root: str
    audio_path: str
    timeline: Timeline  # this chunk's slice
    threads: int | None
    scene_path: str | None = None  # the Scene the main process built, pickled


def render_chunk(task: ChunkTask) -> dict[str, Any]:
    """Render one chunk into ``work_root/KEY/`` (atomically) and return its small manifest."""
    _tolerate_kept_memory()
    root = Path(task.work_root)
    final = root / task.key
    done = final / "done.json"
    if done.is_file():
        return {**json.loads(done.read_text()), "reused": True}
    tmp = root / f"{task.key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        spec, chunk = task.spec, task.chunk
        fps = spec.output.fps
        last = chunk.frame_end >= spec.frame_count
        started = time.perf_counter()
        scene = scene_for(spec, task.scene_path)
        segments = []
        frame_index = chunk.frame_start
        for i, n in enumerate(chunk.segment_frames):
            s0 = Fraction(frame_index) / fps
            s1 = None if (last and i == len(chunk.segment_frames) - 1) else Fraction(
                frame_index + n) / fps
            segments.append(SegmentJob(path=tmp / f"seg_{chunk.first_segment + i:05d}.ts",
                                       frames=n, start_s=s0, end_s=s1))
            frame_index += n
        with ChunkEncoder(spec.output, segments, audio=AudioSource(Path(task.audio_path)),
                          threads=task.threads) as enc:
            for data in compose_frames(spec, task.timeline, scene):
                enc.write(data)
            enc.finish()
        names = [f"seg_{chunk.first_segment + i:05d}.ts" for i in range(len(chunk.segment_frames))]
        missing = [n for n in names if not (tmp / n).is_file()]
        if missing:
            raise AvatarRenderError(f"chunk {chunk.index}: the encoder wrote no {missing[0]}")
        result = {
            "index": chunk.index, "key": task.key, "dir": str(final),
            "segments": [{"uri": n, "frames": f} for n, f in zip(names, chunk.segment_frames)],
            "seconds": time.perf_counter() - started, "pid": os.getpid(),
        }
        (tmp / "done.json").write_text(json.dumps(result))
        os.replace(tmp, final)
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_SOUNDTRACK_V = b"soundtrack/1"  # bump when the mixing or the normalisation changes


def _make_track(spec: Spec, speech: Any, audio_path: Path, sound: dict[str, Any]) -> None:
    """Mix and normalise the segment's audio, record its loudness in ``sound``, and encode it
    to ``audio_path`` unless a resumed render already has it."""
    try:
        samples, report = soundtrack(spec, speech)
    except BaseException:
        failed_path(audio_path).touch()  # the chunks waiting for the track stop
        raise
    sound["loudness"] = manifest_loudness(report)
    if not audio_path.is_file():
        encode_track(samples, audio_path, spec.output.audio_bitrate_kbps)


def _chunk_key(spec: Spec, chunk: Chunk, audio_hash: str, threads: int | None) -> str:
    doc = json.dumps([spec.spec_hash, audio_hash, threads, chunk.frame_start, chunk.frame_end,
                      chunk.first_segment, list(chunk.segment_frames)])
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def _planned_manifest(spec: Spec, plan: ChunkPlan) -> Manifest:
    """What the rendition of ``spec`` will be; the publisher fills in segments and bit rates."""
    out = spec.output
    return Manifest(
        complete=False, width=out.width, height=out.height, fps=out.fps, segments=(),
        planned_segments=plan.segment_count,
        target_duration_s=int(-(-out.segment_duration_s // 1)), segment_type=out.segment_type,
        spec_hash=spec.spec_hash, source=str(spec.source), duration_s=spec.duration_s,
        frame_count=spec.frame_count,
    )


class _Background:
    """Run a function in a thread; ``result()`` joins it and re-raises its exception."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # handed to the caller by result()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _ready() -> int:
    """A task that only imports what chunk workers need (see :func:`_warm_up_workers`)."""
    _tolerate_kept_memory()
    return os.getpid()


def _tolerate_kept_memory() -> None:
    """In a loky worker, let the encoder's kept memory be (see ``encode.keep_freed_memory``).

    loky restarts a worker whose RSS grew 300 MB past its size after its first task, taking
    it for a leak; a worker holding a 1080p x264 frame pool looks like that, and a new process
    would fault every page in again. The limit is raised, not removed: a real leak still ends
    the worker. (A private constant: joblib has no setting for it.)
    """
    executor = sys.modules.get("joblib.externals.loky.process_executor")
    if executor is not None and isinstance(getattr(executor, "_MAX_MEMORY_LEAK_SIZE", None), int):
        executor._MAX_MEMORY_LEAK_SIZE = max(executor._MAX_MEMORY_LEAK_SIZE, 4 << 30)


def start_workers(jobs: int) -> None:
    """Start joblib's local worker processes in the background (for a caller that has other
    work before :func:`render`, such as checking the spec); ``render`` does it too."""
    _warm_up_workers(jobs)


def _warm_up_workers(jobs: int) -> None:
    """Start joblib's local worker processes in the background while the main process analyses.

    Only for the default loky backend: under ``parallel_config(backend="dask")`` the workers
    are the cluster's and already running. The pool is reused by the render's ``Parallel``.
    """
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend).__name__ != "LokyBackend" or jobs < 2:
        return

    def warm_up() -> None:
        try:
            Parallel(n_jobs=jobs)(delayed(_ready)() for _ in range(jobs))
        except BaseException:  # only a head start: the process may be ending (a bad spec)
            pass

    threading.Thread(target=warm_up, daemon=True, name="avatarrender-warm-up").start()


def _lock(out_dir: Path, wait: bool):
    from filelock import FileLock, Timeout

    lock = FileLock(str(out_dir.with_name(f".{out_dir.name}.lock")))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise RenderLockedError(
            f"{out_dir}: another render of this output is running (lock {lock.lock_file}); "
            "pass --wait to wait for it"
        ) from None
    return lock


# x264 threads per encoder. Fixed, not derived from --jobs: x264's output depends on its thread
# count, and the decoded frames must not depend on how many workers ran. Parallelism comes from
# the workers (one encoder each), which keeps every core busy without frame-threading ramps.
DEFAULT_X264_THREADS = 1


def render(
    spec: Spec,
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    chunk_segments: int = DEFAULT_CHUNK_SEGMENTS,
    threads: int | None = None,
    hidden_partial: bool = False,
    force: bool = False,
    wait_lock: bool = False,
    progress: Progress | None = None,
    on_publish: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Render ``spec`` into the HLS folder ``out_dir``; return its manifest.

    Parameters
    ----------
    jobs : int, optional
        Parallel chunk workers (joblib). Default: the number of cores. Under an active
        ``joblib.parallel_config(backend="dask")`` the chunks run on the cluster.
    chunk_segments : int
        Media segments per chunk.
    threads : int, optional
        x264 threads per encoder (default 1; the bitstream depends on it, the worker count not).
    hidden_partial : bool
        Name the in-progress folder ``.NAME.partial`` (for spools that others list).
    force : bool
        Render again even if ``out_dir`` holds a complete render of the same spec.
    """
    from joblib import Parallel, delayed

    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    if threads is None:
        threads = DEFAULT_X264_THREADS
    lock = _lock(out_dir, wait_lock)
    partial = partial_path(out_dir, hidden=hidden_partial)
    try:
        old = read_manifest(out_dir)
        if not force and old and old.complete and old.spec_hash == spec.spec_hash:
            if progress:
                progress(spec.frame_count, spec.frame_count)
            return {**old.to_json(), "up_to_date": True}
        stale = read_manifest(partial)
        if stale is None or stale.spec_hash != spec.spec_hash:
            shutil.rmtree(partial, ignore_errors=True)
        work = partial / ".work"
        work.mkdir(parents=True, exist_ok=True)
        for leftover in [*work.glob("*.tmp*"), *work.glob("*.part"), *work.glob("*.failed")]:
            # from a killed run; the lock says none is live
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()

        _warm_up_workers(jobs)  # worker start-up overlaps the analysis below
        scene_path = work / f"scene-{spec.spec_hash}.pkl"
        building = _Background(build_scene, spec, scene_path)  # PIL and numpy: mostly off the GIL
        speech = segment_audio(spec)
        # the track is a pure function of the speech and the spec (whose hash covers the clips'
        # bytes and the loudness settings): its name needs no mixing first
        audio_hash = hashlib.sha256(speech.tobytes() + _SOUNDTRACK_V).hexdigest()[:16]
        audio_path = work / f"audio-{audio_hash}-{spec.output.audio_bitrate_kbps}k.aac"
        # TV sound mixed under the speech and loudness on target (on the whole array, before the
        # one AAC encode, so chunks stay seamless), then the AAC encoder (its own process): in
        # the background while this process analyses the speech and the first chunks render
        sound: dict[str, Any] = {}
        encoding = _Background(_make_track, spec, speech, audio_path, sound)
        timeline = analyse(spec, speech)  # chunks start now; they wait for audio only if ahead
        building.result()
        analysed_s = time.perf_counter() - started
        plan = plan_chunks(spec, chunk_segments=chunk_segments)
        # WebVTT subtitle tracks: written as their media segments are published
        subs = SubtitleWriter(spec, plan, partial)
        pub = Publisher(partial, dataclasses.replace(_planned_manifest(spec, plan),
                                                     subtitles=subs.renditions or None))
        subs.write_upto(pub.published)  # those a resumed render has already
        # Chunks whose segments are all published are done; a chunk is published whole or not.
        todo = [c for c in plan.chunks if c.first_segment >= pub.published]
        frames_done = sum(c.frame_count for c in plan.chunks if c.first_segment < pub.published)
        if progress:
            progress(frames_done, spec.frame_count)
        tasks = [
            ChunkTask(spec=spec, chunk=c, key=_chunk_key(spec, c, audio_hash, threads), work_root=str(work),
                      audio_path=str(audio_path),
                      timeline=slice_timeline(timeline, c.frame_start, c.frame_end), threads=threads,
                      scene_path=str(scene_path))
            for c in todo
        ]
        first_segment_s: float | None = None
        attempts = 0
        rendered = reused = 0
        while tasks:
            attempts += 1
            try:
                results = Parallel(n_jobs=min(jobs, len(tasks)), return_as="generator")(
                    delayed(render_chunk)(t) for t in tasks)
                for task, result in zip(tasks, results):
                    pub.publish(result)
                    subs.write_upto(pub.published)
                    reused += bool(result.get("reused"))
                    rendered += not result.get("reused")
                    frames_done += task.chunk.frame_count
                    if first_segment_s is None:
                        first_segment_s = time.perf_counter() - started
                    if on_publish:
                        on_publish(pub.manifest(complete=False, stats={}).to_json())
                    if progress:
                        progress(frames_done, spec.frame_count)
                tasks = []
            except (KeyboardInterrupt, AvatarRenderError):
                raise
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                tasks = [t for t in tasks if t.chunk.first_segment >= pub.published]
                if attempts >= 2 or not tasks:
                    raise
            except Exception:
                # A worker died (or a chunk failed for a passing reason): retry what is left once.
                tasks = [t for t in tasks if t.chunk.first_segment >= pub.published]
                if attempts >= 2 or not tasks:
                    raise
        encoding.result()  # done when the last chunk took its audio; raises what it raised
        pub.planned = dataclasses.replace(pub.planned, loudness=sound["loudness"])
        wall_s = time.perf_counter() - started
        stats = {
            "wall_s": round(wall_s, 3), "analysis_s": round(analysed_s, 3),
            "fps": round(spec.frame_count / wall_s, 2),
            "realtime_factor": round(float(spec.duration_s) / wall_s, 3),
            "first_segment_s": round(first_segment_s, 3) if first_segment_s else None,
            "jobs": jobs, "chunk_segments": chunk_segments, "x264_threads": threads,
            "chunks": len(plan.chunks), "chunks_rendered": rendered,
            "chunks_reused": reused + len(plan.chunks) - len(todo), "attempts": attempts,
            "finished_at": utc_now_iso(),
        }
        manifest = pub.write(complete=True, stats=stats).to_json()
        shutil.rmtree(work, ignore_errors=True)
        # Swap into place; an older render of the same name is replaced only now.
        if out_dir.exists():
            old_dir = out_dir.with_name(f".{out_dir.name}.old{os.getpid()}")
            os.replace(out_dir, old_dir)
            os.replace(partial, out_dir)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.replace(partial, out_dir)
        return manifest
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(partial, exc.filename or partial) from None
        raise
    except FFmpegError as exc:
        if "No space left on device" in exc.stderr:
            raise _disk_full(partial, partial) from None
        raise
    finally:
        lock.release()  # the lock file stays: unlinking it would let a waiter lock a dead inode


def _disk_full(partial: Path, where: str | Path) -> DiskFullError:
    man = read_manifest(partial)
    done = len(man.segments) if man else 0
    return DiskFullError(f"{where}: no space left on device; the {done} media segments finished "
                         f"so far stay valid in {partial} and a new render resumes from there")


# ---------------------------------------------------------------------------------- background


def _error_line(exc: BaseException) -> str:
    """What the CLI would print for ``exc``: its message's first line (ffmpeg's tail follows)."""
    if isinstance(exc, AvatarRenderError):
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _render_ahead_main(spec_path: str, out_dir: str) -> int:
    """The body of a render-ahead process: render, print the outcome as one JSON line on stdout
    (``{"error": null}`` or the error line), return the exit code."""
    import signal

    from .spec import load_spec

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # joblib then stops the workers; the lock is released

    signal.signal(signal.SIGTERM, stop)
    code, error = 0, None
    try:
        render(load_spec(spec_path), out_dir)
    except KeyboardInterrupt:
        code, error = 130, "stopped"
    except AvatarRenderError as exc:
        code, error = exc.exit_code, _error_line(exc)  # the line says it all: no traceback
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        code, error = 1, _error_line(exc)
    print(json.dumps({"error": error}), flush=True)
    return code


class RenderProcess:
    """One render in a process of its own (see :class:`ProcessRenderer`); a
    :class:`~avatarrender.playout.render_ahead.RenderJob`.

    A new interpreter runs :func:`_render_ahead_main` (not a fork: the caller runs threads, and
    not multiprocessing's spawn, which would run the caller's ``__main__`` again). Its stderr is
    the caller's; its stdout carries the outcome.
    """

    def __init__(self, spec_path: Path, out_dir: Path):
        import subprocess

        self.spec_path, self.out_dir = Path(spec_path), Path(out_dir)
        code = ("import sys; from avatarrender.render import _render_ahead_main; "
                "sys.exit(_render_ahead_main(sys.argv[1], sys.argv[2]))")
        # as the CLI does: OpenBLAS threads would spin against the render's workers
        env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        self._proc = subprocess.Popen([sys.executable, "-c", code, str(spec_path), str(out_dir)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
        self._error: str | None = None
        self._done = False

    def poll(self) -> bool:
        return self._proc.poll() is not None

    def result(self) -> None:
        if not self._done:
            out = self._proc.communicate()[0].decode(errors="replace").strip().splitlines()
            try:
                self._error = json.loads(out[-1])["error"] if out else None
            except (ValueError, KeyError, TypeError):
                self._error = out[-1]
            self._done = True
        code = self._proc.returncode
        if self._error is None and code == 0:
            return
        why = self._error or (f"the render process was killed by signal {-code}" if code < 0
                              else f"the render process ended with exit code {code}")
        raise AvatarRenderError(why if str(self.spec_path) in why else f"{self.spec_path}: {why}")

    def terminate(self) -> None:
        import subprocess

        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class ProcessRenderer:
    """The renderer the ``playout`` command hands to the playout
    (:class:`~avatarrender.playout.render_ahead.Renderer`): each render-ahead runs :func:`render`
    in a process of its own, so the playout's loop never waits on it; the filler is rendered in
    this process, before the channel starts."""

    def render_ahead(self, spec_path: Path, out_dir: Path) -> RenderProcess:
        return RenderProcess(spec_path, out_dir)

    def render_filler(self, spec_path: Path, duration_s: float, root: Path) -> Path:
        from .spec import load_spec

        spec = load_spec(spec_path).idle(duration_s)
        dest = Path(root) / f"idle-{spec.spec_hash}"
        render(spec, dest)
        return dest

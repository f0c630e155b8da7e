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

import contextlib
import dataclasses
import errno
import hashlib
import functools
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from . import _profile, interrupt
from .analysis import Timeline, analyse, segment_audio, start_reading
from .audiotrack import AudioSource, encode_track, failed_path
from .audio import background_priority
from .compose import build_scene, compose_frames, repeated_frames, scene_for, slice_timeline
from .encode import ChunkEncoder, SegmentJob
from .errors import (
    AvatarRenderError,
    DiskFullError,
    FFmpegError,
    MediaError,
    OutputError,
    RenderLockedError,
    SpecError,
    StopRender,
)
from .loudness import add_true_peaks, normalise
from .plan import DEFAULT_CHUNK_SEGMENTS, Chunk, ChunkPlan, plan_chunks
from .rendition import (
    Busy,
    FolderLock,
    Manifest,
    Publisher,
    clear_failed,
    lock_holder,
    lock_path,
    partial_path,
    read_manifest,
    utc_now_iso,
)
from .soundtrack import loudness_target, manifest_loudness, mix, silent_by_design
from .spec import Spec
from .subtitles import SubtitleWriter

__all__ = [
    "render",
    "render_chunk",
    "ChunkTask",
    "StopRender",
    "Progress",
    "ProcessRenderer",
    "RenderProcess",
]

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


STOP_MARK = ".stop"  # in OUT.partial/.work: chunks not yet begun are skipped (StopRender)
# in OUT.partial/.work: a stop signal, the render's process ending. Chunks on workers it cannot
# end (Dask's, not its children) end too: those in flight within ABORT_CHECK_FRAMES frames
ABORT_MARK = ".abort"
ABORT_CHECK_FRAMES = 10


def render_chunk(task: ChunkTask) -> dict[str, Any]:
    """Render one chunk into ``work_root/KEY/`` (atomically) and return its small manifest."""
    _tolerate_kept_memory()
    root = Path(task.work_root)
    final = root / task.key
    done = final / "done.json"
    if done.is_file():
        return {**json.loads(done.read_text()), "reused": True}
    if not root.is_dir():
        # a Dask worker on another machine, or in a mount of its own, that does not see the
        # render's output: made here it would wait for the soundtrack for 120 s, then blame it
        import socket

        err = OutputError(
            f"{root}: not there on the worker on {socket.gethostname()} (pid {os.getpid()}): a "
            "render's workers write into its output folder, which must be on a file system they "
            "share, at the same path"
        )
        err.exit_code = 1
        raise err
    abort = root / ABORT_MARK
    if (root / STOP_MARK).exists() or abort.exists():  # the render was stopped: not begun, skipped
        return {"stopped": True}
    tmp = root / f"{task.key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        spec, chunk = task.spec, task.chunk
        fps = spec.output.fps
        last = chunk.frame_end >= spec.frame_count
        started = time.perf_counter()
        started_at = time.time()
        cpu_at_start = time.process_time()  # this worker's CPU so far (its start-up, if first)
        scene = scene_for(spec, task.scene_path)
        if _profile.ENABLED:
            _profile.add("scene_load", started)
        segments = []
        frame_index = chunk.frame_start
        repeats = repeated_frames(spec, task.timeline)  # the chunk's frames
        for i, n in enumerate(chunk.segment_frames):
            s0 = Fraction(frame_index) / fps
            s1 = None if (last and i == len(chunk.segment_frames) - 1) else Fraction(frame_index + n) / fps
            at = frame_index - chunk.frame_start
            segments.append(
                SegmentJob(
                    path=tmp / f"seg_{chunk.first_segment + i:05d}.ts",
                    frames=n,
                    start_s=s0,
                    end_s=s1,
                    repeats=int(repeats[at + 1 : at + n].sum()),  # a segment starts with an IDR
                )
            )
            frame_index += n
        with ChunkEncoder(
            spec.output, segments, audio=AudioSource(Path(task.audio_path)), threads=task.threads
        ) as enc:
            for n, (data, same) in enumerate(compose_frames(spec, task.timeline, scene)):
                if n % ABORT_CHECK_FRAMES == 0 and abort.exists():
                    raise StopRender("the render was stopped by a signal")
                enc.write(data, same_as_previous=same)
            enc.finish()
        skipped = enc.skipped_count
        names = [f"seg_{chunk.first_segment + i:05d}.ts" for i in range(len(chunk.segment_frames))]
        missing = [n for n in names if not (tmp / n).is_file()]
        if missing:
            raise AvatarRenderError(f"chunk {chunk.index}: the encoder wrote no {missing[0]}")
        result = {
            "index": chunk.index,
            "key": task.key,
            "dir": str(final),
            "segments": [{"uri": n, "frames": f} for n, f in zip(names, chunk.segment_frames)],
            "seconds": time.perf_counter() - started,
            "pid": os.getpid(),
            "skipped_frames": skipped,  # written as skip frames, not by x264
            "started_at": started_at,
            **(
                {
                    "profile": _profile.take(),
                    "marks": _profile.take_marks(),
                    "cpu_s": time.process_time(),
                    "cpu_at_start_s": cpu_at_start,
                }
                if _profile.ENABLED
                else {}
            ),
        }
        (tmp / "done.json").write_text(json.dumps(result))
        os.replace(tmp, final)
        return result
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, MediaError) and exc.field is not None and exc.file != str(task.spec.source):
            # a TV clip that fails mid-render: the segment first, as every spec error says it
            raise MediaError(task.spec.source, exc.field, f"{exc.file}: {exc.message}") from None
        raise


# The AAC encoder runs at the render's priority for this much of the track, then at nice 10
# (measured: 0.3 CPU s for 28 s of audio, and 0.14 s more for the manifest's true peaks, taken
# from the video encoders in the seconds when a program that started on its first second of
# render must get its next media segments out; a program on air waits for the next seconds only
# after the playout's hold, 1-4 s).
URGENT_AUDIO_S = 4.0

_SOUNDTRACK_V = b"soundtrack/2"  # bump when the mixing or the normalisation changes


def _make_track(
    spec: Spec, speech: Any, audio_path: Path, sound: dict[str, Any], airing: bool = True
) -> None:
    """Mix and normalise the segment's audio, encode it to ``audio_path`` unless a resumed render
    already has it, and record its loudness in ``sound``.

    The chunks wait for the AAC frames, not for the manifest's figures: the true peaks (which
    neither the gain nor the limiter needs) are measured after the encoder has the samples.
    ``airing``: the render airs while it renders (a lead): the encoder leaves the CPU to the
    video after :data:`URGENT_AUDIO_S`. A render that does not air keeps it at the render's own
    priority: there the workers outrun a lowered encoder and wait for its frames (measured on
    20 s speech only, where skip frames make the video fast: 0.4-0.7 s of the workers' time).
    """
    t0 = time.perf_counter()
    try:
        mixed = mix(spec, speech)
        samples, report = normalise(
            mixed,
            loudness_target(spec),
            name=str(spec.source),
            true_peaks=False,
            silent_ok=silent_by_design(spec),
        )
    except BaseException:
        failed_path(audio_path).touch()  # the chunks waiting for the track stop
        raise
    if _profile.ENABLED:
        _profile.add("soundtrack", t0)  # mixing and loudness; the rest is the AAC encoder
        _profile.mark("soundtrack_ready")
    if not audio_path.is_file():
        urgent_s = URGENT_AUDIO_S if airing else None
        encode_track(samples, audio_path, spec.output.audio_bitrate_kbps, urgent_s=urgent_s)
    if airing:  # the manifest's true peaks are wanted at the end only: after the first chunks' video
        background_priority()
    sound["loudness"] = manifest_loudness(add_true_peaks(report, mixed, samples))


def _chunk_key(spec: Spec, chunk: Chunk, audio_hash: str, threads: int | None) -> str:
    doc = json.dumps(
        [
            spec.spec_hash,
            audio_hash,
            threads,
            chunk.frame_start,
            chunk.frame_end,
            chunk.first_segment,
            list(chunk.segment_frames),
        ]
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def _planned_manifest(spec: Spec, plan: ChunkPlan) -> Manifest:
    """What the rendition of ``spec`` will be; the publisher fills in segments and bit rates."""
    out = spec.output
    return Manifest(
        complete=False,
        width=out.width,
        height=out.height,
        fps=out.fps,
        segments=(),
        planned_segments=plan.segment_count,
        # RFC 8216: each EXTINF rounded to the nearest integer (1.001 s at NTSC rates: 1)
        target_duration_s=max(1, int(out.segment_duration_s + Fraction(1, 2))),
        segment_type=out.segment_type,
        spec_hash=spec.spec_hash,
        source=str(spec.source),
        duration_s=spec.duration_s,
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


def _make_track_apart(spec: Spec, speech: Any, audio_path: Path) -> dict[str, Any]:
    """:func:`_make_track` in a process of its own (the render service's soundtrack process):
    returns the loudness and the profile. It runs in a thread that ends with it, since it lowers
    its own priority, which an unprivileged process cannot raise again."""
    sound: dict[str, Any] = {}
    bg = _Background(_make_track, spec, speech, audio_path, sound)
    bg.result()
    return {"loudness": sound["loudness"], "profile": _profile.take(), "marks": _profile.take_marks()}


class _Apart:
    """The soundtrack from :func:`_make_track_apart` run by ``pool``, as :class:`_Background`
    gives it: ``result()`` waits and fills in ``sound``. If that process fails or dies, the
    chunks waiting for the AAC frames are told at once (the track's .failed marker)."""

    def __init__(self, pool: Any, spec: Spec, speech: Any, audio_path: Path, sound: dict[str, Any]):
        self._sound = sound
        self._future = pool.submit(_make_track_apart, spec, speech, audio_path)

        def failed(fut: Any) -> None:
            if fut.cancelled() or fut.exception() is not None:
                with contextlib.suppress(OSError):
                    failed_path(audio_path).touch()

        self._future.add_done_callback(failed)

    def result(self) -> None:
        got = self._future.result()
        self._sound["loudness"] = got["loudness"]
        if _profile.ENABLED:
            _profile.merge(got["profile"], got["marks"])


def _soundtrack_process_init() -> None:
    """In the soundtrack process: end with its parent, and leave stop signals to it (it ignores
    them: a death signal would be ignored too, hence the watch)."""
    for sig in interrupt.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    interrupt.end_with_parent()


def _soundtrack_warm() -> int:
    """Import what the soundtrack needs, and run it once on a second of tone."""
    import numpy as np

    from .loudness import LoudnessTarget

    t = np.arange(48000) / 48000.0
    normalise((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), LoudnessTarget(), name="warm-up")
    return os.getpid()


def soundtrack_process() -> Any:
    """A process of its own for the soundtrack of the renders to come (``render(...,
    audio_pool=)``), started and warmed now: the render service's. Mixing and normalising beside
    the analysis in one process, the two took turns at the GIL on the way to the first media
    segment. ``shutdown_soundtrack_process`` ends it."""
    import multiprocessing
    import types
    from concurrent.futures import ProcessPoolExecutor

    with interrupt.children_shielded():
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_soundtrack_process_init,
        )
        # A spawned child imports the parent's __main__ again (a script's top level would run
        # there, and a script starting a RenderService without the `if __name__ == "__main__":`
        # guard failed): the process is started (in submit) while __main__ is a bare module, as
        # for an interactive session. It needs nothing of __main__.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            warm = pool.submit(_soundtrack_warm)
        finally:
            sys.modules["__main__"] = main
        warm.result()
    return pool


def shutdown_soundtrack_process(pool: Any) -> None:
    """End the process of :func:`soundtrack_process` now (whatever it is doing)."""
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
            p.join(5)


def _ready() -> int:
    """A task that only imports what chunk workers need (see :func:`_warm_up_workers`)."""
    _tolerate_kept_memory()
    return os.getpid()


def _pool(**kw: Any) -> Any:
    """joblib's ``Parallel(**kw)``, whose local (loky) workers end with this process from their
    start (:func:`interrupt.end_with_parent` as their initializer): killed outright while the
    spec was checked, before any chunk reached them, it left them idling for loky's five
    minutes. Every call passes the same initializer: loky keeps its pool only while every call
    asks for the same settings."""
    from joblib import Parallel
    from joblib.parallel import get_active_backend

    class _Parallel(Parallel):
        def _warn_exit_early(self) -> None:
            """A render stopped between chunks (an error, a withdrawn submission) leaves the
            generator with tasks in flight; joblib's advice about "adjusting the input task
            iterator" is for a caller that meant to stop early: not printed into the service's
            log (said here, not by a filter in the caller's ``warnings``)."""

    backend, _ = get_active_backend()
    if type(backend).__name__ == "LokyBackend":
        kw["initializer"], kw["initargs"] = interrupt.end_with_parent, (0.25, os.getpid())
    return _Parallel(**kw)


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
        _set_up_loky_worker()


_LOKY_WORKER_SET_UP = False


def _set_up_loky_worker() -> None:
    """Once in each of loky's own worker processes (named ``LokyProcess-N``; a Dask worker, say,
    has exit handlers and a life of its own):

    - End without tearing the interpreter down. When the pool shuts down (the command's exit
      waits for it), a worker that has returned its last result would spend 0.2-0.3 s unloading
      numpy, PyAV's libraries and freeing its caches, nothing of which outlives it. Registered
      last, this ``atexit`` handler runs first and ends the process on the spot.
    - End with the main process (:func:`interrupt.end_with_parent`): killed outright (SIGKILL,
      the OOM killer), it cannot end its workers, which block the stop signals.
    """
    global _LOKY_WORKER_SET_UP
    import multiprocessing

    if _LOKY_WORKER_SET_UP or not multiprocessing.current_process().name.startswith("LokyProcess"):
        return
    import atexit

    _LOKY_WORKER_SET_UP = True
    atexit.register(os._exit, 0)
    interrupt.end_with_parent()


def start_workers(jobs: int) -> None:
    """Start joblib's local worker processes in the background (for a caller that has other
    work before :func:`render`, such as checking the spec); ``render`` does it too."""
    _warm_up_workers(jobs)


def _warm_up_workers(jobs: int) -> None:
    """Start joblib's local worker processes in the background while the main process analyses.

    Only for the default loky backend: under ``parallel_config(backend="dask")`` the workers
    are the cluster's and already running. The pool is reused by the render's ``Parallel``.
    """
    from joblib import delayed
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend).__name__ != "LokyBackend" or jobs < 2:
        return

    def warm_up() -> None:
        # Workers inherit this thread's signal mask: a Ctrl-C sent to the whole process group
        # does not hit them mid-import (a traceback each); the main process handles it and
        # ends them (see interrupt.end_children).
        try:
            with interrupt.children_shielded():
                _pool(n_jobs=jobs)(delayed(_ready)() for _ in range(jobs))
        except BaseException:  # only a head start: the process may be ending (a bad spec)
            pass

    threading.Thread(target=warm_up, daemon=True, name="avatarrender-warm-up").start()


@functools.cache
def _check_pillow_once() -> None:
    """Say it when PIL is not Pillow-SIMD (a later `pip install` of anything needing Pillow puts
    stock Pillow over it): renders stay right but run slower, which was silent."""
    from .doctor import check_pillow_simd

    try:
        check_pillow_simd()
    except RuntimeError as exc:
        logging.getLogger("avatarrender.render").warning("%s; renders run slower (avatarrender doctor)", exc)


def _lock(out_dir: Path, wait: bool) -> FolderLock:
    """The render's lock on ``out_dir`` (:func:`rendition.lock_path`), removed when released."""
    try:
        return FolderLock(lock_path(out_dir), wait=wait)
    except Busy as exc:
        raise _busy(out_dir, exc.pid) from None


def check_not_busy(out_dir: str | Path) -> None:
    """Raise :class:`RenderLockedError` at once when another render holds ``out_dir``: before the
    spec's check and the analysis, which the command would do for nothing (the lock itself is
    taken by :func:`render`)."""
    try:
        path = Path(out_dir).resolve()
    except (RuntimeError, OSError):
        return
    holder = lock_holder(lock_path(path))  # (a probe: no lock file made or removed)
    if holder is not None:
        raise _busy(path, holder)


def _busy(out_dir: Path, pid: int | None) -> RenderLockedError:
    return RenderLockedError(
        f"{out_dir}: another render of this output is running "
        f"(pid {pid or '?'}, lock {lock_path(out_dir)}); pass --wait (wait_lock=True) to wait for it"
    )


# x264 threads per encoder. Fixed, not derived from --jobs: x264's output depends on its thread
# count, and the decoded frames must not depend on how many workers ran. Parallelism comes from
# the workers (one encoder each), which keeps every core busy without frame-threading ramps.
DEFAULT_X264_THREADS = 1


def render(
    spec: Spec | str | Path,
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    chunk_segments: int | None = None,
    threads: int | None = None,
    hidden_partial: bool = False,
    force: bool = False,
    wait_lock: bool = False,
    progress: Progress | None = None,
    on_publish: Callable[[dict[str, Any]], None] | None = None,
    lead_frames: int | None = None,
    audio_pool: Any = None,
) -> dict[str, Any]:
    """Render ``spec`` into the HLS folder ``out_dir``; return its manifest.

    Parameters
    ----------
    jobs : int, optional
        Parallel chunk workers (joblib). Default: the number of cores. Under an active
        ``joblib.parallel_config(backend="dask")`` the chunks run on the cluster.
    chunk_segments : int, optional
        Media segments per chunk (default :data:`~avatarrender.plan.DEFAULT_CHUNK_SEGMENTS`;
        with ``lead_frames`` 1: such a render airs while it renders, and a chunk is published
        whole).
    threads : int, optional
        x264 threads per encoder (default 1; the bitstream depends on it, the worker count not).
    hidden_partial : bool
        Name the in-progress folder ``.NAME.partial`` (for spools that others list).
    force : bool
        Render again even if ``out_dir`` holds a complete render of the same spec.
    lead_frames : int, optional
        Split the first media segment into this many frames and the rest (see
        :func:`~avatarrender.plan.plan_chunks`): the render service's first media segment is
        then ready after a fraction of a second.
    audio_pool : concurrent.futures.Executor, optional
        Mix, normalise and encode the soundtrack there (:func:`soundtrack_process`) instead of
        in a thread of this process.
    """
    if not isinstance(spec, Spec):  # a segment.yaml, as avatarrender.render(...) takes
        from .spec import load_spec

        spec = load_spec(spec)
    for name, value, least in (
        ("jobs", jobs, 1),
        ("chunk_segments", chunk_segments, 1),
        ("threads", threads, 0),
    ):
        # before anything is made: render(jobs="2") was a TypeError from deep inside, with
        # OUT.partial/.work left behind
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise SpecError(None, name, f"{value!r}: give a whole number, at least {least}")
    _check_pillow_once()
    from joblib import delayed

    started = time.perf_counter()
    entered_at = time.time()
    out_dir = _usable_output(Path(out_dir), force=force)
    _inputs_outside(spec, out_dir)
    jobs = jobs or os.cpu_count() or 1
    if threads is None:
        threads = DEFAULT_X264_THREADS
    try:
        lock = _lock(out_dir, wait_lock)
    except OSError as exc:
        raise _not_writable(out_dir, exc) from None
    partial = partial_path(out_dir, hidden=hidden_partial)
    try:
        old = read_manifest(out_dir)
        # (a spool's item is the playout's once published: it may have let aired files go)
        damaged = _damaged(old, out_dir) if old and old.complete and not hidden_partial else []
        if damaged:  # a complete render whose files were lost or cut since: rendered again
            logging.getLogger("avatarrender.render").warning(
                "%s: %d media segment%s missing or not the size the manifest gives (%s): rendering it again",
                out_dir,
                len(damaged),
                "" if len(damaged) == 1 else "s",
                ", ".join(damaged[:3]) + (", ..." if len(damaged) > 3 else ""),
            )
        if not force and old and old.complete and old.spec_hash == spec.spec_hash and not damaged:
            if progress:
                progress(spec.frame_count, spec.frame_count)
            return {**old.to_json(), "up_to_date": True}
        if hidden_partial and out_dir.exists():
            # a spool's item may be on air (swapped, it would end mid-program with the other
            # render's media) or aired already (a new render there would never air)
            raise OutputError(
                f"{out_dir}: {out_dir.name} is in the spool already (waiting, on air or aired): "
                "give the new render another name"
            )
        if chunk_segments is None:  # aired while it renders: every media segment published alone
            chunk_segments = 1 if lead_frames else DEFAULT_CHUNK_SEGMENTS
        plan = plan_chunks(spec, chunk_segments=chunk_segments, lead_frames=lead_frames)
        stale = read_manifest(partial)
        planned = plan.segment_frames()
        if (
            stale is None
            or stale.spec_hash != spec.spec_hash
            or [s.frames for s in stale.segments] != planned[: len(stale.segments)]
        ):
            shutil.rmtree(partial, ignore_errors=True)  # another spec, or cut otherwise
        clear_failed(partial)  # a render that failed before is tried again
        work = partial / ".work"
        work.mkdir(parents=True, exist_ok=True)
        for mark in (STOP_MARK, ABORT_MARK):  # a render stopped before: this one goes on
            (work / mark).unlink(missing_ok=True)
        for leftover in [*work.glob("*.tmp*"), *work.glob("*.part"), *work.glob("*.failed")]:
            # from a killed run; the lock says none is live
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()

        _warm_up_workers(jobs)  # worker start-up overlaps the analysis below
        reading = start_reading(spec)  # espeak-ng reads the words while the speech is read
        try:
            scene_path = work / f"scene-{spec.spec_hash}.pkl"
            building = _Background(build_scene, spec, scene_path)  # PIL and numpy: mostly off the GIL
            t0 = time.perf_counter()
            speech = segment_audio(spec)
            if _profile.ENABLED:
                _profile.add("speech_read", t0)
            # the track is a pure function of the speech and the spec (whose hash covers the clips'
            # bytes and the loudness settings): its name needs no mixing first
            # (hashed in place: ``speech.tobytes() + ...`` made two copies of a long track)
            digest = hashlib.sha256(memoryview(speech).cast("B"))  # segment_audio: contiguous
            digest.update(_SOUNDTRACK_V)
            audio_hash = digest.hexdigest()[:16]
            audio_path = work / f"audio-{audio_hash}-{spec.output.audio_bitrate_kbps}k.aac"
            # TV sound mixed under the speech and loudness on target (on the whole array, before the
            # one AAC encode, so chunks stay seamless), then the AAC encoder (its own process): in
            # the background while this process analyses the speech and the first chunks render
            sound: dict[str, Any] = {}
            if audio_pool is not None:
                encoding: Any = _Apart(audio_pool, spec, speech, audio_path, sound)
            else:
                encoding = _Background(
                    _profile.timed("audio_encode", _make_track),
                    spec,
                    speech,
                    audio_path,
                    sound,
                    lead_frames is not None,
                )
            t0 = time.perf_counter()
            timeline = analyse(spec, speech, reading)  # chunks start now; they wait for audio only if ahead
        finally:
            if reading is not None:
                reading.cancel()  # analyse() ended it, unless what came before failed
        if _profile.ENABLED:
            _profile.add("analyse", t0)
            _profile.mark("analysed")
            t0 = time.perf_counter()
        building.result()
        if _profile.ENABLED:
            _profile.add("scene_build_wait", t0)
        analysed_s = time.perf_counter() - started
        # WebVTT subtitle tracks: written as their media segments are published
        subs = SubtitleWriter(spec, plan, partial)
        pub = Publisher(
            partial, dataclasses.replace(_planned_manifest(spec, plan), subtitles=subs.renditions or None)
        )
        subs.write_upto(pub.published)  # those a resumed render has already
        # Chunks whose segments are all published are done; a chunk is published whole or not.
        todo = [c for c in plan.chunks if c.first_segment >= pub.published]
        frames_done = sum(c.frame_count for c in plan.chunks if c.first_segment < pub.published)
        if progress:
            try:
                progress(frames_done, spec.frame_count)
            except StopRender:
                with contextlib.suppress(Exception):  # (as below: the soundtrack done first)
                    encoding.result()
                raise
        tasks = [
            ChunkTask(
                spec=spec,
                chunk=c,
                key=_chunk_key(spec, c, audio_hash, threads),
                work_root=str(work),
                audio_path=str(audio_path),
                timeline=slice_timeline(timeline, c.frame_start, c.frame_end),
                threads=threads,
                scene_path=str(scene_path),
            )
            for c in todo
        ]
        first_segment_s: float | None = None
        profiles: list[dict[str, Any]] = []
        attempts = 0
        rendered = reused = skipped = 0
        frames_rendered = 0  # this run's: a resumed render does not count what it found done
        stopping: StopRender | None = None
        while tasks:
            attempts += 1
            try:
                with interrupt.children_shielded():  # workers (re)started here ignore Ctrl-C
                    results = _pool(n_jobs=min(jobs, len(tasks)), return_as="generator")(
                        delayed(render_chunk)(t) for t in tasks
                    )
                for task, result in zip(tasks, results):
                    if stopping is not None:
                        continue  # drained, unpublished: the pool stays whole
                    try:
                        t0 = time.perf_counter()
                        with interrupt.deferred():  # a stop signal waits for the manifest to agree
                            pub.publish(result)
                            subs.write_upto(pub.published)
                        if _profile.ENABLED:
                            _profile.add("publish", t0)
                            profiles.append({**result, "published_at": time.time()})
                        reused += bool(result.get("reused"))
                        rendered += not result.get("reused")
                        frames_rendered += 0 if result.get("reused") else task.chunk.frame_count
                        skipped += result.get("skipped_frames", 0)
                        frames_done += task.chunk.frame_count
                        if first_segment_s is None:
                            first_segment_s = time.perf_counter() - started
                        if on_publish:
                            on_publish(pub.manifest(complete=False, stats={}).to_json())
                        if progress:
                            progress(frames_done, spec.frame_count)
                    except StopRender as exc:
                        stopping = exc
                        with contextlib.suppress(OSError):
                            (work / STOP_MARK).touch()
                    except Exception as exc:  # ours or the caller's, not a worker's: no retry
                        raise _NotTheWorkers(exc) from exc
                if stopping is not None:
                    with contextlib.suppress(Exception):  # its soundtrack done too: a render of
                        encoding.result()  # the same output next would meet it writing
                    raise _NotTheWorkers(stopping)
                tasks = []
            except _NotTheWorkers as exc:
                # publishing (a spool made read-only mid-render) or a callback (on_publish,
                # progress, a withdrawal) failed: that error, as it is. Retrying replaced it with
                # joblib's "executor has been shutdown" (the abandoned generator closed the pool)
                raise exc.error from None
            except (KeyboardInterrupt, AvatarRenderError):
                raise
            except OSError as exc:
                if stopping is not None:  # a chunk failed while the stopped render drained
                    raise stopping from None
                if exc.errno == errno.ENOSPC:
                    raise
                tasks = [t for t in tasks if t.chunk.first_segment >= pub.published]
                if attempts >= 2 or not tasks:
                    raise
            except Exception:
                if stopping is not None:
                    raise stopping from None
                # A worker died (or a chunk failed for a passing reason): retry what is left once.
                tasks = [t for t in tasks if t.chunk.first_segment >= pub.published]
                if attempts >= 2 or not tasks:
                    raise
        encoding.result()  # done when the last chunk took its audio; raises what it raised
        pub.planned = dataclasses.replace(pub.planned, loudness=sound["loudness"])
        wall_s = time.perf_counter() - started
        stats = {
            "wall_s": round(wall_s, 3),
            "analysis_s": round(analysed_s, 3),
            # of the frames this run rendered (all of them, unless it resumed)
            "fps": round(frames_rendered / wall_s, 2),
            "realtime_factor": round(float(frames_rendered / spec.output.fps) / wall_s, 3),
            "frames_rendered": frames_rendered,
            "first_segment_s": round(first_segment_s, 3) if first_segment_s else None,
            "jobs": jobs,
            "chunk_segments": chunk_segments,
            "x264_threads": threads,
            "chunks": len(plan.chunks),
            "chunks_rendered": rendered,
            "skipped_frames": skipped,  # repeats of the frame before, written as skip frames
            "chunks_reused": reused + len(plan.chunks) - len(todo),
            "attempts": attempts,
            "finished_at": utc_now_iso(),
        }
        if _profile.ENABLED:
            stats["profile"] = _profile_stats(entered_at, profiles)
        # finished: the swap is not cut in half by a stop signal, and the command is done then
        with interrupt.deferred(finishing=True):
            manifest = pub.write(complete=True, stats=stats).to_json()
            shutil.rmtree(work, ignore_errors=True)
            # Swap into place; an older render of the same name is replaced only now.
            if out_dir.is_file() or out_dir.is_symlink():
                out_dir.unlink()  # only with --force (_usable_output refused it otherwise)
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
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and not isinstance(exc, AvatarRenderError):
            raise _not_writable(Path(exc.filename or partial), exc) from None
        raise
    except FFmpegError as exc:
        if "No space left on device" in exc.stderr:
            raise _disk_full(partial, partial) from None
        raise
    except KeyboardInterrupt:  # a stop signal: (before the lock is let go, a new render waits)
        _abort_chunks_elsewhere(partial / ".work")
        raise
    finally:
        lock.release()  # and removes the lock file (safe: see FolderLock)


def _abort_chunks_elsewhere(work: Path, wait_s: float = 3.0) -> None:
    """Stop the chunks in flight on workers this process cannot end (Dask's: not its children,
    which :func:`interrupt.end_children` ends): `render --backend dask` stopped by SIGTERM
    exited 143 while two chunks went on, and renamed themselves into ``OUT.partial/.work`` a
    second after. They are told by :data:`ABORT_MARK` and looked for until ``wait_s``: a chunk
    writing leaves a ``KEY.tmpPID`` folder, which it removes as it ends."""
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend).__name__ == "LokyBackend" or not work.is_dir():
        return
    try:
        (work / ABORT_MARK).touch()
    except OSError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(p.is_dir() for p in work.glob("*.tmp*")):
        time.sleep(0.05)


def _inputs_outside(spec: Spec, out_dir: Path) -> None:
    """Refuse an output folder that holds the spec or a file it reads, even with --force: the
    render replaces the folder whole, and would delete the scene it renders."""
    for p in [spec.source, *sorted(spec.input_paths() - {spec.source})]:
        try:
            inside = p.resolve().is_relative_to(out_dir)
        except (RuntimeError, OSError):
            continue
        if inside:
            raise OutputError(
                f"{out_dir}: holds {p}, which the render reads; the render replaces the "
                "whole folder and would delete it: choose another -o"
            )


def _usable_output(out_dir: Path, *, force: bool) -> Path:
    """``out_dir`` made absolute, with its parent made; an existing file, or a folder that is
    not a render of ours, is refused unless ``force`` (the render would replace it)."""
    try:
        out_dir = out_dir.resolve()
    except (RuntimeError, OSError) as exc:
        raise OutputError(f"{out_dir}: cannot resolve the output path: {exc}") from None
    if out_dir.is_dir() and os.path.ismount(out_dir):
        # the render is written beside its output and renamed into place when complete: a mount
        # point cannot be renamed, and what is written beside it lies on the other file system
        raise OutputError(
            f"{out_dir}: a mount point (a volume or a disk of its own): a render is renamed into "
            f"place when complete, which a mount point cannot be; give a folder inside it "
            f"(-o {out_dir / 'NAME'})"
        )
    try:
        here = Path.cwd().resolve()
    except OSError:  # the process's folder was removed: it cannot lie in the output
        here = None
    if here is not None and (here == out_dir or out_dir in here.parents):
        # the render is renamed into place: the caller's process would be left in a removed
        # folder (every relative path failing after), a shell in the render's place
        raise OutputError(
            f"{out_dir}: the current folder{'' if here == out_dir else ' lies in it'}; a render "
            "replaces its whole output folder: give a folder of its own (-o NAME)"
        )
    if not force:
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(
                f"{out_dir}: exists and is not a folder; the render would replace "
                "it: choose another -o, or pass --force (force=True) to replace it"
            )
        if out_dir.is_dir() and read_manifest(out_dir) is None and any(out_dir.iterdir()):
            raise OutputError(
                f"{out_dir}: a folder that is not a render (no manifest.json); "
                "the render would replace it: choose another -o, or pass --force (force=True)"
            )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _not_writable(out_dir.parent, exc) from None
    return out_dir


def _damaged(manifest, out_dir: Path) -> list[str]:
    """The media segments of a render that are missing, or not the size its manifest gives."""
    bad = []
    for seg in manifest.segments:
        try:
            if (out_dir / seg.uri).stat().st_size != seg.size_bytes:
                bad.append(seg.uri)
        except OSError:
            bad.append(seg.uri)
    return bad


def _not_writable(where: Path, exc: OSError) -> OutputError:
    err = OutputError(f"{where}: cannot write the output here ({exc.strerror or exc})")
    err.exit_code = 1  # the machine's state, not the input
    return err


class _NotTheWorkers(Exception):
    """An error raised while a chunk's result was taken in (publishing, the callbacks), carried
    past the retry of failed workers."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def _profile_stats(entered_at: float, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The render's per-stage profile (``AVATARRENDER_PROFILE=1``): the main process's own
    sums, the workers' summed over chunks (s of one core each), and when the first chunk began."""
    workers: dict[str, float] = {}
    for r in results:
        for k, v in r.get("profile", {}).items():
            workers[k] = round(workers.get(k, 0.0) + v, 4)
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_pid.setdefault(r["pid"], []).append(r)
    workers["cpu_start"] = round(
        sum(min(x["cpu_at_start_s"] for x in rs) for rs in by_pid.values() if rs[0]["pid"] != os.getpid()), 3
    )
    workers["cpu"] = round(sum(max(x["cpu_s"] for x in rs) for rs in by_pid.values()), 3)
    ends = [max(x["started_at"] + x["seconds"] for x in rs) for rs in by_pid.values()]
    workers["tail_idle"] = round(max(ends) - min(ends), 3) if ends else 0.0  # the first done waits
    return {
        "entered_at": entered_at,
        "main": {**_profile.take(), "cpu": time.process_time()},
        "workers": workers,
        "first_chunk_at": min((r["started_at"] for r in results), default=None),
        "pids": sorted({r["pid"] for r in results}),
        # the way to the first media segments: when each event happened, s after entering render
        "marks": {k: round(v - entered_at, 3) for k, v in _profile.take_marks().items()},
        "chunks": [
            {
                "index": r["index"],
                "pid": r["pid"],
                "started": round(r["started_at"] - entered_at, 3),
                **{k: round(v - entered_at, 3) for k, v in r.get("marks", {}).items()},
                "finished": round(r["started_at"] + r["seconds"] - entered_at, 3),
                "published": round(r["published_at"] - entered_at, 3),
            }
            for r in results[:4]
        ],
    }


def _disk_full(partial: Path, where: str | Path) -> DiskFullError:
    man = read_manifest(partial)
    done = len(man.segments) if man else 0
    return DiskFullError(
        f"{where}: no space left on device; the {done} media segments finished "
        f"so far stay valid in {partial} and a new render resumes from there"
    )


# ---------------------------------------------------------------------------------- background


def _error_line(exc: BaseException) -> str:
    """What the CLI would print for ``exc``: its message's first line (ffmpeg's tail follows)."""
    if isinstance(exc, AvatarRenderError):
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _render_ahead_main(spec_path: str, out_dir: str, idle_s: str | None = None) -> int:
    """The body of a render-ahead process: render (the idle loop of ``idle_s`` seconds, when
    given), print the outcome as one JSON line on stdout (``{"error": null}`` or the error
    line), return the exit code."""
    import signal

    from .spec import load_spec

    rendering = [True]

    def stop(signum: int, frame: Any) -> None:
        # The first signal only, and none once the render is over: with systemd's
        # KillMode=control-group the whole group gets SIGTERM and the playout's terminate()
        # sends another a moment later, which cut the first one's clean-up short (the workers
        # were left running). interrupt's handler raises at once, or after a step that must not
        # be cut in half (publishing a media segment). What joblib's pool says as it is torn
        # down (a KeyError traceback from loky's manager thread, seen in the playout's log) is
        # not news: stderr goes to /dev/null from here on.
        if rendering[0]:
            rendering[0] = False
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            interrupt._handler(signum, frame)

    for sig in interrupt.SIGNALS:  # SIGHUP too: its workers block it, and would outlive us
        signal.signal(sig, stop)
    # its warnings go into the playout's log (this stderr) as the playout's own lines look:
    # stamped, one line each, not Python's two with a source line

    from .logs import log_to_stderr

    log_to_stderr(logging.WARNING)

    def show(message: Any, *_: Any, **__: Any) -> None:
        logging.getLogger("avatarrender.render").warning("%s", " ".join(str(message).split()))

    warnings.showwarning = show
    code, error = 0, None
    try:
        spec = load_spec(spec_path)
        # another render of this output (one a killed playout left running, say) is waited for,
        # not taken as this one failing: then this one finds it done, or resumes its chunks
        render(spec.idle(float(idle_s)) if idle_s is not None else spec, out_dir, wait_lock=True)
    except KeyboardInterrupt:
        code, error = 130, "stopped"
    except AvatarRenderError as exc:
        code, error = exc.exit_code, _error_line(exc)  # the line says it all: no traceback
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        code, error = 1, _error_line(exc)
    rendering[0] = False
    try:
        print(json.dumps({"error": error}), flush=True)
    except OSError:  # the playout that asked is gone (killed): nobody to tell, the render stands
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return code


def _render_ahead_exit(*args: str) -> None:
    """Run :func:`_render_ahead_main` and end the process as the command line does: the worker
    pool shut down (its processes end), then ``os._exit``. Not the interpreter's exit: a SIGTERM
    that lands in loky's exit hook (a render stopped just as it finished) broke it off half-way,
    and the process hung on its threads until it was killed, its workers left behind."""
    code = _render_ahead_main(*args)
    if code == 0:
        interrupt.end_pool()
    else:  # stopped or failed: whatever the render started ends with it (workers, ffmpeg)
        interrupt.end_children()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class RenderProcess:
    """One render in a process of its own (see :class:`ProcessRenderer`); a
    :class:`~avatarrender.playout.render_ahead.RenderJob`.

    A new interpreter runs :func:`_render_ahead_main` (not a fork: the caller runs threads, and
    not multiprocessing's spawn, which would run the caller's ``__main__`` again). Its stderr is
    the caller's; its stdout carries the outcome.
    """

    def __init__(self, spec_path: Path, out_dir: Path, *, idle_s: float | None = None):
        import subprocess

        self.spec_path, self.out_dir = Path(spec_path), Path(out_dir)
        code = "import sys; from avatarrender.render import _render_ahead_exit; _render_ahead_exit(*sys.argv[1:])"
        idle = [repr(float(idle_s))] if idle_s is not None else []
        # as the CLI does: OpenBLAS threads would spin against the render's workers
        env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, str(spec_path), str(out_dir), *idle],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
        )
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
        why = self._error or (
            f"the render process was killed by signal {-code}"
            if code < 0
            else f"the render process ended with exit code {code}"
        )
        raise AvatarRenderError(why if str(self.spec_path) in why else f"{self.spec_path}: {why}")

    def terminate(self) -> None:
        """SIGTERM (the render stops its workers and ends in about a second); what is still
        there after 10 s is killed, the render's own children with it."""
        import subprocess

        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                tree = interrupt._children_of(self._proc.pid)
                self._proc.kill()
                for pid in tree:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                self._proc.wait()


class ProcessRenderer:
    """The renderer the ``playout`` command hands to the playout
    (:class:`~avatarrender.playout.render_ahead.Renderer`): each render-ahead runs :func:`render`
    in a process of its own, so the playout's loop never waits on it. The filler too, before the
    channel starts, and waited for: its render's worker pool ends with that process rather than
    idling in the playout (loky keeps idle workers for 300 s; about 650 MB at 1080p)."""

    def render_ahead(self, spec_path: Path, out_dir: Path) -> RenderProcess:
        return RenderProcess(spec_path, out_dir)

    def render_filler(self, spec_path: Path, duration_s: float, root: Path) -> Path:
        from .spec import load_spec

        spec = load_spec(spec_path).idle(duration_s)  # errors in the spec: said here, at once
        dest = Path(root) / f"idle-{spec.spec_hash}"
        old = read_manifest(dest)
        if old is not None and old.complete and old.spec_hash == spec.spec_hash and not _damaged(old, dest):
            # rendered before (a restart): what render() would find up to date, without a
            # process importing everything and checking the spec again (0.5-1 s of a restart,
            # with no playlist served meanwhile)
            return dest
        job = RenderProcess(Path(spec_path), dest, idle_s=duration_s)
        try:
            job._proc.wait()
        except BaseException:
            job.terminate()  # Ctrl-C while the filler renders: its process goes too
            raise
        job.result()
        return dest


class _RenderModule(type(sys)):
    """This module, callable: ``avatarrender.render("segment.yaml", "out/")`` is the public entry
    point, and ``avatarrender.render`` stays the module for its parts (a function of that name in
    the package would be replaced by the module as soon as anything imports it)."""

    def __call__(self, spec: str | Path | Spec, out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
        """Render a segment into the HLS folder ``out_dir`` (complete, or an error and nothing
        half-written under that name); return its manifest.

        Parameters
        ----------
        spec : str, Path or Spec
            A segment.yaml, or a spec already loaded by :func:`avatarrender.load_spec`.
        out_dir : str or Path
            The rendition's folder (``index.m3u8``, MPEG-TS media segments, ``manifest.json``);
            while rendering it grows as ``OUT.partial``, renamed to ``OUT`` when complete.
        **kwargs
            ``jobs``, ``chunk_segments``, ``force``, ``wait_lock``, ``progress`` ... as
            :func:`avatarrender.render.render`.

        Returns
        -------
        dict
            The manifest (``manifest.json``): segments with their durations (s), fps, codecs,
            ``up_to_date`` when an identical render was already there.

        Raises
        ------
        SpecError, AssetNotFoundError
            The YAML or a file it names is wrong (the message names the file and the field).
        RenderLockedError
            Another render of ``out_dir`` is running (and ``wait_lock`` is false).
        MediaError, FFmpegError, DiskFullError
            An input could not be decoded, the encoder failed, the disk filled up.
        """
        if not isinstance(spec, Spec):
            from .spec import load_spec

            spec = load_spec(spec)
        return render(spec, out_dir, **kwargs)


sys.modules[__name__].__class__ = _RenderModule

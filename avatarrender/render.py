"""Chunked render: analyse once, render chunks in parallel (joblib), publish in air order.

Output protocol (what playout reads):

- ``OUT.partial/`` (or ``SPOOL/.NAME.partial/``) while rendering: media segments appear there
  atomically in air order; ``index.m3u8`` is an EVENT playlist and ``manifest.json`` has
  ``"complete": false``, both listing the contiguous finished prefix.
- On success the folder is renamed to ``OUT`` with a VOD playlist and ``"complete": true``.

Chunks are content-addressed (spec hash, frame range, encoder settings, audio), rendered into
``.work/KEY.tmpPID`` and renamed to ``.work/KEY`` when whole, so a render killed at any point
and started again renders only what is missing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import hashlib
import json
import os
import pickle
import shutil
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _profile
from .analysis import Timeline, analyse, segment_audio
from .audio import AdtsStream, encode_aac
from .encode import ChunkEncoder, SegmentJob, TVReader
from .errors import AvatarRenderError, DiskFullError, FFmpegError, RenderLockedError
from .hls import atomic_write, codecs_string, continue_cc, dump_json, media_playlist
from .plan import DEFAULT_CHUNK_SEGMENTS, Chunk, ChunkPlan, plan_chunks
from .scene import Frame, Scene
from .spec import Spec

__all__ = ["render", "render_chunk", "partial_path", "ChunkTask", "Progress", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "avatarrender.segment/1"

Progress = Callable[[int, int], None]  # (frames done, frames total)


def partial_path(out_dir: Path, *, hidden: bool = False) -> Path:
    """Where a render of ``out_dir`` lives until it is complete."""
    out_dir = Path(out_dir)
    name = f".{out_dir.name}.partial" if hidden else f"{out_dir.name}.partial"
    return out_dir.with_name(name)


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


_SCENES: dict[str, Scene] = {}


def _scene(spec: Spec, path: str | None = None) -> Scene:
    """One Scene per spec per worker process: for the first chunk loaded from ``path`` (built
    once by the main process while it analysed the speech) or built, then reused."""
    key = spec.spec_hash
    scene = _SCENES.get(key)
    if scene is None:
        _SCENES.clear()
        if path and os.path.isfile(path):
            with open(path, "rb") as fh:
                scene = pickle.load(fh)  # our own file, in the render's own work folder
        else:
            scene = Scene(spec)
        _SCENES[key] = scene
    return scene


def _build_scene(spec: Spec, path: Path) -> None:
    """Build the Scene once for all workers (images decoded and scaled, layers blended,
    captions laid out: 0.2-0.3 s at 1080p, which each worker would otherwise spend before its
    first frame)."""
    scene = Scene(spec)
    _SCENES.clear()
    _SCENES[spec.spec_hash] = scene  # for chunks rendered in this process (--jobs 1)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump(scene, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:  # a full disk, say: only a saving lost, each worker builds its own
        tmp.unlink(missing_ok=True)


def compose_frames(spec: Spec, timeline: Timeline, scene: Scene) -> Any:
    """Yield each frame's flat yuv420p buffer (one reused buffer: consume before the next)."""
    tv = spec.model.tv
    reader = None
    if tv and tv.clips:
        x0, y0, x1, y1 = scene.screen  # in output pixels
        reader = TVReader([spec.path(c.file) for c in tv.clips], (x1 - x0, y1 - y0), spec.output.fps)
    buf = Frame.empty(spec.output.width, spec.output.height)
    fresh, screen_dirty = True, False  # one buffer, refreshed where frames can differ
    clips = reader.frames(timeline.tv_clip, timeline.tv_time_s) if reader else None
    try:
        for i in range(timeline.frame_count):
            state = timeline.state_key(i)
            planes = next(clips) if clips is not None else None
            yield scene.compose(buf, state, planes, fresh=fresh, screen_dirty=screen_dirty).data
            fresh, screen_dirty = False, planes is not None
    finally:
        if clips is not None:
            clips.close()


_ADTS: dict[str, AdtsStream] = {}

# A chunk waiting for the AAC track gives up when the file has not grown for this long.
AUDIO_STALL_S = 120.0


def _audio_part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _audio_failed(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


class _AudioSource:
    """A chunk's view of the segment's AAC track, which may still be being encoded.

    The main process encodes the track once into ``NAME.part`` frame by frame while the first
    chunks render, then renames it to ``NAME``; a media segment waits (at the end of its
    video) until the frames it needs are written. On shared storage the same works for
    cluster workers.
    """

    def __init__(self, path: Path):
        self.path = path

    def _until(self, frames: int | None) -> AdtsStream:
        key = str(self.path)
        if key in _ADTS:
            return _ADTS[key]
        size, since = -1, time.monotonic()
        while True:
            if self.path.is_file():
                _ADTS.clear()
                adts = _ADTS[key] = AdtsStream.read(self.path)
                return adts
            if _audio_failed(self.path).exists():
                raise AvatarRenderError(f"{self.path.name}: the audio encoder failed")
            try:
                now = _audio_part(self.path).stat().st_size
            except FileNotFoundError:
                now = 0  # not started yet, or renamed just now
            if now != size:  # grown: are the frames it needs there yet?
                size, since = now, time.monotonic()
                if frames is not None and now:
                    try:
                        data = _audio_part(self.path).read_bytes()
                    except FileNotFoundError:
                        continue  # renamed meanwhile: the finished file is there
                    adts = AdtsStream.parse(data, name=str(self.path), complete=False)
                    if adts.frame_count >= frames:
                        return adts
            elif time.monotonic() - since > AUDIO_STALL_S:
                raise AvatarRenderError(f"{self.path}: the audio track stopped growing "
                                        f"({size} bytes for {AUDIO_STALL_S:.0f} s)")
            time.sleep(0.01)

    def __call__(self, job: SegmentJob) -> tuple[list[bytes], Fraction]:
        needed = None if job.end_s is None else AdtsStream.first_frame_at(job.end_s)
        adts = self._until(needed)
        k0, k1 = adts.frames_for(job.start_s, job.end_s)
        return [adts.frame(k) for k in range(k0, k1)], adts.pts_s(k0)


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
        started_at = time.time()
        cpu_at_start = time.process_time()  # this worker's CPU so far (its start-up, if first)
        scene = _scene(spec, task.scene_path)
        if _profile.ENABLED:
            _profile.add("scene_load", started)
        segments = []
        frame_index = chunk.frame_start
        for i, n in enumerate(chunk.segment_frames):
            s0 = Fraction(frame_index) / fps
            s1 = None if (last and i == len(chunk.segment_frames) - 1) else Fraction(
                frame_index + n) / fps
            segments.append(SegmentJob(path=tmp / f"seg_{chunk.first_segment + i:05d}.ts",
                                       frames=n, start_s=s0, end_s=s1))
            frame_index += n
        with ChunkEncoder(spec.output, segments, audio=_AudioSource(Path(task.audio_path)),
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
            "started_at": started_at, **({"profile": _profile.take(), "cpu_s": time.process_time(),
                                          "cpu_at_start_s": cpu_at_start} if _profile.ENABLED else {}),
        }
        (tmp / "done.json").write_text(json.dumps(result))
        os.replace(tmp, final)
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _slice(tl: Timeline, a: int, b: int) -> Timeline:
    return dataclasses.replace(
        tl, mouth=tl.mouth[a:b], eyes=tl.eyes[a:b], caption=tl.caption[a:b],
        tv_clip=tl.tv_clip[a:b], tv_time_s=tl.tv_time_s[a:b],
    )


def _chunk_key(spec: Spec, chunk: Chunk, audio_hash: str, threads: int | None) -> str:
    doc = json.dumps([spec.spec_hash, audio_hash, threads, chunk.frame_start, chunk.frame_end,
                      chunk.first_segment, list(chunk.segment_frames)])
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Publisher:
    """Moves finished chunks into the partial folder in air order and keeps playlist + manifest."""

    def __init__(self, spec: Spec, partial: Path, plan: ChunkPlan):
        self.spec = spec
        self.partial = partial
        self.plan = plan
        self.manifest_path = partial / "manifest.json"
        self.segments: list[dict[str, Any]] = []
        self.cc: dict[str, int] = {}
        self.created_at = _now_iso()
        old = self._read()
        if old and old.get("spec_hash") == spec.spec_hash and not old.get("complete"):
            self.segments = [s for s in old["segments"] if (partial / s["uri"]).is_file()]
            self.cc = old.get("render", {}).get("cc_state", {}) if len(self.segments) == len(
                old["segments"]) else {}
            if not self.cc:
                self.segments = []
            self.created_at = old.get("created_at", self.created_at)

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None

    @property
    def published(self) -> int:
        return len(self.segments)

    def publish(self, result: dict[str, Any]) -> None:
        src = Path(result["dir"])
        fps = self.spec.output.fps
        for seg in result["segments"]:
            data = continue_cc((src / seg["uri"]).read_bytes(), self.cc)
            atomic_write(self.partial / seg["uri"], data)
            self.segments.append({
                "uri": seg["uri"], "frames": seg["frames"],
                "duration_s": float(Fraction(seg["frames"]) / fps),
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            })
        self.write(complete=False, stats={})
        shutil.rmtree(src, ignore_errors=True)

    def manifest(self, *, complete: bool, stats: dict[str, Any]) -> dict[str, Any]:
        out = self.spec.output
        total_bytes = sum(s["bytes"] for s in self.segments)
        dur = sum(s["duration_s"] for s in self.segments) or 1.0
        peak = max((s["bytes"] * 8 / s["duration_s"] for s in self.segments), default=0)
        return {
            "format": MANIFEST_FORMAT,
            "complete": complete,
            "spec_hash": self.spec.spec_hash,
            "source": str(self.spec.source),
            "width": out.width, "height": out.height,
            "fps": f"{out.fps.numerator}/{out.fps.denominator}",
            "duration_s": float(self.spec.duration_s),
            "frame_count": self.spec.frame_count,
            "segment_type": out.segment_type,
            "target_duration_s": int(-(-out.segment_duration_s // 1)),
            "codecs": codecs_string(self.partial / self.segments[0]["uri"]) if self.segments
            else "avc1.640028,mp4a.40.2",
            "bandwidth_bps": int(max(peak, total_bytes * 8 / dur)),
            "average_bandwidth_bps": int(total_bytes * 8 / dur),
            "planned_segments": self.plan.segment_count,
            "segments": self.segments,
            "created_at": self.created_at,
            "render": {**stats, "cc_state": dict(self.cc)},
        }

    def write(self, *, complete: bool, stats: dict[str, Any]) -> dict[str, Any]:
        man = self.manifest(complete=complete, stats=stats)
        atomic_write(self.partial / "index.m3u8", media_playlist(
            self.segments, target_duration_s=man["target_duration_s"], complete=complete))
        atomic_write(self.manifest_path, dump_json(man))
        return man


def _encode_audio(samples: np.ndarray, path: Path, bitrate_kbps: int) -> None:
    """Encode into ``NAME.part`` (chunks follow it as it grows), then rename to ``NAME``; on
    failure leave ``NAME.failed`` so that waiting chunks stop."""
    started = time.perf_counter()
    try:
        encode_aac(samples, _audio_part(path), bitrate_kbps=bitrate_kbps)
        os.replace(_audio_part(path), path)
        if _profile.ENABLED:
            _profile.add("audio_encode", started)
    except BaseException:
        try:
            _audio_failed(path).touch()
        except OSError:
            pass
        raise


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
        _quick_exit_in_loky_worker()


_QUICK_EXIT = False


def _quick_exit_in_loky_worker() -> None:
    """Let a loky worker end without tearing its interpreter down.

    When the pool shuts down (the command's exit waits for it), a worker that has returned its
    last result would spend 0.2-0.3 s unloading numpy, PyAV's libraries and freeing its caches,
    nothing of which outlives it. Registered last, this ``atexit`` handler runs first and ends
    the process on the spot. Only in loky's own worker processes (named ``LokyProcess-N``): a
    Dask worker, say, has exit handlers of its own that must run.
    """
    global _QUICK_EXIT
    import multiprocessing

    if _QUICK_EXIT or not multiprocessing.current_process().name.startswith("LokyProcess"):
        return
    import atexit

    _QUICK_EXIT = True
    atexit.register(os._exit, 0)


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


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(out_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


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
    entered_at = time.time()
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    if threads is None:
        threads = DEFAULT_X264_THREADS
    lock = _lock(out_dir, wait_lock)
    partial = partial_path(out_dir, hidden=hidden_partial)
    try:
        old = read_manifest(out_dir)
        if (not force and old and old.get("complete") and old.get("spec_hash") == spec.spec_hash):
            if progress:
                progress(spec.frame_count, spec.frame_count)
            return {**old, "up_to_date": True}
        stale = read_manifest(partial)
        if stale is None or stale.get("spec_hash") != spec.spec_hash:
            shutil.rmtree(partial, ignore_errors=True)
        work = partial / ".work"
        work.mkdir(parents=True, exist_ok=True)
        for leftover in [*work.glob("*.tmp*"), *work.glob("*.part"), *work.glob("*.failed")]:
            # from a killed run; the lock says none is live
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()

        _warm_up_workers(jobs)  # worker start-up overlaps the analysis below
        scene_path = work / f"scene-{spec.spec_hash}.pkl"
        building = _Background(_build_scene, spec, scene_path)  # PIL and numpy: mostly off the GIL
        t0 = time.perf_counter()
        samples = segment_audio(spec)
        if _profile.ENABLED:
            _profile.add("speech_read", t0)
        audio_hash = hashlib.sha256(samples.tobytes()).hexdigest()[:16]
        audio_path = work / f"audio-{audio_hash}-{spec.output.audio_bitrate_kbps}k.aac"
        encoding = None
        if not audio_path.is_file():
            # the AAC encoder (its own process) runs while this process analyses the speech
            # and the first chunks render
            encoding = _Background(_encode_audio, samples, audio_path, spec.output.audio_bitrate_kbps)
        t0 = time.perf_counter()
        timeline = analyse(spec, samples)  # chunks start now; they wait for audio only if ahead
        if _profile.ENABLED:
            _profile.add("analyse", t0)
            t0 = time.perf_counter()
        building.result()
        if _profile.ENABLED:
            _profile.add("scene_build_wait", t0)
        analysed_s = time.perf_counter() - started
        plan = plan_chunks(spec, chunk_segments=chunk_segments)
        pub = _Publisher(spec, partial, plan)
        # Chunks whose segments are all published are done; a chunk is published whole or not.
        todo = [c for c in plan.chunks if c.first_segment >= pub.published]
        frames_done = sum(c.frame_count for c in plan.chunks if c.first_segment < pub.published)
        if progress:
            progress(frames_done, spec.frame_count)
        tasks = [
            ChunkTask(spec=spec, chunk=c, key=_chunk_key(spec, c, audio_hash, threads), work_root=str(work),
                      audio_path=str(audio_path),
                      timeline=_slice(timeline, c.frame_start, c.frame_end), threads=threads,
                      scene_path=str(scene_path))
            for c in todo
        ]
        first_segment_s: float | None = None
        profiles: list[dict[str, Any]] = []
        attempts = 0
        rendered = reused = 0
        while tasks:
            attempts += 1
            try:
                results = Parallel(n_jobs=min(jobs, len(tasks)), return_as="generator")(
                    delayed(render_chunk)(t) for t in tasks)
                for task, result in zip(tasks, results):
                    t0 = time.perf_counter()
                    pub.publish(result)
                    if _profile.ENABLED:
                        _profile.add("publish", t0)
                        profiles.append(result)
                    reused += bool(result.get("reused"))
                    rendered += not result.get("reused")
                    frames_done += task.chunk.frame_count
                    if first_segment_s is None:
                        first_segment_s = time.perf_counter() - started
                    if on_publish:
                        on_publish(pub.manifest(complete=False, stats={}))
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
        if encoding is not None:
            encoding.result()  # done when the last chunk took its audio; raises what it raised
        wall_s = time.perf_counter() - started
        stats = {
            "wall_s": round(wall_s, 3), "analysis_s": round(analysed_s, 3),
            "fps": round(spec.frame_count / wall_s, 2),
            "realtime_factor": round(float(spec.duration_s) / wall_s, 3),
            "first_segment_s": round(first_segment_s, 3) if first_segment_s else None,
            "jobs": jobs, "chunk_segments": chunk_segments, "x264_threads": threads,
            "chunks": len(plan.chunks), "chunks_rendered": rendered,
            "chunks_reused": reused + len(plan.chunks) - len(todo), "attempts": attempts,
            "finished_at": _now_iso(),
        }
        if _profile.ENABLED:
            stats["profile"] = _profile_stats(entered_at, profiles)
        manifest = pub.write(complete=True, stats=stats)
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
    workers["cpu_start"] = round(sum(min(x["cpu_at_start_s"] for x in rs) for rs in by_pid.values()
                                     if rs[0]["pid"] != os.getpid()), 3)
    workers["cpu"] = round(sum(max(x["cpu_s"] for x in rs) for rs in by_pid.values()), 3)
    ends = [max(x["started_at"] + x["seconds"] for x in rs) for rs in by_pid.values()]
    workers["tail_idle"] = round(max(ends) - min(ends), 3) if ends else 0.0  # the first done waits
    return {"entered_at": entered_at, "main": {**_profile.take(), "cpu": time.process_time()},
            "workers": workers,
            "first_chunk_at": min((r["started_at"] for r in results), default=None),
            "pids": sorted({r["pid"] for r in results})}


def _disk_full(partial: Path, where: str | Path) -> DiskFullError:
    man = read_manifest(partial) or {}
    done = len(man.get("segments", []))
    return DiskFullError(f"{where}: no space left on device; the {done} media segments finished "
                         f"so far stay valid in {partial} and a new render resumes from there")


def preview_frame(spec: Spec, at_s: float) -> np.ndarray:
    """One composited frame as RGB (no encode): the same yuv the render would send to x264.

    Returns
    -------
    np.ndarray [shape=(height, width, 3), dtype=uint8]
    """
    n = min(spec.frame_count - 1, max(0, int(Fraction(at_s) * spec.output.fps)))
    timeline = analyse(spec, segment_audio(spec))
    scene = Scene(spec)
    one = _slice(timeline, n, n + 1)
    data = next(iter(compose_frames(spec, one, scene)))
    frame = Frame.wrap(np.array(data), spec.output.width, spec.output.height)
    return frame.to_rgb()

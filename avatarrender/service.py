"""The render service: warm workers that render every submitted segment into a playout spool.

``avatarrender render`` pays its start-up (Python and its imports, two worker interpreters, the
Scene, each worker's first x264 faulting in its memory) on every run: about a second before the
first media segment. A channel that must put new content on screen within two seconds of its
submission cannot pay that each time, so this long-running process pays it once:

* the worker pool is started at launch and kept (loky's reusable executor with a long idle
  timeout, or the workers of a Dask cluster with ``scheduler``);
* each worker runs a small warm-up encode at the output size, so its x264 frame pool is already
  in memory (see ``encode.keep_freed_memory``);
* Scenes are built in the service process, whose caches (decoded and blended images) outlive a
  submission; ``warm`` specs (the channel's scene, say its filler's segment.yaml) have their
  first two seconds rendered at launch and thrown away, so that even the first submission over
  that scene finds every cache, decoder and code path warm in every worker (measured: the first
  submission's first media segment came 1.0 s later than the next ones without it).

Submissions arrive in an *inbox* folder, oldest first:

* ``NAME.submit``: JSON ``{"spec": "/abs/path/segment.yaml", "name": "NAME"}`` written atomically
  by ``avatarrender submit`` (the spec's relative paths stay relative to its own folder);
* ``NAME.yaml``: a segment.yaml dropped in the inbox itself (its paths are relative to the inbox).

Each is rendered exactly as ``avatarrender render SPEC --into SPOOL --name NAME`` would (same
chunks, locks, outputs); the submission stays in the inbox until its render is complete, so a
service killed mid-render and started again resumes the chunks that are missing. A submission
that fails is moved to ``INBOX/.failed/`` with ``INBOX/NAME.error`` (one line) beside it; the
service goes on with the next one. One rendered is moved to ``INBOX/.done/``, kept there a
week. What it is doing is in ``INBOX/.status.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import glob
import json
import logging
import os
import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import AvatarRenderError, DiskFullError, OutputError, RenderLockedError, SpecError, StopRender
from .files import atomic_write

__all__ = ["unwatched", "RenderService", "Submission", "submit", "STATUS_NAME"]

log = logging.getLogger("avatarrender.service")

STATUS_NAME = ".status.json"
DONE_KEEP_S = 7 * 86400  # rendered submissions are kept in INBOX/.done/ this long
_WARM_PREFIX = ".warm-up-"  # + host-pid: the scene warm-ups' folders in the spool
_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", os.uname().nodename if hasattr(os, "uname") else "host")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUFFIXES = (".submit", ".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class Submission:
    """One file of the inbox: what to render and under which name in the spool."""

    path: Path  # the inbox file
    spec: Path  # the segment.yaml
    name: str  # the folder's name in the spool


def _check_name(name: str, where: str | Path | None) -> str:
    if not _NAME_OK.match(name) or name.endswith(".partial"):
        raise SpecError(
            where,
            "name",
            f"{name!r} is not a usable spool name: letters, digits, "
            "'.', '_' and '-', starting with a letter or digit",
        )
    return name


def _signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, modification time) of ``path``; None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def submit(spec: str | Path, inbox: str | Path, *, name: str | None = None) -> Path:
    """Hand ``spec`` to a render service watching ``inbox``; returns the submission file.

    The name defaults to the YAML's stem and the UTC time (``talk-20261130T101500Z``), as
    ``render --into`` names it.

    Parameters
    ----------
    spec : str or Path
        The segment.yaml (not read here: the service validates it when it takes it).
    inbox : str or Path
        The folder a :class:`RenderService` watches; made if missing.
    name : str, optional
        The rendition's name in the service's spool.

    Returns
    -------
    Path
        The submission file written (atomically) into ``inbox``.

    Raises
    ------
    SpecError
        The spec is not a file, or the name is not usable.
    """
    spec = Path(spec).resolve()
    if not spec.is_file():
        raise SpecError(spec, None, "no such segment.yaml")
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    name = _check_name(name or f"{spec.stem}-{stamp}", "--name")
    path = inbox / f"{name}.submit"
    if path.exists():
        raise SpecError(path, "name", "a submission of this name is already waiting")
    # the spool of the service watching this inbox (what its status says): a name in it is
    # taken (the item waits, airs or aired), and a render there would fail
    try:
        spool = Path(json.loads((inbox / STATUS_NAME).read_text())["spool"])
    except (OSError, ValueError, KeyError, TypeError):
        spool = None
    if spool is not None and (spool / name).exists():
        raise SpecError(None, "name", f"{name} is in the spool already ({spool / name}): give another name")
    from .rendition import render_running

    if spool is not None and render_running(spool / name):
        raise SpecError(
            None, "name", f"{name} is being rendered into the spool ({spool}) already: give another name"
        )
    # a name whose render failed before: this submission is the new try
    (inbox / f"{name}.error").unlink(missing_ok=True)
    # written beside, then linked into place: create-only (a rename replaced a submission of the
    # same name made at the same moment: both said they were taken, one was lost, a review)
    tmp = inbox / f".{name}.submit.{os.getpid()}.{threading.get_ident()}.tmp"
    atomic_write(tmp, json.dumps({"spec": str(spec), "name": name}) + "\n")
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: created exclusively, one write
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(tmp.read_bytes())
    except FileExistsError:
        raise SpecError(path, "name", "a submission of this name is already waiting") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def unwatched(inbox: str | Path) -> str | None:
    """Why no render service is watching ``inbox`` (a sentence), or None when one is: it has
    never run there (no status file), or its process is gone. A submission then waits."""
    inbox = Path(inbox)
    try:
        status = json.loads((inbox / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return f"no render service has run on {inbox}: the submission waits there until `avatarrender serve --inbox {inbox}` starts"
    pid, host = status.get("pid"), status.get("host")
    if not _serving(inbox, pid, host):
        return f"the render service of {inbox} (pid {pid}) is not running: the submission waits there until it starts again"
    return None


def _serving(inbox: Path, pid: Any, host: Any) -> bool:
    """Whether a service holds ``inbox``'s lock (the status file outlives a killed one). The
    lock, not the status's pid: a pid names another process once reused (a service that was a
    container's pid 1, killed: /proc/1 is the reader's own init), and a reader under another
    host name (a sidecar container sharing the inbox) could not tell at all; both took a dead
    service for a live one (``metrics``: up 1, its last render still rendering)."""
    from .rendition import lock_holder

    lock = inbox / ".lock"
    try:
        os.close(os.open(lock, os.O_RDONLY | os.O_CLOEXEC))
    except FileNotFoundError:
        return False  # a running service holds it from its start, before any status
    except OSError:  # not this user's to open (a unit's UMask): the pid, on this host only
        return not (isinstance(pid, int) and host == _HOST and not Path(f"/proc/{pid}").exists())
    return lock_holder(lock) is not None


FULL_RETRY_S = 10.0  # a submission stopped by a full disk is tried again this often


class _Withdrawn(StopRender):
    """The submission's file was removed while it rendered (the workers stay warm)."""


def _recorded_failures(inbox: Path) -> list[dict[str, Any]]:
    """The failures whose ``NAME.error`` is still in ``inbox``, oldest first (the last 20)."""
    found = []
    try:
        for p in inbox.glob("*.error"):
            with contextlib.suppress(OSError):
                at = dt.datetime.fromtimestamp(p.stat().st_mtime, dt.timezone.utc)
                message = p.read_text(errors="replace").strip()
                # the submission file as it was named (kept in .failed/), as _fail records it
                kept = next((f for f in (inbox / ".failed").glob(f"{glob.escape(p.stem)}.*")), None)
                file = str(inbox / kept.name) if kept is not None else str(p.with_suffix(""))
                found.append({"file": file, "error": message, "at": at.isoformat(timespec="seconds")})
    except OSError:
        return []
    return sorted(found, key=lambda f: f["at"])[-20:]


def read_submission(path: Path) -> Submission:
    """The submission a file of the inbox stands for.

    Raises
    ------
    SpecError
        A ``.submit`` file that is not the JSON ``submit`` writes, or an unusable name.
    """
    if path.suffix == ".submit":
        try:
            doc = json.loads(path.read_text())
            spec, name = Path(doc["spec"]), str(doc.get("name") or path.stem)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpecError(
                path, None, f"not a submission written by 'avatarrender submit' ({exc})"
            ) from None
        if not spec.is_absolute():
            spec = path.parent / spec
        return Submission(path=path, spec=spec, name=_check_name(name, path))
    return Submission(path=path, spec=path, name=_check_name(path.stem, path))


def _warm_encoder(width: int, height: int, options: dict[str, str], frames: int) -> int:
    """In a worker: encode a few frames at the output size, so this process's malloc holds a
    warm x264 frame pool for the first real segment (see ``encode.keep_freed_memory``)."""
    import av
    import numpy as np

    from .encode import keep_freed_memory

    keep_freed_memory()
    av.logging.set_level(av.logging.ERROR)
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = dict(options)
    ctx.open()
    data = np.full(width * height * 3 // 2, 16, np.uint8)
    for i in range(frames):
        data[: width * height : 4099] = i  # not identical frames: x264 does its real work
        frame = av.VideoFrame.from_numpy_buffer(data.reshape(height * 3 // 2, width), format="yuv420p")
        frame.pts = i
        ctx.encode(frame)
    ctx.encode(None)
    time.sleep(0.2)  # hold this worker a moment so the next warm-up goes to another one
    return os.getpid()


def _warm_analysis() -> None:
    """In the service: what a first submission would otherwise pay before its first media
    segment (measured: 2.35 s against 0.64 s for the next ones): the lip-sync model,
    espeak-ng's phonemizer and PocketSphinx's acoustic model. (The soundtrack's loudness and limiter run in the soundtrack
    process, which warms itself: render.soundtrack_process.)"""
    from fractions import Fraction

    import numpy as np

    from . import acoustic, lipsync
    from .align import text_mouth_track

    import warnings

    try:
        t = np.arange(48000) / 48000.0
        y = (0.1 * np.sin(2 * np.pi * 180 * t) * (t % 0.5 < 0.3)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a tone is no speech for the text; that is fine here
            lipsync.mouth_track(y, 48000, fps=Fraction(30))
            text_mouth_track(y, 48000, fps=Fraction(30), texts=["hello"])
        acoustic.available()  # loads the model (0.1 s): the tone above is refused before it
    except Exception:  # noqa: BLE001  (only a head start: the first render pays it instead)
        log.debug("analysis warm-up failed", exc_info=True)


class RenderService:
    """Watch ``inbox``; render each submission into ``spool`` with warm workers.

    Parameters
    ----------
    inbox, spool : Path
        Where submissions arrive; where renders are published (``SPOOL/NAME/``, in progress
        ``SPOOL/.NAME.partial/``: what ``avatarrender playout --spool`` airs).
    jobs : int, optional
        Workers (default: cores; with ``scheduler``, the cluster's workers).
    scheduler : str, optional
        A Dask scheduler address (``tcp://HOST:PORT``): chunks run on that cluster.
    overrides : dict, optional
        Output overrides applied to every spec (``{"preset": "720p30"}``).
    poll_s : float
        How often the inbox is looked at.
    lead_frames : int, optional
        The first media segment of every render holds only this many frames, rendered beside
        the rest of that segment (see :func:`.plan.plan_chunks`): a new program goes on air a
        fraction of a second after the render starts. 12 (two 6-frame LL-HLS parts) gives the
        other worker time for the rest before it is due; with 6 the rest aired late and the
        playout put filler into the program. None: whole segments.
    warm : sequence of Path, optional
        Segment specs whose scene the service warms at launch (see above); checked at once, so
        a bad one stops the service before it starts.
    """

    #: how much of each ``warm`` spec is rendered at launch
    WARM_S = 2

    def __init__(
        self,
        inbox: str | Path,
        spool: str | Path,
        *,
        jobs: int | None = None,
        chunk_segments: int | None = None,
        scheduler: str | None = None,
        overrides: dict[str, Any] | None = None,
        poll_s: float = 0.02,
        lead_frames: int | None = 12,
        warm: Sequence[str | Path] = (),
    ):
        self.inbox = Path(inbox).resolve()
        self.spool = Path(spool).resolve()
        self.jobs = jobs or os.cpu_count() or 1
        self.chunk_segments = chunk_segments
        self.scheduler = scheduler
        self.overrides = dict(overrides or {})
        self.poll_s = poll_s
        self.lead_frames = lead_frames
        self.warm = [Path(p) for p in warm]
        self.current: Submission | None = None
        self.done: list[dict[str, Any]] = []
        # failures recorded before a restart (their .error files wait for the operator)
        self.failed: list[dict[str, Any]] = _recorded_failures(self.inbox)
        # why the submissions wait in the inbox (a full disk, a spool it cannot write, the
        # cluster gone): said once, shown on the status; none is failed for it
        self._held: str | None = None
        self._full_until = 0.0  # (monotonic) no render before this: held
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        self._client: Any = None
        self._touched = time.monotonic()
        self._audio_pool: Any = None  # the soundtrack's own process (render.soundtrack_process)
        self._warm_specs: list[tuple[Path, Any]] | None = None  # loaded by _check_warm
        self._pruned_at: float | None = None  # (time.monotonic()) INBOX/.done/ last pruned

    def _prune_done(self, done: Path) -> None:
        """Remove submissions rendered more than :data:`DONE_KEEP_S` ago from ``INBOX/.done/``
        (a channel submitting every few minutes would fill it for ever); looked at once an hour.
        ``.failed/`` is the operator's to clear."""
        # the hour by the monotonic clock: by the wall clock, a step back stopped the pruning for
        # as long as it went back (a review)
        if self._pruned_at is not None and time.monotonic() - self._pruned_at < 3600:
            return
        self._pruned_at = time.monotonic()
        now = time.time()
        try:
            with os.scandir(done) as it:
                for entry in it:
                    try:
                        if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > DONE_KEEP_S:
                            os.unlink(entry.path)
                    except OSError:
                        continue
        except OSError as exc:
            log.debug("could not prune %s: %s", done, exc)

    # ------------------------------------------------------------------ the pool

    def _parallel_config(self) -> Any:
        from joblib import parallel_config

        if self.scheduler:
            return parallel_config(backend="dask")
        # loky's default backend, as the render's own calls use it: its reusable executor is kept
        # only while every call asks for the same settings (the render also calls Parallel from a
        # thread, where a parallel_config does not reach), so the pool is kept warm by keep_warm()
        # rather than by a longer idle timeout
        return contextlib.nullcontext()

    def keep_warm(self) -> None:
        """Touch the local workers (loky ends workers idle for 300 s), at most once a minute."""
        if self.scheduler or time.monotonic() - self._touched < 60:
            return
        from joblib import delayed

        from .render import _pool, _ready

        _pool(n_jobs=self.jobs)(delayed(_ready)() for _ in range(self.jobs))
        self._touched = time.monotonic()

    def warm_up(self) -> None:
        """Start the workers and warm each one's encoder at the output size."""
        from joblib import delayed

        from .encode import x264_options
        from .render import DEFAULT_X264_THREADS, _pool, _ready
        from .specload import OutputModel, _output

        t0 = time.perf_counter()
        scenes = self._check_warm()
        out = _output(OutputModel(**self.overrides), self.inbox)
        options = x264_options(out, threads=DEFAULT_X264_THREADS)
        with self._parallel_config():
            _pool(n_jobs=self.jobs)(delayed(_ready)() for _ in range(self.jobs))
            _pool(n_jobs=self.jobs)(
                delayed(_warm_encoder)(out.width, out.height, options, 8) for _ in range(self.jobs)
            )
        _warm_analysis()
        self._soundtrack_process()
        log.info("%d workers warm in %.2f s", self.jobs, time.perf_counter() - t0)
        for path, spec in scenes:
            self.warm_scene(spec, path)

    def _soundtrack_process(self) -> Any:
        """The soundtrack's process, started (again, if it died) and warm."""
        from .render import shutdown_soundtrack_process, soundtrack_process

        pool = self._audio_pool
        if pool is not None and getattr(pool, "_broken", False):
            log.warning("the soundtrack process ended: starting another")
            shutdown_soundtrack_process(pool)
            pool = None
        if pool is None:
            pool = self._audio_pool = soundtrack_process()
        return pool

    def close(self) -> None:
        """End the soundtrack process (the workers are loky's or the cluster's)."""
        if self._audio_pool is not None:
            from .render import shutdown_soundtrack_process

            shutdown_soundtrack_process(self._audio_pool)
            self._audio_pool = None

    def _check_warm(self) -> list[tuple[Path, Any]]:
        """The ``warm`` specs loaded (checked); the first bad one raises its SpecError."""
        from .spec import load_spec

        if self._warm_specs is None:
            self._warm_specs = [
                (path, load_spec(path, overrides=self.overrides or None)) for path in self.warm
            ]
        return self._warm_specs

    def _clear_stale_warm_ups(self) -> None:
        """Remove warm-up folders this host's earlier services left (killed mid warm-up)."""
        import shutil

        try:
            entries = list(os.scandir(self.spool))
        except FileNotFoundError:
            return
        for e in entries:
            if not e.name.startswith(f"{_WARM_PREFIX}{_HOST}-"):
                continue
            pid = e.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(e.path, ignore_errors=True)

    def warm_scene(self, spec: Any, path: Path) -> None:
        """Render the first :attr:`WARM_S` seconds of ``spec`` (read from ``path``) as a submission would
        be rendered, into a hidden folder of the spool that the playout does not list, and
        throw it away: the scene's caches, decoders and fonts are then warm in every worker.

        Raises
        ------
        AvatarRenderError
            Its render failed.
        """
        import shutil

        from .render import render

        import warnings

        from .align import LipsyncWarning

        t0 = time.perf_counter()
        where = self.spool / f"{_WARM_PREFIX}{_HOST}-{os.getpid()}"  # hidden, no .partial: not a spool item
        try:
            with self._parallel_config(), warnings.catch_warnings():
                # a cut of a segment: its speech and words need not agree; nothing of it airs
                warnings.simplefilter("ignore", LipsyncWarning)
                render(
                    spec.cut(self.WARM_S),
                    where / "scene",
                    jobs=self.jobs,
                    lead_frames=self.lead_frames,
                    audio_pool=self._soundtrack_process(),
                )
        finally:
            shutil.rmtree(where, ignore_errors=True)
        log.info("scene of %s warm in %.2f s", path, time.perf_counter() - t0)

    # ------------------------------------------------------------------ the inbox

    def pending(self) -> list[Path]:
        """Submission files of the inbox, oldest first (then by name)."""
        try:
            entries = list(os.scandir(self.inbox))
        except FileNotFoundError:
            return []
        files = []
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith(_SUFFIXES) or not e.is_file():
                continue
            if Path(e.name).with_suffix(".error").name in {x.name for x in entries}:
                continue  # already failed; the operator removes the .error to try again
            try:
                files.append((e.stat().st_mtime_ns, e.name, Path(e.path)))
            except FileNotFoundError:
                continue
        return [p for _, _, p in sorted(files)]

    def render_one(
        self, path: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any] | None:
        """Render one submission; on failure record it and return None (never raises ours)."""
        from .render import render
        from .spec import load_spec

        t0 = time.perf_counter()
        sub: Submission | None = None

        def withdrawn_or(done: int, total: int) -> None:
            if not path.exists():  # the operator removed NAME.submit: the render stops
                raise _Withdrawn(f"{path}: removed while it rendered: render stopped")
            if progress:
                progress(done, total)

        read_as = _signature(path)
        try:
            sub = read_submission(path)
            self.current = sub
            self._write_status()
            spec = load_spec(sub.spec, overrides=self.overrides or None)
            kwargs: dict[str, Any] = dict(
                jobs=self.jobs,
                hidden_partial=True,
                progress=withdrawn_or,
                lead_frames=self.lead_frames,
                audio_pool=self._soundtrack_process(),
            )
            if self.chunk_segments:
                kwargs["chunk_segments"] = self.chunk_segments
            with self._parallel_config():
                manifest = render(spec, self.spool / sub.name, **kwargs)
        except RenderLockedError as exc:  # another render holds the name: its folder is not ours
            self._fail(path, str(exc))
            return None
        except DiskFullError as exc:
            # not the submission's fault: it stays in the inbox and its render resumes (what is
            # done is kept) once there is room; tried again every FULL_RETRY_S, said once
            self._hold(str(exc), path)
            return None
        except AvatarRenderError as exc:
            if isinstance(exc, OutputError) and exc.exit_code == 1:
                # the spool read-only or not ours to write (a remount, an NFS blip), a worker
                # that does not see it: the machine's state, not the submission's (all of a
                # queue was failed for it)
                self._hold(str(exc), path)
                return None
            self._fail(path, str(exc), sub)
            return None
        except OSError as exc:
            self._fail(path, f"{exc.filename or path}: {exc.strerror or exc}", sub)
            return None
        except Exception as exc:  # noqa: BLE001  (a lost worker, a bug: the service goes on)
            log.debug("render of %s failed", path, exc_info=True)
            if self.scheduler and not self._cluster_up():
                # the cluster went away (its scheduler restarted, its workers gone): the queue
                # waits for it, the client is made again (every submission was failed for good)
                if self._client is not None:
                    with contextlib.suppress(Exception):
                        self._client.close(timeout=2)
                self._client = None
                self._hold(
                    f"the Dask cluster at {self.scheduler} is not reachable ({type(exc).__name__})", path
                )
                return None
            self._fail(path, f"{path}: render failed: {type(exc).__name__}: {exc}", sub)
            return None
        finally:
            self.current = None
        if self._held:
            log.info("%s rendered: no longer held (%s)", sub.name, self._held)
        self._held = None
        done = self.inbox / ".done"
        done.mkdir(exist_ok=True)
        now_as = _signature(path)
        if now_as is not None and now_as != read_as:
            # rewritten while it rendered: the spool has what was read at the start (it may be on
            # air and is not replaced); the edit was moved to .done as if rendered, unsaid
            self._fail(
                path,
                f"{path}: changed while it rendered: {sub.name} in the spool is the version read at "
                "the start; submit the change under another name",
            )
        else:
            try:
                os.replace(path, done / path.name)
                os.utime(done / path.name)  # when it was rendered (what the pruning goes by)
            except FileNotFoundError:  # removed as the render ended: it is in the spool all the same
                log.warning("%s: removed as its render finished: %s is in the spool", path, sub.name)
        self._prune_done(done)
        stats = manifest.get("render", {})
        entry = {
            "name": sub.name,
            "spec": str(sub.spec),
            "wall_s": round(time.perf_counter() - t0, 3),
            "first_segment_s": stats.get("first_segment_s"),
            "frames": manifest.get("frame_count"),
        }
        self.done = (self.done + [entry])[-20:]
        self._touched = time.monotonic()
        log.info(
            "%s: rendered into %s in %.2f s (first media segment after %s s)",
            sub.name,
            self.spool / sub.name,
            entry["wall_s"],
            entry["first_segment_s"],
        )
        self._write_status()
        return manifest

    def _hold(self, why: str, path: Path | None = None) -> None:
        """Keep the submissions (``path``'s, the one tried) in the inbox and render nothing for
        :data:`FULL_RETRY_S`: ``why`` is no fault of theirs. Said once until a render succeeds;
        on the status."""
        self.current = None
        self._full_until = time.monotonic() + FULL_RETRY_S
        if self._held != why:
            who = f"{path.name} waits" if path is not None else "submissions wait"
            log.error("%s: %s in the inbox; tried again every %g s", why, who, FULL_RETRY_S)
        self._held = why
        self._write_status()

    def _cluster_up(self) -> bool:
        """Whether the Dask client is connected to a scheduler with workers."""
        client = self._client
        try:
            return bool(
                client is not None and client.status == "running" and client.scheduler_info().get("workers")
            )
        except Exception:  # noqa: BLE001  (a closed or broken client)
            return False

    def _connect(self) -> bool:
        """Make the Dask client when there is none (at the start, after the cluster went away);
        False (and the queue held) while the scheduler cannot be reached."""
        if not self.scheduler or self._client is not None:
            return True
        from dask.distributed import Client

        try:
            self._client = Client(self.scheduler, timeout="10s")
            self.jobs = len(self._client.scheduler_info().get("workers", {})) or self.jobs
            return True
        except Exception as exc:  # noqa: BLE001  (OSError, TimeoutError: the scheduler is not there)
            self._hold(f"the Dask cluster at {self.scheduler} is not reachable ({type(exc).__name__})")
            return False

    def _fail(self, path: Path, message: str, sub: Submission | None = None) -> None:
        log.error("%s", message)
        self.current = None  # (the status written below must not say it still renders)
        if sub is not None:
            # what it published so far may be on air: the playout refuses the rest at once
            from .rendition import mark_failed, partial_path

            try:
                mark_failed(partial_path(self.spool / sub.name, hidden=True), message)
            except OSError as exc:
                log.error("%s: cannot mark the failed render: %s", sub.name, exc)
        failed = self.inbox / ".failed"
        try:
            if path.exists():  # (withdrawn: nothing to move aside, no new try to wait for)
                failed.mkdir(exist_ok=True)
                atomic_write(path.with_suffix(".error"), message + "\n")
                os.replace(path, failed / path.name)
        except OSError as exc:
            log.error("%s: cannot record the failure: %s", path, exc)
        self.failed = (
            self.failed
            + [
                {
                    "file": str(path),
                    "error": message,
                    "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                }
            ]
        )[-20:]
        self._write_status()

    def status(self) -> dict[str, Any]:
        """What the service is doing: the render in progress, recent renders and failures."""
        cur = self.current
        return {
            "started_at": self.started_at,
            "host": _HOST,
            "pid": os.getpid(),
            "inbox": str(self.inbox),
            "spool": str(self.spool),
            "jobs": self.jobs,
            "scheduler": self.scheduler,
            "rendering": None if cur is None else {"name": cur.name, "spec": str(cur.spec)},
            "pending": [p.name for p in self.pending()],
            "done": self.done[-10:],
            "failed": self.failed[-10:],
            "held": self._held,  # why the pending ones wait (a full disk, ...), or None
        }

    def _write_status(self) -> None:
        try:
            atomic_write(self.inbox / STATUS_NAME, json.dumps(self.status(), indent=1) + "\n")
        except OSError:
            pass

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event | None = None) -> None:
        """Warm up, then render submissions as they arrive until ``stop`` is set."""
        stop = stop or threading.Event()
        self._check_warm()  # a bad warm spec: refused before anything is made or started
        self.inbox.mkdir(parents=True, exist_ok=True)
        hold = self._hold_inbox()
        try:
            self._run(stop)
        finally:
            hold.release()

    def _hold_inbox(self) -> Any:
        """The service's lock on ``INBOX/.lock`` (kept, the holder's pid in it). A second service
        on one inbox failed the submission the first was rendering (the lock on its name taken
        for another render's), and the first then took that for a withdrawal: the program on
        air was refused. The second is refused at its start, naming the holder."""
        from .rendition import Busy, FolderLock

        try:
            return FolderLock(self.inbox / ".lock", keep=True)
        except Busy as exc:
            raise SpecError(
                None,
                "--inbox",
                f"{self.inbox}: another render service watches this inbox (pid {exc.pid or '?'}): "
                "stop it first, or give this one an inbox of its own",
            ) from None

    def _run(self, stop: threading.Event) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        self._clear_stale_warm_ups()
        if self.scheduler:
            from dask.distributed import Client

            self._client = Client(self.scheduler, timeout="20s")  # unreachable at the start: an error
            self.jobs = len(self._client.scheduler_info().get("workers", {})) or self.jobs
        try:
            self.warm_up()
            self._write_status()
            log.info("watching %s, publishing into %s", self.inbox, self.spool)
            while not stop.is_set():
                todo = self.pending()
                if not todo or time.monotonic() < self._full_until or not self._connect():
                    self.keep_warm()
                    stop.wait(self.poll_s)
                    continue
                self.render_one(todo[0])
        finally:
            self.close()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None

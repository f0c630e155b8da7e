"""Signals for one-shot commands: SIGINT, SIGTERM and SIGHUP stop a render the same way.

The first signal raises :class:`Interrupted` in the main thread (a ``KeyboardInterrupt``, so
cleanup written for Ctrl-C runs for all three); :func:`deferred` holds it back while a step
that must not be cut in half runs (publishing a media segment, swapping the finished folder
into place). The caller then ends every child process (:func:`end_children`: joblib's workers,
ffmpeg) and exits with ``128 + signal``: 130, 143 or 129. Signals that follow the first are
noted, not raised, so cleanup is not itself interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import warnings
from typing import Iterator

__all__ = [
    "Interrupted",
    "install",
    "record",
    "received",
    "check",
    "deferred",
    "committing",
    "children_shielded",
    "end_children",
    "end_pool",
    "end_with_parent",
    "set_soon",
    "SIGNALS",
]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: int | None = None
resume_hint: str | None = None  # what the one line says about the partial output
_depth = 0  # nesting of deferred() blocks
_pending = False
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    def __reduce__(self):
        return type(self), (self.signum,)


def _handler(signum: int, frame) -> None:
    global _received, _pending
    if _received is not None:
        return  # cleaning up already
    _received = signum
    if _depth:
        _pending = True
        return
    raise Interrupted(signum)


def install(*, workers: bool = True) -> None:
    """Route SIGINT, SIGTERM and SIGHUP to :class:`Interrupted` (main thread only); with
    ``workers``, start joblib's resource trackers quietly now, before any thread or child."""
    if threading.current_thread() is not threading.main_thread():
        return
    if workers:
        _start_resource_trackers()
    # joblib counts the chunks it dropped when we stop: not news to the one who stopped it
    warnings.filterwarnings("ignore", message=r".*tasks which were still being processed")
    # loky's resource tracker, hit by the same Ctrl-C, is restarted by joblib with a warning
    warnings.filterwarnings("ignore", message=r"resource_tracker: process died unexpectedly")
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    if not getattr(sys.unraisablehook, "_avatarrender", False):
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)


def _quiet_unraisable(previous):
    """``sys.unraisablehook`` that says nothing of a stop signal's exception raised where it
    cannot propagate (a ``__del__``, a ctypes callback: llvmlite's, while librosa's numba
    compiled for ``lipsync --plot``, printed "Exception ignored" and a traceback over our one
    line). The stop is recorded all the same (:func:`received`); anything else is said as before."""

    def hook(unraisable) -> None:  # noqa: ANN001
        if isinstance(unraisable.exc_value, Interrupted):
            return
        previous(unraisable)

    hook._avatarrender = True
    return hook


def set_soon(event: threading.Event) -> None:
    """Set ``event`` from a signal handler, in a thread of its own. A handler runs in the main
    thread between two bytecodes, perhaps inside that thread's ``event.wait()`` while it holds
    the event's lock, which ``event.set()`` would then wait for forever (a playout stopped by
    SIGTERM hung so, its channel frozen, and a second SIGTERM hung too: a review). A bare
    ``_thread``: ``threading.Thread.start`` takes threading's own lock, which the main thread may
    hold as well (starting or listing threads)."""
    import _thread

    _thread.start_new_thread(event.set, ())


def record(signum: int) -> None:
    """Note a stop signal that a handler of the caller's own took (the playout's, which ends its
    channel cleanly first), so that the command then ends as after any other stop."""
    global _received
    if _received is None:
        _received = signum


def received() -> Interrupted | None:
    """The stop signal received so far, if any (whatever error it then caused elsewhere, such
    as an ffmpeg child killed by the same Ctrl-C)."""
    return Interrupted(_received) if _received is not None else None


@contextlib.contextmanager
def deferred(*, finishing: bool = False) -> Iterator[None]:
    """Hold a stop signal back until the block ends (then raise it). ``finishing``: the block
    puts the command's result in place; once it has, the command is done (see :func:`finish`)
    and a signal it held back is dropped, not raised."""
    global _depth, _pending
    _depth += 1
    done = False
    try:
        yield
        done = finishing
    finally:
        _depth -= 1
        if done:
            finish()
        elif _depth == 0 and _pending:
            _pending = False
            raise Interrupted(_received or signal.SIGINT)


def check() -> None:
    """Raise the stop signal received so far, if any: one whose exception a library's C code
    swallowed (a ctypes callback, a ``__del__``: "Exception ignored") let the work go on."""
    stop = received()
    if stop is not None:
        raise stop


@contextlib.contextmanager
def committing() -> Iterator[None]:
    """The block puts the command's result in place (writes its file, renames its folder). A
    stop received before it is raised first, nothing written: one whose exception a library's C
    code swallowed (a ctypes callback, a ``__del__``: "Exception ignored", the work went on) came
    with exit 143 and the whole output written (``lipsync --plot``, ``preview``). A stop during
    the block is held back and dropped (:func:`deferred` with ``finishing``): the result is whole."""
    with deferred(finishing=True):
        check()
        yield


def finish() -> None:
    """The command's result is in place: a stop signal from now on is ignored, and one held
    back is dropped (the command exits 0 as it would have a moment earlier). A render stopped
    just as it ended printed its success, then a traceback from the pool's shutdown and exit 1,
    or exit 143 naming a .partial folder already renamed into place. Only where :func:`install`
    routed the signals here (the command line): a script's own handlers are left alone."""
    global _received, _pending
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not _handler:
        return
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _received, _pending = None, False


@contextlib.contextmanager
def children_shielded() -> Iterator[None]:
    """Block the stop signals in this thread while it starts child processes, which inherit
    the mask: a Ctrl-C sent to the whole process group does not kill them mid-start (with a
    traceback each); the main process receives it when the block ends and ends them."""
    _start_resource_trackers()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _start_resource_trackers() -> None:
    """Start loky's and multiprocessing's resource trackers now, if they are not running, with
    their stderr on /dev/null. They outlive a stopped render by a moment, cleaning up after
    its killed workers, and would print warnings and tracebacks under our one line. And the
    code that starts them unblocks SIGINT and SIGTERM in the calling thread afterwards, which
    would undo :func:`children_shielded` for the workers started after them."""
    import importlib

    modules = []
    for name in ("joblib.externals.loky.backend.resource_tracker", "multiprocessing.resource_tracker"):
        with contextlib.suppress(Exception):  # only a precaution: the render works without it
            modules.append(importlib.import_module(name))
    if all(getattr(getattr(m, "_resource_tracker", None), "_pid", None) for m in modules):
        return  # running
    with _lock:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # what the trackers inherit; other threads' messages wait a moment
        # and a SIGHUP to the group must not kill them either (they block only INT and TERM)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            for m in modules:
                with contextlib.suppress(Exception):
                    m.ensure_running()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), parents before their children."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # the command name is in parentheses and may hold spaces: the ppid follows the last ')'
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(0), []):
            found.append(k)
            todo.append(k)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except OSError:
        return False


def end_children(grace_s: float = 0.5) -> list[int]:
    """Stop every descendant process: SIGTERM, then SIGKILL for those alive after ``grace_s``.
    Direct children are reaped. Returns the pids that were found."""
    # Not the resource trackers: they leave by themselves once this process has gone, after
    # removing what the killed workers left in /dev/shm (killed, joblib would start new ones)
    pids = [p for p in _children_of(os.getpid()) if b"resource_tracker" not in _cmdline(p)]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        _reap()
        time.sleep(0.02)
    for pid in pids + _children_of(os.getpid()):  # and any started meanwhile
        if _alive(pid) and b"resource_tracker" not in _cmdline(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
    _reap()
    # a worker the pool was starting as we looked (a loaded machine) is ours to end too: it has
    # no task yet, so it does not watch for us (end_with_parent) and would wait out loky's idle
    # timeout (300 s) after we are gone
    for _ in range(20):
        late = [p for p in _children_of(os.getpid()) if _alive(p) and b"resource_tracker" not in _cmdline(p)]
        if not late:
            break
        for pid in late:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        _reap()
    return pids


_watching = False


def end_with_parent(poll_s: float = 0.25, parent: int | None = None) -> None:
    """In a child process (a chunk worker, the soundtrack's): end at once when the process that
    started it is gone, killed outright (SIGKILL, the OOM killer) before it could end its
    children. They block or ignore the stop signals (:func:`children_shielded`), and a
    parent-death signal would fire when the *thread* that started them ends (joblib starts its
    workers from one that does), so a thread watches the parent's pid instead. Once per process.

    ``parent``: the pid to watch, given by the parent itself (a worker's initializer): a worker
    whose parent died while it started would otherwise watch the process it was handed to."""
    global _watching
    with _lock:
        if _watching:
            return
        _watching = True
    if parent is None:
        parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # reparented: the parent is gone, and nobody waits for what this does

    threading.Thread(target=watch, daemon=True, name="avatarrender-parent-watch").start()


def end_pool() -> None:
    """Shut joblib's worker pool down, if this process started one, and wait for its workers
    to end (before an ``os._exit`` after success: they end as on a normal exit)."""
    pool = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(pool, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

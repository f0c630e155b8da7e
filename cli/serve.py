"""``avatarrender serve`` (the warm render service) and ``avatarrender submit``."""

from __future__ import annotations

import sys

import logging
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]

_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class _Stopped(BaseException):
    """Raised in the main thread by a signal: ends the render in progress (it stays resumable)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def serve_cmd(
    inbox: Path = typer.Option(
        ...,
        "--inbox",
        help="Folder to watch for submissions (NAME.submit from 'avatarrender submit', or NAME.yaml).",
    ),
    spool: Path = typer.Option(
        ...,
        "--spool",
        help="The playout's spool: renders are published there as NAME/ (.NAME.partial/ while rendering).",
    ),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Workers (default: cores)."),
    chunk_segments: Optional[int] = typer.Option(
        None,
        "--chunk-segments",
        min=1,
        help="Media segments per chunk (default 1, or 2 with --lead-frames 0): a render airs while "
        "it renders, and a chunk is published whole.",
    ),
    preset: Optional[str] = typer.Option(None, "--preset", help="Output preset for every submission."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Render on a Dask cluster (tcp://HOST:PORT) instead of local workers."
    ),
    lead_frames: int = typer.Option(
        12,
        "--lead-frames",
        min=0,
        help="Frames of each render's first media segment, rendered beside the rest of it "
        "(0: a whole segment); a whole number of the playout's part_frames, so a new program "
        "airs sooner.",
    ),
    warm: list[Path] = typer.Option(
        [],
        "--warm",
        metavar="SPEC",
        help="A segment.yaml whose scene to warm at launch (its first seconds rendered and "
        "thrown away), so that the first submission over that scene airs as fast as the next "
        "ones; repeatable. Say the channel's filler spec.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Keep render workers warm and render every submitted segment into a playout spool."""
    from avatarrender import interrupt
    from avatarrender.service import RenderService

    from avatarrender.logs import log_to_stderr

    log_to_stderr(logging.DEBUG if verbose else logging.INFO)  # UTC, with its Z
    # loky's and multiprocessing's resource trackers started now, quiet and deaf to SIGHUP, as a
    # render's are: started by the workers' pool, a SIGHUP to the group killed them, joblib
    # started new ones that were then told to forget what they never knew (a KeyError traceback
    # each, 10 of 10 tries), and after a kill -9 they said "leaked folder objects" as they
    # cleaned up after it, into the log of the service that followed
    interrupt.install(workers=True)
    service = RenderService(
        inbox,
        spool,
        jobs=jobs,
        chunk_segments=chunk_segments,
        scheduler=scheduler,
        overrides={"preset": preset} if preset else None,
        lead_frames=lead_frames or None,
        warm=warm,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        interrupt.set_soon(stop)  # (not stop.set(): the main thread may hold its lock)
        raise _Stopped(signum)

    for sig in _EXIT_CODES:
        signal.signal(sig, _on_signal)
    try:
        service.run(stop)
    except _Stopped as exc:
        logging.info("stopping on %s", signal.Signals(exc.signum).name)
        code = _EXIT_CODES[exc.signum]
    else:
        code = 0
    finally:
        for sig in _EXIT_CODES:
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        _stop_workers()
    raise typer.Exit(code)


def _stop_workers() -> None:
    """End the warm local workers (loky keeps them for the next render otherwise)."""
    try:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)
    except Exception:  # noqa: BLE001  (nothing was started)
        pass


def submit_cmd(
    segment: Path = typer.Argument(..., metavar="SEGMENT.yaml", help="The segment.yaml to render."),
    inbox: Path = typer.Option(..., "--inbox", help="The inbox a render service watches."),
    name: Optional[str] = typer.Option(
        None, "--name", help="Name in the spool (default: <yaml stem>-<UTC time>)."
    ),
) -> None:
    """Hand a segment to a running render service ('avatarrender serve'); returns at once."""
    from avatarrender.service import submit, unwatched

    path = submit(segment, inbox, name=name)
    print(path.stem)
    if why := unwatched(inbox):
        print(f"avatarrender: warning: {why}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``submit`` to ``app``."""
    app.command("serve")(serve_cmd)
    app.command("submit")(submit_cmd)

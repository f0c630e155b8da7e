"""``avatarrender playout``: the live channel (schedule, spool, filler, HTTP monitor)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from avatarrender.errors import SpecError


__all__ = ["register"]


def playout_cmd(
    schedule: Optional[Path] = typer.Option(
        None, "--schedule", "-s", help="The schedule YAML (entries, filler, spool, late policy)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The folder to publish the live channel in."),
    serve: Optional[str] = typer.Option(
        None,
        "--serve",
        help="Serve the folder and the monitor page over HTTP on HOST:PORT (e.g. 127.0.0.1:8080).",
    ),
    filler: Optional[Path] = typer.Option(
        None, "--filler", help="A rendered folder to loop as filler (overrides the schedule)."
    ),
    filler_spec: Optional[Path] = typer.Option(
        None, "--filler-spec", help="A segment.yaml whose idle loop is rendered once as filler."
    ),
    spool: Optional[Path] = typer.Option(
        None,
        "--spool",
        help="Air whatever appears in this folder next, in order of arrival (overrides the schedule).",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log every published segment and HTTP request."
    ),
    push: Optional[list[str]] = typer.Option(
        None,
        "--push",
        metavar="URL",
        help="Also send the channel, as "
        "aired and not re-encoded, to this ingest: "
        "rtmp://HOST/APP/KEY or srt://HOST:PORT?streamid=KEY "
        "(repeatable). The key is never logged.",
    ),
) -> None:
    """Publish a live low-latency HLS channel from rendered segments; never renders frames live."""
    from avatarrender import interrupt
    from avatarrender.api import _address, _check_listen, _check_out, _check_spool, run_playout
    from avatarrender.playout.push import Pusher

    # Until the channel runs (the filler may render first), a stop signal ends every child
    # (the filler's render) and exits 128 + its number, as a render does.
    interrupt.install(workers=False)
    from avatarrender.logs import log_to_stderr

    log_to_stderr(logging.DEBUG if verbose else logging.INFO)  # UTC, with its Z
    _check_out(out, "--out")
    address = _address(serve, "--serve") if serve else None
    if address is not None:
        _check_listen(address, "--serve")  # before the filler's render, not after it
    if spool is not None:
        _check_spool(spool, "--spool")
    pushers = [Pusher(url) for url in push or ()]  # URLs checked before the filler renders
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        # the command then ends as after any stop: one line, 128 + n, os._exit (a second
        # signal during the interpreter's teardown would otherwise kill it with the default
        # action, as the handlers are reset there)
        if signum == signal.SIGHUP and schedule is not None:
            import _thread

            _thread.start_new_thread(_restart_if_it_loads, (signum,))  # (not here: see set_soon)
            return
        interrupt.record(signum)
        interrupt.set_soon(stop)  # (not stop.set(): see there)

    def _restart_if_it_loads(signum: int) -> None:
        # SIGHUP restarts the channel to read its edited schedule (systemd's Restart= brings it
        # back): an edit that does not load would have the restart refuse it, exit 2, and the
        # unit give up (RestartPreventExitStatus=2): the channel off air for a typo (a review).
        # Such an edit is said, and the channel airs on with the schedule it has.
        from avatarrender.errors import AvatarRenderError
        from avatarrender.playout.schedule import load_schedule

        try:
            load_schedule(schedule, renders_dir=out / ".renders")
        except (AvatarRenderError, OSError) as exc:
            logging.error(
                "SIGHUP: not restarted, the schedule does not load (airing on with the one loaded): %s", exc
            )
            return
        interrupt.record(signum)
        interrupt.set_soon(stop)

    def on_ready(playout) -> None:  # noqa: ANN001
        # From here a stop ends the channel cleanly: the tick finishes, the state is saved, a
        # render-ahead is stopped, the HTTP server closes every connection.
        for sig in interrupt.SIGNALS:
            signal.signal(sig, _stop)
        for i, pusher in enumerate(pushers):
            playout.publish_hooks.append(pusher.offer)
            playout.status_extras[f"push{i or ''}"] = pusher.status
            pusher.start()
            logging.info("restreaming to %s", pusher.shown_url)

    try:
        run_playout(
            schedule,
            out,
            filler=filler,
            filler_spec=filler_spec,
            spool=spool.resolve() if spool is not None else None,
            serve=address,
            stop=stop,
            on_ready=on_ready,
            verbose=verbose,
        )
    except SpecError as exc:
        if exc.field != "out_dir":
            raise
        raise SpecError(exc.file, "--out", exc.message) from None  # the option, as the user typed it
    finally:
        for pusher in pushers:
            pusher.stop()


def register(app: typer.Typer) -> None:
    """Add the ``playout`` command to ``app``."""
    app.command("playout")(playout_cmd)

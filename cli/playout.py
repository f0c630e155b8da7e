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


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError as exc:
        raise SpecError(None, "--serve", f"expected HOST:PORT or PORT, got {text!r}") from exc


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
        help="Also send the channel, as "
        "aired and not re-encoded, to this ingest: "
        "rtmp://HOST/APP/KEY or srt://HOST:PORT?streamid=KEY "
        "(repeatable). The key is never logged.",
    ),
) -> None:
    """Publish a live low-latency HLS channel from rendered segments; never renders frames live."""
    from avatarrender.playout.engine import Playout, prepare_filler
    from avatarrender.playout.schedule import Schedule, ScheduleModel, load_schedule
    from avatarrender.playout.server import serve_in_thread
    from avatarrender.render import ProcessRenderer

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    out.mkdir(parents=True, exist_ok=True)
    if schedule is not None:
        sched = load_schedule(schedule, renders_dir=out / ".renders")
    else:
        sched = Schedule(
            path=None, model=ScheduleModel(), entries=(), filler_dir=None, filler_spec=None, spool=None
        )
    if spool is not None:
        import dataclasses

        sched = dataclasses.replace(sched, spool=spool.resolve())
    from avatarrender.playout.push import Pusher

    pushers = [Pusher(url) for url in push or ()]  # URLs checked before the filler renders
    renderer = ProcessRenderer()  # the playout renders ahead only through this
    filler_dir = prepare_filler(sched, out, filler_dir=filler, filler_spec=filler_spec, renderer=renderer)
    playout = Playout(sched, out, filler=filler_dir, renderer=renderer)
    for i, pusher in enumerate(pushers):
        playout.publish_hooks.append(pusher.offer)
        playout.status_extras[f"push{i or ''}"] = pusher.status
        pusher.start()
        logging.info("restreaming to %s", pusher.shown_url)
    stop = threading.Event()
    server = None
    if serve:
        host, port = _address(serve)
        from avatarrender.playout import epg, metrics

        routes = {
            "/metrics": lambda: (metrics.metrics_text(playout).encode(), metrics.CONTENT_TYPE),
            "/epg.xml": lambda: (epg.epg_xml(playout).encode(), epg.CONTENT_TYPE),
        }
        server, _ = serve_in_thread(
            out,
            host=host,
            port=port,
            verbose=verbose,
            feed=playout.feed,
            routes=routes,
            on_request=lambda path, status: playout.counters.request(metrics.request_kind(path), status),
        )
        logging.info("monitor page: %s/  (playlist %s/master.m3u8)", server.url, server.url)

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        playout.run(stop=stop)
    finally:
        for pusher in pushers:
            pusher.stop()
        if server is not None:
            server.shutdown()


def register(app: typer.Typer) -> None:
    """Add the ``playout`` command to ``app``."""
    app.command("playout")(playout_cmd)

"""``avatarrender metrics``: the render service's metrics as a Prometheus text file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from avatarrender.errors import SpecError

__all__ = ["register"]


def metrics_cmd(
    service: Path = typer.Option(
        ..., "--service", help="The render service's inbox (it keeps its status in INBOX/.status.json)."
    ),
    output: Optional[Path] = typer.Option(
        None,
        "-o",
        "--output",
        help="Write here, atomically "
        "(e.g. node_exporter's textfile directory/"
        "avatarrender.prom); default or -: stdout.",
    ),
    fps: float = typer.Option(30.0, "--fps", min=1, help="The channel's frame rate."),
) -> None:
    """Print the render service's metrics (Prometheus text) from its status file.

    The playout serves its own on /metrics; the render service has no HTTP server, so run this
    from a timer into node_exporter's textfile collector.
    """
    from avatarrender import interrupt
    from avatarrender.rendition import atomic_write
    from avatarrender.playout.metrics import service_metrics_text
    from avatarrender.service import STATUS_NAME

    path = service / STATUS_NAME
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(
            path, None, f"no status: is `avatarrender serve --inbox {service}` running?"
        ) from None
    except (OSError, ValueError) as exc:
        raise SpecError(path, None, f"unreadable status: {exc}") from None
    from avatarrender.service import RenderService, unwatched

    waiting = len(RenderService(service, status.get("spool") or service).pending())
    text = service_metrics_text(status, fps=fps, up=unwatched(service) is None, pending=waiting)
    if output is None or str(output) == "-":  # -: stdout, as epg -o - (it wrote a file named -)
        print(text, end="")
    else:
        with interrupt.committing():  # (a stop a library swallowed meanwhile: nothing written)
            atomic_write(output, text.encode())


def register(app: typer.Typer) -> None:
    """Add ``metrics`` to ``app``."""
    app.command("metrics")(metrics_cmd)

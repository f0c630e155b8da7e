"""``avatarrender epg``: the programme guide (XMLTV) of a schedule."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Optional

import typer

from avatarrender.errors import SpecError

__all__ = ["register"]


def epg_cmd(
    schedule: Path = typer.Option(..., "--schedule", "-s", help="The schedule YAML."),
    output: Path = typer.Option(..., "-o", "--output", help="The XMLTV file to write (- for stdout)."),
    start: Optional[str] = typer.Option(
        None, "--start", help="Guide from this ISO-8601 time (default: now); earlier entries are left out."
    ),
    hours: float = typer.Option(24.0, "--hours", min=0.1, max=24 * 31, help="How far ahead."),
    channel_id: Optional[str] = typer.Option(
        None, "--channel-id", help="XMLTV channel id (default: from the schedule's channel name)."
    ),
) -> None:
    """Write the programme guide of a schedule as XMLTV: titles, descriptions, filler gaps."""
    from avatarrender import interrupt
    from avatarrender.rendition import atomic_write
    from avatarrender.playout.epg import schedule_guide
    from avatarrender.playout.playlist import parse_pdt
    from avatarrender.playout.schedule import load_schedule

    sched = load_schedule(schedule)
    try:
        now = parse_pdt(start) if start else Fraction(time.time())
    except ValueError:
        raise SpecError(None, "--start", f"{start!r} is not an ISO-8601 time") from None
    text = schedule_guide(sched, now_s=now, horizon_s=Fraction(hours) * 3600, channel_id=channel_id)
    if str(output) == "-":
        print(text, end="")
    else:
        with interrupt.committing():  # (a stop a library swallowed meanwhile: nothing written)
            atomic_write(output, text.encode("utf-8"))
        print(f"{output}: {text.count('<programme ')} programmes")


def register(app: typer.Typer) -> None:
    """Add ``epg`` to ``app``."""
    app.command("epg")(epg_cmd)

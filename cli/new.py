"""``avatarrender new``: scaffold a channel folder that renders and airs as it is."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def new_cmd(
    name: Path = typer.Argument(
        ..., help="The folder to create (its name names the channel); it must not exist."
    ),
    duration_s: float = typer.Option(
        20.0, "--duration-s", help="Length of the placeholder segment, seconds."
    ),
) -> None:
    """Create a channel: placeholder art, segment.yaml, schedule.yaml, a crontab line, schemas."""
    from avatarrender.scaffold import new_channel

    folder = new_channel(name, duration_s=duration_s)
    from shlex import quote

    print(
        f"{folder}: created. Next:\n"
        f"  avatarrender validate {quote(str(folder / 'segment.yaml'))}\n"
        f"  avatarrender playout --schedule {quote(str(folder / 'schedule.yaml'))} "
        f"--out {quote(str(folder / 'live'))} --serve 127.0.0.1:8080"
    )


def register(app: typer.Typer) -> None:
    """Add ``new`` to ``app``."""
    app.command("new")(new_cmd)

"""``avatarrender schema``: JSON Schema for segment.yaml and the schedule, for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from avatarrender.errors import SpecError

__all__ = ["register"]


def schema_cmd(
    out: Optional[Path] = typer.Option(
        None,
        "-o",
        "--out",
        help="Folder to write "
        "segment.schema.json and schedule.schema.json into "
        "(default: the current folder).",
    ),
    kind: Optional[str] = typer.Option(
        None, "--print", help="Print one schema on stdout instead: segment or schedule."
    ),
) -> None:
    """Write JSON Schema for segment.yaml and schedule.yaml (from the models that validate them).

    Point an editor at them with a first line such as
    ``# yaml-language-server: $schema=segment.schema.json``.
    """
    from avatarrender import interrupt
    from avatarrender.schema import schedule_schema, segment_schema, write_schemas

    if kind is not None:
        makers = {"segment": segment_schema, "schedule": schedule_schema}
        if kind not in makers:
            raise SpecError(None, "--print", f"unknown schema {kind!r}: use segment or schedule")
        if out is not None:
            raise SpecError(None, "--print", "give either --print or -o/--out, not both")
        print(json.dumps(makers[kind](), indent=2))
        return
    with interrupt.committing():  # (a stop a library swallowed meanwhile: nothing written)
        written = write_schemas(out or Path("."))
    for path in written:
        print(path)


def register(app: typer.Typer) -> None:
    """Add ``schema`` to ``app``."""
    app.command("schema")(schema_cmd)

"""JSON Schema for ``segment.yaml`` and the schedule YAML, generated from the pydantic models that
validate them, so an editor (the YAML language server, through a ``$schema`` modeline) completes
and checks exactly what :func:`~avatarrender.spec.load_spec` and
:func:`~avatarrender.playout.schedule.load_schedule` accept at the field level.

The schema covers types, ranges, enumerations and unknown fields. What needs the files themselves
(images exist and fit in the frame, caption times inside the segment) is only checked by
:func:`~avatarrender.spec.load_spec` (``avatarrender validate``, and every render).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .rendition import atomic_write

__all__ = ["SCHEMA_FILES", "segment_schema", "schedule_schema", "write_schemas", "modeline"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: kind -> file name written by :func:`write_schemas`
SCHEMA_FILES = {"segment": "segment.schema.json", "schedule": "schedule.schema.json"}


def _finish(schema: dict[str, Any], *, kind: str, title: str, description: str) -> dict[str, Any]:
    out = {"$schema": DRAFT, "$id": f"urn:avatarrender:{kind}", "title": title, "description": description}
    out.update({k: v for k, v in schema.items() if k not in ("title", "description")})
    return out


def segment_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``segment.yaml``, from ``SegmentModel``."""
    from .specload import SegmentModel

    return _finish(
        SegmentModel.model_json_schema(mode="validation"),
        kind="segment",
        title="avatarrender segment",
        description="One scripted piece of programme: scene, character, TV, speech, "
        "captions. Paths are relative to the YAML file.",
    )


def schedule_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the playout schedule, from ``ScheduleModel``."""
    from .playout.schedule import ScheduleModel

    return _finish(
        ScheduleModel.model_json_schema(mode="validation"),
        kind="schedule",
        title="avatarrender schedule",
        description="What airs when: entries, filler, spool, late policy. Paths are "
        "relative to the YAML file; times are ISO-8601 with a zone.",
    )


def write_schemas(out_dir: str | Path) -> list[Path]:
    """Write ``segment.schema.json`` and ``schedule.schema.json`` into ``out_dir`` (atomically).

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, make in (("segment", segment_schema), ("schedule", schedule_schema)):
        path = out_dir / SCHEMA_FILES[kind]
        atomic_write(path, (json.dumps(make(), indent=2) + "\n").encode())
        written.append(path)
    return written


def modeline(schema_path: str) -> str:
    """The first line that points the YAML language server at a schema (relative or URL)."""
    return f"# yaml-language-server: $schema={schema_path}"

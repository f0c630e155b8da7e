"""JSON Schema for ``segment.yaml`` and the schedule YAML, generated from the pydantic models that
validate them, so an editor (the YAML language server, through a ``$schema`` modeline) completes
and checks exactly what :func:`~avatarrender.spec.load_spec` and
:func:`~avatarrender.playout.schedule.load_schedule` accept at the field level.

The schema covers types, ranges, enumerations and unknown fields. What needs the files themselves
(images exist and show in the frame, caption times inside the segment) is only checked by
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


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """A property's schemas of a type other than null (the branches of an ``anyOf``)."""
    return [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]


def _checks_of_load_spec(schema: dict[str, Any]) -> dict[str, Any]:
    """What the models' own validators and ``load_spec``'s field checks refuse, said in the
    schema too, so an editor flags it as ``validate`` would: the presets there are, even sizes
    (yuv420p), a positive frame rate, colours, mouth and eye names, MPEG-TS only."""
    from .lipsync import SHAPES
    from .spec import _COLOR

    defs = schema["$defs"]
    out = defs["OutputModel"]["properties"]
    presets = Path(__file__).resolve().parent / "presets"
    out["preset"]["enum"] = sorted(p.stem for p in presets.glob("*.yaml"))
    for key in ("width", "height"):
        _branches(out[key])[0]["multipleOf"] = 2
    for b in _branches(out["fps"]):
        if b["type"] == "string":  # 30, 29.97, 30000/1001
            b["pattern"] = r"^\s*[0-9]*[1-9][0-9]*(\.[0-9]+)?(\s*/\s*[0-9]*[1-9][0-9]*)?\s*$"
        else:
            b["exclusiveMinimum"] = 0
    _branches(out["segment_type"])[0]["enum"] = ["mpegts"]
    character = defs["CharacterModel"]["properties"]
    character["mouths"]["propertyNames"] = {"enum": list(SHAPES)}
    character["eyes"]["propertyNames"] = {"enum": ["open", "half", "closed"]}
    character["eyes"]["required"] = ["open", "closed"]
    for item in defs["TVModel"]["properties"]["screen"]["prefixItems"]:
        item.update(minimum=0, multipleOf=2)
    style = defs["CaptionStyleModel"]["properties"]
    for key in ("color", "box_color"):
        _branches(style[key])[0]["pattern"] = _COLOR.pattern
    return schema


def segment_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``segment.yaml``, from ``SegmentModel``."""
    from .specload import SegmentModel

    return _finish(
        _checks_of_load_spec(SegmentModel.model_json_schema(mode="validation")),
        kind="segment",
        title="avatarrender segment",
        description="One scripted piece of programme: scene, character, TV, speech, "
        "captions. Paths are relative to the YAML file.",
    )


#: an ISO 8601 date and time with its offset (``format: date-time`` is only a note to most
#: validators, and the YAML language server's takes a time without one, which load_schedule refuses)
_AT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$"


def _checks_of_load_schedule(schema: dict[str, Any]) -> dict[str, Any]:
    """What the schedule models' own validators refuse, said in the schema too: one of
    ``segment``/``spec`` (``dir``/``spec`` for the filler), not both ``at`` and ``after``, a time
    with its offset."""
    defs = schema["$defs"]
    entry = defs["EntryModel"]
    _branches(entry["properties"]["at"])[0]["pattern"] = _AT
    entry["oneOf"] = [_given("segment"), _given("spec")]
    entry["not"] = _given("at", "after")
    defs["FillerModel"]["oneOf"] = [_given("dir"), _given("spec")]
    return schema


def _given(*keys: str) -> dict[str, Any]:
    """Matches an object that has all of ``keys`` with a value other than null."""
    return {"required": list(keys), "properties": {k: {"not": {"type": "null"}} for k in keys}}


def schedule_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the playout schedule, from ``ScheduleModel``."""
    from .playout.schedule import ScheduleModel

    return _finish(
        _checks_of_load_schedule(ScheduleModel.model_json_schema(mode="validation")),
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

"""``avatarrender schema``: the JSON Schema validates the shipped examples with a real validator
(jsonschema, draft 2020-12) and rejects what the pydantic models reject at the field level."""

from __future__ import annotations

import copy
import datetime as dt
import json

import jsonschema
import pytest

from avatarrender.playout.schedule import ScheduleModel
from avatarrender.spec import SegmentModel, read_yaml
from conftest import ROOT, run_cli


def _as_editor_sees(doc):
    """YAML timestamps as text: the YAML language server has no timestamp type."""
    if isinstance(doc, dict):
        return {k: _as_editor_sees(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_as_editor_sees(v) for v in doc]
    if isinstance(doc, (dt.datetime, dt.date)):
        return doc.isoformat()
    return doc


@pytest.fixture(scope="module")
def schemas(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("schema")
    proc = run_cli("schema", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    got = {}
    for kind in ("segment", "schedule"):
        schema = json.loads((out / f"{kind}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)  # a well-formed schema, not just JSON
        got[kind] = schema
    return got


EXAMPLES = {"segment": ROOT / "examples/demo/segment.yaml", "schedule": ROOT / "examples/schedule.yaml"}


@pytest.mark.parametrize("kind", ["segment", "schedule"])
def test_examples_validate(schemas, kind):
    doc = _as_editor_sees(read_yaml(EXAMPLES[kind]))
    errors = list(jsonschema.Draft202012Validator(schemas[kind]).iter_errors(doc))
    assert errors == []


def _break(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[last] = value
    return doc


BROKEN = [
    ("segment", "scene.backgruond", "assets/room.png"),  # unknown field (typo)
    ("segment", "blink.mean_interval_s", 0.1),  # below the model's range
    ("segment", "output.x264_preset", "turbo"),  # not one of the presets
    ("segment", "tv.screen", [96, 160, 768]),  # a rect needs four numbers
    ("segment", "character.position", "left"),  # wrong type
    ("schedule", "target_duration_s", 0),
    ("schedule", "entries.0.name", "bad name/with slash"),  # the name pattern
    ("schedule", "entries.1.after", "next"),
    ("schedule", "late.max_late", 30),
]


@pytest.mark.parametrize("kind,path,value", BROKEN)
def test_broken_files_fail_in_schema_and_model_alike(schemas, kind, path, value):
    doc = _break(read_yaml(EXAMPLES[kind]), path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_as_editor_sees(doc), schemas[kind], cls=jsonschema.Draft202012Validator)
    model = SegmentModel if kind == "segment" else ScheduleModel
    with pytest.raises(Exception):  # and the model rejects it too: the two agree
        model.model_validate(doc)


def test_print_one_and_bad_kind():
    proc = run_cli("schema", "--print", "schedule")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["title"] == "avatarrender schedule"
    proc = run_cli("schema", "--print", "playlist")
    assert proc.returncode == 2 and "--print" in proc.stderr and "playlist" in proc.stderr


# What the models accept at the field level but load_spec (validate) refuses: the schema says so too
REFUSED_BY_VALIDATE = [
    ("character.mouths", {"Z": "assets/base.png"}),  # not a mouth shape
    ("character.eyes", {"open": "assets/base.png"}),  # closed is required
    ("output.fps", 0),
    ("output.fps", "fast"),
    ("output.width", 161),  # yuv420p: even
    ("tv.screen", [11, 10, 64, 36]),
    ("output.preset", "4k"),
    ("output.segment_type", "fmp4"),
    ("captions.style.color", "notacolor"),
]


@pytest.mark.parametrize("path,value", REFUSED_BY_VALIDATE)
def test_what_validate_refuses_the_schema_refuses(schemas, tiny_segment, path, value):
    import yaml

    from avatarrender.errors import AvatarRenderError
    from avatarrender.spec import load_spec

    doc = read_yaml(tiny_segment)
    validator = jsonschema.Draft202012Validator(schemas["segment"])
    assert list(validator.iter_errors(doc)) == []  # the good one passes
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    assert list(validator.iter_errors(doc)), f"the schema takes {path}: {value!r}"
    tiny_segment.write_text(yaml.safe_dump(doc))
    with pytest.raises(AvatarRenderError):
        load_spec(tiny_segment)


# What the schedule's models refuse as a whole (one of two fields, a time without its offset):
# the schema refused none of these, so an editor showed such a schedule as fine
SCHEDULE_REFUSED = [
    {"name": "x", "segment": "a", "spec": "a.yaml"},  # both
    {"name": "x"},  # neither
    {"name": "x", "segment": "a", "at": "2026-12-03T20:00:00Z", "after": "previous"},
    {"name": "x", "segment": "a", "at": "2026-12-03T20:00:00"},  # no offset: was aired as UTC
    {"name": "x", "segment": "a", "at": "2026-12-03"},
]


@pytest.mark.parametrize("entry", SCHEDULE_REFUSED)
def test_what_load_schedule_refuses_the_schema_refuses(schemas, tmp_path, entry):
    import yaml

    from avatarrender.errors import SpecError
    from avatarrender.playout.schedule import load_schedule

    validator = jsonschema.Draft202012Validator(schemas["schedule"])
    good = {
        "entries": [
            {"name": "x", "segment": "a", "at": "2026-12-03T20:00:00+01:00"},
            {"name": "y", "spec": "b.yaml", "at": None, "after": "previous"},
        ]
    }
    assert list(validator.iter_errors(good)) == []
    load_schedule_doc = tmp_path / "schedule.yaml"
    load_schedule_doc.write_text(yaml.safe_dump(good))
    load_schedule(load_schedule_doc)
    doc = {"entries": [entry]}
    assert list(validator.iter_errors(doc)), f"the schema takes {entry}"
    load_schedule_doc.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError):
        load_schedule(load_schedule_doc)
    filler = {"filler": {"dir": "f", "spec": "f.yaml"}}
    assert list(validator.iter_errors(filler))

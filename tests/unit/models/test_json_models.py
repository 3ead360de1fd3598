"""The JSON object-model format: schema, load with precise errors, dump round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models import json_models
from object_models.errors import ModelError
from object_models.model import ObjectModel, Operations, ResourceModel
from object_models.types import ResourceType

from .conftest import REPO, WriteModel, sample_object


def test_schema_is_shipped_and_valid_draft_2020_12() -> None:
    schema = json_models.schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    on_disk = REPO / "object_models" / "schema" / "object-model.schema.json"
    assert json.loads(on_disk.read_text("utf-8")) == schema


def test_valid_file_loads(write_model: WriteModel) -> None:
    path = write_model("sensor.json", sample_object(), sample_object(version="1.1"))
    loaded = json_models.load(path)
    assert [item.field for item in loaded] == ["objects[0]", "objects[1]"]
    id_lines = [
        n for n, line in enumerate(path.read_text().splitlines(), 1) if '"id": 42000' in line
    ]
    assert [item.line for item in loaded] == [n - 1 for n in id_lines]  # the object's "{"
    model = loaded[0].model
    assert (model.id, model.name, model.version, model.lwm2m_version) == (42000, "Test Sensor",
                                                                          "1.0", "1.1")  # fmt: skip
    assert model.multiple and not model.mandatory
    assert model.resources[0] == ResourceModel(0, "Value", Operations.R, False, True,
                                               ResourceType.FLOAT)  # fmt: skip
    assert model.resources[2].operations is Operations.E
    assert model.resources[2].type is ResourceType.NONE
    samples = model.resources[3]
    assert samples.multiple and samples.range_enumeration == "0..100" and samples.units == "%"
    jsonschema.validate(json.loads(path.read_text("utf-8")), json_models.schema())


def test_optional_fields_take_their_defaults() -> None:
    text = json.dumps({"objects": [{"id": 7, "name": "Tiny", "resources": [
        {"id": 1, "name": "X", "operations": "R", "type": "String"}]}]})  # fmt: skip
    (item,) = json_models.loads(text)
    model = item.model
    assert (model.version, model.lwm2m_version, model.urn, model.description) == ("1.0", "1.0",
                                                                                "", "")  # fmt: skip
    assert model.multiple and not model.mandatory
    resource = model.resources[1]
    assert not resource.multiple and not resource.mandatory
    assert (resource.range_enumeration, resource.units, resource.description) == ("", "", "")


def test_source_member_is_kept() -> None:
    obj = sample_object(source={"file": "x.xml", "license": "MIT", "copyright": "Copyright me"})
    (item,) = json_models.loads(json.dumps({"objects": [obj]}))
    assert item.source == {"file": "x.xml", "license": "MIT", "copyright": "Copyright me"}
    again = json.loads(json_models.dumps([(item.model, item.source)]))
    assert again["objects"][0]["source"] == item.source


def _mutate(path: str, value: Any) -> Any:
    """Set (or, with ``...``, delete) ``path`` in a copy of a one-object document."""
    doc: Any = {"objects": [copy.deepcopy(sample_object())]}
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value
    return doc


INVALID = [
    # (change, expected field, words in the reason)
    ("objects.0.resources.3.type", ..., "objects[0].resources[3].type", "missing required field"),
    ("objects.0.name", ..., "objects[0].name", "missing required field"),
    ("objects.0.resources", ..., "objects[0].resources", "missing required field"),
    ("objects.0.id", "3303", "objects[0].id", "must be an integer, got a string"),
    ("objects.0.multiple", "yes", "objects[0].multiple", "must be a boolean"),
    ("objects.0.resources.1.units", 5, "objects[0].resources[1].units", "must be a string"),
    ("objects.0.resources.3.type", "Flot", "objects[0].resources[3].type", "got 'Flot'"),
    ("objects.0.resources.0.operations", "RX", "objects[0].resources[0].operations",
     "got 'RX'"),
    ("objects.0.resources.0.operations", "r", "objects[0].resources[0].operations", "got 'r'"),
    ("objects.0.resources.2.id", 1, "objects[0].resources[2].id", "duplicate resource id 1"),
    ("objects.0.resources.0.id", 70000, "objects[0].resources[0].id", "outside 0..65535"),
    ("objects.0.id", -1, "objects[0].id", "outside 0..65535"),
    ("objects.0.version", "1", "objects[0].version", "expected a version like '1.0'"),
    ("objects.0.name", "", "objects[0].name", "must not be empty"),
    ("objects.0.mandatroy", True, "objects[0].mandatroy", "unknown field"),
    ("objects.0.resources.1", "Label", "objects[0].resources[1]", "must be an object"),
    ("objects.0.source", {"file": 1}, "objects[0].source.file", "must be a string"),
    ("objects.1", sample_object(), "objects[1]", "defined twice"),
    ("objects", [], "objects", "at least one object"),
    ("objects", ..., "objects", "missing required field"),
]  # fmt: skip


@pytest.mark.parametrize("validate", [True, False], ids=["schema", "no-schema"])
@pytest.mark.parametrize(("change", "value", "field", "reason"), INVALID)
def test_invalid_files_name_file_field_and_reason(
    tmp_path: Path, validate: bool, change: str, value: Any, field: str, reason: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(_mutate(change, value), indent=2), encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        json_models.load(path, validate=validate)
    error = caught.value
    assert (error.file, error.field) == (str(path), field)
    assert reason in error.reason
    assert error.line is not None
    assert str(error).startswith(f"{path}:{error.line}: {field}: ")


def test_error_line_points_at_the_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    text = json.dumps(_mutate("objects.0.resources.3.type", "Flot"), indent=2)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        json_models.load(path)
    assert '"type": "Flot"' in text.splitlines()[caught.value.line - 1]  # type: ignore[operator]


def test_missing_field_line_points_at_its_object(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    text = json.dumps(_mutate("objects.0.resources.3.type", ...), indent=2)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        json_models.load(path)
    lines = text.splitlines()
    assert caught.value.line is not None
    assert lines[caught.value.line - 1].strip() == "{"
    assert '"id": 3' in lines[caught.value.line]


@pytest.mark.parametrize(
    ("text", "reason", "line"),
    [
        ('{"objects": [\n  {"id": 1,\n  }]}', "invalid JSON", 3),
        ("[]", 'must hold {"objects": [...]}', 1),
        ('{"objects": [{"id": 1, "id": 2}]}', "duplicate key 'id'", None),
        ('{"objects": [], "extra": 1}', "unknown field", 1),
    ],
)
def test_document_level_errors(text: str, reason: str, line: int | None) -> None:
    with pytest.raises(ModelError) as caught:
        json_models.loads(text, "doc.json")
    assert caught.value.file == "doc.json"
    assert reason in caught.value.reason
    assert caught.value.line == line


def test_non_utf8_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"objects": [{"id": 1, "name": "\xe9"}]}')
    with pytest.raises(ModelError, match="not UTF-8"):
        json_models.load(path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"objects": [sample_object()]}).encode())
    assert json_models.load(path)[0].model.id == 42000


def test_object_from_json_prefixes_the_field() -> None:
    with pytest.raises(ModelError) as caught:
        json_models.object_from_json({"id": 1, "name": "x"}, "api", "body")
    assert caught.value.field == "body.resources"


# -- round trip -----------------------------------------------------------------------------------
_text = st.text(st.characters(codec="utf-8"), max_size=20)
_version = st.builds("{}.{}".format, st.integers(0, 99), st.integers(0, 99))
_resource = st.builds(
    ResourceModel,
    id=st.integers(0, 65535),
    name=_text.filter(bool),
    operations=st.sampled_from(Operations),
    multiple=st.booleans(),
    mandatory=st.booleans(),
    type=st.sampled_from(ResourceType),
    range_enumeration=_text,
    units=_text,
    description=_text,
)
_object = st.builds(
    lambda resources, **kw: ObjectModel(resources={r.id: r for r in resources}, **kw),
    resources=st.lists(_resource, max_size=6, unique_by=lambda r: r.id),
    id=st.integers(0, 65535),
    name=_text.filter(bool),
    version=_version,
    lwm2m_version=_version,
    multiple=st.booleans(),
    mandatory=st.booleans(),
    urn=_text,
    description=_text,
    description2=_text,
)


@settings(max_examples=150, deadline=None)
@given(_object)
def test_dump_then_load_gives_the_same_model(model: ObjectModel) -> None:
    text = json_models.dumps(model)
    jsonschema.validate(json.loads(text), json_models.schema())
    (item,) = json_models.loads(text)
    assert item.model == model


def test_the_documented_example_loads() -> None:
    text = (REPO / "docs" / "object-models.md").read_text("utf-8")
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    (item,) = json_models.loads(example, "docs/object-models.md")
    assert item.model.name == "Tank Level" and sorted(item.model.resources) == [0, 1, 2]


def test_deeply_nested_json_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="nested too deeply"):
        json_models.loads('{"objects": ' + "[" * 100_000 + "]" * 100_000 + "}", "deep.json")

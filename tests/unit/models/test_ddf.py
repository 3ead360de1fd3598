"""DDF XML import: the whole OMA registry, both schema versions, errors, XML attacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from object_models.ddf import (
    copyright_line,
    leading_comment,
    load_ddf,
    parse_ddf,
    parse_ddf_located,
)
from object_models.errors import ModelError
from object_models.model import Operations
from object_models.types import ResourceType

from .conftest import DDF_DIR, needs_registry, registry_ddf_files

ITEM = """
      <Item ID="{id}">
        <Name>{name}</Name>
        <Operations>{ops}</Operations>
        <MultipleInstances>{mi}</MultipleInstances>
        <Mandatory>Mandatory</Mandatory>
        <Type>{type}</Type>
        <RangeEnumeration>0..10</RangeEnumeration>
        <Units>m</Units>
        <Description>  Resource {id}.  </Description>
      </Item>"""


def ddf(*, object_id: str = "42001", versions: str = "", items: str | None = None,
        objects: int = 1) -> str:  # fmt: skip
    if items is None:
        items = ITEM.format(id=0, name="Value", ops="R", mi="Single", type="Float")
        items += ITEM.format(id=1, name="Go", ops="E", mi="Single", type="")
        items += ITEM.format(id=2, name="List", ops="RW", mi="Multiple", type="Unsigned Integer")
    body = f"""
  <Object ObjectType="MODefinition">
    <Name>Thing</Name>
    <Description1>First description.</Description1>
    <ObjectID>{object_id}</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:{object_id}</ObjectURN>{versions}
    <MultipleInstances>Single</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>{items}
    </Resources>
    <Description2>Second description.</Description2>
  </Object>"""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<LWM2M>{body * objects}\n</LWM2M>\n'


def test_schema_1_0_file_without_versions_defaults_to_1_0() -> None:
    (model,) = parse_ddf(ddf(), "thing.xml")
    assert (model.id, model.name, model.version, model.lwm2m_version) == (42001, "Thing", "1.0",
                                                                          "1.0")  # fmt: skip
    assert not model.multiple and not model.mandatory
    assert model.urn == "urn:oma:lwm2m:x:42001"
    assert model.description == "First description."
    assert model.description2 == "Second description."
    assert sorted(model.resources) == [0, 1, 2]
    value, go, many = model.resources[0], model.resources[1], model.resources[2]
    assert value.type is ResourceType.FLOAT and value.operations is Operations.R
    assert value.range_enumeration == "0..10" and value.units == "m" and value.mandatory
    assert value.description == "Resource 0."  # surrounding whitespace trimmed
    assert go.type is ResourceType.NONE and go.operations is Operations.E
    assert many.multiple and many.type is ResourceType.UNSIGNED_INTEGER


def test_schema_1_1_versions_are_read() -> None:
    versions = "\n    <LWM2MVersion>1.1</LWM2MVersion>\n    <ObjectVersion>1.10</ObjectVersion>"
    (model,) = parse_ddf(ddf(versions=versions))
    assert (model.version, model.lwm2m_version) == ("1.10", "1.1")


def test_empty_version_elements_default_to_1_0() -> None:
    versions = "<LWM2MVersion></LWM2MVersion><ObjectVersion/>"
    (model,) = parse_ddf(ddf(versions=versions))
    assert (model.version, model.lwm2m_version) == ("1.0", "1.0")


def test_a_file_may_hold_several_objects() -> None:
    models = parse_ddf(ddf(objects=3))
    assert len(models) == 3


def test_str_input_and_bytes_input_agree() -> None:
    text = ddf()
    assert parse_ddf(text) == parse_ddf(text.encode("utf-8"))


@pytest.mark.parametrize(
    ("document", "field", "reason", "line"),
    [
        (ddf(object_id="x"), "Object[0].ObjectID", "expected an id", 6),
        (ddf(object_id="70000"), "Object[0].ObjectID", "outside 0..65535", 6),
        (ddf(versions="<ObjectVersion>v2</ObjectVersion>"), "Object[0].ObjectVersion",
         "expected a version", 7),
        (ddf(items=ITEM.format(id=5, name="A", ops="R", mi="Single", type="Flot")),
         "Object[0].Resources.Item[ID=5].Type", "unknown resource type 'Flot'", 16),
        (ddf(items=ITEM.format(id=5, name="A", ops="RX", mi="Single", type="Float")),
         "Object[0].Resources.Item[ID=5].Operations", "unknown operations 'RX'", 13),
        (ddf(items=ITEM.format(id=5, name="A", ops="R", mi="Several", type="Float")),
         "Object[0].Resources.Item[ID=5].MultipleInstances", "'Single' or 'Multiple'", 14),
        (ddf(items=ITEM.format(id="x", name="A", ops="R", mi="Single", type="Float")),
         "Object[0].Resources.Item[0]@ID", "expected an id", 11),
        (ddf(items=ITEM.format(id=7, name="A", ops="R", mi="Single", type="Float") * 2),
         "Object[0].Resources.Item[ID=7]", "duplicate resource id 7", 21),
        (ddf().replace("<Name>Thing</Name>", ""), "Object[0]", "missing <Name>", 3),
        (ddf().replace("<Type>Float</Type>", ""), "Object[0].Resources.Item[ID=0]",
         "missing <Type>", 11),
        ("<LWM2M/>", "LWM2M", "no <Object> element", 1),
        ("<DDFList><Item/></DDFList>", "DDFList", "root element must be <LWM2M>", 1),
    ],
)  # fmt: skip
def test_errors_name_file_field_reason_and_line(
    document: str, field: str, reason: str, line: int
) -> None:
    with pytest.raises(ModelError) as caught:
        parse_ddf(document, "broken.xml")
    error = caught.value
    assert error.file == "broken.xml"
    assert error.field == field
    assert reason in error.reason
    assert error.line == line
    assert str(error).startswith(f"broken.xml:{line}: {field}: ")


def test_malformed_xml_reports_the_line() -> None:
    with pytest.raises(ModelError) as caught:
        parse_ddf("<LWM2M>\n<Object>\n</LWM2M>", "bad.xml")
    assert caught.value.line == 3
    assert "malformed XML" in caught.value.reason


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<LWM2M><Object ObjectType="MODefinition"><Name>&lol9;</Name></Object></LWM2M>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE LWM2M [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<LWM2M><Object ObjectType="MODefinition"><Name>&secret;</Name></Object></LWM2M>
"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE LWM2M SYSTEM "http://example.invalid/evil.dtd">
<LWM2M/>
"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE LWM2M [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]>
<LWM2M/>
"""


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_entity_attacks_are_refused(document: str, tmp_path: Path) -> None:
    path = tmp_path / "evil.xml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_ddf(path)
    assert caught.value.file == str(path)
    assert "refused" in caught.value.reason
    assert caught.value.line == 2


def test_unreadable_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read file"):
        load_ddf(tmp_path / "missing.xml")


def test_licence_comment_helpers() -> None:
    text = "<?xml version='1.0'?>\n<!-- MIT License\n\nCopyright 2017 Someone\n-->\n<LWM2M/>"
    assert leading_comment(text) == " MIT License\n\nCopyright 2017 Someone\n"
    assert copyright_line(text) == "Copyright 2017 Someone"
    assert copyright_line("<LWM2M/>") is None


# -- the OMA registry -----------------------------------------------------------------------------
REGISTRY_FILES = registry_ddf_files()


@needs_registry
def test_registry_copy_is_complete() -> None:
    latest = [p for p in REGISTRY_FILES if p.parent == DDF_DIR]
    assert len(latest) == 325
    assert len(REGISTRY_FILES) - len(latest) == 422


@needs_registry
@pytest.mark.parametrize(
    "path", REGISTRY_FILES, ids=[p.relative_to(DDF_DIR).as_posix() for p in REGISTRY_FILES]
)
def test_every_registry_ddf_loads(path: Path) -> None:
    models = load_ddf(path)
    assert len(models) == 1
    model = models[0]
    assert model.resources
    if path.parent.name == "version_history":
        object_id, _, version = path.stem.partition("-")
        assert (model.id, model.version) == (int(object_id), version.replace("_", "."))
    else:
        assert model.id == int(path.stem)


@needs_registry
@pytest.mark.parametrize("name", sorted(["DDF.xml", "Common.xml"]))
def test_registry_metadata_files_are_not_objects(name: str) -> None:
    with pytest.raises(ModelError):
        load_ddf(DDF_DIR / name)


@needs_registry
def test_known_objects_read_correctly() -> None:
    (device,) = load_ddf(DDF_DIR / "3.xml")
    assert (device.name, device.version, device.lwm2m_version) == ("Device", "1.2", "1.1")
    assert not device.multiple and device.mandatory
    assert device.resources[4].operations is Operations.E
    assert device.resources[6].multiple and device.resources[6].type is ResourceType.INTEGER
    assert device.resources[22].type is ResourceType.OBJLNK
    (old,) = load_ddf(DDF_DIR / "version_history" / "3303-1_0.xml")
    assert old.version == "1.0" and 5700 in old.resources


def test_located_parse_gives_object_lines() -> None:
    located = parse_ddf_located(ddf(objects=2))
    assert [line for _, line in located] == [3, 44]
    assert [model for model, _ in located] == parse_ddf(ddf(objects=2))

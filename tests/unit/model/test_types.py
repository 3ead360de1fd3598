"""Coercion of loosely typed input (API JSON, CLI strings) into LwM2M values."""

import datetime

import pytest

from object_models.types import (
    INT64_MAX,
    UINT64_MAX,
    ObjectLink,
    ResourceType,
    coerce_value,
    guess_type,
    value_to_json,
)


@pytest.mark.parametrize(
    ("rtype", "given", "expected"),
    [
        (ResourceType.STRING, "abc", "abc"),
        (ResourceType.INTEGER, "-42", -42),
        (ResourceType.INTEGER, 7.0, 7),
        (ResourceType.UNSIGNED_INTEGER, str(UINT64_MAX), UINT64_MAX),
        (ResourceType.FLOAT, "1.5", 1.5),
        (ResourceType.FLOAT, 3, 3.0),
        (ResourceType.BOOLEAN, "true", True),
        (ResourceType.BOOLEAN, 0, False),
        (ResourceType.OPAQUE, "hex:0102ff", b"\x01\x02\xff"),
        (ResourceType.OPAQUE, "AQL/", b"\x01\x02\xff"),
        (ResourceType.TIME, "2021-01-01T00:00:00Z", 1609459200),
        (ResourceType.TIME, datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC), 1609459200),
        (ResourceType.TIME, 1609459200, 1609459200),
        (ResourceType.OBJLNK, "3:0", ObjectLink(3, 0)),
        (ResourceType.OBJLNK, {"objectId": 1, "objectInstanceId": 2}, ObjectLink(1, 2)),
        (ResourceType.NONE, None, None),
    ],
)
def test_coerce_accepts(rtype: ResourceType, given: object, expected: object) -> None:
    assert coerce_value(rtype, given) == expected


@pytest.mark.parametrize(
    ("rtype", "given", "words"),
    [
        (ResourceType.INTEGER, INT64_MAX + 1, "range"),
        (ResourceType.INTEGER, True, "boolean"),
        (ResourceType.INTEGER, 1.5, "non-integral"),
        (ResourceType.UNSIGNED_INTEGER, -1, "range"),
        (ResourceType.FLOAT, "x", "float"),
        (ResourceType.BOOLEAN, 2, "boolean"),
        (ResourceType.OPAQUE, "hex:zz", "hex"),
        (ResourceType.OBJLNK, "3", "object link"),
        (ResourceType.OBJLNK, "70000:0", "0..65535"),
        (ResourceType.STRING, 5, "string"),
        (ResourceType.NONE, "x", "none"),
    ],
)
def test_coerce_refuses_with_reason(rtype: ResourceType, given: object, words: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        coerce_value(rtype, given)
    assert words in str(info.value)


def test_type_names_from_ddf_spelling() -> None:
    assert ResourceType.from_name("Unsigned Integer") is ResourceType.UNSIGNED_INTEGER
    assert ResourceType.from_name("objlnk") is ResourceType.OBJLNK
    assert ResourceType.from_name("") is ResourceType.NONE
    with pytest.raises(ValueError):
        ResourceType.from_name("Decimal")


def test_guess_and_json_forms() -> None:
    assert guess_type(True) is ResourceType.BOOLEAN
    assert guess_type(b"") is ResourceType.OPAQUE
    assert value_to_json(b"\x01") == "AQ=="
    assert value_to_json(ObjectLink(65535, 65535)) == "65535:65535"
    assert ObjectLink(65535, 65535).is_null

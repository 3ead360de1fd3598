"""The codec facade: format selection, the CoAP codes of its refusals, the payload bound."""

from __future__ import annotations

from pathlib import Path

import pytest

codecs = pytest.importorskip(
    "object_models.codecs", reason="the facade imports every codec module; one is missing"
)

from object_models.content_format import ContentFormat  # noqa: E402
from object_models.errors import CodecError, ResponseCode  # noqa: E402
from object_models.model import StaticModels  # noqa: E402
from object_models.node import (  # noqa: E402
    LwM2mMultipleResource,
    LwM2mSingleResource,
    TimestampedNodes,
)
from object_models.path import LwM2mPath  # noqa: E402
from object_models.types import ResourceType  # noqa: E402

from .helpers import DEVICE_INSTANCE, DEVICE_RESOURCES, SPEC_MODELS  # noqa: E402

PATH = LwM2mPath(3, 0, 9)
NODE = LwM2mSingleResource(9, 100, ResourceType.INTEGER)


@pytest.mark.parametrize("fmt", [9999, ContentFormat.LINK])
def test_unsupported_format_on_decode_is_4_15(fmt: int) -> None:
    with pytest.raises(CodecError) as info:
        codecs.decode(b"100", PATH, fmt, SPEC_MODELS)
    assert info.value.code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT
    assert info.value.code.dotted == "4.15"


@pytest.mark.parametrize("fmt", [9999, ContentFormat.LINK])
def test_unsupported_format_on_encode_is_4_06(fmt: int) -> None:
    with pytest.raises(CodecError) as info:
        codecs.encode(NODE, PATH, fmt, SPEC_MODELS)
    assert info.value.code is ResponseCode.NOT_ACCEPTABLE


def test_format_without_the_operation() -> None:
    assert not codecs.supports(ContentFormat.TLV, "decode_timestamped")
    assert codecs.supports(ContentFormat.JSON, "decode_timestamped")
    with pytest.raises(CodecError) as info:
        codecs.decode_timestamped(b"", ContentFormat.TLV, SPEC_MODELS)
    assert info.value.code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT
    with pytest.raises(CodecError) as info:
        codecs.encode_timestamped(TimestampedNodes(()), ContentFormat.TEXT, SPEC_MODELS)
    assert info.value.code is ResponseCode.NOT_ACCEPTABLE


@pytest.mark.parametrize("fmt", [ContentFormat.TEXT, ContentFormat.TLV, ContentFormat.JSON])
def test_oversize_payload_is_4_13_before_parsing(fmt: int) -> None:
    with pytest.raises(CodecError) as info:
        codecs.decode(b"\x00" * (codecs.MAX_PAYLOAD + 1), PATH, fmt, SPEC_MODELS)
    assert info.value.code is ResponseCode.REQUEST_ENTITY_TOO_LARGE


def test_codec_error_message_names_the_path() -> None:
    with pytest.raises(CodecError) as info:
        codecs.decode(b"12x", PATH, ContentFormat.TEXT, SPEC_MODELS)
    assert info.value.path == "/3/0/9"
    assert str(info.value).startswith("/3/0/9: ")
    with pytest.raises(CodecError) as info:
        codecs.decode(bytes.fromhex("C1090102"), LwM2mPath(3, 0), ContentFormat.TLV, SPEC_MODELS)
    assert "/3/0" in str(info.value)


@pytest.mark.parametrize("fmt", [ContentFormat.TEXT, ContentFormat.TLV, ContentFormat.JSON])
def test_text_without_a_utf8_form_is_a_codec_error_on_encode(fmt: int) -> None:
    """A lone surrogate (which a JSON ``\\ud800`` escape can produce) has no UTF-8 form."""
    node = LwM2mSingleResource(0, "a\ud800", ResourceType.STRING)
    with pytest.raises(CodecError, match="not a valid String value") as info:
        codecs.encode(node, LwM2mPath(3, 0, 0), fmt, SPEC_MODELS)
    assert info.value.code is ResponseCode.BAD_REQUEST


@pytest.mark.parametrize(
    "fmt", [ContentFormat.TLV, ContentFormat.OLD_TLV, ContentFormat.JSON, ContentFormat.OLD_JSON]
)
def test_my_formats_through_the_facade(fmt: int) -> None:
    path = LwM2mPath(3, 0)
    payload = codecs.encode(DEVICE_INSTANCE, path, fmt, SPEC_MODELS)
    assert codecs.decode(payload, path, fmt, SPEC_MODELS) == DEVICE_INSTANCE
    if fmt in (ContentFormat.TLV, ContentFormat.OLD_TLV):
        assert payload == DEVICE_RESOURCES
    assert codecs.decode(b"100", PATH, ContentFormat.TEXT, SPEC_MODELS) == NODE


# == issue 9 item 7: an empty multiple resource without a model, in every multi-value format =====
EMPTY_MULTIPLE = [
    (ContentFormat.SENML_JSON, b"[]"),
    (ContentFormat.SENML_JSON, b""),
    (ContentFormat.SENML_CBOR, b"\x80"),
    (ContentFormat.SENML_CBOR, b""),
    (ContentFormat.LWM2M_CBOR, b"\xa0"),
    (ContentFormat.LWM2M_CBOR, b""),
    (ContentFormat.JSON, b'{"bn":"/32768/0/7/","e":[]}'),
    (ContentFormat.OLD_JSON, b'{"e":[]}'),
    (ContentFormat.TLV, b"\x88\x07\x00"),
    (ContentFormat.TLV, b""),
]


@pytest.mark.parametrize(("fmt", "payload"), EMPTY_MULTIPLE, ids=lambda v: repr(v)[:24])
def test_empty_multiple_resource_without_a_model(fmt: ContentFormat, payload: bytes) -> None:
    """A Read of a custom object's empty multiple resource, the object unknown to the server:
    it decodes (it made the HTTP API answer 502 in every format but TLV)."""
    node = codecs.decode(payload, LwM2mPath(32768, 0, 7), fmt, StaticModels({}))
    assert isinstance(node, LwM2mMultipleResource)
    assert node.id == 7 and node.instances == {}


# == supports(): every format x operation against the table of docs/codecs.md =====================
DOCS = Path(__file__).resolve().parents[3] / "docs" / "codecs.md"


def _documented_table() -> tuple[list[str], dict[int, dict[str, str]]]:
    """The operation columns and ``{content format: {operation: cell}}`` of the "Operations per
    format" table; a row naming several formats (``11542, 1542``) stands for each of them."""
    section = DOCS.read_text(encoding="utf-8").split("## Operations per format\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[:2] == ["format", "CF"]
    table: dict[int, dict[str, str]] = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for number in cells[1].split(","):
            table[int(number)] = dict(zip(header[2:], cells[2:], strict=True))
    return header[2:], table


OPERATION_COLUMNS, DOCUMENTED = _documented_table()
NO = "\N{EN DASH}"  # the docs' "not supported" cell

_ARGS = {  # arguments after which the facade looks at the format (all refused the same way)
    "encode": lambda fmt: (NODE, PATH, fmt, SPEC_MODELS),
    "decode": lambda fmt: (b"", PATH, fmt, SPEC_MODELS),
    "encode_nodes": lambda fmt: ({}, fmt, SPEC_MODELS),
    "decode_nodes": lambda fmt: (b"", fmt, SPEC_MODELS),
    "encode_paths": lambda fmt: ([], fmt),
    "decode_paths": lambda fmt: (b"", fmt),
    "encode_timestamped": lambda fmt: (TimestampedNodes(()), fmt, SPEC_MODELS),
    "decode_timestamped": lambda fmt: (b"", fmt, SPEC_MODELS),
}


def test_documented_table_has_every_format_and_operation() -> None:
    assert list(codecs.OPERATIONS) == OPERATION_COLUMNS
    assert sorted(DOCUMENTED) == sorted(int(fmt) for fmt in ContentFormat)
    assert {cell for row in DOCUMENTED.values() for cell in row.values()} <= {"yes", NO}
    assert set(_ARGS) == set(codecs.OPERATIONS)


@pytest.mark.parametrize("operation", codecs.OPERATIONS)
@pytest.mark.parametrize("fmt", list(ContentFormat), ids=lambda fmt: fmt.name)
def test_supports_matches_the_documented_table(fmt: ContentFormat, operation: str) -> None:
    """The code is the truth: ``supports`` must answer what docs/codecs.md says, and a format
    without the operation is refused with 4.06 (encoding) or 4.15 (decoding)."""
    supported = codecs.supports(fmt, operation)
    assert DOCUMENTED[fmt][operation] == ("yes" if supported else NO)
    if not supported:
        with pytest.raises(CodecError) as info:
            getattr(codecs, operation)(*_ARGS[operation](fmt))
        decoding = operation.startswith("decode")
        expected = (
            ResponseCode.UNSUPPORTED_CONTENT_FORMAT if decoding else ResponseCode.NOT_ACCEPTABLE
        )
        assert info.value.code is expected

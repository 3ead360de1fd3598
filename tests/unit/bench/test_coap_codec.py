"""The load generator's hand-built CoAP codec: RFC 7252 §3 layout, option delta/length
extensions, and agreement with aiocoap (an independent implementation) both ways."""

from __future__ import annotations

import aiocoap
import pytest
from aiocoap.numbers.codes import Code as AioCode
from aiocoap.numbers.types import Type as AioType

from bench.load import coap
from bench.load.coap import Code, MessageType, Option
from bench.load.generator import REGISTRATION_LINKS, registration_request


def test_header_token_and_payload_marker() -> None:
    msg = coap.Message(MessageType.CON, Code.POST, 0x1234, b"\xaa\xbb", [], b"hi")
    data = msg.encode()
    # ver 1, CON, TKL 2 | 0.02 | MID | token | 0xFF | payload
    assert data == bytes([0x42, 0x02, 0x12, 0x34, 0xAA, 0xBB, 0xFF]) + b"hi"
    assert coap.decode(data) == msg


def test_empty_ack_is_four_bytes() -> None:
    assert coap.encode_header(MessageType.ACK, Code.EMPTY, 7, b"") == b"\x60\x00\x00\x07"


@pytest.mark.parametrize(
    ("number", "length", "prefix"),
    [
        (11, 2, bytes([0xB2])),  # delta and length fit the nibbles
        (15, 13, bytes([0xDD, 0x02, 0x00])),  # delta 15 -> 13+2, length 13 -> 13+0
        (300, 1, bytes([0xE1, 0x00, 0x1F])),  # delta 300 -> 14 + (300-269) in 2 bytes
        (11, 300, bytes([0xBE, 0x00, 0x1F])),  # length 300 -> 14 + 2 bytes
        (11, 268, bytes([0xBD, 0xFF])),  # the largest 1-byte extension
    ],
)
def test_option_extensions(number: int, length: int, prefix: bytes) -> None:
    value = b"x" * length
    encoded = coap.encode_options([(number, value)])
    assert encoded == prefix + value
    msg = coap.decode(coap.encode_header(MessageType.NON, Code.GET, 1, b"") + encoded)
    assert msg.options == [(number, value)]


def test_options_are_sorted_and_repeatable() -> None:
    options = [
        (Option.URI_QUERY, b"ep=dev"),
        (Option.URI_PATH, b"rd"),
        (Option.CONTENT_FORMAT, coap.uint_value(40)),
        (Option.URI_QUERY, b"lt=60"),
    ]
    data = coap.encode_header(MessageType.CON, Code.POST, 9, b"t") + coap.encode_tail(options)
    msg = coap.decode(data)
    assert msg.uri_path == ["rd"]
    assert msg.uri_query == ["ep=dev", "lt=60"]
    assert msg.content_format == 40


@pytest.mark.parametrize(("value", "encoded"), [(0, b""), (1, b"\x01"), (256, b"\x01\x00")])
def test_uint_values_are_minimal(value: int, encoded: bytes) -> None:
    assert coap.uint_value(value) == encoded
    assert coap.uint_of(encoded) == value


@pytest.mark.parametrize(
    "data",
    [
        b"\x40\x01",  # shorter than the header
        b"\x80\x01\x00\x01",  # version 2
        b"\x49\x01\x00\x01" + b"t" * 9,  # token length 9
        b"\x42\x01\x00\x01t",  # truncated token
        b"\x40\x01\x00\x01\xff",  # payload marker without payload
        b"\x40\x01\x00\x01\xb5ab",  # option value truncated
        b"\x40\x01\x00\x01\xd1",  # 1-byte delta extension missing
        b"\x40\x01\x00\x01\xf1a",  # delta nibble 15
    ],
)
def test_format_errors(data: bytes) -> None:
    with pytest.raises(coap.CoapFormatError):
        coap.decode(data)


def test_registration_request_as_aiocoap_reads_it() -> None:
    """What the generator sends is what a real CoAP stack sees."""
    data = registration_request("bench-000001", 0x0102, b"\x01\x02\x03\x04", 86400)
    parsed = aiocoap.Message.decode(data)
    assert parsed.mtype == AioType.CON
    assert parsed.code == AioCode.POST
    assert parsed.mid == 0x0102
    assert parsed.token == b"\x01\x02\x03\x04"
    assert parsed.opt.uri_path == ("rd",)
    assert parsed.opt.uri_query == ("ep=bench-000001", "lt=86400", "lwm2m=1.1", "b=U")
    assert int(parsed.opt.content_format) == 40
    assert parsed.payload == REGISTRATION_LINKS


def test_decodes_what_aiocoap_encodes() -> None:
    """A notification as aiocoap builds it: Observe, Content-Format and Location-Path with an
    extended option delta (Location-Path 8 after Observe 6; Accept 17 after 12)."""
    msg = aiocoap.Message(
        code=AioCode.CONTENT,
        payload=b"\x81\xa1\x02\xf9\x4d\x60",
        observe=70000,
        content_format=112,
        location_path=("rd", "abc"),
        accept=11542,
    )
    msg.mtype, msg.mid, msg.token = AioType.NON, 0xBEEF, b"\x00" * 8
    decoded = coap.decode(msg.encode())
    assert decoded.type == MessageType.NON
    assert decoded.code == Code.CONTENT
    assert coap.code_text(decoded.code) == "2.05"
    assert decoded.mid == 0xBEEF
    assert decoded.observe == 70000
    assert decoded.content_format == 112
    assert decoded.accept == 11542
    assert decoded.location_path == ["rd", "abc"]
    assert decoded.payload == b"\x81\xa1\x02\xf9\x4d\x60"
    assert decoded.encode() == msg.encode()

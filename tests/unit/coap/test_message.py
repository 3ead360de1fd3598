"""Parse/serialize: RFC example bytes, extensions, strict rejects, round-trip properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m_runtime.coap import (
    Block,
    Code,
    InvalidOptionValueError,
    Message,
    MessageFormatError,
    OptionNumber,
    Type,
    options,
    parse,
    serialize,
)
from lwm2m_runtime.coap.message import piggybacked
from lwm2m_runtime.coap.numbers import is_critical, is_no_cache_key, is_unsafe

PROFILE = settings.get_profile("coap")

# RFC 7252 Appendix A, Figure 16: CON GET MID 0x7d34, no token, Uri-Path "temperature"
GET_TEMPERATURE = bytes.fromhex("40017d34bb") + b"temperature"
# ... and its piggybacked ACK 2.05 MID 0x7d34 with payload "22.3 C"
ACK_TEMPERATURE = bytes.fromhex("60457d34ff") + b"22.3 C"


def test_rfc7252_get_request_vector() -> None:
    msg = parse(GET_TEMPERATURE)
    assert (msg.mtype, msg.code, msg.mid, msg.token) == (Type.CON, Code.GET, 0x7D34, b"")
    assert msg.uri_path == ["temperature"]
    assert serialize(msg) == GET_TEMPERATURE


def test_rfc7252_piggybacked_response_vector() -> None:
    msg = parse(ACK_TEMPERATURE)
    assert (msg.mtype, msg.code, msg.mid, msg.payload) == (
        Type.ACK,
        Code.CONTENT,
        0x7D34,
        b"22.3 C",
    )
    assert Code(msg.code).dotted == "2.05" and Code(msg.code).is_successful
    assert serialize(msg) == ACK_TEMPERATURE


def test_update_vector() -> None:
    """POST /rd/abc?lt=300, token 01020304: the typical LwM2M Update (bench/coap_layer.py)."""
    msg = Message.request(Code.POST, "/rd/abc", query=["lt=300"], token=bytes.fromhex("01020304"))
    data = serialize(msg.replace(mid=0x1234))
    assert data == bytes.fromhex("4402123401020304b272640361626346") + b"lt=300"


@pytest.mark.parametrize(
    ("block", "wire"),
    [
        # RFC 7959 §2.2: NUM 4 bits left of M, SZX in the low 3 bits; num 0, M 0 is the empty value
        (Block(0, False, 0), b""),
        (Block(0, True, 3), b"\x0b"),  # Figure 2 "2:0/1/128"
        (Block(1, True, 3), b"\x1b"),  # "2:1/1/128"
        (Block(2, False, 3), b"\x23"),  # "2:2/0/128"
        (Block(16, True, 6), b"\x01\x0e"),
        (Block(0xFFFFF, False, 6), b"\xff\xff\xf6"),
    ],
)
def test_block_option_values(block: Block, wire: bytes) -> None:
    assert block.encode() == wire
    assert Block.decode(wire) == block


def test_block_size_and_offset() -> None:
    assert Block(3, True, 6).size == 1024 and Block(3, True, 6).offset == 3072


def test_extended_option_delta_and_length() -> None:
    long_value = b"q" * 300
    msg = Message(
        Type.NON,
        Code.POST,
        7,
        b"",
        options(
            uri_query=["a" * 20, long_value.decode()],
            size1=70000,
            extra=[(OptionNumber.NO_RESPONSE, b"\x02")],
        ),
        b"x",
    )
    data = serialize(msg)
    # Uri-Query (15): delta 13 + ext 2, length 13 + ext 7
    assert data[4:6] == bytes([0xDD, 2])
    back = parse(data)
    assert back == msg
    assert back.uri_query == ["a" * 20, long_value.decode()]
    assert back.size1 == 70000
    assert back.opt(OptionNumber.NO_RESPONSE) == b"\x02"


def test_typed_accessors() -> None:
    opts = options(
        uri_path=["3", "0"],
        content_format=11542,
        accept=112,
        observe=0,
        etag=b"\x01\x02",
        if_match=[b"a", b""],
        block2=Block(1, False, 6),
        size2=3000,
        location_path=["rd", "x"],
        max_age=30,
    )
    m = Message(Type.CON, Code.GET, 1, b"t", opts)
    assert m.uri_path == ["3", "0"] and m.uri_path_str == "/3/0"
    assert (m.content_format, m.accept, m.observe) == (11542, 112, 0)
    assert m.etag == b"\x01\x02" and m.if_match == [b"a", b""]
    assert m.block2 == Block(1, False, 6) and m.block1 is None and m.size2 == 3000
    assert m.location_path == ["rd", "x"] and m.max_age == 30
    assert Message(Type.CON, Code.GET).max_age == 60


def test_option_properties_from_number() -> None:
    assert is_critical(OptionNumber.URI_PATH) and not is_critical(OptionNumber.CONTENT_FORMAT)
    assert is_unsafe(OptionNumber.URI_HOST) and not is_unsafe(OptionNumber.ETAG)
    assert is_no_cache_key(OptionNumber.SIZE1) and not is_no_cache_key(OptionNumber.URI_QUERY)
    assert OptionNumber.BLOCK2.is_critical and OptionNumber.SIZE2.is_no_cache_key


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x40\x01\x00", "shorter than the CoAP header"),
        (b"\x80\x01\x00\x01", "unknown CoAP version"),
        (b"\x49\x01\x00\x01" + b"t" * 9, "token length 9"),
        (b"\x4f\x01\x00\x01" + b"t" * 15, "token length 15"),
        (b"\x44\x01\x00\x01ab", "shorter than its token"),
        (b"\x40\x01\x00\x01\xf0", "option delta 15"),
        (b"\x40\x01\x00\x01\x1f", "option length 15"),
        (b"\x40\x01\x00\x01\x15ab", "runs past the datagram"),
        (b"\x40\x01\x00\x01\xb2rd\x13ab", "runs past the datagram"),  # the second option
        (b"\x40\x01\x00\x01\xd1\x00", "runs past the datagram"),  # an extended delta's value
        (b"\x40\x01\x00\x01\x1d\x00" + b"v" * 12, "runs past the datagram"),  # 13 bytes said
        (b"\x40\x01\x00\x01\xd0", "option header runs past"),
        (b"\x40\x01\x00\x01\xe0\x01", "option header runs past"),
        (b"\x40\x01\x00\x01\xff", "payload marker with an empty payload"),
        (b"\x41\x00\x00\x01t", "Empty message with token"),
        (b"\x60\x00\x00\x01\xffx", "Empty message with token, options or payload"),
    ],
)
def test_format_errors(data: bytes, why: str) -> None:
    with pytest.raises(MessageFormatError, match=why):
        parse(data)


@pytest.mark.parametrize("b0", range(256))
def test_every_first_byte_is_read_by_the_version_type_and_token_length_rules(b0: int) -> None:
    tkl = b0 & 0x0F
    data = bytes((b0, 0x45, 0x12, 0x34)) + b"t" * tkl
    if b0 >> 6 != 1:
        with pytest.raises(MessageFormatError, match="unknown CoAP version") as info:
            parse(data)
        assert info.value.silent
    elif tkl > 8:
        with pytest.raises(MessageFormatError, match=f"token length {tkl} is reserved") as info:
            parse(data)
        assert not info.value.silent
    else:
        message = parse(data)
        assert (message.mtype, message.code, message.mid, message.token) == (
            Type((b0 >> 4) & 3),
            0x45,
            0x1234,
            b"t" * tkl,
        )
        return
    assert info.value.mtype is Type((b0 >> 4) & 3) and info.value.mid == 0x1234


def test_format_error_carries_header_for_rst() -> None:
    with pytest.raises(MessageFormatError) as info:
        parse(b"\x49\x01\xbe\xef" + b"t" * 9)
    assert info.value.mtype is Type.CON and info.value.mid == 0xBEEF and not info.value.silent


def test_invalid_utf8_is_a_distinct_error_with_the_message() -> None:
    data = serialize(Message(Type.CON, Code.POST, 9, b"tk", ((11, b"rd"), (15, b"ep=\xff"))))
    with pytest.raises(InvalidOptionValueError) as info:
        parse(data)
    assert info.value.message.token == b"tk" and info.value.number == OptionNumber.URI_QUERY
    assert info.value.code == Code.BAD_REQUEST


def test_opaque_options_may_hold_any_bytes() -> None:
    data = serialize(Message(Type.CON, Code.GET, 9, b"", ((4, b"\xff\xfe"),)))
    assert parse(data).etag == b"\xff\xfe"


# -- properties ---------------------------------------------------------------------------------
_opaque_numbers = st.sampled_from([1, 4, 6, 7, 12, 14, 17, 23, 27, 28, 60, 258, 2049, 65000])
_string_numbers = st.sampled_from([3, 8, 11, 15, 20, 35, 39])
_option = st.one_of(
    st.tuples(_opaque_numbers, st.binary(max_size=300)),
    st.tuples(_string_numbers, st.text(max_size=80).map(str.encode)),
)
_message = st.builds(
    Message,
    st.sampled_from(list(Type)),
    st.integers(0, 255).filter(lambda c: c != 0),
    st.integers(0, 0xFFFF),
    st.binary(max_size=8),
    st.lists(_option, max_size=8).map(lambda o: tuple(sorted(o, key=lambda x: x[0]))),
    st.binary(max_size=200),
)


@given(_message)
@PROFILE
def test_round_trip(msg: Message) -> None:
    assert parse(serialize(msg)) == msg


@given(_message)
@PROFILE
def test_path_query_format_is_the_three_accessors_in_one_pass(msg: Message) -> None:
    """What a server's dispatch reads in one pass is what the three accessors say."""
    assert msg.path_query_format() == (msg.uri_path, msg.uri_query, msg.content_format)


@given(st.binary(max_size=64))
@PROFILE
def test_any_bytes_parse_or_raise_a_coap_error_and_reencode_exactly(data: bytes) -> None:
    """Strictness: whatever parses re-encodes to the same bytes (one encoding per message)."""
    try:
        msg = parse(data)
    except (MessageFormatError, InvalidOptionValueError):
        return
    assert serialize(msg) == data


@given(_message, st.integers(0, 100))
@PROFILE
def test_truncation_never_escapes_as_another_exception(msg: Message, cut: int) -> None:
    data = serialize(msg)
    with contextlib.suppress(MessageFormatError, InvalidOptionValueError):
        parse(data[: max(0, len(data) - cut)])


# -- fast paths against the general serializer -----------------------------------------------------
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=8), st.binary(max_size=300))
@PROFILE
def test_piggybacked_is_serialize_of_an_ack_without_options(
    code: int, mid: int, token: bytes, payload: bytes
) -> None:
    assert piggybacked(code, mid, token, payload) == serialize(
        Message(Type.ACK, code, mid, token, (), payload)
    )


def test_piggybacked_refuses_a_long_token_as_serialize_does() -> None:
    with pytest.raises(ValueError, match="token longer than 8 bytes"):
        piggybacked(Code.CHANGED, 1, bytes(9))
    with pytest.raises(ValueError, match="token longer than 8 bytes"):
        serialize(Message(Type.ACK, Code.CHANGED, 1, bytes(9)))


@given(st.integers(0, 255))
@PROFILE
def test_a_bare_response_is_the_same_value_every_time(code: int) -> None:
    """``Message.response(code)`` is shared per code: equal to the message built in full."""
    first = Message.response(code)
    assert first == Message(Type.ACK, code, 0, b"", (), b"")
    assert Message.response(code) is first
    assert Message.response(code, b"x") == Message(Type.ACK, code, 0, b"", (), b"x")


@given(st.sampled_from([3, 8, 11, 15, 20, 35, 39]), st.binary(max_size=40))
@PROFILE
def test_a_string_option_is_refused_exactly_when_it_is_not_utf8(number: int, value: bytes) -> None:
    """The parser skips the UTF-8 decode of ASCII values: the verdict is still the decoder's."""
    data = serialize(Message(Type.CON, Code.GET, 1, b"", ((number, value),)))
    try:
        value.decode()
    except UnicodeDecodeError:
        with pytest.raises(InvalidOptionValueError):
            parse(data)
    else:
        assert parse(data).options == ((number, value),)

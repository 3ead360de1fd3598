"""A minimal CoAP (RFC 7252) message codec for the load generator, built by hand.

Why not aiocoap: the generator must be able to produce far more messages per second than the
server under test handles, and aiocoap's ``Message`` objects (option classes, URI handling,
per-message allocations) cost more than the server's own request handling would leave us.
This module does only what the generator needs: the 4-byte header, the token, options with
delta/length encoding including the 1- and 2-byte extensions (§3.1), the payload marker, and
typed access to the options LwM2M uses (Uri-Path, Uri-Query, Content-Format, Accept, Observe,
Location-Path). Anything else decodes as an opaque ``(number, value)`` pair.

``encode_header`` + a pre-encoded ``tail`` (options and payload) lets the hot path build a
message with one ``struct.pack`` and two concatenations.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

VERSION = 1
PAYLOAD_MARKER = 0xFF
_HEADER = struct.Struct("!BBH")


class CoapFormatError(ValueError):
    """The datagram is not a well-formed CoAP message (RFC 7252 §3: a message format error)."""


class MessageType(enum.IntEnum):
    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class Option(enum.IntEnum):
    """Option numbers (RFC 7252 §5.10, RFC 7641 §2)."""

    OBSERVE = 6
    LOCATION_PATH = 8
    URI_PATH = 11
    CONTENT_FORMAT = 12
    URI_QUERY = 15
    ACCEPT = 17


class Code(enum.IntEnum):
    """Method and response codes as the single byte ``class << 5 | detail``."""

    EMPTY = 0x00
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    CREATED = 0x41  # 2.01
    DELETED = 0x42  # 2.02
    CHANGED = 0x44  # 2.04
    CONTENT = 0x45  # 2.05
    BAD_REQUEST = 0x80  # 4.00
    NOT_FOUND = 0x84  # 4.04
    NOT_ACCEPTABLE = 0x86  # 4.06


def code_text(code: int) -> str:
    """``2.05`` style rendering of a code byte."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def is_request(code: int) -> bool:
    return 1 <= code <= 31


def is_response(code: int) -> bool:
    return code >= 64


def uint_value(value: int) -> bytes:
    """An unsigned integer option value in the fewest bytes (0 is the empty string, §3.2)."""
    if value < 0:
        raise ValueError(f"negative uint option value {value}")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def uint_of(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _nibble(value: int) -> tuple[int, bytes]:
    """The 4-bit field and the extension bytes for an option delta or length."""
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError(f"option delta/length {value} too large")


def encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """Options in ascending number order (stable, so repeated options keep their order)."""
    out = bytearray()
    previous = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta, delta_ext = _nibble(number - previous)
        length, length_ext = _nibble(len(value))
        out.append(delta << 4 | length)
        out += delta_ext
        out += length_ext
        out += value
        previous = number
    return bytes(out)


def encode_tail(options: Iterable[tuple[int, bytes]], payload: bytes = b"") -> bytes:
    """Everything after the token: options, then the payload marker and payload if any."""
    encoded = encode_options(options)
    if payload:
        return encoded + b"\xff" + payload
    return encoded


def encode_header(mtype: int, code: int, mid: int, token: bytes) -> bytes:
    """The fixed header and the token (0-8 bytes)."""
    return _HEADER.pack(VERSION << 6 | mtype << 4 | len(token), code, mid) + token


def path_options(number: int, path: str | Sequence[str]) -> list[tuple[int, bytes]]:
    """One option per segment of ``"rd/abc"`` (or a segment list), e.g. Uri-Path."""
    segments = [s for s in path.split("/") if s] if isinstance(path, str) else list(path)
    return [(number, s.encode()) for s in segments]


@dataclass(slots=True)
class Message:
    """A decoded (or to-be-encoded) message; ``options`` in wire order."""

    type: int
    code: int
    mid: int
    token: bytes = b""
    options: list[tuple[int, bytes]] = field(default_factory=list)
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_header(self.type, self.code, self.mid, self.token) + encode_tail(
            self.options, self.payload
        )

    def values(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def first(self, number: int) -> bytes | None:
        for n, v in self.options:
            if n == number:
                return v
        return None

    def uint(self, number: int) -> int | None:
        value = self.first(number)
        return None if value is None else uint_of(value)

    @property
    def uri_path(self) -> list[str]:
        return [v.decode() for v in self.values(Option.URI_PATH)]

    @property
    def uri_query(self) -> list[str]:
        return [v.decode() for v in self.values(Option.URI_QUERY)]

    @property
    def location_path(self) -> list[str]:
        return [v.decode() for v in self.values(Option.LOCATION_PATH)]

    @property
    def observe(self) -> int | None:
        return self.uint(Option.OBSERVE)

    @property
    def content_format(self) -> int | None:
        return self.uint(Option.CONTENT_FORMAT)

    @property
    def accept(self) -> int | None:
        return self.uint(Option.ACCEPT)


def _extended(nibble: int, data: bytes, pos: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos >= len(data):
            raise CoapFormatError("truncated option extension")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise CoapFormatError("truncated option extension")
        return int.from_bytes(data[pos : pos + 2], "big") + 269, pos + 2
    raise CoapFormatError("option nibble 15 outside the payload marker")


def decode(data: bytes) -> Message:
    """Parse one datagram; raises ``CoapFormatError`` on anything RFC 7252 §3 calls a format
    error (version, token length 9-15, truncation, nibble 15, marker without payload)."""
    if len(data) < 4:
        raise CoapFormatError("shorter than the 4-byte header")
    first, code, mid = _HEADER.unpack_from(data)
    if first >> 6 != VERSION:
        raise CoapFormatError(f"version {first >> 6}")
    tkl = first & 0x0F
    if tkl > 8:
        raise CoapFormatError(f"token length {tkl}")
    end = 4 + tkl
    if len(data) < end:
        raise CoapFormatError("truncated token")
    token = data[4:end]
    options: list[tuple[int, bytes]] = []
    number = 0
    pos = end
    size = len(data)
    payload = b""
    while pos < size:
        byte = data[pos]
        pos += 1
        if byte == PAYLOAD_MARKER:
            payload = data[pos:]
            if not payload:
                raise CoapFormatError("payload marker without payload")
            break
        delta, pos = _extended(byte >> 4, data, pos)
        length, pos = _extended(byte & 0x0F, data, pos)
        if pos + length > size:
            raise CoapFormatError("truncated option value")
        number += delta
        options.append((number, data[pos : pos + length]))
        pos += length
    return Message((first >> 4) & 0x03, code, mid, token, options, payload)

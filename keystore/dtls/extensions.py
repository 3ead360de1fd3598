"""Encoders/decoders for the hello extensions we negotiate.

Why separate: the bodies are tiny, but each has its own vector width, and a wrong width is the
classic interop bug (e.g. client_certificate_type is a *list* in ClientHello and a *single byte*
in ServerHello, RFC 7250 §3). Every decoder raises :class:`DecodeError` on malformed input.
"""

from __future__ import annotations

from collections.abc import Sequence

from .buffer import Buffer, Writer
from .errors import DecodeError


def encode_uint16_list(values: Sequence[int]) -> bytes:
    w = Writer()
    w.push_vector16(b"".join(v.to_bytes(2, "big") for v in values))
    return w.getvalue()


def decode_uint16_list(data: bytes) -> list[int]:
    buf = Buffer(data)
    raw = buf.pull_vector16()
    buf.expect_eof()
    if len(raw) % 2:
        raise DecodeError("odd uint16 list")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def encode_uint8_list(values: Sequence[int]) -> bytes:
    w = Writer()
    w.push_vector8(bytes(values))
    return w.getvalue()


def decode_uint8_list(data: bytes) -> list[int]:
    buf = Buffer(data)
    raw = buf.pull_vector8()
    buf.expect_eof()
    return list(raw)


def decode_single_uint8(data: bytes) -> int:
    if len(data) != 1:
        raise DecodeError("expected exactly one byte")
    return data[0]


def encode_opaque8(value: bytes) -> bytes:
    """connection_id (RFC 9146 §3) and renegotiation_info (RFC 5746 §3.2) bodies."""
    w = Writer()
    w.push_vector8(value)
    return w.getvalue()


def decode_opaque8(data: bytes) -> bytes:
    buf = Buffer(data)
    value = buf.pull_vector8()
    buf.expect_eof()
    return value


def decode_empty(data: bytes) -> None:
    """encrypt_then_mac and extended_master_secret carry no data."""
    if data:
        raise DecodeError("extension must be empty")

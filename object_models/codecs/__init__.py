"""One facade over every LwM2M content format.

Each format lives in its own module and implements the subset of this interface that the format
can carry (``text`` and ``opaque`` only single values, ``tlv`` no multi-path, …). The facade picks
the module from the Content-Format number and turns "this format cannot carry that" into a
``CodecError``: 4.15 when decoding (we were sent a format we do not take), 4.06 when encoding
(the peer asked for a format we cannot produce for that node).

Single-path API (Read, Write, Create, notifications of one path):
    encode(node, path, fmt, models) -> bytes
    decode(payload, path, fmt, models) -> LwM2mNode
Multi-path API (Read-/Write-/Observe-Composite; SenML JSON/CBOR and LwM2M CBOR only):
    encode_nodes(nodes, fmt, models) -> bytes          nodes: {path: node or None}
    decode_nodes(payload, fmt, models, paths=None) -> {path: node or None}
Path lists (Read-/Observe-Composite request bodies; SenML JSON/CBOR only — LwM2M CBOR: not
supported, see ``lwm2m_cbor``):
    encode_paths(paths, fmt) -> bytes / decode_paths(payload, fmt) -> [path]
Timestamped values (notifications and Send; SenML JSON/CBOR and OMA JSON both ways; LwM2M CBOR
decodes only, as one entry without a time: the format has no time field):
    encode_timestamped(data, fmt, models) -> bytes
    decode_timestamped(payload, fmt, models, path=None) -> TimestampedNodes

``supports(fmt, operation)`` answers for one of ``OPERATIONS``; docs/codecs.md has the table.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence

from ..content_format import ContentFormat
from ..errors import CodecError, ResponseCode
from ..model import ModelProvider
from ..node import LwM2mNode, TimestampedNodes
from ..path import LwM2mPath
from . import cbor_value, json, lwm2m_cbor, opaque, senml_cbor, senml_json, text, tlv

__all__ = [
    "DEFAULT_LIMITS",
    "OPERATIONS",
    "CodecError",
    "ContentFormat",
    "PayloadTooLarge",
    "check_limit",
    "decode",
    "decode_nodes",
    "decode_paths",
    "decode_timestamped",
    "encode",
    "encode_nodes",
    "encode_paths",
    "encode_timestamped",
    "limit_for",
    "supports",
]

OPERATIONS = (
    "encode",
    "decode",
    "encode_nodes",
    "decode_nodes",
    "encode_paths",
    "decode_paths",
    "encode_timestamped",
    "decode_timestamped",
)
"""The facade's per-format operations, the names ``supports`` takes."""

MAX_PAYLOAD = 1 << 20
"""Larger payloads are refused with 4.13 before any parsing (bounded memory on bad input)."""

DEFAULT_LIMITS: dict[int, int] = {
    ContentFormat.TEXT: 256 * 1024,
    ContentFormat.OPAQUE: 256 * 1024,
    ContentFormat.CBOR: 256 * 1024,
    ContentFormat.SENML_JSON: 8 * 1024,
    ContentFormat.SENML_CBOR: 8 * 1024,
    ContentFormat.LWM2M_CBOR: 8 * 1024,
    ContentFormat.TLV: 8 * 1024,
    ContentFormat.OLD_TLV: 8 * 1024,
    ContentFormat.JSON: 8 * 1024,
    ContentFormat.OLD_JSON: 8 * 1024,
}
"""Largest payload a server decodes on its event loop, per content format, before it is
refused with 4.13 and Size1 (``check_limit``). Single-value formats cost a copy per byte, so
they may be as large as a CoAP request body (256 KiB, the CoAP layer's own bound); a value of
a structured format costs several microseconds to decode and as much again to store, so 8 KiB
(Californium's default body limit, which Leshan inherits; about 500 values, ~25 ms of one core
for the whole Send here) keeps the loop responsive: 16 KiB cost ~50 ms of CPU per Send, 64 KiB
~180 ms, 256 KiB ~0.6 s (docs/performance.md, "Payload limits"). A typical Send is well under
1 KiB. Formats not listed get ``MAX_PAYLOAD``."""


class PayloadTooLarge(CodecError):
    """A payload over its content format's limit (4.13): ``limit`` goes in Size1 (RFC 7959
    §2.9.3: the largest body the server is willing to take)."""

    def __init__(self, size: int, limit: int, fmt: int | None) -> None:
        what = "payload" if fmt is None else f"content format {fmt} payload"
        super().__init__(
            f"{what} of {size} bytes exceeds the {limit}-byte limit",
            code=ResponseCode.REQUEST_ENTITY_TOO_LARGE,
        )
        self.size = size
        self.limit = limit
        self.fmt = fmt


def limit_for(fmt: int | None, limits: Mapping[int, int] | None = None) -> int:
    """The largest payload of ``fmt`` accepted for decoding (``limits``: ``DEFAULT_LIMITS``)."""
    table = DEFAULT_LIMITS if limits is None else limits
    if fmt is None:
        return MAX_PAYLOAD
    return table.get(fmt, MAX_PAYLOAD)


def check_limit(size: int, fmt: int | None, limits: Mapping[int, int] | None = None) -> None:
    """``PayloadTooLarge`` when ``size`` bytes of ``fmt`` are over the limit: called before
    anything is decoded, so a refused payload costs nothing but this comparison."""
    limit = limit_for(fmt, limits)
    if size > limit:
        raise PayloadTooLarge(size, limit, fmt)


_MODULES: dict[int, types.ModuleType] = {
    ContentFormat.TEXT: text,
    ContentFormat.OPAQUE: opaque,
    ContentFormat.CBOR: cbor_value,
    ContentFormat.TLV: tlv,
    ContentFormat.OLD_TLV: tlv,
    ContentFormat.JSON: json,
    ContentFormat.OLD_JSON: json,
    ContentFormat.SENML_JSON: senml_json,
    ContentFormat.SENML_CBOR: senml_cbor,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor,
}


def _module(fmt: int, operation: str, decoding: bool) -> types.ModuleType:
    # an int finds its IntEnum key (same hash and equality): no ContentFormat(fmt) lookup,
    # which cost more than the rest of this call on every decoded notification
    module = _MODULES.get(fmt) if type(fmt) is not bool else None
    if module is None or not hasattr(module, operation):
        code = ResponseCode.UNSUPPORTED_CONTENT_FORMAT if decoding else ResponseCode.NOT_ACCEPTABLE
        raise CodecError(f"content format {fmt} does not support {operation}", code=code)
    return module


def supports(fmt: int, operation: str) -> bool:
    """Whether ``fmt`` implements ``operation`` (one of the function names of this facade)."""
    try:
        _module(fmt, operation, True)
    except CodecError:
        return False
    return True


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(len(payload), MAX_PAYLOAD, None)


def encode(node: LwM2mNode, path: LwM2mPath, fmt: int, models: ModelProvider) -> bytes:
    result: bytes = _module(fmt, "encode", False).encode(node, path, models)
    return result


def decode(payload: bytes, path: LwM2mPath, fmt: int, models: ModelProvider) -> LwM2mNode:
    module = _module(fmt, "decode", True)
    _check_size(payload)
    result: LwM2mNode = module.decode(bytes(payload), path, models)
    return result


def encode_nodes(
    nodes: Mapping[LwM2mPath, LwM2mNode | None], fmt: int, models: ModelProvider
) -> bytes:
    result: bytes = _module(fmt, "encode_nodes", False).encode_nodes(nodes, models)
    return result


def decode_nodes(
    payload: bytes,
    fmt: int,
    models: ModelProvider,
    paths: Sequence[LwM2mPath] | None = None,
) -> dict[LwM2mPath, LwM2mNode | None]:
    module = _module(fmt, "decode_nodes", True)
    _check_size(payload)
    result: dict[LwM2mPath, LwM2mNode | None] = module.decode_nodes(bytes(payload), models, paths)
    return result


def encode_paths(paths: Iterable[LwM2mPath], fmt: int) -> bytes:
    result: bytes = _module(fmt, "encode_paths", False).encode_paths(list(paths))
    return result


def decode_paths(payload: bytes, fmt: int) -> list[LwM2mPath]:
    module = _module(fmt, "decode_paths", True)
    _check_size(payload)
    result: list[LwM2mPath] = module.decode_paths(bytes(payload))
    return result


def encode_timestamped(data: TimestampedNodes, fmt: int, models: ModelProvider) -> bytes:
    result: bytes = _module(fmt, "encode_timestamped", False).encode_timestamped(data, models)
    return result


def decode_timestamped(
    payload: bytes, fmt: int, models: ModelProvider, path: LwM2mPath | None = None
) -> TimestampedNodes:
    module = _module(fmt, "decode_timestamped", True)
    _check_size(payload)
    result: TimestampedNodes = module.decode_timestamped(bytes(payload), models, path)
    return result

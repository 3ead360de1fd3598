"""Fuzz target: the strict CoAP message parser (RFC 7252 §3).

May raise :class:`MessageFormatError` or :class:`InvalidOptionValueError` only. A datagram that
parses must serialize back to the same message (the encoding is canonical: an option delta or
length has exactly one encoding), so what the endpoint caches and replays is what it received.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["lwm2m_runtime"]):
    from lwm2m_runtime.coap.errors import InvalidOptionValueError, MessageFormatError
    from lwm2m_runtime.coap.message import parse, serialize


def TestOneInput(data: bytes) -> None:
    try:
        message = parse(data)
    except (MessageFormatError, InvalidOptionValueError):
        return
    assert serialize(message) == data, "parse/serialize does not round-trip"

"""Hand-built CoAP messages for peers that are not CoAP libraries (``openssl s_client``,
``gnutls-cli``, python-mbedtls, the raw engine peer): a Register, a TLV answer to
``GET /3/0``, and decoding of what the server sends back. aiocoap's ``Message`` only serializes.
"""

from __future__ import annotations

import aiocoap
from aiocoap.numbers.codes import Code

LINK_FORMAT = 40
TLV = 11542


def register(
    endpoint: str, *, mid: int = 0x1234, token: bytes = b"\x5a", lifetime: int = 60
) -> bytes:
    """A CON ``POST /rd?ep=…&lt=…`` with ``</3/0>`` as link-format payload."""
    message = aiocoap.Message(code=Code.POST, payload=b"</1/0>,</3/0>")
    message.mtype = aiocoap.CON
    message.mid = mid
    message.token = token
    message.opt.uri_path = ("rd",)
    message.opt.uri_query = (f"ep={endpoint}", f"lt={lifetime}")
    message.opt.content_format = LINK_FORMAT
    return bytes(message.encode())


def decode(data: bytes) -> aiocoap.Message:
    return aiocoap.Message.decode(data)


def device_tlv() -> bytes:
    """/3/0 as TLV: Manufacturer (0) "mbed", Model Number (1) "dtls-device"."""
    manufacturer, model = b"mbed", b"dtls-device"
    return (
        bytes([0xC0 | len(manufacturer), 0]) + manufacturer + bytes([0xC8, 1, len(model)]) + model
    )


def answer(request: aiocoap.Message, payload: bytes, content_format: int = TLV) -> bytes:
    """A piggybacked 2.05 ACK to a CON request."""
    response = aiocoap.Message(code=Code.CONTENT, payload=payload)
    response.mtype = aiocoap.ACK
    response.mid = request.mid
    response.token = request.token
    response.opt.content_format = content_format
    return bytes(response.encode())

"""The multi-datagram input layout of the stateful targets (``coap_endpoint``, ``dtls_engine``).

Repeated ``[ctrl][len: u16][datagram]``: ``ctrl & 3`` picks the peer and ``ctrl >> 2`` advances
the clock by that many quarter seconds; a short last chunk takes what is left. Kept free of any
product import so that it needs no instrumentation and the seed generator can share it.
"""

from __future__ import annotations

PEERS = [("192.0.2.1", 5683), ("192.0.2.1", 5684), ("192.0.2.2", 5683), ("198.51.100.9", 1)]
"""The peers ``ctrl & 3`` picks from (``coap_endpoint``)."""
TOKEN = b"fuzztokn"
"""The token of the observation ``coap_endpoint`` opens to peer 0 before the input."""


def chunks(data: bytes) -> list[tuple[int, bytes]]:
    """``(ctrl, datagram)`` pairs of the layout above."""
    out = []
    pos = 0
    while pos + 3 <= len(data):
        ctrl = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        out.append((ctrl, data[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return out


def chunk(ctrl: int, datagram: bytes) -> bytes:
    """One chunk of the layout above."""
    return bytes([ctrl]) + len(datagram).to_bytes(2, "big") + datagram

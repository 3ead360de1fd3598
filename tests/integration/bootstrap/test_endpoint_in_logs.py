"""The bootstrap server logs the endpoint name a device sent in full, escaped when it is not
printable (issue 11, item 7: names were reported truncated in the log). Over real loopback
sockets: the longest name one Uri-Query option can carry (252 bytes after ``ep=``, RFC 7252
§5.10), multi-byte names, and names with control characters (refused with 4.00, still named)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from . import fixtures
from .fixtures import make_bootstrap

__all__ = ["make_bootstrap"]  # fixture

NAMES = [
    "x" * 248 + "TAIL",  # 252 bytes: the most one Uri-Query option leaves for the name
    "ü" * 125 + "Z",  # 251 bytes, 126 characters
    "line\nbreak",
    "bell\x07and\x00nul",
    "esc\x1b[31mred",
]


def _option(delta: int, value: bytes) -> bytes:
    def ext(n: int) -> tuple[int, bytes]:
        return (
            (n, b"")
            if n < 13
            else (13, bytes([n - 13]))
            if n < 269
            else (14, (n - 269).to_bytes(2, "big"))
        )

    d, d_ext = ext(delta)
    length, l_ext = ext(len(value))
    return bytes([(d << 4) | length]) + d_ext + l_ext + value


def bootstrap_request(mid: int, endpoint: str) -> bytes:
    """CON POST /bs?ep=ENDPOINT, no token."""
    return (
        bytes([0x40, 0x02, mid >> 8, mid & 0xFF])
        + _option(11, b"bs")
        + _option(4, f"ep={endpoint}".encode())
    )


async def test_endpoint_names_are_logged_in_full(
    make_bootstrap: fixtures.Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bootstrap_server")
    bootstrap = await make_bootstrap()
    target = ("127.0.0.1", bootstrap.coap_address.port)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for mid, name in enumerate(NAMES, 1):
            sock.sendto(bootstrap_request(mid, name), target)
            reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)
            assert reply[1] in (0x80, 0x81), reply  # 4.00 (bad name) or 4.01 (no configuration)
    for name in NAMES:
        await fixtures.sessions(bootstrap, name)  # the session is over, its line written
    messages = [r.getMessage() for r in caplog.records if r.name == "bootstrap_server"]
    for name in NAMES:
        assert any(repr(name) in m for m in messages), (name, messages)
    assert not any(c in m for m in messages for c in "\n\x07\x00\x1b")  # escaped, never raw

"""Many demo clients on one host each get a UDP port of their own.

aiocoap binds its socket with SO_REUSEPORT, and Linux may hand a port-0 bind with SO_REUSEPORT
a port another SO_REUSEPORT socket of the same user already holds: two clients then share a
port, the kernel spreads the datagrams for it between them, and a Register's answer or a
server's request reaches the wrong client (seen as a Register that timed out although the
server registered it, in a 200-device campaign test). With a few hundred clients that is more
likely than not (the birthday bound over ~28k ephemeral ports).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from lwm2m_client import transport
from lwm2m_client.transport import create_context, local_address, parse_server_uri

CLIENTS = 400


async def test_each_client_context_has_its_own_port() -> None:
    server = parse_server_uri("coap://127.0.0.1:5683")  # never contacted: only the binds count
    contexts: list[Any] = []
    try:
        for _ in range(CLIENTS):
            contexts.append(await create_context(server, site=None))
        ports = [local_address(c) for c in contexts]
        assert None not in ports
        assert len(set(ports)) == CLIENTS
    finally:
        await asyncio.gather(*(c.shutdown() for c in contexts))


async def test_a_port_taken_after_the_probe_is_replaced_by_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process may bind the probed port before aiocoap does (parallel test workers saw
    "Address already in use"): the client takes another free port instead of failing."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSEPORT: the port is taken
    holder.bind(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    probes = iter([taken])
    real_probe = transport.free_udp_port
    monkeypatch.setattr(
        transport, "free_udp_port", lambda host: next(probes, None) or real_probe(host)
    )
    server = parse_server_uri("coap://127.0.0.1:5683")
    context = await create_context(server, site=None)
    try:
        address = local_address(context)
        assert address is not None
        assert address[1] != taken
    finally:
        await context.shutdown()
        holder.close()

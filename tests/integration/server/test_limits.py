"""Per-source and per-client limits on the wire (issue 11 item 5) and ``nosec_address_binding``
(item 7): each limit answered with its code before the work it protects, and counted where
``/api/health`` shows it.

Every test runs a real ``Lwm2mServer`` on loopback and talks to it with raw CoAP peers
(``rawcoap``), so what is asserted is exactly what a device receives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.config import LimitsSettings
from lwm2m_server.service import Lwm2mServer
from tests.live import Http, api_of, running

from .conftest import ServerFactory, server_config, uri_of
from .rawcoap import (
    CHANGED,
    CREATED,
    POST,
    Msg,
    RawPeer,
    code_str,
    register,
    request,
    uint_bytes,
)

MAX_AGE, BLOCK1, SIZE1 = 14, 27, 60
SERVICE_UNAVAILABLE, FORBIDDEN, NOT_FOUND = 0xA3, 0x83, 0x84
REQUEST_ENTITY_TOO_LARGE, CONTINUE = 0x8D, 0x5F


def _register_msg(endpoint: str) -> Msg:
    return request(
        POST,
        ["rd"],
        query=[f"ep={endpoint}", "lt=300", "lwm2m=1.1", "b=U"],
        payload=b"</3/0>",
        content_format=40,
    )


async def _peer(server: Lwm2mServer) -> RawPeer:
    return await RawPeer.open(("127.0.0.1", server.coap_address.port))


def _block(num: int, more: bool, payload: bytes, size1: int | None = None) -> Msg:
    """Block ``num`` (1024-byte blocks, SZX 6) of a Send (POST /dp, SenML JSON)."""
    msg = request(POST, ["dp"], payload=payload, content_format=110)
    msg.options.append((BLOCK1, uint_bytes((num << 4) | (8 if more else 0) | 6)))
    if size1 is not None:
        msg.options.append((SIZE1, uint_bytes(size1)))
    return msg


# -- Registers per source address ------------------------------------------------------------


async def test_registers_over_the_per_source_rate_get_5_03_with_max_age(
    make_server: ServerFactory,
) -> None:
    server = await make_server(limits=LimitsSettings(register_rate=0.01, register_burst=2))
    peers = [await _peer(server) for _ in range(3)]
    try:
        await register(peers[0], "rate-1")
        await register(peers[1], "rate-2")
        # a third Register from the same host (another port: the limit is per host)
        refused = await peers[2].exchange(_register_msg("rate-3"))
        assert refused.code == SERVICE_UNAVAILABLE, code_str(refused.code)
        assert refused.uint(MAX_AGE) == 100  # 1 token at 0.01/s
        assert {r.endpoint for r in server.clients()} == {"rate-1", "rate-2"}
        assert server.limit_counters()["register_rate"] == 1
        # Updates are not Registers: not limited
        reg_id = next(r.registration_id for r in server.clients() if r.endpoint == "rate-1")
        update = await peers[0].exchange(request(POST, ["rd", reg_id]))
        assert update.code == CHANGED
    finally:
        for peer in peers:
            peer.close()


# -- Block1 uploads ----------------------------------------------------------------------------


async def test_8_mib_send_is_refused_with_4_13_before_it_is_reassembled(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    peer = await _peer(server)
    try:
        await register(peer, "big-send")
        limit = server.config.limits.max_body_size
        # announced by Size1: refused at the first block
        answer = await peer.exchange(_block(0, True, bytes(1024), size1=8 << 20))
        assert answer.code == REQUEST_ENTITY_TOO_LARGE and answer.uint(SIZE1) == limit
        # not announced: refused at the first block that would cross the limit
        num = 0
        while True:
            answer = await peer.exchange(_block(num, True, bytes(1024)))
            if answer.code != CONTINUE:
                break
            num += 1
        assert num * 1024 == limit
        assert answer.code == REQUEST_ENTITY_TOO_LARGE and answer.uint(SIZE1) == limit
        udp = server.coap.udp
        assert udp is not None and udp.endpoint.block1_transfers == 0
        assert server.limit_counters()["too_large"] == 2
    finally:
        peer.close()


async def test_block1_uploads_over_the_total_get_5_03_and_the_first_completes(
    make_server: ServerFactory,
) -> None:
    server = await make_server(limits=LimitsSettings(block1_total=2))
    peers = [await _peer(server) for _ in range(3)]
    try:
        first = b'[{"bn":"/3/0/","n":"0","vs":"' + b"x" * 1100 + b'"}]'
        assert (await peers[0].exchange(_block(0, True, first[:1024]))).code == CONTINUE
        assert (await peers[1].exchange(_block(0, True, first[:1024]))).code == CONTINUE
        refused = await peers[2].exchange(_block(0, True, first[:1024]))
        assert refused.code == SERVICE_UNAVAILABLE, code_str(refused.code)
        assert (refused.uint(MAX_AGE) or 0) >= 1
        assert server.limit_counters()["block1_full"] == 1
        # the uploads in progress were not evicted: the first one completes (its Send is
        # then refused by the server — no registration — which proves it was reassembled)
        last = await peers[0].exchange(_block(1, False, first[1024:]))
        assert last.code not in (SERVICE_UNAVAILABLE, 0x88), code_str(last.code)  # 4.08
        assert last.code == NOT_FOUND
    finally:
        for peer in peers:
            peer.close()


# -- the deduplication cache --------------------------------------------------------------------


async def test_full_dedup_cache_refuses_the_heavy_peer_with_5_03_and_serves_others(
    make_server: ServerFactory,
) -> None:
    server = await make_server(limits=LimitsSettings(dedup_entries=5))
    heavy, light = await _peer(server), await _peer(server)
    try:
        for _ in range(5):
            answer = await heavy.exchange(request(POST, ["nothing"]))
            assert answer.code == NOT_FOUND
        refused = await heavy.exchange(request(POST, ["nothing"]))
        assert refused.code == SERVICE_UNAVAILABLE, code_str(refused.code)
        assert (refused.uint(MAX_AGE) or 0) >= 1
        served = await light.exchange(request(POST, ["nothing"]))
        assert served.code == NOT_FOUND
        counters = server.limit_counters()
        assert counters["dedup_full"] == 1 and counters["dedup_evicted"] == 1
    finally:
        heavy.close()
        light.close()


# -- observations per client --------------------------------------------------------------------


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[tuple[Lwm2mServer, Http]]:
    config = server_config(tmp_path / "data", limits=LimitsSettings(observations_per_client=1))
    async with running(config) as server, api_of(server, keepalive=0.5) as http:
        yield server, http


async def test_observe_over_the_per_client_limit_is_409_before_anything_is_sent(
    limited: tuple[Lwm2mServer, Http],
) -> None:
    server, http = limited
    device = Lwm2mClient("obs-dev", uri_of(server), auto_update=False, lwm2m_version="1.1")
    await device.start()
    try:
        await device.register()
        first = await http.post("/api/clients/obs-dev/3303/0/5700/observe")
        assert first.status == 200, await first.text()
        # observing the same path again replaces it: allowed
        again = await http.post("/api/clients/obs-dev/3303/0/5700/observe")
        assert again.status == 200, await again.text()
        refused = await http.post("/api/clients/obs-dev/3/0/0/observe")
        assert refused.status == 409
        body = await refused.json()
        assert body["code"] == "4.09" and "observations_per_client" in body["error"]
        assert len(server.observations("obs-dev")) == 1
        health = await (await http.get("/api/health")).json()
        assert health["limits"]["observations_per_client"] == 1
        # cancelling one makes room
        cancelled = await http.delete("/api/clients/obs-dev/3303/0/5700/observe")
        assert cancelled.status == 200, await cancelled.text()
        allowed = await http.post("/api/clients/obs-dev/3/0/0/observe")
        assert allowed.status == 200, await allowed.text()
    finally:
        await device.stop()


# -- nosec_address_binding -------------------------------------------------------------------


async def test_loose_binding_lets_an_update_from_another_address_move_the_device(
    make_server: ServerFactory,
) -> None:
    """The documented risk of the default (docs/security.md)."""
    server = await make_server()
    device, other = await _peer(server), await _peer(server)
    try:
        reg_id = await register(device, "loose-dev")
        moved = await other.exchange(request(POST, ["rd", reg_id]))
        assert moved.code == CHANGED
        assert server.client("loose-dev").address.port == other.port
    finally:
        device.close()
        other.close()


async def test_strict_binding_refuses_an_update_from_another_address_with_4_03(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(nosec_address_binding="strict")
    device, other = await _peer(server), await _peer(server)
    try:
        reg_id = await register(device, "strict-dev")
        for _ in range(3):
            refused = await other.exchange(request(POST, ["rd", reg_id]))
            assert refused.code == FORBIDDEN, code_str(refused.code)
        dereg = await other.exchange(request(4, ["rd", reg_id]))  # DELETE
        assert dereg.code == FORBIDDEN
        registration = server.client("strict-dev")
        assert registration.address.port == device.port
        assert server.limit_counters()["nosec_address_binding"] == 4
        warnings = [r for r in caplog.records if "strict" in r.getMessage()]
        assert len([r for r in warnings if r.levelname == "WARNING"]) == 1  # rate-limited
        # the device itself still updates
        assert (await device.exchange(request(POST, ["rd", reg_id]))).code == CHANGED
        # a device that really moved registers again from its new address
        answer = await other.exchange(_register_msg("strict-dev"))
        assert answer.code == CREATED
        assert server.client("strict-dev").address.port == other.port
    finally:
        device.close()
        other.close()

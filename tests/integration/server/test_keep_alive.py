"""The keep-alive Update over real sockets (issue 10's hot path): a bare ``POST /rd/{id}`` from
the address the device registered from is answered 2.04, refreshes the stored registration and
publishes UPDATED as any Update does; the same request changing the lifetime, or coming from
another address, is stored in full; the refusals are the same as ever."""

from __future__ import annotations

from lwm2m_server.service import Lwm2mServer

from . import rawcoap as raw
from .conftest import next_event


async def _peer(server: Lwm2mServer) -> raw.RawPeer:
    assert server.coap_address is not None
    return await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))


async def test_a_keep_alive_is_stored_and_announced(server: Lwm2mServer) -> None:
    device = await _peer(server)
    try:
        reg_id = await raw.register(device, "kept-alive", lifetime=300)
        before = server.client("kept-alive")
        events = server.events()
        answer = await device.exchange(raw.request(raw.POST, ["rd", reg_id]))
        assert raw.code_str(answer.code) == "2.04"
        after = server.client("kept-alive")
        assert after.last_update >= before.last_update and after.lifetime == 300
        assert after.address is before.address  # not moved: the registered address object
        assert server.store.get_registration(reg_id) == after
        event = await next_event(events, "UPDATED")
        assert event.endpoint == "kept-alive"
        assert event.data["registrationId"] == reg_id and event.data["lifetime"] == 300
    finally:
        device.close()


async def test_an_update_changing_the_lifetime_or_the_address_is_stored(
    server: Lwm2mServer,
) -> None:
    device = await _peer(server)
    moved = await _peer(server)
    try:
        reg_id = await raw.register(device, "changing", lifetime=300)
        longer = raw.request(raw.POST, ["rd", reg_id], query=["lt=600"])
        assert raw.code_str((await device.exchange(longer)).code) == "2.04"
        stored = server.store.get_registration(reg_id)
        assert stored is not None and stored.lifetime == 600
        assert stored.address.port == device.port
        assert raw.code_str((await moved.exchange(raw.request(raw.POST, ["rd", reg_id]))).code) == (
            "2.04"
        )
        stored = server.store.get_registration(reg_id)
        assert stored is not None and stored.address.port == moved.port
        assert stored == server.client("changing")
    finally:
        device.close()
        moved.close()


async def test_keep_alive_refusals(server: Lwm2mServer) -> None:
    device = await _peer(server)
    try:
        reg_id = await raw.register(device, "refused-keep-alive")
        unknown = await device.exchange(raw.request(raw.POST, ["rd", "no-such-id"]))
        assert raw.code_str(unknown.code) == "4.04"
        wrong_method = await device.exchange(raw.request(raw.PUT, ["rd", reg_id]))
        assert raw.code_str(wrong_method.code) == "4.05"
        bad = await device.exchange(raw.request(raw.POST, ["rd", reg_id], query=["lt=0"]))
        assert raw.code_str(bad.code) == "4.00"
        assert server.client("refused-keep-alive").registration_id == reg_id
    finally:
        device.close()

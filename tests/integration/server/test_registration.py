"""Client Registration interface over real sockets: Register, Update, De-register, expiry, and
the refusals (4.00, 4.04, 4.05, 4.12, 4.03) with hand-built messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_server.core.registration import ObjectLinks
from lwm2m_server.json_nodes import registration_to_json
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import (
    ClientFactory,
    ServerFactory,
    eventually,
    next_event,
    server_config,
    uri_of,
)


async def test_register_update_deregister(server: Lwm2mServer, make_client: ClientFactory) -> None:
    events = server.events()
    client = await make_client("dev-1", lifetime=120, lwm2m_version="1.1")
    reg = server.client("dev-1")
    assert reg.registration_id == client.registration_id
    assert reg.lifetime == 120 and reg.lwm2m_version == "1.1"
    assert reg.address.port == client.local_address[1]  # type: ignore[index]
    assert 3303 in reg.supported_objects
    assert server.store.get_registration(reg.registration_id) == reg
    event = await next_event(events, "REGISTRATION")
    assert event.endpoint == "dev-1" and event.data["registrationId"] == reg.registration_id

    await client.update(lifetime=200)
    assert server.client("dev-1").lifetime == 200
    assert server.store.get_registration(reg.registration_id).lifetime == 200  # type: ignore[union-attr]
    assert (await next_event(events, "UPDATED")).data["lifetime"] == 200

    await client.deregister()
    assert server.clients() == []
    assert server.store.registrations() == []
    event = await next_event(events, "DEREGISTRATION")
    assert event.data["reason"] == "deregistered"


async def test_registration_events_carry_the_api_shape(
    server: Lwm2mServer, make_client: ClientFactory
) -> None:
    """REGISTRATION/UPDATED/DEREGISTRATION data is ``GET /api/clients``' JSON of the client
    (``json_nodes.registration_to_json``), plus ``replaced`` / ``reason``."""
    events = server.events()
    client = await make_client("shape-1", queue_mode=True, awake_time=30)
    reg = server.client("shape-1")
    event = await next_event(events, "REGISTRATION")
    assert event.data == {**registration_to_json(reg, sleeping=False), "replaced": None}
    assert event.data["lwM2mVersion"] == reg.lwm2m_version and event.data["sleeping"] is False

    await client.update(lifetime=200)
    event = await next_event(events, "UPDATED")
    assert event.data == registration_to_json(server.client("shape-1"), sleeping=False)

    last = server.client("shape-1")
    await client.deregister()
    event = await next_event(events, "DEREGISTRATION")
    assert event.data == {**registration_to_json(last), "reason": "deregistered"}


async def test_register_again_replaces(server: Lwm2mServer, make_client: ClientFactory) -> None:
    first = await make_client("same-ep")
    old_id = first.registration_id
    second = await make_client("same-ep")
    assert [r.endpoint for r in server.clients()] == ["same-ep"]
    assert server.client("same-ep").registration_id == second.registration_id != old_id
    assert len(server.store.registrations()) == 1
    # the first client's registration is gone: its Update is 4.04 and it registers again
    await first.update()
    assert first.registration_id not in (old_id, None)
    assert server.client("same-ep").registration_id == first.registration_id


async def test_lifetime_expiry(make_server: ServerFactory) -> None:
    server = await make_server(lifetime_grace=0.0)
    events = server.events()
    client = Lwm2mClient("short", uri_of(server), lifetime=1, auto_update=False)
    try:
        await client.start()
        await client.register()
        assert server.clients()
        event = await next_event(events, "DEREGISTRATION", timeout=5)
        assert event.data["reason"] == "expired"
        assert server.clients() == [] and server.store.registrations() == []
    finally:
        await client.stop()


async def test_update_keeps_registration_alive(make_server: ServerFactory) -> None:
    server = await make_server(lifetime_grace=0.0)
    client = Lwm2mClient("kept", uri_of(server), lifetime=2, auto_update=True)
    try:
        await client.start()
        await client.register()
        await asyncio.sleep(3.5)  # beyond the lifetime: the client's Updates keep it
        assert server.client("kept").registration_id == client.registration_id
    finally:
        await client.stop()


async def test_an_update_that_shortens_the_lifetime_expires_at_the_new_deadline(
    make_server: ServerFactory,
) -> None:
    """Keep-alive Updates leave the server's expiry timer alone (issue 10's hot path: it only
    ever fires early); an Update that brings the expiry closer must still re-arm it."""
    server = await make_server(lifetime_grace=0.0)
    events = server.events()
    client = Lwm2mClient("shortened", uri_of(server), lifetime=3600, auto_update=False)
    try:
        await client.start()
        await client.register()
        await client.update()  # a keep-alive: nothing due earlier
        await client.update(lifetime=1)
        event = await next_event(events, "DEREGISTRATION", timeout=5)
        assert (event.endpoint, event.data["reason"]) == ("shortened", "expired")
    finally:
        await client.stop()


async def test_a_register_that_expires_first_re_arms_the_expiry_timer(
    make_server: ServerFactory,
) -> None:
    """A Register expiring after the armed timer leaves it alone (issue 10's hot path); one
    expiring before it (a shorter lifetime than every registration so far) must re-arm it,
    and so must a re-Register of the same endpoint with a shorter lifetime."""
    server = await make_server(lifetime_grace=0.0)
    events = server.events()
    first = Lwm2mClient("long", uri_of(server), lifetime=3600, auto_update=False)
    later = Lwm2mClient("later", uri_of(server), lifetime=7200, auto_update=False)
    again = Lwm2mClient("long", uri_of(server), lifetime=1, auto_update=False)
    try:
        for client in (first, later):
            await client.start()
            await client.register()
        assert server._timer_at is not None and server._timer_at <= first_deadline(server)
        await again.start()
        await again.register()  # the same endpoint, now expiring in a second
        event = await next_event(events, "DEREGISTRATION", timeout=5)
        assert (event.endpoint, event.data["reason"]) == ("long", "expired")
        assert [r.endpoint for r in server.clients()] == ["later"]
    finally:
        for client in (first, later, again):
            await client.stop()


def first_deadline(server: Lwm2mServer) -> float:
    deadline = server.core.next_deadline()
    assert deadline is not None
    return deadline


@pytest.fixture
async def peer(server: Lwm2mServer) -> AsyncIterator[raw.RawPeer]:
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    yield peer
    peer.close()


def _register(query: list[str], payload: bytes = b"</3/0>", cf: int | None = 40) -> raw.Msg:
    return raw.request(raw.POST, ["rd"], query=query, payload=payload, content_format=cf)


@pytest.mark.parametrize(
    ("query", "payload", "cf", "code"),
    [
        (["lt=60"], b"</3/0>", 40, "4.00"),  # no endpoint name
        (["ep=x", "lwm2m=9.9"], b"</3/0>", 40, "4.12"),  # unsupported version
        (["ep=x", "lt=abc"], b"</3/0>", 40, "4.00"),  # bad lifetime
        (["ep=x", "b=Z"], b"</3/0>", 40, "4.00"),  # bad binding
        (["ep=x"], b"", 40, "4.00"),  # no object list
        (["ep=x"], b"<3/0", 40, "4.00"),  # malformed link format
        (["ep=x"], b"\xff\xfe", 40, "4.00"),  # not UTF-8
        (["ep=x"], b"</3/0>", 60, "4.15"),  # object list not in link format
    ],
)
async def test_register_refusals(
    server: Lwm2mServer, peer: raw.RawPeer, query: list[str], payload: bytes, cf: int, code: str
) -> None:
    answer = await peer.exchange(_register(query, payload, cf))
    assert raw.code_str(answer.code) == code
    assert answer.payload  # diagnostic payload says why
    assert server.clients() == []


async def test_unknown_registration_id(server: Lwm2mServer, peer: raw.RawPeer) -> None:
    update = await peer.exchange(raw.request(raw.POST, ["rd", "nope"], query=["lt=60"]))
    delete = await peer.exchange(raw.request(raw.DELETE, ["rd", "nope"]))
    assert raw.code_str(update.code) == raw.code_str(delete.code) == "4.04"


async def test_wrong_method_and_unknown_path(server: Lwm2mServer, peer: raw.RawPeer) -> None:
    assert raw.code_str((await peer.exchange(raw.request(raw.GET, ["rd"]))).code) == "4.05"
    assert raw.code_str((await peer.exchange(raw.request(raw.PUT, ["rd", "x"]))).code) == "4.05"
    assert raw.code_str((await peer.exchange(raw.request(raw.GET, ["dp"]))).code) == "4.05"
    assert raw.code_str((await peer.exchange(raw.request(raw.POST, ["foo"]))).code) == "4.04"
    assert (
        raw.code_str((await peer.exchange(raw.request(raw.POST, ["rd", "a", "b"]))).code) == "4.04"
    )


async def test_update_with_ep_is_refused(server: Lwm2mServer, peer: raw.RawPeer) -> None:
    reg_id = await raw.register(peer, "ep-upd")
    answer = await peer.exchange(raw.request(raw.POST, ["rd", reg_id], query=["ep=other"]))
    assert raw.code_str(answer.code) == "4.00"
    assert server.client("ep-upd").registration_id == reg_id


async def test_update_repeating_unchanged_lwm2m_and_ep_is_accepted(
    server: Lwm2mServer, peer: raw.RawPeer
) -> None:
    """Clients that send ``lwm2m=1.0`` in every Update must not see 4.00 (their registration
    would expire); only a *different* version (or endpoint name) is refused."""
    reg_id = await raw.register(peer, "ep-repeat", version="1.0", lifetime=300)
    update = raw.request(raw.POST, ["rd", reg_id], query=["lwm2m=1.0", "lt=400"])
    assert raw.code_str((await peer.exchange(update)).code) == "2.04"
    assert server.client("ep-repeat").lifetime == 400
    same_ep = raw.request(raw.POST, ["rd", reg_id], query=["ep=ep-repeat"])
    assert raw.code_str((await peer.exchange(same_ep)).code) == "2.04"
    changed = raw.request(raw.POST, ["rd", reg_id], query=["lwm2m=1.1", "lt=500"])
    assert raw.code_str((await peer.exchange(changed)).code) == "4.00"
    reg = server.client("ep-repeat")
    assert (reg.registration_id, reg.lwm2m_version, reg.lifetime) == (reg_id, "1.0", 400)


async def test_closed_registration_refuses_nosec(make_server: ServerFactory) -> None:
    server = await make_server(open_registration=False)
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        answer = await peer.exchange(_register(["ep=closed"]))
        # an unknown NoSec endpoint with open registration off (docs/security.md)
        assert raw.code_str(answer.code) == "4.01"
    finally:
        peer.close()


async def test_identity_refusals_are_logged_as_refusals(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4.01/4.03 is not malformed input: the log says "refused", names the endpoint and the
    peer, and is rate-limited like malformed input (one WARNING per peer per minute)."""
    caplog.set_level(logging.DEBUG, logger="lwm2m_server")
    server = await make_server(open_registration=False)
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        for _ in range(3):
            answer = await peer.exchange(_register(["ep=not-provisioned"]))
            assert raw.code_str(answer.code) == "4.01"
    finally:
        peer.close()
    site = [r for r in caplog.records if r.name == "lwm2m_server.coap.site"]
    assert not [r for r in site if "malformed" in r.getMessage()]
    refused = [r for r in site if "refused" in r.getMessage()]
    assert len(refused) == 3
    assert [r.levelno for r in refused] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    message = refused[0].getMessage()
    assert "'not-provisioned'" in message and "4.01" in message
    assert f"127.0.0.1:{peer.port}" in message


@pytest.mark.parametrize(
    "query",
    [
        ["ep=not-provisioned", "lt=60", "lwm2m=1.1", "b=U"],  # the usual shape: parsed first
        ["lt=60", "ep=not-provisioned"],  # usual, the endpoint not first
        ["ep=not-provisioned", "lt=0"],  # a bad lifetime as well: the resolver answers first
        ["ep=not-provisioned", "et=sensor"],  # another shape: the core parses it
    ],
)
async def test_the_resolver_answers_a_register_of_any_shape_for_the_endpoint_it_names(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, query: list[str]
) -> None:
    """A Register of the usual shape is parsed before the resolver sees it (the uplink takes
    the endpoint from the parsed request), any other after: either way the resolver answers
    for the endpoint of the query, and its refusal comes before any of the query's own."""
    caplog.set_level(logging.INFO, logger="lwm2m_server")
    ObjectLinks.parse("</3/0>")  # an object list known before: the usual shape's condition
    server = await make_server(open_registration=False)
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        answer = await peer.exchange(_register(query))
        assert raw.code_str(answer.code) == "4.01"
    finally:
        peer.close()
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "'not-provisioned'" in refused[0]


async def test_dtls_identity_refusal_names_the_identity_never_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = b"never-log-this-k"
    config = server_config(tmp_path / "data", open_registration=False)
    with SqliteCredentialStore.open(config.database) as store:
        store.put_device(DeviceCredentials.for_psk("owner", b"owner-identity", key))
    server = Lwm2mServer(config)
    await server.start()
    client = Lwm2mClient(
        "intruder",
        f"coaps://127.0.0.1:{server.coaps_address.port}",
        auto_update=False,
        psk=(b"owner-identity", key),
    )
    try:
        await client.start()
        with pytest.raises(Lwm2mClientError) as info:
            await client.register()
        assert int(info.value.code) == 0x83  # 4.03
    finally:
        await client.stop()
        await server.stop()
    refused = [
        r.getMessage()
        for r in caplog.records
        if r.name == "lwm2m_server.coap.site" and "refused" in r.getMessage()
    ]
    assert len(refused) == 1
    assert "'intruder'" in refused[0] and "owner-identity" in refused[0]
    assert "4.03" in refused[0]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert key.decode() not in everything and key.hex() not in everything


async def test_garbage_datagrams_and_flood(
    server: Lwm2mServer,
    peer: raw.RawPeer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m_server")
    for data in (b"", b"\x00", b"\xff" * 40, bytes(range(256))):
        peer.send_raw(data)
    # a flood of Registers from one address: 300 valid (distinct endpoints) and 300 malformed
    # (distinct tokens: aiocoap lets a request override an unfinished one on the same token)
    for i in range(300):
        for query in ([f"ep=flood-{i}"], ["lt=1"]):
            msg = _register(query)
            msg.mtype, msg.mid = raw.NON, peer.next_mid()
            peer.send(msg)
    # The kernel drops what overflows the socket buffer (that is what a flood does); the
    # server must keep up with what it gets and stay responsive.
    await eventually(lambda: server.clients(), timeout=10)
    await asyncio.sleep(0.5)
    assert 0 < len(server.clients()) <= 300
    # still serving normally
    client = await make_client("after-flood")
    assert server.client("after-flood").registration_id == client.registration_id
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert sum(1 for r in malformed if r.levelno == logging.WARNING) == 1
    assert "127.0.0.1" in malformed[0].getMessage()


async def test_update_from_a_new_address_moves_the_downlink(server: Lwm2mServer) -> None:
    """A NAT rebinding: the Update comes from another port; requests follow it there."""
    port = server.coap_address.port
    asked: list[str] = []

    def answer(name: str) -> raw.Handler:
        def handle(msg: raw.Msg) -> raw.Msg:
            asked.append(name)
            options = [(raw.CONTENT_FORMAT, b"")]
            return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=name.encode())

        return handle

    old = await raw.RawPeer.open(("127.0.0.1", port), answer("old"))
    new = await raw.RawPeer.open(("127.0.0.1", port), answer("new"))
    try:
        reg_id = await raw.register(old, "nat", links="</3/0>")
        answer_code = (await new.exchange(raw.request(raw.POST, ["rd", reg_id]))).code
        assert raw.code_str(answer_code) == "2.04"
        assert server.client("nat").address.port == new.port
        response = await server.read("nat", LwM2mPath(3, 0, 0), fmt=ContentFormat.TEXT)
        assert response.success and asked == ["new"]
    finally:
        old.close()
        new.close()


async def test_credentials_written_by_another_process_decide_the_next_update(
    server: Lwm2mServer, make_client: ClientFactory
) -> None:
    """The resolver caches device records (keystore/credential_cache.py): a NoSec device's
    Updates keep working while the keystore is unchanged, are refused 4.03 as soon as another
    process (``lwm2m-keystore``: another connection to the file) gives the endpoint DTLS
    credentials, and work again once it removes them."""
    client = await make_client("rekeyed")
    await client.update()
    await client.update()
    with SqliteCredentialStore.open(server.config.database) as other:
        other.put_device(DeviceCredentials.for_psk("rekeyed", b"rekeyed-id", b"k" * 16))
        with pytest.raises(Lwm2mClientError) as info:
            await client.update()
        assert int(info.value.code) == 0x83  # 4.03: this endpoint must use DTLS now
        other.remove_device("rekeyed")
    await client.update()
    assert server.client("rekeyed").registration_id == client.registration_id

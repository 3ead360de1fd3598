"""Bootstrap-Pack over real sockets: where the pack puts Security instances, so that the
client's Bootstrap-Server account survives it (issue 9, item 2), and the pack exchanges in
``lwm2m-bootstrap sessions``.

Some clients (Anjay among them) keep their Bootstrap-Server account at /0/1 and do not say so
in their Bootstrap-Pack-Request. A pack that writes its first Security instance to /0/1
replaces that account, factory PSK included, and the device can never bootstrap again. The
device here is the real ``lwm2m_client`` with its account at /0/1 and an old LwM2M server
account at /0/0; the raw peer (``bsclient``) checks the wire: ``acc=``, the last Discover, and a
fixed ``security_instance``."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

import pytest
from aiocoap.numbers.codes import Code
from aiohttp.test_utils import TestServer

from bootstrap_server.api import create_app
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_client.accounts import server_accounts
from lwm2m_client.client import Lwm2mClient
from lwm2m_server.service import Lwm2mServer
from object_models import codecs
from object_models.node import LwM2mNode
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from tests.integration.bootstrap import fixtures
from tests.integration.bootstrap.fixtures import Factory, coap_uri, sessions
from tests.unit.bootstrap.fake_client import FakeClient

from .bsclient import BootstrapTestClient
from .test_api_cli import cli

lwm2m_server = fixtures.lwm2m_server
make_bootstrap = fixtures.make_bootstrap


def _config(name: str, lwm2m_uri: str, **server: Any) -> dict[str, Any]:
    return {
        "endpoint": name,
        "bootstrap_security": [{"mode": "nosec"}],
        "servers": [{"uri": lwm2m_uri, "short_server_id": 7, "lifetime": 90,
                     "security": {"mode": "nosec"}, **server}],
    }  # fmt: skip


def _security_ids(answer: Any) -> set[int]:
    nodes: dict[LwM2mPath, LwM2mNode | None] = codecs.decode_nodes(
        bytes(answer.payload), int(answer.opt.content_format), ModelRegistry.builtin()
    )
    return {p.ids[1] for p in nodes if p.ids[0] == 0}


async def _registered_again(client: Lwm2mClient, before: str | None) -> None:
    for _ in range(500):
        if client.registered and client.registration_id != before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the client did not register again")


async def test_pack_keeps_the_account_at_0_1(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                                             capsys: Any) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_config("anjay-like", coap_uri(lwm2m_server)))
    bs_uri = coap_uri(bootstrap)
    client = Lwm2mClient.from_bootstrap("anjay-like", bs_uri, pack=True, lwm2m_version="1.2",
                                        bootstrap_instance=1, finish_timeout=10.0,
                                        attempts=1)  # fmt: skip
    # an earlier LwM2M server account at /0/0 (the pack replaces it)
    client.objects.add_instance(0, {0: "coap://old.invalid:5683", 1: False, 2: 3, 10: 9},
                                instance_id=0)  # fmt: skip
    client.objects.add_instance(1, {0: 9, 1: 60, 6: True, 7: "U"}, instance_id=0)
    async with client:
        assert client.registered and client.server.port == lwm2m_server.coap_address.port
        assert client.get_value("/0/1/1") is True and client.get_value("/0/1/0") == bs_uri
        (account,) = server_accounts(client.objects)
        assert account.security_instance not in (0, 1) and account.short_server_id == 7
        (first,) = await sessions(bootstrap, "anjay-like")
        assert first["kind"] == "pack" and first["success"] is True
        assert first["initiatedBy"] == "client"
        assert [(s["step"], s["target"]) for s in first["steps"]] == [("pack", "/bspack")]
        assert first["steps"][0]["result"].startswith("2.05")
        assert any("/0/0, /0/1" in note for note in first["notes"])

        # the device can still bootstrap: /1/x/9 from the LwM2M server, then it registers again
        before = client.registration_id
        path = LwM2mPath(1, client.server_instance, 9)
        assert (await lwm2m_server.execute("anjay-like", path, timeout=5)).success
        await sessions(bootstrap, "anjay-like", 2)
        await _registered_again(client, before)
        assert client.get_value("/0/1/1") is True and client.get_value("/0/1/0") == bs_uri

    # and the operator sees both pack exchanges in `lwm2m-bootstrap sessions`
    http = TestServer(create_app(bootstrap), host="127.0.0.1")
    await http.start_server()
    try:
        api = str(http.make_url("")).rstrip("/")
        code, out, _ = await cli(api, "sessions", "--endpoint", "anjay-like", capsys=capsys)
    finally:
        await http.close()
    assert code == 0 and out.count("anjay-like") == 2 and out.count("client pack") == 2
    assert out.count("pack     /bspack 2.05") == 2


async def test_pack_uses_acc_and_the_last_discover(lwm2m_server: Lwm2mServer,
                                                   make_bootstrap: Factory) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_config("raw-1", coap_uri(lwm2m_server)))
    async with BootstrapTestClient("raw-1", FakeClient(bootstrap_instance=3)) as device:
        uri = coap_uri(bootstrap)
        # nothing known: the pack keeps clear of /0/0 and /0/1
        assert _security_ids(await device.pack(uri)) == {2}
        # acc= (LwM2M 1.2.2) says where the account is
        answer = await device.request(uri, Code.GET, "bspack", ["ep=raw-1", "acc=</0/1>"])
        assert answer.code == Code.CONTENT and _security_ids(answer) == {0}
        bad = await device.request(uri, Code.GET, "bspack", ["ep=raw-1", "acc=/0/1"])
        assert bad.code == Code.BAD_REQUEST and b"acc" in bytes(bad.payload)
        # a classic bootstrap's Discover shows the account at /0/3 ...
        assert (await device.bootstrap(uri)).code == Code.CHANGED
        await sessions(bootstrap, "raw-1", 4)  # three packs (one refused) and the classic one
    await bootstrap.stop()
    # ... and is kept in the store: a restarted bootstrap server packs around /0/3
    again = await make_bootstrap(_config("raw-1", coap_uri(lwm2m_server)))
    async with BootstrapTestClient("raw-1") as device:
        answer = await device.pack(coap_uri(again))
    assert answer.code == Code.CONTENT and _security_ids(answer) == {0}
    latest: Any = again.store.sessions("raw-1")[0]
    assert latest["kind"] == "pack" and any("/0/3" in n for n in latest["notes"])


async def test_fixed_security_instance_on_the_account(lwm2m_server: Lwm2mServer,
                                                      make_bootstrap: Factory) -> None:  # fmt: skip
    doc = _config("fixed-0", "coaps://lwm2m.invalid:5684", security_instance=0,
                  security={"mode": "psk", "generate": True})  # fmt: skip
    bootstrap = await make_bootstrap(doc)
    keystore = SqliteCredentialStore(lwm2m_server.store)
    async with BootstrapTestClient("fixed-0", FakeClient(bootstrap_instance=1)) as device:
        uri = coap_uri(bootstrap)
        # /0/0 may be the account: 4.05 with the reason (clients fall back to /bs), never 5.00
        refused = await device.pack(uri)
        assert refused.code == Code.METHOD_NOT_ALLOWED
        assert b"security_instance 0 may be the client's Bootstrap-Server account" in bytes(
            refused.payload
        )
        assert keystore.get_device("fixed-0") is None
        record: Any
        (record,) = bootstrap.store.sessions("fixed-0")
        assert record["kind"] == "pack" and record["success"] is False
        assert record["steps"][0]["result"].startswith("4.05")
        # the fallback, a classic bootstrap, finds the account at /0/1 and writes /0/0
        assert (await device.bootstrap(uri)).code == Code.CHANGED
        assert (await sessions(bootstrap, "fixed-0", 2))[0]["success"] is True
        assert device.fake.instances[(0, 1)].resources[1].value is True  # type: ignore[union-attr]
        assert device.fake.instances[(0, 0)].resources[0].value == "coaps://lwm2m.invalid:5684"  # type: ignore[union-attr]
        # from now on the pack knows too
        answer = await device.pack(uri)
        assert answer.code == Code.CONTENT and _security_ids(answer) == {0}


async def test_start_log_names_the_coaps_listener(
    make_bootstrap: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bootstrap_server")
    bootstrap = await make_bootstrap(coaps=True, coaps_port=0)
    coaps_port = bootstrap.coaps_address.port
    lines = [r.getMessage() for r in caplog.records if r.name == "bootstrap_server"]
    nosec = f"CoAP listening on udp 127.0.0.1:{bootstrap.coap_address.port} (NoSec)"
    coaps = f"CoAPs listening on udp 127.0.0.1:{coaps_port} (PSK, RPK, X509)"
    assert any(nosec in line for line in lines), lines
    assert any(coaps in line for line in lines), lines
    assert coaps_port != 0 and bootstrap.coaps_address.port == coaps_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # the port is really ours
        with pytest.raises(OSError) as caught:
            probe.bind(("127.0.0.1", coaps_port))
        assert caught.value.errno == errno.EADDRINUSE

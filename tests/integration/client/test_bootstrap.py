"""``lwm2m_client`` bootstraps against the real bootstrap server (in-process, NoSec) and then
registers with the real ``Lwm2mServer`` it was given: classic sequence (TLV, SenML CBOR),
Bootstrap-Pack, a Finish the client refuses, and a re-bootstrap triggered through /1/0/9."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource
import pytest
from aiocoap.numbers.codes import Code

from bootstrap_server.service import BootstrapServer
from lwm2m_client.bootstrap import BootstrapInterface
from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_client.management import Request
from lwm2m_client.transport import local_address
from lwm2m_server.service import Lwm2mServer
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.node import LwM2mObject, LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.types import ResourceType
from tests.integration.bootstrap import fixtures
from tests.integration.bootstrap.fixtures import Factory, coap_uri, sessions
from tests.integration.server.conftest import server_config

from .test_cli import spawn

lwm2m_server = fixtures.lwm2m_server
make_bootstrap = fixtures.make_bootstrap


def _config(name: str, lwm2m_uri: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "endpoint": name,
        "bootstrap_security": [{"mode": "nosec"}],
        "servers": [{"uri": lwm2m_uri, "short_server_id": 7, "lifetime": 90,
                     "security": {"mode": "nosec"}}],
        "objects": {"/3/0/14": "+01:00"},
    }  # fmt: skip
    doc.update(changes)
    return doc


def _client(name: str, bootstrap: BootstrapServer, **options: Any) -> Lwm2mClient:
    options.setdefault("finish_timeout", 10.0)
    options.setdefault("attempts", 1)
    return Lwm2mClient.from_bootstrap(name, coap_uri(bootstrap), **options)


@pytest.mark.parametrize("pct", [ContentFormat.TLV, ContentFormat.SENML_CBOR],
                         ids=["tlv", "senml-cbor"])  # fmt: skip
async def test_bootstrap_then_register(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                                       pct: int) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_config("bs-1", coap_uri(lwm2m_server), bootstrap_read=True))
    client = _client("bs-1", bootstrap, preferred_format=pct)
    assert client.objects.instance_ids(1) == []  # factory state: only the bootstrap account
    async with client:
        assert client.registered and client.server.port == lwm2m_server.coap_address.port
        assert client.params.lifetime == 90  # from the Server instance bootstrap wrote
        assert client.get_value("/0/0/1") is True  # the bootstrap account survived
        assert client.get_value("/3/0/14") == "+01:00"
        assert client.get_value("/3/0/0") == "pylwm2m"  # a merge, not a replace of /3/0
        response = await lwm2m_server.read("bs-1", LwM2mPath(3, 0), timeout=5)
        assert response.success and response.node is not None
    (session,) = await sessions(bootstrap, "bs-1")
    assert session["success"] is True
    assert [s["step"] for s in session["steps"]][:2] == ["discover", "read"]


async def test_bootstrap_pack(lwm2m_server: Lwm2mServer, make_bootstrap: Factory) -> None:
    bootstrap = await make_bootstrap(_config("pack-1", coap_uri(lwm2m_server)))
    async with _client("pack-1", bootstrap, pack=True, lwm2m_version="1.2") as client:
        assert client.registered and client.get_value("/3/0/14") == "+01:00"
        response = await lwm2m_server.read("pack-1", LwM2mPath(3, 0), timeout=5)
        assert response.success


async def test_finish_refused_without_security(make_bootstrap: Factory,
                                              lwm2m_server: Lwm2mServer) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_config("stale-1", coap_uri(lwm2m_server), to_delete=[]))
    client = _client("stale-1", bootstrap)
    client.objects.add_instance(1, {0: 99, 1: 60, 6: True, 7: "U"}, instance_id=5)
    with pytest.raises(Lwm2mClientError, match="short server id 99"):
        await client.bootstrap()
    (session,) = await sessions(bootstrap, "stale-1")
    assert session["success"] is False and session["failedStep"] == "finish"
    assert "short server id 99" in str(session["outcome"])
    await client.stop()


async def test_gives_up_after_its_attempts(make_bootstrap: Factory,
                                           lwm2m_server: Lwm2mServer) -> None:  # fmt: skip
    # nothing listens on that port any more: each Bootstrap-Request fails, with backoff between
    bootstrap = await make_bootstrap(_config("retry-1", coap_uri(lwm2m_server)))
    uri = coap_uri(bootstrap)
    await bootstrap.stop()
    client = Lwm2mClient.from_bootstrap("retry-1", uri, attempts=3, retry_delay=0.2,
                                        finish_timeout=5.0)  # fmt: skip
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Lwm2mClientError, match="bootstrap failed"):
        await asyncio.wait_for(client.bootstrap(), 20)
    assert loop.time() - started >= 0.2 + 0.4  # two waits: 0.2 s, then doubled
    await client.stop()


async def test_trigger_from_the_lwm2m_server(lwm2m_server: Lwm2mServer,
                                             make_bootstrap: Factory) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_config("trig-1", coap_uri(lwm2m_server)))
    async with _client("trig-1", bootstrap) as client:
        first = client.registration_id
        server_instance = client.server_instance
        answer = await lwm2m_server.execute("trig-1", LwM2mPath(1, server_instance, 9), timeout=5)
        assert answer.success
        await sessions(bootstrap, "trig-1", 2)
        for _ in range(250):
            if client.registered and client.registration_id != first:
                break
            await asyncio.sleep(0.02)
        assert client.registered and client.registration_id != first
        assert (await lwm2m_server.read("trig-1", LwM2mPath(3, 0), timeout=5)).success


async def test_cli_bootstraps_then_registers(lwm2m_server: Lwm2mServer,
                                             make_bootstrap: Factory) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_config("cli-bs-1", coap_uri(lwm2m_server)))
    process = await spawn("--endpoint", "cli-bs-1", "--bootstrap", coap_uri(bootstrap),
                          "--temperature-period", "0", "--log-level", "WARNING")  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        lwm2m_uri = coap_uri(lwm2m_server).encode()
        assert line.startswith(b"bootstrapped cli-bs-1: LwM2M server " + lwm2m_uri)
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.startswith(b"registered cli-bs-1 at " + lwm2m_uri)
        assert (await lwm2m_server.read("cli-bs-1", LwM2mPath(3, 0), timeout=5)).success
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- the Bootstrap interface without sockets (what the real bootstrap server does not exercise) --
def _interface() -> tuple[Lwm2mClient, BootstrapInterface]:
    client = Lwm2mClient.from_bootstrap("unit-1", "coap://bs.invalid:5783")
    return client, client.bootstrap_interface


async def test_discover_marks_the_accounts() -> None:
    client, bs = _interface()
    client.objects.add_instance(0, {0: "coap://srv", 1: False, 2: 3, 10: 5}, instance_id=3)
    client.objects.add_instance(1, {0: 5, 1: 60, 6: True, 7: "U"}, instance_id=2)
    answer = await bs.handle(Request("GET", LwM2mPath.parse("/"), accept=ContentFormat.LINK))
    text = answer.payload.decode()
    assert text.startswith('</>;lwm2m=1.1,</0>;ver=1.2,</0/0>;uri="coap://bs.invalid:5783",')
    assert '</0/3>;ssid=5;uri="coap://srv"' in text and "</1/2>;ssid=5" in text
    answer = await bs.handle(Request("GET", LwM2mPath.parse("/1"), accept=ContentFormat.LINK))
    assert answer.payload.decode().endswith("</1/2>;ssid=5")


async def test_read_write_delete_rules() -> None:
    client, bs = _interface()
    security = await bs.handle(Request("GET", LwM2mPath.parse("/0/0")))
    assert security.code == 0x81  # 4.01: Security is never read
    instance = LwM2mObjectInstance(4, {0: LwM2mSingleResource(0, 9, ResourceType.INTEGER)})
    cbor = ContentFormat.SENML_CBOR
    payload = codecs.encode(
        LwM2mObject(1, {4: instance}), LwM2mPath(1), cbor, client.objects.models
    )
    put = Request("PUT", LwM2mPath(1), content_format=cbor, payload=payload)
    assert (await bs.handle(put)).code == 0x44 and client.get_value("/1/4/0") == 9
    assert bs.finish().code == 0x86  # no Security for ssid 9
    assert (await bs.handle(Request("DELETE", LwM2mPath(0, 0)))).code == 0x80  # the account
    assert (await bs.handle(Request("DELETE", LwM2mPath.parse("/")))).code == 0x42
    assert client.objects.instance_ids(0) == [0] and client.objects.instance_ids(3) == [0]
    assert client.objects.instance_ids(1) == []


class _SilentBootstrapServer(aiocoap.resource.Resource):  # type: ignore[misc]
    """Accepts ``POST /bs`` and then never sends anything (a bootstrap server that crashed)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    async def render_post(self, request: Any) -> Any:
        self.requests += 1
        return aiocoap.Message(code=Code.CHANGED)


async def test_no_finish_in_time_is_retried() -> None:
    silent = _SilentBootstrapServer()
    site = aiocoap.resource.Site()
    site.add_resource(["bs"], silent)
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0),
                                                          transports=["udp6"])  # fmt: skip
    try:
        port = local_address(context)[1]  # type: ignore[index]
        uri = f"coap://127.0.0.1:{port}"
        client = Lwm2mClient.from_bootstrap("slow-1", uri, finish_timeout=0.3, attempts=2,
                                            retry_delay=0.1)  # fmt: skip
        with pytest.raises(Lwm2mClientError, match=r"no Bootstrap-Finish within 0\.3 s"):
            await client.bootstrap()
        assert silent.requests == 2
        await client.stop()
    finally:
        await context.shutdown()


async def test_trigger_without_bootstrap_account_is_refused(lwm2m_server: Lwm2mServer) -> None:
    async with Lwm2mClient("plain-1", coap_uri(lwm2m_server), lifetime=60) as client:
        answer = await lwm2m_server.execute("plain-1", LwM2mPath(1, 0, 9), timeout=5)
        assert not answer.success and client.registered


async def test_refused_register_bootstraps_again(tmp_path: Path, make_bootstrap: Factory) -> None:
    closed = Lwm2mServer(server_config(tmp_path / "closed", open_registration=False))
    await closed.start()
    try:
        bootstrap = await make_bootstrap(_config("refused-1", coap_uri(closed)))
        client = _client("refused-1", bootstrap, attempts=2, retry_delay=0.1)
        with pytest.raises(Lwm2mClientError, match=r"Register refused"):
            await client.bootstrap_and_register()
        assert len(await sessions(bootstrap, "refused-1", 2)) == 2  # bootstrapped twice
        await client.stop()
    finally:
        await closed.stop()

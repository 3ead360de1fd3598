"""Bootstrap over real sockets (NoSec): a device with only its factory bootstrap account
bootstraps (classic sequence and Bootstrap-Pack, TLV and SenML CBOR), gets unique credentials
that land in the LwM2M server's keystore after Finish, then registers with ``lwm2m-server``
using what it was given, and the server reads /3/0.

The DTLS legs (client and server CoAPs) are not in these tests yet: ``lwm2m_client`` has no
coaps:// transport (docs/bootstrap.md, "Open points")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiocoap.numbers.codes import Code

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.core.provisioning import ProvisionState
from bootstrap_server.service import BootstrapServer, ConfigErrors
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_client.client import Lwm2mClient
from lwm2m_server.service import Lwm2mServer
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from tests.integration.server.conftest import server_config

from .bsclient import BootstrapTestClient

Factory = Callable[..., Awaitable[BootstrapServer]]


@pytest.fixture
async def lwm2m_server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    server = Lwm2mServer(server_config(tmp_path / "data"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_bootstrap(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[BootstrapServer] = []

    async def make(*docs: dict[str, Any], **changes: Any) -> BootstrapServer:
        folder = tmp_path / "configs"
        folder.mkdir(exist_ok=True)
        for index, doc in enumerate(docs):
            (folder / f"c{index}.yaml").write_text(yaml.safe_dump(doc))
        config = BootstrapServerConfig(host="127.0.0.1", coap_port=0, data_dir=tmp_path / "data",
                                       configs_dir=folder, step_timeout=2.0, step_retries=1,
                                       coaps=False, **changes)  # fmt: skip
        server = BootstrapServer(config)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


async def _sessions(bootstrap: BootstrapServer, endpoint: str, count: int = 1,
                    wait: float = 15.0) -> list[dict[str, object]]:  # fmt: skip
    """The endpoint's recorded sessions once there are ``count`` of them (newest first)."""
    for _ in range(int(wait / 0.02)):
        found = bootstrap.store.sessions(endpoint)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{endpoint}: fewer than {count} sessions recorded")


def _uri(server: Any) -> str:
    address = server.coap_address
    return f"coap://{address.host}:{address.port}"


def _profile(lwm2m_uri: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "profile": "fleet",
        "bootstrap_security": [{"mode": "nosec"}],
        "provisioning": {"strategy": "allow_new"},
        "servers": [
            {"uri": lwm2m_uri, "short_server_id": 1, "lifetime": 120,
             "security": {"mode": "nosec"}},
            {"uri": "coaps://lwm2m.invalid:5684", "short_server_id": 2, "lifetime": 120,
             "security": {"mode": "psk", "generate": True}},
        ],
        "objects": {"/3/0/14": "+01:00"},
    }  # fmt: skip
    doc.update(changes)
    return doc


def _endpoint(name: str, lwm2m_uri: str) -> dict[str, Any]:
    return {
        "endpoint": name,
        "bootstrap_security": [{"mode": "nosec"}],
        "servers": [{"uri": lwm2m_uri, "short_server_id": 1, "lifetime": 120,
                     "security": {"mode": "nosec"}}],
        "objects": {"/3/0/14": "+01:00"},
    }  # fmt: skip


async def _refused_over_nosec(server: Lwm2mServer, bs: BootstrapTestClient) -> None:
    """The LwM2M server knows the provisioned credentials at once: NoSec is refused (the DTLS
    register with them is the open point in docs/bootstrap.md)."""
    from lwm2m_client.client import Lwm2mClientError

    security, _ = bs.fake.servers()[1]
    client = Lwm2mClient(bs.endpoint, str(bs.fake.value(f"/0/{security}/0")), lifetime=60)
    with pytest.raises(Lwm2mClientError, match=r"4\.03"):
        async with client:
            pass
    await client.close()


async def _register_and_read(server: Lwm2mServer, bs: BootstrapTestClient) -> None:
    """Register with what bootstrap wrote into /0 and /1 (the NoSec account, ssid 1)."""
    security, server_instance = bs.fake.servers()[1]
    uri = str(bs.fake.value(f"/0/{security}/0"))
    lifetime = int(bs.fake.value(f"/1/{server_instance}/1"))  # type: ignore[call-overload]
    async with Lwm2mClient(bs.endpoint, uri, lifetime=lifetime) as client:
        assert client.registered
        response = await server.read(bs.endpoint, LwM2mPath(3, 0), timeout=5)
        assert response.success and response.node is not None


@pytest.mark.parametrize("pct", [None, ContentFormat.SENML_CBOR], ids=["tlv", "senml-cbor"])
async def test_classic_bootstrap_then_register(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                                               pct: int | None) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_endpoint("dev-1", _uri(lwm2m_server)))
    async with BootstrapTestClient("dev-1") as bs:
        answer = await bs.bootstrap(_uri(bootstrap), pct=pct)
        assert answer.code == Code.CHANGED and bs.fake.finished
        assert bs.fake.log == ["GET /", "DELETE /1", "PUT /0/1", "PUT /1/0", "PUT /3/0",
                               "POST /bs"]  # fmt: skip
        assert bs.fake.value("/0/0/1") is True  # the factory bootstrap account survived
        assert bs.fake.value("/3/0/14") == "+01:00"
        await _register_and_read(lwm2m_server, bs)
    (session,) = await _sessions(bootstrap, "dev-1")
    assert session["success"] is True and session["steps"][-1]["step"] == "finish"


@pytest.mark.parametrize("pct", [None, ContentFormat.SENML_CBOR], ids=["tlv", "senml-cbor"])
async def test_auto_provisioning(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                                 pct: int | None) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    async with BootstrapTestClient("sensor-1") as bs:
        answer = await bs.bootstrap(_uri(bootstrap), pct=pct)
        assert answer.code == Code.CHANGED and bs.fake.finished
        generated_security = bs.fake.servers()[2][0]
        identity = bs.fake.value(f"/0/{generated_security}/3")
        key = bs.fake.value(f"/0/{generated_security}/5")
        assert identity == b"sensor-1" and isinstance(key, bytes) and len(key) == 16
        assert (await _sessions(bootstrap, "sensor-1"))[0]["success"] is True
        keystore = SqliteCredentialStore(lwm2m_server.store)
        stored = keystore.get_device("sensor-1")
        assert stored is not None and (stored.psk_identity, stored.psk_key) == (identity, key)
        record = bootstrap.store.get_device("sensor-1")
        assert record is not None and record.state is ProvisionState.PROVISIONED
        await _refused_over_nosec(lwm2m_server, bs)


async def test_unique_credentials_per_device(lwm2m_server: Lwm2mServer,
                                             make_bootstrap: Factory) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    keys = set()
    for name in ("a-1", "a-2", "a-3"):
        async with BootstrapTestClient(name) as bs:
            await bs.bootstrap(_uri(bootstrap))
            await _sessions(bootstrap, name)
            keys.add(bs.fake.value(f"/0/{bs.fake.servers()[2][0]}/5"))
    assert len(keys) == 3


@pytest.mark.parametrize("accept", [ContentFormat.SENML_CBOR, ContentFormat.TLV, None],
                         ids=["senml-cbor", "tlv-refused", "default"])  # fmt: skip
async def test_bootstrap_pack(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                              accept: int | None) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    async with BootstrapTestClient("packed-1") as bs:
        answer = await bs.pack(_uri(bootstrap), accept)
    keystore = SqliteCredentialStore(lwm2m_server.store)
    if accept == ContentFormat.TLV:
        assert answer.code == Code.NOT_ACCEPTABLE and keystore.get_device("packed-1") is None
        return
    assert answer.code == Code.CONTENT
    assert answer.opt.content_format == ContentFormat.SENML_CBOR
    nodes = codecs.decode_nodes(bytes(answer.payload), ContentFormat.SENML_CBOR,
                                ModelRegistry.builtin())  # fmt: skip
    assert nodes[LwM2mPath(0, 1, 0)].value == _uri(lwm2m_server)  # type: ignore[union-attr]
    stored = keystore.get_device("packed-1")
    assert stored is not None and stored.psk_key == nodes[LwM2mPath(0, 2, 5)].value  # type: ignore[union-attr]


async def test_pre_provisioned(lwm2m_server: Lwm2mServer, make_bootstrap: Factory) -> None:
    bootstrap = await make_bootstrap(
        _profile(_uri(lwm2m_server), provisioning={"strategy": "pre_provisioned"}))
    bootstrap.import_devices("endpoint,profile\nlisted-1,fleet\n")
    keystore = SqliteCredentialStore(lwm2m_server.store)
    async with BootstrapTestClient("unlisted-1") as bs:
        answer = await bs.bootstrap(_uri(bootstrap))
        assert answer.code == Code.FORBIDDEN and b"not pre-provisioned" in answer.payload
        assert bs.fake.log == []  # nothing was sent to it
    assert keystore.get_device("unlisted-1") is None
    assert bootstrap.store.get_device("unlisted-1") is None
    assert bootstrap.store.sessions("unlisted-1")[0]["failedStep"] == "request"
    async with BootstrapTestClient("listed-1") as bs:
        assert (await bs.bootstrap(_uri(bootstrap))).code == Code.CHANGED
        await _sessions(bootstrap, "listed-1")
        assert keystore.get_device("listed-1") is not None


async def test_client_error_then_retry(lwm2m_server: Lwm2mServer, make_bootstrap: Factory) -> None:
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    keystore = SqliteCredentialStore(lwm2m_server.store)
    async with BootstrapTestClient("flaky-1") as bs:
        bs.fake.errors[("write", "/1/1")] = 0xA0
        await bs.request(_uri(bootstrap), Code.POST, "bs", ["ep=flaky-1"])
        (failed,) = await _sessions(bootstrap, "flaky-1")
        assert failed["failedStep"] == "write" and "5.00" in str(failed["outcome"])
        assert keystore.get_device("flaky-1") is None
        bs.fake.errors.clear()
        await bs.bootstrap(_uri(bootstrap))
        assert (await _sessions(bootstrap, "flaky-1", 2))[0]["success"] is True
    assert keystore.get_device("flaky-1") is not None
    assert bootstrap.store.get_device("flaky-1").state is ProvisionState.PROVISIONED  # type: ignore[union-attr]


async def test_client_that_disappears(lwm2m_server: Lwm2mServer, make_bootstrap: Factory) -> None:
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    bs = BootstrapTestClient("gone-1")
    async with bs:
        await bs.request(_uri(bootstrap), Code.POST, "bs", ["ep=gone-1"])
    # the socket is closed: the session times out (2 attempts of 2 s) or sees ICMP
    (session,) = await _sessions(bootstrap, "gone-1")
    assert session["success"] is False
    assert SqliteCredentialStore(lwm2m_server.store).get_device("gone-1") is None


async def test_malformed_requests(make_bootstrap: Factory, tmp_path: Path) -> None:
    bootstrap = await make_bootstrap(_profile("coap://127.0.0.1:5683"))
    async with BootstrapTestClient("x") as bs:
        assert (await bs.request(_uri(bootstrap), Code.POST, "bs", [])).code == Code.BAD_REQUEST
        assert (await bs.request(_uri(bootstrap), Code.POST, "bs",
                                 ["ep=x", "pct=abc"])).code == Code.BAD_REQUEST  # fmt: skip
        assert (await bs.request(_uri(bootstrap), Code.GET, "bs",
                                 ["ep=x"])).code == Code.METHOD_NOT_ALLOWED  # fmt: skip
        assert (await bs.request(_uri(bootstrap), Code.GET, "nothing", [])).code == Code.NOT_FOUND


async def test_bad_config_file_stops_the_start(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "broken.yaml").write_text(yaml.safe_dump(
        _profile("coap://127.0.0.1:5683", objects={"/3/0/999": 1})))  # fmt: skip
    server = BootstrapServer(BootstrapServerConfig(host="127.0.0.1", coap_port=0,
                                                   data_dir=tmp_path / "d", configs_dir=folder,
                                                   coaps=False))  # fmt: skip
    with pytest.raises(ConfigErrors) as caught:
        await server.start()
    error = caught.value
    assert error.source.endswith("broken.yaml") and error.key == "objects./3/0/999"
    assert "no resource 999" in error.reason

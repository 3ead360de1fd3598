"""Bootstrap over real sockets (NoSec): a device (the real ``lwm2m_client``) with only its
factory bootstrap account bootstraps (classic sequence, TLV and SenML CBOR), gets unique
credentials that land in the LwM2M server's keystore after Finish, then registers with
``lwm2m-server`` using what it was given, and the server reads /3/0. ``bsclient`` stays for the
raw peer of the bad-input tests (injected client errors, a vanishing client, malformed
requests) and for the Bootstrap-Pack wire checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiocoap.numbers.codes import Code

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.core.provisioning import ProvisionState
from bootstrap_server.service import BootstrapServer, ConfigErrors
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_client.accounts import server_accounts
from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_server.service import Lwm2mServer
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from tests.integration.bootstrap import fixtures
from tests.integration.bootstrap.fixtures import Factory

from .bsclient import BootstrapTestClient

lwm2m_server = fixtures.lwm2m_server
make_bootstrap = fixtures.make_bootstrap
_sessions = fixtures.sessions
_uri = fixtures.coap_uri


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


def _device(name: str, bootstrap: BootstrapServer, **options: Any) -> Lwm2mClient:
    """The real client, holding only the factory NoSec bootstrap account."""
    return Lwm2mClient.from_bootstrap(name, _uri(bootstrap), finish_timeout=10.0, attempts=1,
                                      **options)  # fmt: skip


@pytest.mark.parametrize("pct", [None, ContentFormat.SENML_CBOR], ids=["tlv", "senml-cbor"])
async def test_classic_bootstrap_then_register(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                                               pct: int | None) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_endpoint("dev-1", _uri(lwm2m_server)))
    async with _device("dev-1", bootstrap, preferred_format=pct) as client:
        assert client.get_value("/0/0/1") is True  # the factory bootstrap account survived
        assert client.get_value("/3/0/14") == "+01:00"
        assert client.server.port == lwm2m_server.coap_address.port and client.registered
        response = await lwm2m_server.read("dev-1", LwM2mPath(3, 0), timeout=5)
        assert response.success and response.node is not None
    (session,) = await _sessions(bootstrap, "dev-1")
    assert session["success"] is True
    assert [s["step"] for s in session["steps"]] == ["discover", "delete", "write", "write",
                                                     "write", "finish"]  # fmt: skip


@pytest.mark.parametrize("pct", [None, ContentFormat.SENML_CBOR], ids=["tlv", "senml-cbor"])
async def test_auto_provisioning(lwm2m_server: Lwm2mServer, make_bootstrap: Factory,
                                 pct: int | None) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    client = _device("sensor-1", bootstrap, preferred_format=pct)
    account = await client.bootstrap()
    assert account.short_server_id == 1  # the first account: NoSec to our server
    generated = next(a for a in server_accounts(client.objects) if a.short_server_id == 2)
    identity, key = generated.identity, generated.secret
    assert identity == b"sensor-1" and len(key) == 16 and generated.dtls_config() is not None
    assert (await _sessions(bootstrap, "sensor-1"))[0]["success"] is True
    keystore = SqliteCredentialStore(lwm2m_server.store)
    stored = keystore.get_device("sensor-1")
    assert stored is not None and (stored.psk_identity, stored.psk_key) == (identity, key)
    record = bootstrap.store.get_device("sensor-1")
    assert record is not None and record.state is ProvisionState.PROVISIONED
    # the LwM2M server knows the provisioned credentials at once: NoSec is refused
    with pytest.raises(Lwm2mClientError, match=r"4\.03"):
        await client.register()
    await client.stop()


async def test_unique_credentials_per_device(lwm2m_server: Lwm2mServer,
                                             make_bootstrap: Factory) -> None:  # fmt: skip
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)))
    keys = set()
    for name in ("a-1", "a-2", "a-3"):
        client = _device(name, bootstrap)
        await client.bootstrap()
        await _sessions(bootstrap, name)
        keys.add(next(a.secret for a in server_accounts(client.objects) if a.short_server_id == 2))
        await client.stop()
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
    # no acc= and no earlier Discover: the account may be at /0/0 or /0/1, neither is written
    assert {p.ids[1] for p in nodes if p.ids[0] == 0} == {2, 3}
    assert nodes[LwM2mPath(0, 2, 0)].value == _uri(lwm2m_server)  # type: ignore[union-attr]
    stored = keystore.get_device("packed-1")
    assert stored is not None and stored.psk_key == nodes[LwM2mPath(0, 3, 5)].value  # type: ignore[union-attr]


async def test_pre_provisioned(lwm2m_server: Lwm2mServer, make_bootstrap: Factory) -> None:
    bootstrap = await make_bootstrap(
        _profile(_uri(lwm2m_server), provisioning={"strategy": "pre_provisioned"})
    )
    bootstrap.import_devices("endpoint,profile\nlisted-1,fleet\n")
    keystore = SqliteCredentialStore(lwm2m_server.store)
    unlisted = _device("unlisted-1", bootstrap)
    with pytest.raises(Lwm2mClientError, match=r"4\.03.*not pre-provisioned"):
        await unlisted.bootstrap()
    assert unlisted.objects.instance_ids(1) == []  # nothing was sent to it
    assert keystore.get_device("unlisted-1") is None
    assert bootstrap.store.get_device("unlisted-1") is None
    assert bootstrap.store.sessions("unlisted-1")[0]["failedStep"] == "request"
    listed = _device("listed-1", bootstrap)
    await listed.bootstrap()
    await _sessions(bootstrap, "listed-1")
    assert keystore.get_device("listed-1") is not None
    await listed.stop()


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

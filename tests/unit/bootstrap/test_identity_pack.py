"""Who may bootstrap as which endpoint, and the Bootstrap-Pack payload."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from bootstrap_server.core.catalog import Catalog
from bootstrap_server.core.client_info import PACK_GUESS, AccountBasis, ClientInfo, PackAccount
from bootstrap_server.core.identity import NotAllowed, resolve
from bootstrap_server.core.manager import BootstrapManager
from bootstrap_server.core.pack import build_pack, pack_format
from bootstrap_server.core.plan import IssuedSecurity, make_plan
from bootstrap_server.core.provisioning import DeviceRecord, MemoryDevices
from bootstrap_server.store import SqliteBootstrapStore
from keystore import tools
from keystore.credentials import certificate_der
from keystore.modes import SecurityMode
from keystore.resolver import PeerIdentity
from keystore.store.credentials import SqliteCredentialStore
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath
from tests.store_engines import Engine

from .fake_client import FakeClient
from .helpers import KEY, REGISTRY, Clock, drive, endpoint_doc, parse, profile_doc

# Certificates are issued at NOW, not at the wall clock of the moment a test runs: under xdist a
# module is imported at collection and its tests may run minutes later, beyond the backdating.
NOW = datetime.datetime.now(datetime.UTC)
CA_KEY, CA_CERT = tools.make_ca("fleet CA", now=NOW)


def _catalog() -> Catalog:
    ca_pem = tools.certificate_pem(CA_CERT).decode()
    return Catalog.of([
        parse(endpoint_doc(endpoint="secure", bootstrap_security=[
            {"mode": "psk", "identity": "secure-bs", "key": KEY}])),
        parse(endpoint_doc(endpoint="open")),
        parse(profile_doc()),
        parse(profile_doc(profile="certs", bootstrap_security=[{"mode": "x509", "ca": ca_pem}])),
        parse(profile_doc(profile="nosec-fleet", bootstrap_security=[{"mode": "nosec"}])),
    ])  # fmt: skip


def _device_chain(cn: str) -> tuple[bytes, ...]:
    key = tools.generate_private_key()
    cert = tools.issue_certificate(
        key.public_key(), cn, issuer_key=CA_KEY, issuer_cert=CA_CERT, now=NOW
    )
    return (certificate_der(cert),)


def test_identity_rules() -> None:
    catalog, devices = _catalog(), MemoryDevices()

    def who(peer: PeerIdentity, ep: str) -> str:
        return resolve(catalog, devices, peer, ep, NOW).config.name

    assert who(PeerIdentity.psk(b"secure-bs"), "secure") == "secure"
    with pytest.raises(Lwm2mError) as caught:
        who(PeerIdentity.psk(b"secure-bs"), "other")
    assert caught.value.code == ResponseCode.FORBIDDEN
    assert who(PeerIdentity.psk(b"fleet-factory"), "anything") == "fleet"
    assert who(PeerIdentity.x509(_device_chain("cert-dev")), "cert-dev") == "certs"
    with pytest.raises(Lwm2mError, match="names cert-dev, not 'other'"):
        who(PeerIdentity.x509(_device_chain("cert-dev")), "other")
    with pytest.raises(NotAllowed):
        who(PeerIdentity.psk(b"unknown"), "x")
    # NoSec: own config, else the record's profile, else the NoSec profile
    assert who(PeerIdentity.nosec(), "open") == "open"
    with pytest.raises(NotAllowed, match="must bootstrap over DTLS"):
        who(PeerIdentity.nosec(), "secure")
    devices.put_device(DeviceRecord("listed", "fleet"))
    with pytest.raises(NotAllowed, match="profile 'fleet' does not allow nosec"):
        who(PeerIdentity.nosec(), "listed")
    assert who(PeerIdentity.nosec(), "stranger") == "nosec-fleet"
    with pytest.raises(Lwm2mError) as caught:
        who(PeerIdentity.nosec(), "bad\x00name")
    assert caught.value.code == ResponseCode.BAD_REQUEST


def test_no_nosec_anywhere_by_default() -> None:
    catalog = Catalog.of([parse(profile_doc())])
    with pytest.raises(NotAllowed, match="allows nosec"):
        resolve(catalog, MemoryDevices(), PeerIdentity.nosec(), "dev", NOW)


@pytest.mark.parametrize("fmt", [ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR,
                                 ContentFormat.SENML_JSON])  # fmt: skip
def test_pack_holds_every_instance(fmt: int) -> None:
    config = parse(profile_doc(objects={"/3/0/14": "+01:00"}))
    issued = IssuedSecurity(SecurityMode.PSK, b"dev-7", b"s" * 16)
    plan = make_plan(config, ClientInfo.for_pack(), REGISTRY, issued=issued)
    payload = build_pack(plan, pack_format(fmt))
    nodes = codecs.decode_nodes(payload, fmt, REGISTRY)
    # no acc= and no earlier Discover: the account may be /0/0 or /0/1, so Security starts at 2
    assert set(nodes) == {LwM2mPath(0, 2, r) for r in (0, 1, 2, 3, 4, 5, 10)} | {
        LwM2mPath(1, 0, r) for r in (0, 1, 6, 7)} | {LwM2mPath(3, 0, 14)}  # fmt: skip
    assert nodes[LwM2mPath(0, 2, 5)].value == b"s" * 16  # type: ignore[union-attr]


def test_pack_format_negotiation() -> None:
    assert pack_format(None) == ContentFormat.SENML_CBOR
    with pytest.raises(Lwm2mError) as caught:
        pack_format(ContentFormat.TLV)
    assert caught.value.code == ResponseCode.NOT_ACCEPTABLE


def test_manager_pack_commits_its_credentials(tmp_path: Path) -> None:
    devices = MemoryDevices()
    with SqliteCredentialStore.open(tmp_path / "ks.sqlite") as keystore:
        manager = BootstrapManager(Catalog.of([parse(profile_doc())]), REGISTRY, devices,
                                   keystore)  # fmt: skip
        payload, fmt = manager.bootstrap_pack(PeerIdentity.psk(b"fleet-factory"),
                                              ["ep=pack-1"], None, 1.0)  # fmt: skip
        nodes = codecs.decode_nodes(payload, fmt, REGISTRY)
        stored = keystore.get_device("pack-1")
        assert stored is not None and stored.psk_key == nodes[LwM2mPath(0, 2, 5)].value  # type: ignore[union-attr]
        assert devices.get_device("pack-1").state.value == "PROVISIONED"  # type: ignore[union-attr]


# -- where a Bootstrap-Pack puts Security instances (issue 9, item 2) ---------------------------
def _pack_security(manager: BootstrapManager, query: list[str]) -> set[int]:
    payload, fmt = manager.bootstrap_pack(PeerIdentity.nosec(), query, None, 1.0)
    return {p.ids[1] for p in codecs.decode_nodes(payload, fmt, REGISTRY) if p.ids[0] == 0}


def test_pack_account_parameter() -> None:
    assert PackAccount.parse("</0/1>") == PackAccount(frozenset({1}))
    assert PackAccount.parse("</0/4>, </21/2>,</23/0>") == PackAccount(frozenset({4}),
                                                                       frozenset({2}))  # fmt: skip
    for bad in ("/0/1", "</0>", "</0/1/2>", "</3/0>", "<x>", ""):
        with pytest.raises(Lwm2mError) as caught:
            PackAccount.parse(bad)
        assert caught.value.code == ResponseCode.BAD_REQUEST and "acc" in caught.value.message


def test_pack_client_precedence() -> None:
    discovered = ClientInfo.from_discover(b"</>;lwm2m=1.1,</0/3>,</0/0>;ssid=1")
    assert ClientInfo.for_pack().bootstrap_instances == PACK_GUESS == {0, 1}
    assert ClientInfo.for_pack(None, discovered).bootstrap_instances == {3}
    assert ClientInfo.for_pack(PackAccount(frozenset({5})), discovered).bootstrap_instances == {5}
    # acc= naming only OSCORE instances says nothing about /0: the last Discover still counts
    only_oscore = ClientInfo.for_pack(PackAccount(oscore=frozenset({0})), discovered)
    assert only_oscore.bootstrap_instances == {3} and only_oscore.bootstrap_oscore == {0}
    assert ClientInfo.from_json(discovered.to_json()).bootstrap_instances == {3}
    with pytest.raises(ValueError, match="not a stored Bootstrap-Discover"):
        ClientInfo.from_json({"lwm2m": "1.1"})


def test_pack_placement_and_its_session_records() -> None:
    manager = BootstrapManager(Catalog.of([parse(endpoint_doc(endpoint="open"))]), REGISTRY,
                               MemoryDevices(), _NoKeystore())  # fmt: skip
    assert _pack_security(manager, ["ep=open"]) == {2}
    assert _pack_security(manager, ["ep=open", "acc=</0/1>"]) == {0}
    done = manager.history[-1]
    assert done.kind == "pack" and done.success and done.records[0].step.value == "pack"
    assert done.records[0].result == "2.05 (/0/0, /1/0)"
    assert "Bootstrap-Server account /0/1 (as its acc= parameter says)" in done.notes[0]
    # a classic session's Discover is kept for the endpoint and used by the next pack
    clock, client = Clock(), FakeClient(bootstrap_instance=0)
    session, first = manager.bootstrap_request(PeerIdentity.nosec(), ["ep=open"], clock.now)
    drive(session, client, clock, first, manager=manager)
    assert manager.discoveries.last_discover("open") is not None
    assert _pack_security(manager, ["ep=open"]) == {1}
    # refusals are recorded too: a bad acc= (4.00), an unknown endpoint
    for query in (["ep=open", "acc=0/1"], ["ep=stranger"]):
        with pytest.raises(Lwm2mError):
            manager.bootstrap_pack(PeerIdentity.nosec(), query, None, 2.0)
        refused = manager.history[-1]
        assert refused.kind == "pack" and not refused.success
        assert refused.failed_step == "request" and refused.records[0].result[:1] == "4"


def test_pack_fixed_security_instance_is_refused_with_4_05_not_5_00() -> None:
    doc = endpoint_doc(endpoint="open")
    doc["servers"][0]["security_instance"] = 1
    manager = BootstrapManager(Catalog.of([parse(doc)]), REGISTRY, MemoryDevices(),
                               _NoKeystore())  # fmt: skip
    with pytest.raises(Lwm2mError) as caught:
        manager.bootstrap_pack(PeerIdentity.nosec(), ["ep=open"], None, 1.0)
    assert caught.value.code == ResponseCode.METHOD_NOT_ALLOWED
    assert "security_instance 1 may be the client's Bootstrap-Server account" in (
        caught.value.message
    )
    assert manager.history[-1].failed_step == "plan"
    assert _pack_security(manager, ["ep=open", "acc=</0/0>"]) == {1}
    with pytest.raises(Lwm2mError, match="security_instance 1 is the client's") as caught:
        manager.bootstrap_pack(PeerIdentity.nosec(), ["ep=open", "acc=</0/1>"], None, 1.0)
    assert caught.value.code == ResponseCode.METHOD_NOT_ALLOWED


def test_store_keeps_the_last_discover(engine: Engine) -> None:
    store = engine.bootstrap()
    assert store.last_discover("dev") is None
    store.put_discover("dev", ClientInfo.from_discover(b"</>;lwm2m=1.2,</0/1>,</0/0>;ssid=3"), 1.0)
    store = engine.bootstrap()  # a restarted server, or another one on the same store
    found = store.last_discover("dev")
    assert found is not None and found.bootstrap_instances == {1} and found.lwm2m_version == "1.2"
    assert found.account_basis is AccountBasis.LAST_DISCOVER
    if isinstance(store, SqliteBootstrapStore):
        store._write("UPDATE bs_discoveries SET data = ?", [("{}",)])
    else:
        database = store._db  # type: ignore[attr-defined]
        database.client.set(database.endpoint_key("bs:disc", "dev"), '{"data": {}}')
    assert store.last_discover("dev") is None  # unreadable = unknown: the pack avoids 0 and 1


class _NoKeystore:
    """A keystore for configs that issue nothing."""

    def device_by_psk_identity(self, identity: bytes) -> None:
        return None

    def server_identity(self) -> None:
        return None

    def put_device(self, device: object) -> None:
        raise AssertionError("nothing is issued")

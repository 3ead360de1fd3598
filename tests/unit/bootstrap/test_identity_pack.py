"""Who may bootstrap as which endpoint, and the Bootstrap-Pack payload."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from bootstrap_server.core.catalog import Catalog
from bootstrap_server.core.client_info import ClientInfo
from bootstrap_server.core.identity import NotAllowed, resolve
from bootstrap_server.core.manager import BootstrapManager
from bootstrap_server.core.pack import build_pack, pack_format
from bootstrap_server.core.plan import IssuedSecurity, make_plan
from bootstrap_server.core.provisioning import DeviceRecord, MemoryDevices
from keystore import tools
from keystore.credentials import certificate_der
from keystore.modes import SecurityMode
from keystore.resolver import PeerIdentity
from keystore.store.credentials import SqliteCredentialStore
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from .helpers import KEY, REGISTRY, endpoint_doc, parse, profile_doc

NOW = datetime.datetime.now(datetime.UTC)
CA_KEY, CA_CERT = tools.make_ca("fleet CA")


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
    cert = tools.issue_certificate(key.public_key(), cn, issuer_key=CA_KEY, issuer_cert=CA_CERT)
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
    assert set(nodes) == {LwM2mPath(0, 1, r) for r in (0, 1, 2, 3, 4, 5, 10)} | {
        LwM2mPath(1, 0, r) for r in (0, 1, 6, 7)} | {LwM2mPath(3, 0, 14)}  # fmt: skip
    assert nodes[LwM2mPath(0, 1, 5)].value == b"s" * 16  # type: ignore[union-attr]


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
        assert stored is not None and stored.psk_key == nodes[LwM2mPath(0, 1, 5)].value  # type: ignore[union-attr]
        assert devices.get_device("pack-1").state.value == "PROVISIONED"  # type: ignore[union-attr]

"""Admission, CSV import, per-device credentials, and the manager's all-or-nothing commit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from bootstrap_server.core.catalog import Catalog
from bootstrap_server.core.manager import BootstrapManager, BootstrapQuery
from bootstrap_server.core.provisioning import (
    CsvImportError,
    DeviceRecord,
    MemoryDevices,
    ProvisioningCa,
    ProvisionState,
    Refused,
    admit,
    issue,
    parse_csv,
)
from bootstrap_server.core.session import Step, Timing
from keystore import tools
from keystore.credentials import DeviceCredentials, ServerIdentity
from keystore.modes import SecurityMode
from keystore.resolver import PeerIdentity
from keystore.store.credentials import SqliteCredentialStore
from object_models.errors import Lwm2mError, ResponseCode

from .fake_client import FakeClient
from .helpers import REGISTRY, Clock, drive, endpoint_doc, parse, profile_doc

FLEET = PeerIdentity.psk(b"fleet-factory")


@pytest.fixture
def keystore(tmp_path: Path) -> Iterator[SqliteCredentialStore]:
    store = SqliteCredentialStore.open(tmp_path / "lwm2m-server.sqlite")
    yield store
    store.close()


def _manager(
    keystore: SqliteCredentialStore,
    *docs: dict[str, object],
    devices: MemoryDevices | None = None,
    **kwargs: object,
) -> BootstrapManager:
    catalog = Catalog.of(parse(d) for d in docs)  # type: ignore[arg-type]
    return BootstrapManager(
        catalog, REGISTRY, devices or MemoryDevices(), keystore, timing=Timing(10.0, 1), **kwargs
    )  # type: ignore[arg-type]


# -- admission and import -------------------------------------------------------------------------


def test_admission_by_strategy() -> None:
    devices = MemoryDevices()
    allow = parse(profile_doc())
    record = admit("new-1", allow, devices, 5.0)
    assert (record.profile, record.state, record.origin) == ("fleet", ProvisionState.NEW, "auto")
    closed = parse(profile_doc(provisioning={"strategy": "pre_provisioned"}))
    with pytest.raises(Refused, match="not pre-provisioned"):
        admit("new-1", closed, devices, 5.0)
    devices.put_device(DeviceRecord("listed", "fleet"))
    assert admit("listed", closed, devices, 5.0).endpoint == "listed"
    devices.put_device(DeviceRecord("elsewhere", "other"))
    with pytest.raises(Refused, match="under profile 'other'"):
        admit("elsewhere", allow, devices, 5.0)


def test_csv_import() -> None:
    text = "endpoint,profile\n# comment\ndev-1,fleet\ndev-2\n\n dev-3 , , note\n"
    records = parse_csv(text, default_profile="default", now=7.0)
    assert [(r.endpoint, r.profile) for r in records] == [
        ("dev-1", "fleet"),
        ("dev-2", "default"),
        ("dev-3", "default"),
    ]
    with pytest.raises(CsvImportError, match=r"devices\.csv:3: endpoint 'a' is listed twice"):
        parse_csv("a\nb\na\n", source="devices.csv")
    with pytest.raises(CsvImportError, match=r"devices\.csv:1: contains control characters"):
        parse_csv("a\x01b\n", source="devices.csv")


# -- credentials --------------------------------------------------------------------------------


def test_psk_is_16_random_bytes_with_templated_identity(keystore: SqliteCredentialStore) -> None:
    config = parse(profile_doc(provisioning={"psk_identity_template": "{profile}/{endpoint}"}))
    first, second = issue("dev-1", config, keystore), issue("dev-1", config, keystore)
    assert first is not None and second is not None
    assert first.security.public_key_or_identity == b"fleet/dev-1"
    assert len(first.security.secret_key) == 16
    assert first.security.secret_key != second.security.secret_key
    assert "secret" not in repr(first) or "<" in repr(first)
    keystore.put_device(DeviceCredentials.for_psk("someone-else", b"fleet/dev-1", b"x" * 16))
    with pytest.raises(Lwm2mError, match="already belongs to endpoint 'someone-else'"):
        issue("dev-1", config, keystore)


def test_rpk_and_x509_use_the_keystore_server_identity(keystore: SqliteCredentialStore) -> None:
    server_key = tools.generate_private_key()
    cert = tools.self_signed_server_certificate(server_key, "lwm2m.local")
    keystore.put_server_identity(
        ServerIdentity(tools.private_key_pem(server_key), (tools.certificate_der(cert),))
    )  # type: ignore[attr-defined]
    doc = profile_doc()
    doc["servers"][0]["security"] = {"mode": "rpk", "generate": True}  # type: ignore[index]
    issued = issue("dev-1", parse(doc), keystore)
    assert issued is not None and issued.record.mode is SecurityMode.RPK
    assert issued.security.server_public_key == tools.spki_der(server_key.public_key())
    assert issued.record.rpk_spki == issued.security.public_key_or_identity
    doc["servers"][0]["security"] = {"mode": "x509", "generate": True}  # type: ignore[index]
    with pytest.raises(Lwm2mError, match="provisioning CA"):
        issue("dev-1", parse(doc), keystore)
    ca_key, ca_cert = tools.make_ca("pylwm2m devices")
    issued = issue("dev-1", parse(doc), keystore, ca=ProvisioningCa(ca_cert, ca_key))
    assert issued is not None
    device_cert = x509.load_der_x509_certificate(issued.security.public_key_or_identity)
    assert device_cert.issuer == ca_cert.subject
    assert issued.record.certificate == issued.security.public_key_or_identity
    assert issued.security.server_public_key == tools.certificate_der(cert)  # type: ignore[attr-defined]


# -- the manager: sessions, commit, provisionState ----------------------------------------------


def _run(manager: BootstrapManager, client: FakeClient, clock: Clock, peer: PeerIdentity,
         endpoint: str, **kwargs: object) -> None:  # fmt: skip
    session, first = manager.bootstrap_request(peer, [f"ep={endpoint}"], clock.now)
    drive(session, client, clock, first, manager=manager, **kwargs)  # type: ignore[arg-type]


def test_auto_provisioning_commits_only_after_finish(keystore: SqliteCredentialStore) -> None:
    clock, client, devices = Clock(), FakeClient(), MemoryDevices()
    manager = _manager(keystore, profile_doc(), devices=devices)
    session, first = manager.bootstrap_request(FLEET, ["ep=sensor-1", "pct=112"], clock.now)
    assert devices.get_device("sensor-1").state is ProvisionState.BOOTSTRAPPING  # type: ignore[union-attr]
    seen_before_finish: list[object] = []

    def watch(request: object) -> bool:
        if getattr(request, "step", None) is Step.FINISH:
            seen_before_finish.append(keystore.get_device("sensor-1"))
        return False

    drive(session, client, clock, first, manager=manager, lose=watch)
    assert seen_before_finish == [None]
    stored = keystore.get_device("sensor-1")
    assert stored is not None and stored.psk_identity == b"sensor-1"
    assert stored.psk_key == client.value("/0/1/5")
    record = devices.get_device("sensor-1")
    assert record is not None and record.state is ProvisionState.PROVISIONED
    (summary,) = manager.history
    assert summary.success and summary.profile == "fleet" and summary.outcome == "succeeded"
    assert manager.active() == []


@pytest.mark.parametrize(("step", "target"), [("discover", "/"), ("delete", "/1"),
                                              ("write", "/0/1"), ("write", "/1/0"),
                                              ("finish", "/bs")])  # fmt: skip
def test_failure_stores_nothing_and_a_retry_works(keystore: SqliteCredentialStore, step: str,
                                                  target: str) -> None:  # fmt: skip
    clock, client, devices = Clock(), FakeClient(), MemoryDevices()
    manager = _manager(keystore, profile_doc(), devices=devices)
    client.errors[(step, target)] = ResponseCode.INTERNAL_SERVER_ERROR
    _run(manager, client, clock, FLEET, "sensor-2")
    assert keystore.get_device("sensor-2") is None
    record = devices.get_device("sensor-2")
    assert record is not None and record.state is ProvisionState.FAILED
    assert f"at {step} {target}" in record.reason
    client.errors.clear()
    _run(manager, client, clock, FLEET, "sensor-2")
    stored = keystore.get_device("sensor-2")
    assert stored is not None and stored.psk_key == client.value("/0/1/5")
    assert devices.get_device("sensor-2").state is ProvisionState.PROVISIONED  # type: ignore[union-attr]
    assert [s.success for s in manager.history] == [False, True]


def test_timeout_stores_nothing(keystore: SqliteCredentialStore) -> None:
    clock, client = Clock(), FakeClient()
    manager = _manager(keystore, profile_doc())
    _run(manager, client, clock, FLEET, "sensor-3", lose=lambda r: r.step is Step.FINISH)
    assert keystore.get_device("sensor-3") is None
    assert "no answer" in manager.history[-1].outcome


def test_pre_provisioned_unlisted_is_refused_and_nothing_stored(
    keystore: SqliteCredentialStore,
) -> None:
    devices = MemoryDevices()
    devices.put_devices(parse_csv("listed-1,fleet\n"))
    manager = _manager(keystore, profile_doc(provisioning={"strategy": "pre_provisioned"}),
                       devices=devices)  # fmt: skip
    with pytest.raises(Refused) as caught:
        manager.bootstrap_request(FLEET, ["ep=intruder"], 1.0)
    assert caught.value.code == ResponseCode.FORBIDDEN
    assert keystore.devices() == [] and devices.get_device("intruder") is None
    assert manager.history[-1].failed_step == "request"
    clock, client = Clock(), FakeClient()
    _run(manager, client, clock, FLEET, "listed-1")
    assert keystore.get_device("listed-1") is not None


def test_second_request_supersedes_the_running_session(keystore: SqliteCredentialStore) -> None:
    clock, client = Clock(), FakeClient()
    manager = _manager(keystore, profile_doc())
    old, first = manager.bootstrap_request(FLEET, ["ep=twice"], clock.now)
    new, again = manager.bootstrap_request(FLEET, ["ep=twice"], clock.advance(1))
    assert old.outcome is not None and "superseded" in old.outcome.reason
    assert manager.receive(old, first.seq, client.handle(first), clock.now) is None
    drive(new, client, clock, again, manager=manager)
    assert [s.success for s in manager.history] == [False, True]
    stored = keystore.get_device("twice")
    assert stored is not None and stored.psk_key == client.value("/0/1/5")


def test_keystore_conflict_after_finish_is_recorded(keystore: SqliteCredentialStore) -> None:
    clock, client = Clock(), FakeClient()
    manager = _manager(keystore, profile_doc())
    session, first = manager.bootstrap_request(FLEET, ["ep=dev-x"], clock.now)
    # another endpoint takes the identity while the session runs
    keystore.put_device(DeviceCredentials.for_psk("thief", b"dev-x", b"y" * 16))
    drive(session, client, clock, first, manager=manager)
    summary = manager.history[-1]
    assert not summary.success and "could not be stored" in summary.outcome
    assert keystore.get_device("dev-x") is None


@pytest.mark.parametrize("query", [[], ["ep="], ["ep=a", "ep=b"], ["ep=a", "pct=tlv"]])
def test_malformed_bootstrap_request(keystore: SqliteCredentialStore, query: list[str]) -> None:
    manager = _manager(keystore, profile_doc())
    with pytest.raises(Lwm2mError) as caught:
        manager.bootstrap_request(FLEET, query, 1.0)
    assert caught.value.code == ResponseCode.BAD_REQUEST
    assert BootstrapQuery.parse(["ep=x", "pct=112"]).preferred_format == 112


def test_server_initiated(keystore: SqliteCredentialStore) -> None:
    clock, client = Clock(), FakeClient()
    manager = _manager(keystore, endpoint_doc())
    session, first = manager.server_initiated("dev-1", clock.now)
    drive(session, client, clock, first, manager=manager)
    assert manager.history[-1].initiated_by == "server" and manager.history[-1].success
    with pytest.raises(Lwm2mError) as caught:
        manager.server_initiated("nobody", clock.now)
    assert caught.value.code == ResponseCode.NOT_FOUND


def test_next_deadline_tracks_running_sessions(keystore: SqliteCredentialStore) -> None:
    manager = _manager(keystore, profile_doc())
    assert manager.next_deadline() is None
    manager.bootstrap_request(FLEET, ["ep=a"], 100.0)
    manager.bootstrap_request(FLEET, ["ep=b"], 105.0)
    assert manager.next_deadline() == 110.0
    session = manager.session("a")
    assert session is not None
    manager.abort(session, "stopping", 101.0)
    assert manager.next_deadline() == 115.0

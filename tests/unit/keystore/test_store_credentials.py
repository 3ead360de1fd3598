"""The credential store: lookups, one identity per endpoint, import/export (every engine, the
``engine`` fixture), and what is particular to each engine (sqlite: a shared connection, file
modes; Redis: index consistency across store objects, errors that name the URL)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from keystore import tools
from keystore.credentials import (
    CredentialError,
    DeviceCredentials,
    ServerIdentity,
    TrustedCa,
    certificate_der,
    fingerprint,
)
from keystore.store.credentials import (
    CredentialStore,
    SqliteCredentialStore,
    export_document,
    import_document,
)
from keystore.store.errors import StoreError
from lwm2m_server.store.sqlite import SqliteStore
from tests.store_engines import Engine

from .conftest import Pki

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def store(engine: Engine) -> CredentialStore:
    """The credential store of each engine (overrides the package's sqlite-only fixture)."""
    return engine.credentials()


def test_put_get_and_lookups(store: CredentialStore, pki: Pki) -> None:
    spki = tools.spki_der(pki.device_key.public_key())
    cert = pki.self_signed("pinned")
    psk = DeviceCredentials.for_psk("a", b"id-a", KEY)
    rpk = DeviceCredentials.for_rpk("b", spki)
    pinned = DeviceCredentials.for_x509("c", cert)
    for device in (psk, rpk, pinned):
        assert store.put_device(device) is None
    assert store.get_device("a") == psk
    assert store.device_by_psk_identity(b"id-a") == psk
    assert store.device_by_rpk(spki) == rpk
    assert store.device_by_rpk(b"garbage") is None
    assert store.device_by_certificate(certificate_der(cert)) == pinned
    assert [d.endpoint for d in store.devices()] == ["a", "b", "c"]
    replaced = store.put_device(DeviceCredentials.for_psk("a", b"id-a2", KEY))
    assert replaced == psk and store.device_by_psk_identity(b"id-a") is None
    assert store.remove_device("a") is not None and store.get_device("a") is None
    assert store.remove_device("a") is None


@pytest.mark.parametrize("kind", ["psk", "rpk", "certificate"])
def test_one_identity_cannot_map_to_two_endpoints(
    store: CredentialStore, pki: Pki, kind: str
) -> None:
    spki = tools.spki_der(pki.device_key.public_key())
    cert = pki.self_signed("x")

    def make(ep: str) -> DeviceCredentials:
        if kind == "psk":
            return DeviceCredentials.for_psk(ep, b"shared", KEY)
        if kind == "rpk":
            return DeviceCredentials.for_rpk(ep, spki)
        return DeviceCredentials.for_x509(ep, cert)

    store.put_device(make("first"))
    with pytest.raises(CredentialError, match="already belongs to endpoint 'first'") as info:
        store.put_device(make("second"))
    assert info.value.field == {"psk": "psk_identity", "rpk": "rpk_public_key"}.get(kind, kind)
    assert store.get_device("second") is None
    store.put_device(make("first"))  # the same endpoint may be rewritten


def test_server_identity_and_cas(store: CredentialStore, pki: Pki) -> None:
    assert store.server_identity() is None
    key = tools.generate_private_key()
    ident = ServerIdentity(
        tools.private_key_pem(key),
        (certificate_der(tools.self_signed_server_certificate(key, "h")),),
    )
    store.put_server_identity(ident)
    assert store.server_identity() == ident
    ca = TrustedCa(certificate_der(pki.ca))
    store.put_trusted_ca(ca)
    store.put_trusted_ca(TrustedCa(certificate_der(pki.ca), auto_registration=True))
    (only,) = store.trusted_cas()
    assert only.auto_registration
    with pytest.raises(CredentialError, match="at least 8"):
        store.remove_trusted_ca("abc")
    assert store.remove_trusted_ca("sha256:" + ca.fingerprint[:12]) == only
    assert store.trusted_cas() == []


def test_shares_the_server_store_connection(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "server.db") as server_store:
        creds = SqliteCredentialStore(server_store)
        with server_store.batch():
            creds.put_device(DeviceCredentials.for_nosec("x"))
            creds.put_device(DeviceCredentials.for_nosec("y"))
        assert [d.endpoint for d in creds.devices()] == ["x", "y"]
        creds.close()  # does not close the store it was given
        assert server_store.registrations() == []


def test_file_is_owner_only_even_when_created_by_another_store(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "server.db"
        with SqliteStore(path) as server_store:
            server_store.registrations()
            assert mode_of(path) & 0o077  # the umask-0 mode the server store created
            SqliteCredentialStore(server_store).put_device(DeviceCredentials.for_nosec("x"))
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                assert mode_of(Path(f"{path}{suffix}")) == 0o600, suffix
        fresh = tmp_path / "new" / "creds.db"
        with SqliteCredentialStore.open(fresh) as s:
            s.put_device(DeviceCredentials.for_psk("a", b"i", KEY))
        assert mode_of(fresh) == 0o600 and mode_of(fresh.parent) == 0o700
        for extra in fresh.parent.iterdir():
            assert mode_of(extra) == 0o600, extra
    finally:
        os.umask(old)


def test_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path)):
        SqliteCredentialStore.open(path)


def populated(store: CredentialStore, pki: Pki) -> None:
    key = tools.generate_private_key()
    store.put_server_identity(ServerIdentity(tools.private_key_pem(key)))
    store.put_trusted_ca(TrustedCa(certificate_der(pki.ca), auto_registration=True))
    store.put_device(DeviceCredentials.for_psk("a", b"\xffbin", KEY, active=False))
    store.put_device(DeviceCredentials.for_rpk("b", tools.spki_der(pki.device_key.public_key())))
    store.put_device(DeviceCredentials.for_x509("c", pki.self_signed("c")))
    store.put_device(DeviceCredentials.for_x509("d"))
    store.put_device(DeviceCredentials.for_nosec("e"))


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_export_import_round_trip(
    store: CredentialStore, pki: Pki, engine: Engine, encoding: str
) -> None:
    populated(store, pki)
    document = export_document(store, encoding=encoding)  # type: ignore[arg-type]
    document = json.loads(json.dumps(document))  # through real JSON
    assert document["format"] == "pylwm2m-keystore" and document["encoding"] == encoding
    other = engine.elsewhere().credentials()
    summary = import_document(other, document)
    assert (summary.devices, summary.trusted_cas, summary.server_identity) == (5, 1, True)
    assert other.devices() == store.devices()
    assert other.trusted_cas() == store.trusted_cas()
    assert other.server_identity() == store.server_identity()
    import_document(other, document)  # idempotent
    assert export_document(other, encoding=encoding) == document  # type: ignore[arg-type]


def test_import_is_all_or_nothing_and_names_the_field(store: CredentialStore, pki: Pki) -> None:
    document = {
        "format": "pylwm2m-keystore",
        "version": 1,
        "devices": [
            {"endpoint": "ok", "mode": "nosec"},
            {"endpoint": "bad", "mode": "psk", "psk_identity": "00", "psk_key": "zz"},
        ],
    }
    with pytest.raises(CredentialError, match=r"^devices\[1\]\.psk_key: not hexadecimal"):
        import_document(store, document)
    assert store.devices() == []
    dup = {**document, "devices": [
        {"endpoint": "x", "mode": "psk", "psk_identity": "01", "psk_key": "02"},
        {"endpoint": "y", "mode": "psk", "psk_identity": "01", "psk_key": "03"},
    ]}  # fmt: skip
    with pytest.raises(CredentialError, match=r"^devices\[1\]\.psk_identity: same as devices\[0\]"):
        import_document(store, dup)
    store.put_device(DeviceCredentials.for_psk("holder", b"\x01", KEY))
    late_conflict = {**document, "devices": [
        {"endpoint": "new", "mode": "nosec"},
        {"endpoint": "y", "mode": "psk", "psk_identity": "01", "psk_key": "03"},
    ]}  # fmt: skip
    with pytest.raises(CredentialError, match=r"^devices\[1\]\.psk_identity: .*'holder'"):
        import_document(store, late_conflict)
    assert store.get_device("new") is None  # rolled back


def test_import_does_not_overwrite_without_replace(store: CredentialStore, pki: Pki) -> None:
    store.put_device(DeviceCredentials.for_psk("a", b"id", KEY))
    doc = {
        "format": "pylwm2m-keystore",
        "version": 1,
        "devices": [{"endpoint": "a", "mode": "nosec"}],
    }
    with pytest.raises(CredentialError, match=r"^devices\[0\]\.endpoint: .*--replace"):
        import_document(store, doc)
    import_document(store, doc, replace=True)
    assert store.get_device("a") == DeviceCredentials.for_nosec("a")
    key = tools.generate_private_key()
    store.put_server_identity(ServerIdentity(tools.private_key_pem(key)))
    other = tools.private_key_pem(tools.generate_private_key()).decode()
    with pytest.raises(CredentialError, match=r"^server: "):
        import_document(store, {**doc, "server": {"private_key_pem": other}})


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], ""),
        ({"format": "other", "version": 1}, "format"),
        ({"format": "pylwm2m-keystore", "version": 9}, "version"),
        ({"format": "pylwm2m-keystore", "version": 1, "extra": 1}, "extra"),
        ({"format": "pylwm2m-keystore", "version": 1, "encoding": "b32"}, "encoding"),
        ({"format": "pylwm2m-keystore", "version": 1, "devices": {}}, "devices"),
        ({"format": "pylwm2m-keystore", "version": 1, "trusted_cas": [{}]},
         "trusted_cas[0].certificate"),
        ({"format": "pylwm2m-keystore", "version": 1, "server": {"private_key_pem": "x"}},
         "server.private_key"),
    ],
)  # fmt: skip
def test_bad_documents(store: CredentialStore, document: object, field: str) -> None:
    with pytest.raises(CredentialError) as info:
        import_document(store, document)
    assert info.value.field == field


def test_two_store_objects_see_each_others_writes(engine: Engine, pki: Pki) -> None:
    """Two processes on one store: what one writes, the other finds by every index."""
    first, second = engine.credentials(), engine.credentials()
    spki = tools.spki_der(pki.device_key.public_key())
    first.put_device(DeviceCredentials.for_psk("a", b"id-a", KEY))
    second.put_device(DeviceCredentials.for_rpk("b", spki))
    assert second.device_by_psk_identity(b"id-a") == first.get_device("a")
    assert first.device_by_rpk(spki) == second.get_device("b")
    with pytest.raises(CredentialError, match="already belongs to endpoint 'a'"):
        second.put_device(DeviceCredentials.for_psk("c", b"id-a", KEY))
    first.remove_device("a")
    second.put_device(DeviceCredentials.for_psk("c", b"id-a", KEY))  # free again
    assert first.device_by_psk_identity(b"id-a") == DeviceCredentials.for_psk("c", b"id-a", KEY)


def test_an_identity_moves_between_endpoints_in_one_batch(store: CredentialStore) -> None:
    """Within one import a device may take over an identity another gives up."""
    store.put_device(DeviceCredentials.for_psk("old", b"shared", KEY))
    with store.batch():
        store.put_device(DeviceCredentials.for_psk("old", b"other", KEY))
        store.put_device(DeviceCredentials.for_psk("new", b"shared", KEY))
        assert store.device_by_psk_identity(b"shared") == store.get_device("new")
    assert store.device_by_psk_identity(b"shared") == store.get_device("new")
    assert store.device_by_psk_identity(b"other") == store.get_device("old")


def redis_indexes(url: str, prefix: str = "test") -> dict[str, dict[str, str]]:
    import redis

    with redis.Redis.from_url(url, decode_responses=True) as client:
        return {
            kind: client.hgetall(f"{{{prefix}:cred}}:{kind}") for kind in ("psk", "rpk", "cert")
        }


def test_redis_indexes_follow_replace_and_remove(redis_url: str, pki: Pki) -> None:
    """No index entry outlives the identity it points to (a stale one would let an old PSK
    identity find a device that no longer has it)."""
    from keystore.store.redis_credentials import RedisCredentialStore

    spki = tools.spki_der(pki.device_key.public_key())
    cert = pki.self_signed("c")
    with RedisCredentialStore.open(redis_url, prefix="test") as store:
        store.put_device(DeviceCredentials.for_psk("a", b"one", KEY))
        store.put_device(DeviceCredentials.for_rpk("b", spki))
        store.put_device(DeviceCredentials.for_x509("c", cert))
        cert_sha = fingerprint(certificate_der(cert))
        assert redis_indexes(redis_url) == {
            "psk": {b"one".hex(): "a"},
            "rpk": {spki.hex(): "b"},
            "cert": {cert_sha: "c"},
        }
        store.put_device(DeviceCredentials.for_psk("a", b"two", KEY))  # replaced identity
        store.put_device(DeviceCredentials.for_nosec("b"))  # the key is gone
        store.remove_device("c")
        assert redis_indexes(redis_url) == {"psk": {b"two".hex(): "a"}, "rpk": {}, "cert": {}}
        assert store.device_by_psk_identity(b"one") is None
        assert store.device_by_rpk(spki) is None
        assert store.device_by_certificate(certificate_der(cert)) is None


def test_redis_batch_that_lost_a_race_writes_nothing(redis_url: str) -> None:
    """A batch checks identities as it goes; if another process takes one before the batch
    is sent, the whole batch is refused with the usual error, and nothing of it is stored."""
    from keystore.store.redis_credentials import RedisCredentialStore

    with (
        RedisCredentialStore.open(redis_url, prefix="test") as first,
        RedisCredentialStore.open(redis_url, prefix="test") as second,
    ):
        refused = pytest.raises(CredentialError, match="already belongs to endpoint 'winner'")
        with refused, first.batch():
            first.put_device(DeviceCredentials.for_nosec("unrelated"))
            first.put_device(DeviceCredentials.for_psk("loser", b"race", KEY))
            second.put_device(DeviceCredentials.for_psk("winner", b"race", KEY))
        assert [d.endpoint for d in second.devices()] == ["winner"]
        assert redis_indexes(redis_url)["psk"] == {b"race".hex(): "winner"}


def test_redis_errors_name_the_url_without_its_password() -> None:
    from keystore.store.redis_credentials import RedisCredentialStore

    port = _closed_port()
    with pytest.raises(StoreError) as info:
        RedisCredentialStore.open(f"redis://user:s3cret@127.0.0.1:{port}/0")
    text = str(info.value)
    assert f"redis://user:***@127.0.0.1:{port}/0" in text and "cannot connect" in text
    assert "s3cret" not in text


def test_redis_corrupt_record_is_a_store_error_without_the_secret(redis_url: str) -> None:
    import redis

    from keystore.store.redis_credentials import RedisCredentialStore

    with RedisCredentialStore.open(redis_url, prefix="test") as store:
        store.put_device(DeviceCredentials.for_psk("a", b"id", KEY))
        with redis.Redis.from_url(redis_url) as client:
            client.hset("{test:cred}:dev", "a", '{"mode": 1, "psk_key": "' + KEY.hex() + '"}')
        with pytest.raises(StoreError, match=r"corrupt credentials of 'a'") as info:
            store.get_device("a")
        assert KEY.hex() not in str(info.value) and redis_url in str(info.value)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("endpoint", ["capteur-é-😀", "a{b}c", "}", "%7B"])
def test_any_endpoint_name_and_binary_identity(store: CredentialStore, endpoint: str) -> None:
    """Names that are not plain ASCII, or that look like Redis hash tags, round-trip."""
    identity = b"\x00\xff{}" + endpoint.encode()
    device = DeviceCredentials.for_psk(endpoint, identity, KEY)
    store.put_device(device)
    assert store.get_device(endpoint) == device
    assert store.device_by_psk_identity(identity) == device
    assert [d.endpoint for d in store.devices()] == [endpoint]
    assert (
        store.remove_device(endpoint) == device and store.device_by_psk_identity(identity) is None
    )

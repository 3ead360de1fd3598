"""The NoSec check of every Register and Update, written out in ``Resolver.resolve`` (the
endpoint's rules inline, one record lookup, the ``Resolution`` built directly), the cache's
lookup that skips its validation while nothing can have changed (``WriteCounter``), and the
NoSec peer identities kept per source (``PeerIdentity.nosec``): each answers exactly as the
general path does, and every refusal still comes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.credential_cache import CachedCredentials, CountsLocalWrites
from keystore.credentials import CredentialError, DeviceCredentials, check_endpoint
from keystore.modes import SecurityMode
from keystore.resolver import IdentityRefused, PeerIdentity, Resolution, Resolver
from keystore.store.credentials import SqliteCredentialStore
from object_models.errors import ResponseCode

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
NOSEC = PeerIdentity.nosec(("192.0.2.1", 5683))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteCredentialStore]:
    keys = SqliteCredentialStore.open(tmp_path / "keys.db")
    yield keys
    keys.close()


def expected(endpoint: str, record: DeviceCredentials | None, open_registration: bool) -> object:
    """What docs/security.md's table says a NoSec peer claiming ``endpoint`` gets."""
    try:
        check_endpoint(endpoint, "ep")
    except CredentialError:
        return ResponseCode.BAD_REQUEST
    if record is None:
        if open_registration:
            return Resolution(endpoint, SecurityMode.NOSEC, None, True)
        return ResponseCode.UNAUTHORIZED
    if not record.active:
        return ResponseCode.UNAUTHORIZED
    if record.mode is not SecurityMode.NOSEC:
        return ResponseCode.FORBIDDEN
    return Resolution(endpoint, SecurityMode.NOSEC, None, False)


def outcome(resolver: Resolver, endpoint: str) -> object:
    try:
        resolution = resolver.resolve(NOSEC, endpoint)
    except IdentityRefused as exc:
        return exc.code
    assert type(resolution) is Resolution
    return resolution


RECORDS = st.sampled_from(["none", "nosec", "inactive", "psk"])


@settings(max_examples=100, deadline=None)
@given(
    endpoint=st.one_of(
        st.text(max_size=8),
        st.text(alphabet="ab\x00\n\u2028 é", max_size=4),
        st.integers(250, 260).map(lambda n: "e" * n),
    ),
    kind=RECORDS,
    open_registration=st.booleans(),
)
def test_the_nosec_answer_is_the_table_s_for_any_endpoint_and_record(
    tmp_path_factory: pytest.TempPathFactory, endpoint: str, kind: str, open_registration: bool
) -> None:
    """The inline endpoint rules accept exactly what ``check_endpoint`` accepts, and the
    record decides as the full path does (accepted, 4.00, 4.01 or 4.03)."""
    keys = SqliteCredentialStore.open(tmp_path_factory.mktemp("k") / "keys.db")
    try:
        record = None
        valid = expected(endpoint, None, True) != ResponseCode.BAD_REQUEST
        if kind != "none" and valid:
            record = {
                "nosec": DeviceCredentials.for_nosec(endpoint),
                "inactive": DeviceCredentials.for_nosec(endpoint, active=False),
                "psk": DeviceCredentials.for_psk(endpoint, "the-id", KEY),
            }[kind]
            keys.put_device(record)
        resolver = Resolver(keys, open_registration=open_registration)
        assert outcome(resolver, endpoint) == expected(endpoint, record, open_registration)
        assert outcome(resolver, endpoint) == expected(endpoint, record, open_registration)
    finally:
        keys.close()


async def test_within_one_iteration_each_write_of_this_process_decides_the_next_check(
    store: SqliteCredentialStore,
) -> None:
    """With a running loop the version is read once per iteration and the lookups that follow
    read only the write counter: a device added, secured, deactivated or removed through this
    connection (by any credential store over it) decides the very next NoSec check."""
    resolver = Resolver(store, open_registration=False)
    cache = resolver.store
    assert isinstance(cache, CachedCredentials)
    assert outcome(resolver, "dev") == ResponseCode.UNAUTHORIZED
    reads = cache.version_reads
    store.put_device(DeviceCredentials.for_nosec("dev"))
    assert outcome(resolver, "dev") == Resolution("dev", SecurityMode.NOSEC, None, False)
    hits = cache.hits
    assert outcome(resolver, "dev") == Resolution("dev", SecurityMode.NOSEC, None, False)
    assert cache.hits == hits + 1  # no read: the record was kept
    store.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    assert outcome(resolver, "dev") == ResponseCode.FORBIDDEN
    SqliteCredentialStore(store.store).put_device(DeviceCredentials.for_nosec("dev", active=False))
    assert outcome(resolver, "dev") == ResponseCode.UNAUTHORIZED
    store.remove_device("dev")
    assert outcome(resolver, "dev") == ResponseCode.UNAUTHORIZED
    assert cache.version_reads == reads  # all in the iteration whose first lookup read it
    await asyncio.sleep(0)
    store.put_device(DeviceCredentials.for_nosec("dev"))
    assert outcome(resolver, "dev") == Resolution("dev", SecurityMode.NOSEC, None, False)


def test_credential_stores_over_one_connection_share_one_write_counter(
    store: SqliteCredentialStore,
) -> None:
    same = SqliteCredentialStore(store.store)
    assert isinstance(store, CountsLocalWrites)
    assert same.local_write_counter() is store.local_write_counter()
    before = store.local_writes()
    same.put_device(DeviceCredentials.for_nosec("dev"))
    assert store.local_writes() == store.local_write_counter().writes > before


class _NoCounter:
    """A versioned store that does not hand out its write counter (as the Redis one)."""

    def __init__(self, inner: SqliteCredentialStore) -> None:
        self.inner = inner
        self.get_device = inner.get_device
        self.device_by_psk_identity = inner.device_by_psk_identity
        self.device_by_rpk = inner.device_by_rpk
        self.device_by_certificate = inner.device_by_certificate
        self.devices = inner.devices
        self.trusted_cas = inner.trusted_cas
        self.local_writes = inner.local_writes
        self.data_version = inner.data_version


async def test_a_store_without_a_write_counter_is_validated_on_every_lookup(
    store: SqliteCredentialStore,
) -> None:
    wrapped = _NoCounter(store)
    assert not isinstance(wrapped, CountsLocalWrites)
    resolver = Resolver(wrapped, open_registration=True)
    assert isinstance(resolver.store, CachedCredentials)
    auto = Resolution("dev", SecurityMode.NOSEC, None, True)
    assert outcome(resolver, "dev") == auto
    store.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    assert outcome(resolver, "dev") == ResponseCode.FORBIDDEN
    store.remove_device("dev")
    assert outcome(resolver, "dev") == auto


def test_an_unkept_endpoint_is_read_once_and_then_kept(store: SqliteCredentialStore) -> None:
    """A lookup of an endpoint the cache does not hold (no list of endpoints yet) reads the
    keystore and keeps the answer, "no record" included."""
    store.put_device(DeviceCredentials.for_nosec("dev"))
    cache = CachedCredentials(store)
    cache._listing_rows = 10**9  # never listed: each endpoint is read
    assert cache.get_device("dev") == DeviceCredentials.for_nosec("dev")
    assert cache.get_device("nobody") is None
    misses = cache.misses
    assert cache.get_device("dev") == DeviceCredentials.for_nosec("dev")
    assert cache.get_device("nobody") is None
    assert cache.misses == misses


def test_a_nosec_identity_equals_the_checked_one() -> None:
    source = ("198.51.100.7", 40000)
    assert PeerIdentity.nosec(source) == PeerIdentity("coap", SecurityMode.NOSEC, source=source)
    assert PeerIdentity.nosec().source is None
    assert PeerIdentity.nosec() == PeerIdentity("coap", SecurityMode.NOSEC)

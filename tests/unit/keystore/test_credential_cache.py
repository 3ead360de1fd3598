"""The resolver's record cache (``keystore.credential_cache``): a credential added, changed or
removed — by this process or by another connection to the file (``lwm2m-keystore``, the
bootstrap server) — decides the very next request; and while nothing changes, repeated requests
of one loop iteration do not read the keystore again (what makes it worth having)."""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.credential_cache import ROWS_PER_READ, CachedCredentials
from keystore.credentials import DeviceCredentials
from keystore.resolver import IdentityRefused, PeerIdentity, Resolver
from keystore.store.credentials import SqliteCredentialStore
from object_models.errors import ResponseCode
from tests.store_engines import Engine

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
NOSEC = PeerIdentity.nosec(("192.0.2.1", 5683))


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[SqliteCredentialStore, SqliteCredentialStore]]:
    """The server's store and another process's (another connection to the same file)."""
    server = SqliteCredentialStore.open(tmp_path / "keys.db")
    other = SqliteCredentialStore.open(tmp_path / "keys.db")
    yield server, other
    other.close()
    server.close()


def outcome(resolver: Resolver, peer: PeerIdentity, endpoint: str) -> ResponseCode | str:
    try:
        return resolver.resolve(peer, endpoint).endpoint
    except IdentityRefused as exc:
        return exc.code


def selects(store: SqliteCredentialStore) -> list[str]:
    """Record the device-record SELECTs the store's connection runs."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        if "FROM credential_devices" in sql and sql.lstrip().upper().startswith("SELECT"):
            seen.append(sql)

    store.store.conn.set_trace_callback(trace)
    return seen


def test_a_sqlite_keystore_is_cached(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    server, _ = files
    assert isinstance(Resolver(server, open_registration=True).store, CachedCredentials)


async def test_another_connection_adding_and_removing_credentials_decides_the_next_request(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    """NoSec Updates of ``dev`` in successive loop iterations while another process gives it
    PSK credentials, deactivates it, removes it: each request sees the keystore as it is."""
    server, other = files
    resolver = Resolver(server, open_registration=False)
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.UNAUTHORIZED  # unknown, closed
    await asyncio.sleep(0)
    other.put_device(DeviceCredentials.for_nosec("dev"))
    assert outcome(resolver, NOSEC, "dev") == "dev"
    assert outcome(resolver, NOSEC, "dev") == "dev"
    await asyncio.sleep(0)
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.FORBIDDEN  # must use DTLS now
    assert resolver.psk_lookup(b"dev-id") == KEY
    await asyncio.sleep(0)
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY, active=False))
    assert outcome(resolver, PeerIdentity.psk(b"dev-id"), "dev") == ResponseCode.UNAUTHORIZED
    assert resolver.psk_lookup(b"dev-id") is None
    await asyncio.sleep(0)
    other.remove_device("dev")
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.UNAUTHORIZED
    assert resolver.psk_lookup(b"dev-id") is None


def test_without_a_loop_every_lookup_sees_other_connections(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    server, other = files
    resolver = Resolver(server, open_registration=True)
    assert outcome(resolver, NOSEC, "dev") == "dev"  # open registration, no record
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.FORBIDDEN
    other.remove_device("dev")
    assert outcome(resolver, NOSEC, "dev") == "dev"


async def test_a_write_through_this_connection_is_seen_within_the_same_iteration(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore], tmp_path: Path
) -> None:
    """The HTTP API writes through the server's own connection (``PRAGMA data_version`` does not
    move for those): the next lookup, even in the same loop iteration, sees the write — also
    when the write went through another credential store object over the same connection."""
    server, _ = files
    resolver = Resolver(server, open_registration=True)
    assert outcome(resolver, NOSEC, "dev") == "dev"
    server.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.FORBIDDEN
    same_connection = SqliteCredentialStore(server.store)
    same_connection.remove_device("dev")
    assert outcome(resolver, NOSEC, "dev") == "dev"


async def test_repeated_requests_in_one_iteration_read_the_keystore_once(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    server, _ = files
    server.put_device(DeviceCredentials.for_nosec("dev"))
    resolver = Resolver(server, open_registration=False)
    seen = selects(server)
    for _ in range(5):
        assert outcome(resolver, NOSEC, "dev") == "dev"
        assert outcome(resolver, NOSEC, "stranger") == ResponseCode.UNAUTHORIZED
    assert len(seen) == 2  # dev's record, and the endpoints with one (none for stranger)
    await asyncio.sleep(0)
    assert outcome(resolver, NOSEC, "dev") == "dev"  # nothing changed: still cached
    assert len(seen) == 2


def test_the_cache_is_bounded(files: tuple[SqliteCredentialStore, SqliteCredentialStore]) -> None:
    server, _ = files
    cache = CachedCredentials(server, max_entries=3)
    for i in range(10):
        assert cache.get_device(f"dev{i}") is None
    assert cache._size <= 3


# -- every engine: another process's writes (sqlite: another connection; Redis: another node) ----


class Reads:
    """Counts the device-record reads a store makes (whatever its engine): lookups, and
    listings of the endpoints that have a record."""

    def __init__(self, store: Any) -> None:
        self.count = 0
        for name in ("get_device", "device_by_psk_identity", "device_endpoints"):
            original = getattr(store, name)

            def counted(*args: Any, _original: Any = original) -> Any:
                self.count += 1
                return _original(*args)

            setattr(store, name, counted)


async def test_on_every_engine_another_process_revoking_a_device_decides_its_next_request(
    engine: Engine,
) -> None:
    """Node B (another store object on the same data: another process, another host) gives a
    NoSec device PSK credentials, then deactivates them: node A's resolver, whose cache holds
    the device, refuses it from its next loop iteration on (4.03, then 4.01 for the PSK peer)
    — on Redis through the version counter the credential script moves in the same step."""
    node_a, node_b = engine.credentials(), engine.credentials()
    node_b.put_device(DeviceCredentials.for_nosec("dev"))
    resolver = Resolver(node_a, open_registration=False)
    assert isinstance(resolver.store, CachedCredentials)
    assert outcome(resolver, NOSEC, "dev") == "dev"
    await asyncio.sleep(0)
    assert outcome(resolver, NOSEC, "dev") == "dev"  # cached
    node_b.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    await asyncio.sleep(0)
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.FORBIDDEN
    assert resolver.psk_lookup(b"dev-id") == KEY
    node_b.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY, active=False))
    await asyncio.sleep(0)
    assert outcome(resolver, PeerIdentity.psk(b"dev-id"), "dev") == ResponseCode.UNAUTHORIZED
    assert resolver.psk_lookup(b"dev-id") is None
    node_b.remove_device("dev")
    await asyncio.sleep(0)
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.UNAUTHORIZED


async def test_on_every_engine_an_unchanged_keystore_is_read_once_per_device(
    engine: Engine,
) -> None:
    """What the cache is for: Updates of the same devices in later loop iterations read no
    record again while nobody writes (on Redis: no HGET per Update, one version GET per
    iteration); a write by this process is seen within the same iteration."""
    store = engine.credentials()
    store.put_device(DeviceCredentials.for_nosec("dev"))
    resolver = Resolver(store, open_registration=False)
    reads = Reads(store)
    for _ in range(3):
        assert outcome(resolver, NOSEC, "dev") == "dev"
        assert outcome(resolver, NOSEC, "stranger") == ResponseCode.UNAUTHORIZED
        await asyncio.sleep(0)
    assert reads.count == 2  # the record of dev, and the list that says stranger has none
    store.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    assert outcome(resolver, NOSEC, "dev") == ResponseCode.FORBIDDEN  # same iteration


def test_a_flushed_redis_never_repeats_a_version(redis_url: str) -> None:
    """The version starts from Redis's clock: after a FLUSHALL (a new Redis behind the same
    URL) the counter does not come back to a value a node's cache remembers."""
    from keystore.store.redis_credentials import RedisCredentialStore

    with RedisCredentialStore.open(redis_url, prefix="flush") as store:
        first = store.data_version()
        store.put_device(DeviceCredentials.for_nosec("dev"))
        second = store.data_version()
        assert first >= 0 and second == first + 1
        store.database.client.flushall()
        assert store.data_version() not in (first, second)


# -- the list of endpoints that have a record ("no record" without a read per new endpoint) -----


async def test_on_every_engine_a_credential_added_after_the_list_was_read_is_enforced_at_once(
    engine: Engine,
) -> None:
    """Open NoSec registration, no device records: the cache lists the (no) endpoints with a
    record at the first Register and answers later new endpoints from that list. A device
    given credentials afterwards — by another process (node B) or through this process — is
    refused over NoSec at its very next Register (4.03), although the list said "no record"
    for it a moment before; removed again, it gets in."""
    node_a, node_b = engine.credentials(), engine.credentials()
    resolver = Resolver(node_a, open_registration=True)
    cache = resolver.store
    assert isinstance(cache, CachedCredentials)
    assert outcome(resolver, NOSEC, "first") == "first"
    assert cache.listings == 1
    reads = Reads(node_a)
    for i in range(20):  # new endpoints: answered from the list, no read each
        assert outcome(resolver, NOSEC, f"new-{i}") == f"new-{i}"
    assert outcome(resolver, NOSEC, "late") == "late"
    assert reads.count == 0
    await asyncio.sleep(0)

    node_b.put_device(DeviceCredentials.for_psk("late", "late-id", KEY))
    node_b.put_device(DeviceCredentials.for_psk("never-seen", "never-seen-id", KEY))
    await asyncio.sleep(0)  # node A's next loop iteration
    assert outcome(resolver, NOSEC, "late") == ResponseCode.FORBIDDEN
    assert outcome(resolver, NOSEC, "never-seen") == ResponseCode.FORBIDDEN
    assert outcome(resolver, NOSEC, "still-new") == "still-new"

    node_a.put_device(DeviceCredentials.for_psk("here", "here-id", KEY))  # the API, this process
    assert outcome(resolver, NOSEC, "here") == ResponseCode.FORBIDDEN  # same iteration

    node_b.remove_device("late")
    await asyncio.sleep(0)
    assert outcome(resolver, NOSEC, "late") == "late"
    assert outcome(resolver, NOSEC, "never-seen") == ResponseCode.FORBIDDEN


async def test_new_endpoints_of_a_keystore_without_them_cost_no_select_each(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    """What the list is for: 500 first Registers of a NoSec fleet (open registration, a
    keystore that holds other devices) read the keystore once, not once per device; the
    devices that have records are still read (and decided) by their records."""
    server, _ = files
    server.put_device(DeviceCredentials.for_psk("dtls-dev", "dtls-id", KEY))
    server.put_device(DeviceCredentials.for_nosec("known", active=False))
    resolver = Resolver(server, open_registration=True)
    seen = selects(server)
    for i in range(500):
        assert outcome(resolver, NOSEC, f"fleet-{i:04d}") == f"fleet-{i:04d}"
    assert len(seen) == 1 and "LIMIT" in seen[0]
    assert outcome(resolver, NOSEC, "dtls-dev") == ResponseCode.FORBIDDEN
    assert outcome(resolver, NOSEC, "known") == ResponseCode.UNAUTHORIZED  # deactivated
    assert len(seen) == 3


def test_a_large_keystore_is_listed_only_once_the_reads_paid_for_it(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    """Listing a keystore with many records costs more than a few reads: the cache reads the
    list only when the single reads it has made since the keystore last changed, times
    ``ROWS_PER_READ``, reach the list's size (and tries a cut-off listing, doubling the
    budget, while it does not know the size). So a few new endpoints after a change cost a
    read each; many cost a bounded number of listings, then nothing."""
    server, other = files
    with other.batch():
        for i in range(200):
            other.put_device(DeviceCredentials.for_nosec(f"rec-{i:03d}"))
    cache = CachedCredentials(server)
    listed: list[int] = []
    original = server.device_endpoints

    def counted(limit: int) -> frozenset[str] | None:
        found = original(limit)
        listed.append(min(limit + 1, 200) if found is None else len(found))
        return found

    server.device_endpoints = counted  # type: ignore[method-assign]
    reads = Reads(server)  # wraps the (counted) listing too
    for i in range(2 * 200 // ROWS_PER_READ + 1):
        assert cache.get_device(f"new-{i}") is None
    assert cache._listed is not None and len(cache._listed) == 200
    lookups = reads.count - len(listed)
    # cut-off listings with a doubling budget: a logarithmic number of them, whose rows
    # cost no more than the single reads made meanwhile (plus the one full listing)
    assert len(listed) <= 2 + math.log2(200 / ROWS_PER_READ)
    assert sum(listed) <= 2 * ROWS_PER_READ * lookups + 200
    before = reads.count
    for i in range(100):
        assert cache.get_device(f"more-{i}") is None
    assert cache.get_device("rec-007") == DeviceCredentials.for_nosec("rec-007")
    assert reads.count == before + 1  # the record itself; the new endpoints: no read

    other.put_device(DeviceCredentials.for_nosec("rec-200"))  # the keystore changed: forget
    assert cache.get_device("rec-200") == DeviceCredentials.for_nosec("rec-200")
    assert cache._listed is None  # a few reads do not pay for listing 201 records again


def test_the_cache_is_bounded_with_records_too(
    files: tuple[SqliteCredentialStore, SqliteCredentialStore],
) -> None:
    server, _ = files
    with server.batch():
        for i in range(10):
            server.put_device(DeviceCredentials.for_nosec(f"dev{i}"))
    cache = CachedCredentials(server, max_entries=3)
    for i in range(10):
        assert cache.get_device(f"dev{i}") == DeviceCredentials.for_nosec(f"dev{i}")
        assert cache.get_device(f"other{i}") is None
    assert cache._size <= 3


class Operation:
    """One step of the model test below (drawn by Hypothesis)."""

    def __init__(self, kind: str, endpoint: str, mode: int) -> None:
        self.kind, self.endpoint, self.mode = kind, endpoint, mode

    def __repr__(self) -> str:
        return f"{self.kind}({self.endpoint!r}, {self.mode})"


ENDPOINTS = [f"ep{i}" for i in range(12)]


@settings(max_examples=60)
@given(
    operations=st.lists(
        st.builds(
            Operation,
            st.sampled_from(["put-here", "put-other", "remove-here", "remove-other", "look"]),
            st.sampled_from(ENDPOINTS),
            st.integers(0, 2),
        ),
        max_size=80,
    ),
    preloaded=st.integers(0, 40),
)
def test_the_cache_answers_as_the_keystore_whatever_writes_come(
    operations: list[Operation], preloaded: int
) -> None:
    """A model check of exactness: writes through this connection or another one, in any
    order with lookups, and every cached answer (record or no record, listed or read) is what
    the keystore says at that moment (no loop: ``data_version`` is read at every lookup, as
    the first lookup of each loop iteration reads it)."""
    with tempfile.TemporaryDirectory() as folder:
        here = SqliteCredentialStore.open(Path(folder) / "keys.db")
        other = SqliteCredentialStore.open(Path(folder) / "keys.db")
        try:
            with other.batch():
                for i in range(preloaded):
                    other.put_device(DeviceCredentials.for_nosec(f"pre{i}"))
            cache = CachedCredentials(here)
            for op in operations:
                store = here if op.kind.endswith("here") else other
                if op.kind.startswith("put"):
                    device = (
                        DeviceCredentials.for_nosec(op.endpoint, active=op.mode != 1)
                        if op.mode < 2
                        else DeviceCredentials.for_psk(op.endpoint, f"{op.endpoint}-id", KEY)
                    )
                    store.put_device(device)
                elif op.kind.startswith("remove"):
                    store.remove_device(op.endpoint)
                for endpoint in (op.endpoint, *ENDPOINTS[:3], "pre0"):
                    assert cache.get_device(endpoint) == other.get_device(endpoint), op
        finally:
            other.close()
            here.close()

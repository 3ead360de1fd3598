"""The resolver's record cache (``keystore.credential_cache``): a credential added, changed or
removed — by this process or by another connection to the file (``lwm2m-keystore``, the
bootstrap server) — decides the very next request; and while nothing changes, repeated requests
of one loop iteration do not read the keystore again (what makes it worth having)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keystore.credential_cache import CachedCredentials
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
    assert len(seen) == 2  # one per endpoint: the record, and "no record"
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
    """Counts the device-record reads a store makes (whatever its engine)."""

    def __init__(self, store: Any) -> None:
        self.count = 0
        for name in ("get_device", "device_by_psk_identity"):
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
    assert reads.count == 2
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

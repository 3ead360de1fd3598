"""The Redis key layout (docs/cluster.md): every set of keys that one Lua script or MULTI/EXEC
changes together is in one Redis Cluster slot (else a cluster refuses it with CROSSSLOT), and
the prefix keeps deployments apart. Pure: no Redis needed (the client connects lazily)."""

from __future__ import annotations

import pytest

from keystore.store.redis_credentials import RedisCredentialStore
from keystore.store.redis_database import RedisDatabase
from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore
from keystore.store.redis_profiles import RedisProfileStore

redis_crc = pytest.importorskip("redis.crc", reason="redis-py is not installed")


def slots(keys: list[str]) -> set[int]:
    return {redis_crc.key_slot(key.encode()) for key in keys}


@pytest.fixture
def db() -> RedisDatabase:
    return RedisDatabase("redis://127.0.0.1:1/0", prefix="site-a")


def test_group_keys_share_a_slot(db: RedisDatabase) -> None:
    credentials = RedisCredentialStore(db)
    assert len(slots(credentials._keys)) == 1
    assert credentials._keys[0] == "{site-a:cred}:dev"
    sessions = RedisDtlsSessionStore(db, migrate=False)
    assert len(slots(sessions._index_keys)) == 1  # ids, addr, cid: changed by one script
    assert len(slots(sessions._old_keys)) == 1  # the one-slot layout it migrates from
    profiles = RedisProfileStore(db)
    assert len(slots([profiles._docs, profiles._assign])) == 1


@pytest.mark.parametrize("endpoint", ["dev-1", "a{b}c", "}", "{", "", "é"])
def test_endpoint_keys_share_the_endpoint_slot(db: RedisDatabase, endpoint: str) -> None:
    keys = [db.endpoint_key(kind, endpoint) for kind in ("attr", "attrts", "pstatus", "bs:disc")]
    assert len(slots(keys)) == 1
    assert all(key.startswith("site-a:") for key in keys)


def test_endpoints_spread_over_slots(db: RedisDatabase) -> None:
    assert len(slots([db.endpoint_key("attr", f"dev-{i}") for i in range(100)])) > 90


def test_dtls_sessions_spread_over_slots(db: RedisDatabase) -> None:
    """Each session's hash is in a slot of its own (its progress writes spread over a
    cluster), apart from the slot of the indexes; an id with braces stays one tag."""
    sessions = RedisDtlsSessionStore(db, migrate=False)
    keys = [sessions.session_key(f"{i:024x}") for i in range(100)]
    assert len(slots(keys)) > 90
    assert slots(sessions._index_keys).isdisjoint(slots(keys))
    assert sessions.session_key("a}b") == "site-a:dtls:{a%7Db}"

"""The DTLS session store, on every engine (``engine``: sqlite and Redis): sessions round-trip,
the reserved write sequence number never moves backwards, damaged rows are skipped without their
content; and the sqlite file holding the session secrets is owner-only."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from keystore.coaps.persistence import SessionProgress, StoredSession
from keystore.dtls import (
    AnonymousIdentity,
    PskIdentity,
    RawPublicKeyIdentity,
    SavedState,
    X509Identity,
)
from keystore.dtls.identity import DtlsIdentity
from keystore.store.database import SqliteDatabase
from keystore.store.dtls_sessions import SqliteDtlsSessionStore
from tests.store_engines import Engine, RedisEngine

SECRET = bytes(range(48))


def state(identity: DtlsIdentity, **changes: object) -> SavedState:
    values: dict[str, object] = {
        "is_client": False,
        "cipher_suite": 0xC0A8,
        "master_secret": SECRET,
        "client_random": b"c" * 32,
        "server_random": b"s" * 32,
        "session_id": b"i" * 32,
        "extended_master_secret": True,
        "encrypt_then_mac": False,
        "peer_identity": identity,
        "own_cid": b"\x01\x02\x03\x04\x05\x06",
        "peer_cid": b"",
        "write_seq": 1025,
        "read_top": 7,
        "read_bitmap": (1 << 64) - 1,  # all 64 bits: beyond a signed sqlite integer
    }
    values.update(changes)
    return SavedState(**values)  # type: ignore[arg-type]


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteDatabase:
    store = SqliteDatabase(tmp_path / "server.sqlite")
    yield store  # type: ignore[misc]
    store.close()


IDENTITIES: list[DtlsIdentity] = [
    PskIdentity(b"\x00binary\xff"),
    RawPublicKeyIdentity(b"\x30\x59" + b"k" * 89),
    X509Identity((b"leaf-der", b"ca-der")),
    AnonymousIdentity(),
]


def test_round_trip(engine: Engine) -> None:
    store = engine.dtls_sessions()
    rows = [
        StoredSession(f"id{i}", "127.0.0.1", 5000 + i, state(ident, own_cid=None), 100.0 + i)
        for i, ident in enumerate(IDENTITIES)
    ]
    store.save_dtls_sessions(rows, [], [])
    assert store.load_dtls_sessions() == rows
    # a second handle on the same store (the restarted server, another node) sees the same
    assert engine.dtls_sessions().load_dtls_sessions() == rows


def test_progress_and_removal(engine: Engine) -> None:
    store = engine.dtls_sessions()
    a = StoredSession("a", "192.0.2.1", 1000, state(IDENTITIES[0]), 1.0)
    b = StoredSession("b", "192.0.2.2", 2000, state(IDENTITIES[1]), 1.0)
    store.save_dtls_sessions([a, b], [], [])
    store.save_dtls_sessions(
        [], [SessionProgress("a", "198.51.100.9", 3000, 5000, 40, 0b1011, 2.0)], ["b"]
    )
    (loaded,) = store.load_dtls_sessions()
    assert (loaded.id, loaded.host, loaded.port, loaded.saved_at) == (
        "a",
        "198.51.100.9",
        3000,
        2.0,
    )
    assert (loaded.state.write_seq, loaded.state.read_top, loaded.state.read_bitmap) == (
        5000,
        40,
        0b1011,
    )
    assert loaded.state.master_secret == SECRET
    # a reservation is never lowered, whatever the caller sends
    store.save_dtls_sessions([], [SessionProgress("a", "198.51.100.9", 3000, 10, 41, 1, 3.0)], [])
    assert store.load_dtls_sessions()[0].state.write_seq == 5000
    # progress of a session that is gone (removed by another process) recreates nothing
    store.save_dtls_sessions([], [SessionProgress("b", "192.0.2.2", 2000, 1, 1, 1, 4.0)], [])
    assert [s.id for s in store.load_dtls_sessions()] == ["a"]
    store.remove_dtls_sessions(["a"])
    assert store.load_dtls_sessions() == [] and store.count() == 0  # type: ignore[attr-defined]


def test_damaged_row_is_skipped_without_its_content(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store = engine.dtls_sessions()
    good = StoredSession("good", "192.0.2.1", 1000, state(IDENTITIES[0]), 1.0)
    store.save_dtls_sessions([good], [], [])
    damaged = '{"master_secret": "00112233"}'
    if isinstance(engine, RedisEngine):
        database = engine.database()
        key = store.session_key("bad")  # type: ignore[attr-defined]
        database.client.hset(key, mapping={"state": damaged, "seq": "1", "window": "h|1|0|0|0.5"})
        database.client.hset(database.group_key("dtls", "ids"), "bad", "{}")
    else:
        sqlite = SqliteDatabase(engine.path)  # type: ignore[attr-defined]
        with sqlite.batch():
            sqlite.conn.execute(
                "INSERT INTO dtls_sessions VALUES('bad', 'h', 1, ?, 1, 0, '0', 0.5)", (damaged,)
            )
        sqlite.close()
    with caplog.at_level(logging.ERROR):
        assert store.load_dtls_sessions() == [good]
    assert "bad" in caplog.text and "00112233" not in caplog.text


def test_file_is_owner_only(sqlite: SqliteDatabase) -> None:
    sqlite.path.chmod(0o644)
    SqliteDtlsSessionStore(sqlite)
    assert stat.S_IMODE(sqlite.path.stat().st_mode) == 0o600


def test_redis_going_away_is_a_store_error_naming_it(redis_server: object, tmp_path: Path) -> None:
    """A save that Redis cannot take raises (the endpoint then sends nothing that depended on
    it) with the URL and what failed; nothing of the sessions' secrets in the message."""
    from keystore.store.errors import StoreError
    from keystore.store.redis_database import RedisDatabase
    from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore
    from tests.redis_fixture import RedisServer

    own = RedisServer(tmp_path)
    own.start()
    try:
        store = RedisDtlsSessionStore(RedisDatabase(own.url, prefix="t"))
        session = StoredSession("a", "192.0.2.1", 1000, state(IDENTITIES[0]), 1.0)
        store.save_dtls_sessions([session], [], [])
    finally:
        own.stop()
    with pytest.raises(StoreError) as info:
        store.save_dtls_sessions([], [SessionProgress("a", "192.0.2.1", 1000, 2048, 9, 1, 2.0)], [])
    text = str(info.value)
    assert own.url in text and "cannot save DTLS sessions" in text
    assert SECRET.hex() not in text

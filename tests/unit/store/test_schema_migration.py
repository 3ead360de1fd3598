"""A store file written by schema version 1 (registrations as JSON only) opens as version 2:
the touch/lookup columns are filled from each record, so lookups by address and expiry and
the cheap Update work on registrations made before the upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs

from lwm2m_runtime.address import Address
from lwm2m_server.store.sqlite import SCHEMA_VERSION, SqliteStore

from .engines import obs, reg

V2_COLUMNS = ("lifetime", "host", "port", "identity", "expires_at")


def make_v1_file(path: Path) -> None:
    """What version 1 left: the v2 file with the new columns and their indexes dropped."""
    store = SqliteStore(path)
    store.put_registration(reg(1))
    store.put_registration(reg(2, last_update=2000.0, lifetime=50))
    store.put_observation(obs(b"t", reg(1)))
    store.close()
    with sqlite3.connect(path) as conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='registrations' "
            "AND name LIKE 'idx_registrations_%' AND name != 'idx_registrations_endpoint'"
        ).fetchall():
            conn.execute(f"DROP INDEX {name}")
        for column in V2_COLUMNS:
            conn.execute(f"ALTER TABLE registrations DROP COLUMN {column}")
        conn.execute(
            "INSERT INTO registrations(id, endpoint, last_update, data) VALUES('bad', 'b', 0, 'x')"
        )
        conn.execute("UPDATE meta SET value='1' WHERE name='schema'")


def test_a_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    make_v1_file(path)
    store = SqliteStore(path)
    try:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        assert store.get_registration("id1") == reg(1)
        assert store.registrations_by_address(reg(1).address) == [reg(1)]
        assert store.expiring_before(2051.0, 10) == [
            reg(1),
            reg(2, last_update=2000.0, lifetime=50),
        ]
        assert store.observation_by_token(b"t") == obs(b"t", reg(1))
        moved = attrs.evolve(reg(1), last_update=3000.0, address=Address("192.0.2.50", 9))
        assert store.touch_registration(moved)
        assert store.get_registration("id1") == moved
        # the unreadable row stays for the reader, which quarantines it
        assert store.get_registration("bad") is None
        assert store.quarantined() == 1
    finally:
        store.close()
    reopened = SqliteStore(path)  # version 2 now: opens as is
    assert reopened.get_registration("id1") == moved
    reopened.close()

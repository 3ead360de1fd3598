"""Schema 5: a registration's two times (``last_update``, ``expires_at``) live in the narrow
``registration_times`` table, so a keep-alive Update writes a small row (issue 10: sparse
Updates at 100k clients dirtied a page of wide rows each). A version-4 file, its times in the
rows, is migrated in one transaction: opened, every registration reads, expires and is found
as before; a process killed in the middle of the migration leaves the version-4 file as it
was, and the next open migrates it. The Register's two statements are whole or not at all."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.store.sqlite import SCHEMA_VERSION, SqliteStore

from .engines import obs, reg
from .legacy import to_v4_layout

PSK = IdentityBinding("psk", "dev-1")


def columns(store: SqliteStore, table: str) -> set[str]:
    return {str(row[1]) for row in store.read(f"PRAGMA table_info({table})")}


def v4_file(path: Path) -> list[object]:
    """A version-4 file of four registrations (one touched by an Update since its record was
    written, one bound to an identity, one with an observation); what each reads as."""
    regs = [
        reg(1),
        reg(2, last_update=2000.0, lifetime=50, identity=PSK),
        reg(3, last_update=1500.0),
        reg(4, lifetime=86400),
    ]
    with SqliteStore(path) as store:
        for r in regs:
            store.put_registration(r)
        store.put_observation(obs(b"t", regs[0]))
        touched = attrs.evolve(regs[2], last_update=2500.0, address=Address("192.0.2.9", 7))
        assert store.touch_registration(touched)
    to_v4_layout(path)
    return [regs[0], regs[1], touched, regs[3]]


def times(store: SqliteStore) -> list[tuple[object, ...]]:
    return store.read(
        "SELECT r.id, t.last_update, t.expires_at FROM registration_times AS t "
        "JOIN registrations AS r ON r.rid = t.rid ORDER BY r.id"
    )


def test_a_version_4_file_is_migrated_with_every_registration_intact(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite"
    expected = v4_file(path)
    with SqliteStore(path) as store:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        assert store.read("PRAGMA integrity_check") == [("ok",)]
        assert {"last_update", "expires_at"}.isdisjoint(columns(store, "registrations"))
        assert "rid" in columns(store, "registrations")
        # each row kept its rowid, now the named rid the times are keyed by
        assert store.read("SELECT rid, id FROM registrations ORDER BY rid") == [
            (1, "id1"),
            (2, "id2"),
            (3, "id3"),
            (4, "id4"),
        ]
        assert times(store) == [
            ("id1", 1000.0, 1300.0),
            ("id2", 2000.0, 2050.0),
            ("id3", 2500.0, 2800.0),
            ("id4", 1000.0, 87400.0),
        ]
        assert store.registrations() == [expected[0], expected[3], expected[1], expected[2]]
        for r in expected:
            assert store.get_registration(r.registration_id) == r  # type: ignore[attr-defined]
        assert store.registrations_by_address(Address("192.0.2.9", 7)) == [expected[2]]
        assert store.registrations_by_identity(PSK) == [expected[1]]
        assert store.expiring_before(2800.0, 10) == [expected[0], expected[1]]
        assert store.observation_by_token(b"t") == obs(b"t", reg(1))
        # expiry is claimed by the stored expiry, as before
        assert store.remove_registration("id2", expires_at=2049.0) is None
        assert store.remove_registration("id2", expires_at=2050.0) == expected[1]
        keep_alive = attrs.evolve(reg(1), last_update=3000.0)
        assert store.touch_registration(keep_alive, moved=False)
        assert store.get_registration("id1") == keep_alive
        assert store.quarantined() == 0
    with SqliteStore(path) as reopened:  # the current version now: opens as is
        assert reopened.get_registration("id1") == keep_alive
        assert reopened.read("SELECT count(*) FROM registration_times") == [(3,)]


def test_a_crash_in_the_middle_of_the_migration_leaves_the_version_4_file(
    tmp_path: Path,
) -> None:
    """The process dies (``os._exit``: no rollback, no close) after the migration's statements
    ran and before its commit: the file is the version-4 file it was, readable as such, and
    the next open migrates it."""
    path = tmp_path / "v4.sqlite"
    expected = v4_file(path)
    script = textwrap.dedent(
        f"""
        import os
        from lwm2m_server.store import sqlite

        real = sqlite._migrate_v4

        def crash(conn):
            real(conn)
            assert conn.execute("SELECT count(*) FROM registration_times").fetchone() == (4,)
            os._exit(9)

        sqlite._migrate_v4 = crash
        sqlite.SqliteStore({str(path)!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT value FROM meta WHERE name='schema'").fetchall() == [("4",)]
        assert not conn.execute(
            "SELECT name FROM sqlite_master WHERE name = 'registration_times'"
        ).fetchall()
        assert conn.execute(
            "SELECT id, last_update, expires_at FROM registrations ORDER BY id"
        ).fetchall() == [
            ("id1", 1000.0, 1300.0),
            ("id2", 2000.0, 2050.0),
            ("id3", 2500.0, 2800.0),
            ("id4", 1000.0, 87400.0),
        ]
    conn.close()
    with SqliteStore(path) as store:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        assert sorted(store.registrations(), key=lambda r: r.registration_id) == expected


def test_a_register_whose_times_cannot_be_written_rolls_the_group_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The group Register is two statements without a savepoint, the second (the times) run
    with the group's others at the commit; when it fails, nothing of the iteration is
    committed and ``commit()`` says so, so the driver withholds every reply of it: no
    registration without times, none acknowledged unstored."""
    with SqliteStore(tmp_path / "s.sqlite") as store:
        store.enable_group_commit()
        store.put_registration(reg(1))
        assert store.commit()
        store.conn.execute(
            "CREATE TEMP TRIGGER full BEFORE INSERT ON registration_times WHEN NEW.rid = "
            "(SELECT rid FROM registrations WHERE id = 'id3') "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        store.put_registration(reg(2))  # an earlier write of the same iteration
        store.put_registration(reg(3))
        assert store.commit() is False
        assert "disk full" in caplog.text  # the failure is logged, with sqlite's reason
        assert [r.registration_id for r in store.registrations()] == ["id1"]
        assert [row[0] for row in times(store)] == ["id1"]
        assert store.read("SELECT count(*) FROM registration_times") == [(1,)]
        store.put_registration(reg(2))  # the next iteration writes again
        assert store.commit()
        assert [r.registration_id for r in store.registrations()] == ["id1", "id2"]


def test_a_row_without_its_times_reads_from_its_record_and_an_update_restores_them(
    tmp_path: Path,
) -> None:
    """A ``registrations`` row whose times row is gone (a hand edit): it still reads (its
    record's last_update), and the next Update, finding no times to touch, takes the full
    path and writes them back."""
    with SqliteStore(tmp_path / "s.sqlite") as store:
        store.put_registration(reg(1, last_update=1200.0))
        with store.write() as conn:
            conn.execute("DELETE FROM registration_times")
        assert store.get_registration("id1") == reg(1, last_update=1200.0)
        assert store.registrations() == [reg(1, last_update=1200.0)]
        assert store.expiring_before(1e9, 10) == []  # no expiry known
        keep_alive = attrs.evolve(reg(1, last_update=1200.0), last_update=1300.0)
        assert store.touch_registration(keep_alive, moved=False)
        assert store.get_registration("id1") == keep_alive
        assert store.expiring_before(1e9, 10) == [keep_alive]
        assert times(store) == [("id1", 1300.0, 1600.0)]


def test_the_times_stay_with_their_registration_through_a_vacuum(tmp_path: Path) -> None:
    """The times are keyed by the row's ``rid``, an ``INTEGER PRIMARY KEY``: ``VACUUM`` (an
    operator's, after many deletions) may renumber plain rowids, never that one."""
    path = tmp_path / "s.sqlite"
    regs = [reg(n, last_update=1000.0 + n) for n in range(6)]
    with SqliteStore(path) as store:
        store.put_registrations(regs)
        for gone in ("id0", "id2", "id3"):
            assert store.remove_registration(gone) is not None
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM")
    conn.close()
    with SqliteStore(path) as store:
        kept = [regs[1], regs[4], regs[5]]
        assert store.registrations() == kept
        assert times(store) == [(r.registration_id, r.last_update, r.expires_at) for r in kept]
        assert store.read("SELECT count(*) FROM registration_times") == [(3,)]
        assert store.expiring_before(1e9, 10) == kept


def test_a_times_row_left_under_the_next_rid_takes_the_register_s_times(tmp_path: Path) -> None:
    """A ``registration_times`` row whose ``registrations`` row is gone (a hand edit) sits
    under the ``rid`` the next Register's row gets: the Register's group INSERT does not fail
    on it (the upsert), the row then holds the new registration's times, and it reads and
    expires by them."""
    with SqliteStore(tmp_path / "s.sqlite") as store:
        store.enable_group_commit()
        store.put_registration(reg(1))
        assert store.commit()
        with store.write() as conn:
            (rid,) = conn.execute("SELECT rid FROM registrations WHERE id = 'id1'").fetchone()
            conn.execute("DELETE FROM registrations WHERE id = 'id1'")  # its times stay
        assert store.commit()
        assert store.read("SELECT rid, last_update FROM registration_times") == [(rid, 1000.0)]
        store.put_registration(reg(2, last_update=4000.0, lifetime=60))
        assert store.commit()
        assert store.read("SELECT rid FROM registrations WHERE id = 'id2'") == [(rid,)]
        assert times(store) == [("id2", 4000.0, 4060.0)]
        assert store.read("SELECT count(*) FROM registration_times") == [(1,)]
        assert store.get_registration("id2") == reg(2, last_update=4000.0, lifetime=60)
        assert store.expiring_before(4061.0, 10) == [reg(2, last_update=4000.0, lifetime=60)]

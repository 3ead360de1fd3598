"""The registrations table's indexes (schema version 4): every lookup the store runs on it goes
through an index (``EXPLAIN QUERY PLAN`` on the statements themselves, traced), and the identity
index is partial, ``WHERE identity IS NOT NULL``: a NoSec device (no identity) files no entry in
it, and a lookup by identity still finds every bound device through it. A file with the full
identity index (schema 3, the first schema-4 builds) opens with the partial one instead and
answers the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.store.sqlite import SCHEMA_VERSION, SqliteStore

from .engines import reg
from .legacy import to_v4_layout

PSK = IdentityBinding("psk", "dev-1")
OTHER = IdentityBinding("psk", "dev-2")


def fill(store: SqliteStore) -> None:
    store.put_registration(reg(1))  # NoSec: no identity
    store.put_registration(reg(2, identity=PSK, last_update=1500.0))
    store.put_registration(reg(3, identity=PSK, last_update=1200.0))
    store.put_registration(reg(4, identity=OTHER))


def registration_indexes(store: SqliteStore) -> dict[str, str | None]:
    rows = store.read(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'registrations'"
    )
    return {name: sql for name, sql in rows}


def test_the_identity_index_holds_only_bound_registrations(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "t.sqlite") as store:
        fill(store)
        indexes = registration_indexes(store)
        assert "idx_registrations_identity" not in indexes
        assert "WHERE identity IS NOT NULL" in str(indexes["idx_registrations_identity_bound"])
        # the index's entries: the three bound devices, not the NoSec one
        entries = store.read(
            "SELECT id FROM registrations INDEXED BY idx_registrations_identity_bound "
            "WHERE identity IS NOT NULL ORDER BY id"
        )
        assert entries == [("id2",), ("id3",), ("id4",)]
        assert store.registrations_by_identity(PSK) == [
            reg(3, identity=PSK, last_update=1200.0),
            reg(2, identity=PSK, last_update=1500.0),
        ]
        assert store.registrations_by_identity(IdentityBinding("psk", "none")) == []
        # a device that gains or loses its identity moves in and out of the index
        bound = attrs.evolve(reg(1), registration_id="id1b", identity=OTHER)
        assert store.put_registration(bound) == reg(1)  # a re-Register, now with DTLS
        unbound = attrs.evolve(reg(4), registration_id="id4b", identity=None)
        assert store.put_registration(unbound) == reg(4, identity=OTHER)  # now NoSec
        assert store.registrations_by_identity(OTHER) == [bound]
        assert store.read("PRAGMA integrity_check") == [("ok",)]


def test_every_registration_lookup_goes_through_an_index(tmp_path: Path) -> None:
    """On a file other processes write too (``shared``): the one-process server's book answers
    by address itself (the next test), so only a shared handle reads by address."""
    with SqliteStore(tmp_path / "t.sqlite", shared=True) as store:
        fill(store)
        statements: list[str] = []
        store.conn.set_trace_callback(statements.append)
        try:
            store.registrations_by_identity(PSK)
            store.registrations_by_address(reg(1).address)
            store.registrations_by_address(Address("192.0.2.99", 1))
            store.expiring_before(5000.0, 10)
            store.registration_by_endpoint("ep1")
            store.get_registration("id1")
        finally:
            store.conn.set_trace_callback(None)
        reads = [s for s in statements if " registrations AS r " in s and s.startswith("SELECT")]
        assert len(reads) >= 6, statements
        for sql in reads:
            # both tables (schema 5: the times apart) searched, neither scanned
            plan = [str(row[3]) for row in store.read(f"EXPLAIN QUERY PLAN {sql}")]
            assert not any(step.startswith("SCAN") for step in plan), (sql, plan)
            assert any(step.startswith("SEARCH r USING") for step in plan), (sql, plan)
            assert any(step.startswith("SEARCH t USING") for step in plan), (sql, plan)
            if "identity = " in sql:
                assert any("idx_registrations_identity_bound" in step for step in plan), plan
            if "expires_at < " in sql:  # the sweep reads the expiry index in its order
                assert any("idx_registration_times_expires_at" in step for step in plan), plan
                # (ties of expires_at sorted by id, a "RIGHT PART", but never the whole match)
                assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_a_file_with_the_full_identity_index_opens_with_the_partial_one(tmp_path: Path) -> None:
    """What schema 3 (and the first schema-4 builds) left: ``idx_registrations_identity`` over
    every row, NULLs included."""
    path = tmp_path / "v3.sqlite"
    with SqliteStore(path) as store:
        fill(store)
    to_v4_layout(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX idx_registrations_identity_bound")
        conn.execute("CREATE INDEX idx_registrations_identity ON registrations(identity)")
        conn.execute("UPDATE meta SET value='3' WHERE name='schema'")
    with SqliteStore(path) as store:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        indexes = registration_indexes(store)
        assert "idx_registrations_identity" not in indexes
        assert "idx_registrations_identity_bound" in indexes
        assert store.read("PRAGMA integrity_check") == [("ok",)]
        assert store.registrations_by_identity(OTHER) == [reg(4, identity=OTHER)]
        assert len(store.registrations_by_identity(PSK)) == 2


def test_the_group_insert_writes_the_identity_column_of_nosec_and_bound_devices(
    tmp_path: Path,
) -> None:
    """The Register's INSERT in a group transaction (two statements: NULL written in the text
    for a NoSec device, bound otherwise) stores what the reader returns, and the same rows as
    the savepoint path outside a group."""
    path = tmp_path / "group.sqlite"
    with SqliteStore(path) as store:
        store.enable_group_commit()
        fill(store)
        assert store.commit()
        grouped = store.read("SELECT id, identity, data FROM registrations ORDER BY id")
        assert [r[1] for r in grouped] == [
            None,
            '["psk","dev-1"]',
            '["psk","dev-1"]',
            '["psk","dev-2"]',
        ]
        assert store.get_registration("id1") == reg(1)
        assert store.registrations_by_identity(OTHER) == [reg(4, identity=OTHER)]
    with SqliteStore(tmp_path / "plain.sqlite") as plain:
        fill(plain)
        assert plain.read("SELECT id, identity, data FROM registrations ORDER BY id") == grouped


def test_the_server_s_own_file_keeps_no_address_index_and_answers_the_same(
    tmp_path: Path,
) -> None:
    """Opened as the server opens it (one process), the file drops ``(host, port)``'s index (a
    Register at 100k files no entry in it) and ``registrations_by_address`` still answers what
    the indexed lookup of a shared handle answers; a shared open puts the index back."""
    path = tmp_path / "t.sqlite"
    with SqliteStore(path, shared=True) as shared:
        fill(shared)
        shared.put_registration(reg(5, address=reg(1).address))  # two at one address
        assert "idx_registrations_host_port" in registration_indexes(shared)
        by_address = {
            a: shared.registrations_by_address(a)
            for a in (reg(1).address, reg(2).address, Address("192.0.2.99", 1))
        }
    with SqliteStore(path) as own:
        assert own.one_process
        assert "idx_registrations_host_port" not in registration_indexes(own)
        assert {a: own.registrations_by_address(a) for a in by_address} == by_address
        assert len(by_address[reg(1).address]) == 2
        own.put_registration(reg(6, address=Address("192.0.2.99", 1)))
        assert [
            r.registration_id for r in own.registrations_by_address(Address("192.0.2.99", 1))
        ] == ["id6"]
        assert own.read("PRAGMA integrity_check") == [("ok",)]
    with SqliteStore(path, shared=True) as again:
        assert not again.one_process
        assert "idx_registrations_host_port" in registration_indexes(again)
        assert [
            r.registration_id for r in again.registrations_by_address(Address("192.0.2.99", 1))
        ] == ["id6"]

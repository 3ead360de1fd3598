"""``SqliteStore.touch_registration(moved=False)`` (a keep-alive) in each state of the
connection: group commit with the iteration's transaction open (the keep-alive's short cut),
not yet open, inside a ``batch()``, without group commit, and closed. Each stores the two
times, durable when that state says so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest

from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import Registration
from lwm2m_server.store.sqlite import SqliteStore

ADDRESS = Address("127.0.0.1", 5683)


def registration(endpoint: str = "a") -> Registration:
    return Registration(
        registration_id=f"id-{endpoint}", endpoint=endpoint, address=ADDRESS, last_update=1000.0
    )


def committed_last_update(path: Path, reg_id: str) -> float | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT t.last_update FROM registration_times t JOIN registrations r "
            "ON r.rid = t.rid WHERE r.id = ?",
            (reg_id,),
        ).fetchone()
    return None if row is None else float(row[0])


def test_a_keep_alive_in_the_open_group_is_durable_after_the_commit(
    grouped: SqliteStore,
) -> None:
    reg = registration()
    grouped.put_registration(reg)
    assert grouped.commit() is True
    grouped.put_registration(registration("b"))  # the iteration's group is open
    touched = attrs.evolve(reg, last_update=2000.0)
    assert grouped.touch_registration(touched, moved=False)
    assert committed_last_update(grouped.path, reg.registration_id) == 1000.0
    assert grouped.commit() is True
    assert committed_last_update(grouped.path, reg.registration_id) == 2000.0
    stored = grouped.registration_by_endpoint("a")
    assert stored is not None and stored.last_update == 2000.0


def test_a_keep_alive_opens_the_group_when_it_is_the_first_write(grouped: SqliteStore) -> None:
    reg = registration()
    grouped.put_registration(reg)
    assert grouped.commit() is True
    assert grouped.touch_registration(attrs.evolve(reg, last_update=2500.0), moved=False)
    assert committed_last_update(grouped.path, reg.registration_id) == 1000.0
    assert grouped.commit() is True
    assert committed_last_update(grouped.path, reg.registration_id) == 2500.0


def test_a_keep_alive_inside_a_batch_is_durable_when_the_batch_ends(
    grouped: SqliteStore,
) -> None:
    reg = registration()
    grouped.put_registration(reg)
    assert grouped.commit() is True
    with grouped.batch():
        assert grouped.touch_registration(attrs.evolve(reg, last_update=3000.0), moved=False)
    assert committed_last_update(grouped.path, reg.registration_id) == 3000.0


def test_a_keep_alive_without_group_commit_is_durable_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    try:
        reg = registration()
        store.put_registration(reg)
        assert store.touch_registration(attrs.evolve(reg, last_update=4000.0), moved=False)
        assert committed_last_update(store.path, reg.registration_id) == 4000.0
    finally:
        store.close()


def test_a_keep_alive_of_an_unknown_or_moved_row_is_not_a_keep_alive(
    grouped: SqliteStore,
) -> None:
    """The guard still holds on the short cut: no row for another id; a row that holds
    another address is rewritten with this Update's address."""
    assert not grouped.touch_registration(registration("nobody"), moved=False)
    reg = registration()
    grouped.put_registration(attrs.evolve(reg, address=Address("127.0.0.2", 5683)))
    assert grouped.touch_registration(attrs.evolve(reg, last_update=5000.0), moved=False)
    assert grouped.commit() is True
    stored = grouped.registration_by_endpoint("a")
    assert stored is not None and stored.address == ADDRESS and stored.last_update == 5000.0


def test_a_keep_alive_on_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    store.close()
    with pytest.raises(StoreError):
        store.touch_registration(registration(), moved=False)

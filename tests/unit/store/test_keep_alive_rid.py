"""The keep-alive by ``rid`` (``SqliteStore._rids``): in a file no other process writes, a
keep-alive of a registration whose committed row the store knows writes its times by that row's
``rid``, without the guard's read of the row. Each test shows an entry is there only while it is
true: a Register's once its group committed, never one a failed or lost group made, none for a
row deleted, renumbered or rewritten; the times land where the guarded statement put them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest

from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import Registration
from lwm2m_server.store.sqlite import SqliteStore

from .failures import commit_fails

ADDRESS = Address("127.0.0.1", 5683)
BY_RID = "WHERE rid="
GUARDED = "SELECT rid FROM registrations WHERE id="


def registration(endpoint: str, reg_id: str | None = None, at: float = 1000.0) -> Registration:
    return Registration(
        registration_id=reg_id or f"id-{endpoint}",
        endpoint=endpoint,
        address=ADDRESS,
        last_update=at,
    )


def committed_times(path: Path) -> dict[str, float]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT r.id, t.last_update FROM registration_times t "
            "JOIN registrations r ON r.rid = t.rid"
        ).fetchall()
    return {str(reg_id): float(at) for reg_id, at in rows}


def statements(store: SqliteStore) -> list[str]:
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    return seen


def keep_alive(store: SqliteStore, reg: Registration, at: float) -> bool:
    return store.touch_registration(attrs.evolve(reg, last_update=at), moved=False)


@pytest.fixture
def store(grouped: SqliteStore) -> SqliteStore:
    return grouped


def test_a_committed_registration_s_keep_alive_goes_by_rid(store: SqliteStore) -> None:
    reg = registration("a")
    store.put_registration(reg)
    seen = statements(store)
    assert keep_alive(store, reg, 1500.0)  # its group is not committed yet: guarded
    assert any(GUARDED in sql for sql in seen)
    assert store.commit() is True
    seen.clear()
    assert keep_alive(store, reg, 2000.0)
    assert committed_times(store.path) == {"id-a": 1500.0}
    assert store.commit() is True
    assert any(BY_RID in sql and GUARDED not in sql for sql in seen)  # run at the commit
    assert committed_times(store.path) == {"id-a": 2000.0}
    stored = store.registration_by_endpoint("a")
    assert stored is not None and stored.expires_at == 2000.0 + reg.lifetime


def test_a_registration_of_a_failed_group_is_not_kept_and_its_rid_not_mistaken(
    store: SqliteStore,
) -> None:
    """The lost Register's ``rid`` is the next Register's: the lost one's keep-alive finds no
    row (the caller answers 4.04) and leaves the other's times alone."""
    store.put_registration(registration("kept"))
    assert store.commit() is True
    lost = registration("lost")
    store.put_registration(lost)
    commit_fails(store)
    other = registration("other")
    store.put_registration(other)
    assert store.commit() is True
    assert not keep_alive(store, lost, 3000.0)
    assert store.commit() is True
    assert committed_times(store.path) == {"id-kept": 1000.0, "id-other": 1000.0}
    assert keep_alive(store, other, 3000.0)
    assert store.commit() is True
    assert committed_times(store.path)["id-other"] == 3000.0


def test_a_group_sqlite_rolled_back_by_itself_makes_no_entry_even_if_writes_follow(
    store: SqliteStore,
) -> None:
    """sqlite rolls the group back by itself (a full disk), later writes of the iteration
    begin a transaction of their own which commits: the lost Register's ``rid`` goes to the
    next one, and the lost registration's keep-alive must not touch that one's times."""
    store.put_registration(registration("kept"))
    assert store.commit() is True
    lost = registration("lost")
    store.put_registration(lost)
    store.conn.execute("ROLLBACK")  # what sqlite does by itself on a full disk
    other = registration("other")
    store.put_registration(other)
    store.commit()
    assert not keep_alive(store, lost, 4000.0)
    store.commit()
    assert committed_times(store.path).get("id-other") == 1000.0


@pytest.mark.parametrize("first", ["keep-alive", "write"])
def test_a_lost_group_is_noticed_by_the_next_keep_alive_or_write(
    store: SqliteStore, first: str
) -> None:
    store.put_registration(registration("kept"))
    assert store.commit() is True
    lost = registration("lost")
    store.put_registration(lost)
    store.conn.execute("ROLLBACK")
    if first == "keep-alive":
        assert keep_alive(store, registration("kept"), 1200.0)
    else:
        store.update_registration(attrs.evolve(registration("kept"), lifetime=60))
    other = registration("other")
    store.put_registration(other)
    store.commit()
    assert not keep_alive(store, lost, 4000.0)
    store.commit()
    assert committed_times(store.path).get("id-other") == 1000.0


def test_a_removed_registration_s_rid_is_not_kept(store: SqliteStore) -> None:
    gone = registration("gone")
    store.put_registration(gone)
    assert store.commit() is True
    assert store.remove_registration(gone.registration_id) is not None
    assert store.commit() is True
    store.put_registration(registration("new"))
    assert store.commit() is True
    assert not keep_alive(store, gone, 5000.0)
    assert store.commit() is True
    assert committed_times(store.path) == {"id-new": 1000.0}


def test_a_re_register_in_place_keeps_the_row_for_the_new_id_only(store: SqliteStore) -> None:
    old = registration("dev", "old-id")
    store.put_registration(old)
    assert store.commit() is True
    new = registration("dev", "new-id", at=1100.0)
    assert store.put_registration(new) is not None
    assert not keep_alive(store, old, 6000.0)
    assert store.commit() is True
    seen = statements(store)
    assert keep_alive(store, new, 6100.0)
    assert store.commit() is True
    assert any(BY_RID in sql and GUARDED not in sql for sql in seen)  # run at the commit
    assert committed_times(store.path) == {"new-id": 6100.0}


def test_a_moved_update_keeps_the_entry_once_committed(store: SqliteStore) -> None:
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    moved = attrs.evolve(reg, address=Address("127.0.0.9", 9), last_update=1200.0)
    assert store.touch_registration(moved, moved=True)
    assert store.commit() is True
    seen = statements(store)
    assert keep_alive(store, moved, 1300.0)
    assert store.commit() is True
    assert any(BY_RID in sql and GUARDED not in sql for sql in seen)  # run at the commit
    stored = store.registration_by_endpoint("a")
    assert stored is not None and stored.address == moved.address
    assert stored.last_update == 1300.0


def test_a_moved_update_of_a_failed_group_is_guarded_again(store: SqliteStore) -> None:
    """The move is rolled back: the row holds the old address, so the next keep-alive (from
    the address the caller believes stored) takes the guard, which writes that address."""
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    moved = attrs.evolve(reg, address=Address("127.0.0.9", 9), last_update=1200.0)
    assert store.touch_registration(moved, moved=True)
    commit_fails(store)
    assert keep_alive(store, moved, 1300.0)
    assert store.commit() is True
    stored = store.registration_by_endpoint("a")
    assert stored is not None and stored.address == moved.address


def test_a_failed_write_forgets_what_the_group_was_to_make_true(store: SqliteStore) -> None:
    reg = registration("a")
    store.put_registration(reg)
    with pytest.raises(RuntimeError), store.write():
        raise RuntimeError("a write that fails part-way")
    assert store.commit() is True
    seen = statements(store)
    assert keep_alive(store, reg, 1400.0)
    assert any(GUARDED in sql for sql in seen)  # not kept: guarded, still right
    assert store.commit() is True
    assert committed_times(store.path) == {"id-a": 1400.0}


def test_registrations_loaded_at_start_go_by_rid(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "db.sqlite")
    first.put_registrations([registration("a"), registration("b")])
    first.close()
    store = SqliteStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    try:
        loaded = {reg.endpoint: reg for reg in store.registrations()}
        seen = statements(store)
        assert keep_alive(store, loaded["b"], 7000.0)
        assert store.commit() is True
        assert any(BY_RID in sql and GUARDED not in sql for sql in seen)  # run at the commit
        assert committed_times(store.path) == {"id-a": 1000.0, "id-b": 7000.0}
    finally:
        store.close()


def test_registrations_read_inside_the_group_are_kept_only_once_it_commits(
    store: SqliteStore,
) -> None:
    """A read in the open group sees its uncommitted rows: not what the file holds yet."""
    store.put_registration(registration("a"))
    reg = store.registrations()[0]
    seen = statements(store)
    assert keep_alive(store, reg, 7100.0)
    assert any(GUARDED in sql for sql in seen)
    assert store.commit() is True
    seen.clear()
    assert keep_alive(store, reg, 7150.0)
    assert store.commit() is True
    assert any(BY_RID in sql and GUARDED not in sql for sql in seen)  # run at the commit
    assert committed_times(store.path) == {"id-a": 7150.0}


def test_a_quarantined_row_is_not_kept(store: SqliteStore) -> None:
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    with sqlite3.connect(store.path) as other:
        other.execute("UPDATE registrations SET data = 'not json' WHERE id = 'id-a'")
    assert store.get_registration(reg.registration_id) is None  # quarantined by the read
    store.put_registration(registration("b"))
    assert store.commit() is True
    assert not keep_alive(store, reg, 7200.0)


def test_a_shared_file_keeps_the_guard(tmp_path: Path) -> None:
    """Another process may store another address: a keep-alive that finds the row saying
    otherwise rewrites it with its own (the guard), also after the Register committed."""
    store = SqliteStore(tmp_path / "db.sqlite", shared=True)
    store.enable_group_commit()
    try:
        reg = registration("a")
        store.put_registration(attrs.evolve(reg, address=Address("127.0.0.2", 5683)))
        assert store.commit() is True
        assert keep_alive(store, reg, 8000.0)
        assert store.commit() is True
        stored = store.registration_by_endpoint("a")
        assert stored is not None and stored.address == ADDRESS
        assert stored.last_update == 8000.0
    finally:
        store.close()


def test_a_keep_alive_error_rolls_its_group_back_and_forgets_the_entries(
    store: SqliteStore,
) -> None:
    """A keep-alive by ``rid`` runs with its group's others at the commit: when it fails, the
    whole group is rolled back (the driver withholds its replies, the devices retransmit) and
    no entry is trusted any more, so the retransmitted keep-alive goes guarded."""
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    store.conn.execute("CREATE TRIGGER t BEFORE UPDATE ON registration_times "
                       "BEGIN SELECT RAISE(ABORT, 'refused'); END")  # fmt: skip
    store.put_registration(registration("b"))
    assert keep_alive(store, reg, 9000.0)
    assert store.commit() is False
    assert store._rids == {} and store._rids_pending == {}
    assert committed_times(store.path) == {"id-a": 1000.0}  # "b" went with the group
    with pytest.raises(StoreError):  # the guarded statement fails at once
        keep_alive(store, reg, 9050.0)
    store.conn.execute("DROP TRIGGER t")
    seen = statements(store)
    assert keep_alive(store, reg, 9100.0)
    assert store.commit() is True
    assert any(GUARDED in sql for sql in seen)
    assert committed_times(store.path) == {"id-a": 9100.0}


def test_a_keep_alive_whose_times_row_is_gone_fails_its_group(store: SqliteStore) -> None:
    """A times row deleted behind the store's back (a hand edit while it runs): the keep-alive
    by ``rid`` finds nothing to touch at the commit; the group is rolled back rather than
    acknowledged, and the retransmitted keep-alive, guarded, writes the times back."""
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM registration_times")
    assert keep_alive(store, reg, 9000.0)
    assert store.commit() is False
    assert committed_times(store.path) == {}
    assert keep_alive(store, reg, 9100.0)
    assert store.commit() is True
    assert committed_times(store.path) == {"id-a": 9100.0}


def test_keep_alives_in_the_open_group_go_by_rid_and_commit_together(store: SqliteStore) -> None:
    """The first keep-alive of an iteration opens the group, the others run in it directly,
    also inside a ``batch()``; all durable at the commit."""
    regs = [registration(name) for name in "abc"]
    for reg in regs:
        store.put_registration(reg)
    assert store.commit() is True
    seen = statements(store)
    assert keep_alive(store, regs[0], 2000.0)
    assert keep_alive(store, regs[1], 2001.0)
    with store.batch():
        assert keep_alive(store, regs[2], 2002.0)
    assert sum(BY_RID in sql and GUARDED not in sql for sql in seen) == 3
    assert store.commit() is True
    assert committed_times(store.path) == {"id-a": 2000.0, "id-b": 2001.0, "id-c": 2002.0}


def rid_of(path: Path, reg_id: str) -> int:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT rid FROM registrations WHERE id = ?", (reg_id,)).fetchone()
    return int(row[0])


def test_a_deferred_keep_alive_runs_before_a_write_that_frees_its_rid(store: SqliteStore) -> None:
    """A deleted last row's ``rid`` is the next Register's: a keep-alive run after the delete
    and that Register (both in its group) would write the gone registration's times onto the
    new one. It runs before the delete, so the new registration keeps its own."""
    gone = registration("gone")
    store.put_registration(gone)
    assert store.commit() is True
    old_rid = rid_of(store.path, "id-gone")
    assert keep_alive(store, gone, 5000.0)
    assert store.remove_registration("id-gone") is not None
    store.put_registration(registration("new", at=1200.0))
    assert store.commit() is True
    assert rid_of(store.path, "id-new") == old_rid  # the rid was reused
    assert committed_times(store.path) == {"id-new": 1200.0}


def test_reads_in_the_group_see_its_deferred_times(store: SqliteStore) -> None:
    """A read inside the group sees its keep-alives and its Registers' times before they are
    committed, as it sees any other write of the group."""
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    assert keep_alive(store, reg, 5000.0)
    fresh = registration("b", at=4000.0)
    store.put_registration(fresh)
    assert store.get_registration("id-a") == attrs.evolve(reg, last_update=5000.0)
    assert store.expiring_before(1e12, 10) == [fresh, attrs.evolve(reg, last_update=5000.0)]
    assert committed_times(store.path) == {"id-a": 1000.0}
    assert store.commit() is True
    assert committed_times(store.path) == {"id-a": 5000.0, "id-b": 4000.0}


def test_a_group_lost_before_its_deferred_keep_alives_run_is_reported_failed(
    store: SqliteStore,
) -> None:
    """sqlite rolls the group back by itself (a full disk) and only deferred keep-alives
    follow: the commit must not run them in a transaction of their own and say success (the
    Register of the lost group would be acknowledged unstored)."""
    reg = registration("a")
    store.put_registration(reg)
    assert store.commit() is True
    store.put_registration(registration("lost"))
    store.conn.execute("ROLLBACK")  # what sqlite does by itself on a full disk
    assert keep_alive(store, reg, 5000.0)
    assert store.commit() is False
    assert not store.conn.in_transaction
    assert committed_times(store.path) == {"id-a": 1000.0}
    assert keep_alive(store, reg, 5100.0)  # the next iteration, guarded again
    assert store.commit() is True
    assert committed_times(store.path) == {"id-a": 5100.0}

"""``SqliteStore`` group commit: the writes of one loop iteration are one transaction, durable
only after ``commit()``; a failed commit rolls them all back and is reported once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.store.sqlite import SqliteStore
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from .failures import FailingCommit, commit_fails

ADDRESS = Address("127.0.0.1", 5683)


def committed_endpoints(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT endpoint FROM registrations")}


def registration(endpoint: str) -> Registration:
    return Registration(registration_id=f"id-{endpoint}", endpoint=endpoint, address=ADDRESS)


@pytest.fixture
def store(grouped: SqliteStore) -> SqliteStore:
    return grouped


def test_writes_are_durable_only_after_commit(store: SqliteStore) -> None:
    store.put_registration(registration("a"))
    store.put_registration(registration("b"))
    assert committed_endpoints(store.path) == set()
    assert store.registration_by_endpoint("a") is not None  # the loop's connection sees them
    assert store.commit() is True
    assert committed_endpoints(store.path) == {"a", "b"}
    assert store.commit() is True  # nothing pending


def test_failed_commit_rolls_back_the_iteration_and_reports_it_once(store: SqliteStore) -> None:
    store.put_registration(registration("kept"))
    assert store.commit()
    store.put_registration(registration("lost"))
    commit_fails(store)
    assert store.registration_by_endpoint("lost") is None
    assert committed_endpoints(store.path) == {"kept"}
    store.put_registration(registration("again"))
    assert store.commit() is True
    assert committed_endpoints(store.path) == {"kept", "again"}


def test_batch_commits_at_once_with_the_pending_writes(store: SqliteStore) -> None:
    store.put_registration(registration("pending"))
    with store.batch():
        store.put_registration(registration("batched"))
    assert committed_endpoints(store.path) == {"pending", "batched"}


def test_writes_outside_a_flush_are_committed_by_the_loop(store: SqliteStore) -> None:
    async def main() -> None:
        store.put_registration(registration("timer"))
        assert committed_endpoints(store.path) == set()
        await asyncio.sleep(0)  # one loop iteration: the store's own call_soon commits
        assert committed_endpoints(store.path) == {"timer"}

    asyncio.run(main())


# -- telemetry in a group: buffered, inserted by the commit ---------------------------------------


def point(value: float, ts_ms: int = 1000, endpoint: str = "dev") -> TelemetryPoint:
    return TelemetryPoint(endpoint, "/3303/0/5700", "sensorValue", ts_ms, value, ResourceType.FLOAT)


def committed_telemetry(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT endpoint, value FROM telemetry ORDER BY id").fetchall()
    return [(str(e), str(v)) for e, v in rows]


def test_telemetry_of_an_iteration_is_read_before_and_durable_after_the_commit(
    store: SqliteStore,
) -> None:
    async def main() -> None:
        store.put_registration(registration("dev"))
        assert store.append_points([point(21.5)]) == 1
        assert store.append_points([point(22.5, 2000)]) == 1
        assert committed_telemetry(store.path) == []
        # the loop's own reads see what the iteration appended
        assert store.latest("dev")["/3303/0/5700"].value == 22.5
        assert [p.value for p in store.history("dev", "sensorValue")] == [22.5, 21.5]
        assert store.commit() is True
        assert committed_telemetry(store.path) == [("dev", '["f",21.5]'), ("dev", '["f",22.5]')]
        assert committed_endpoints(store.path) == {"dev"}

    asyncio.run(main())


def test_telemetry_appended_outside_a_flush_is_committed_by_the_loop(store: SqliteStore) -> None:
    async def main() -> None:
        store.append_points([point(21.5)])
        assert committed_telemetry(store.path) == []
        await asyncio.sleep(0)  # the store's own call_soon inserts and commits
        assert committed_telemetry(store.path) == [("dev", '["f",21.5]')]

    asyncio.run(main())


def test_a_failed_telemetry_insert_rolls_the_whole_iteration_back(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows go in at the commit: when they cannot (a read-only file, a full disk), the
    iteration's other writes go too and ``commit()`` says False (its replies are withheld)."""

    async def main() -> None:
        store.put_registration(registration("kept"))
        assert store.commit() is True
        store.put_registration(registration("lost"))
        store.append_points([point(21.5)])
        store.conn.execute("PRAGMA query_only = ON")  # the insert fails, not the BEGIN
        try:
            assert store.commit() is False
        finally:
            store.conn.execute("PRAGMA query_only = OFF")
        assert store.commit() is True  # reported once
        assert committed_endpoints(store.path) == {"kept"}
        assert committed_telemetry(store.path) == []
        assert store.latest("kept") == {}
        store.append_points([point(23.5)])
        assert store.commit() is True
        assert committed_telemetry(store.path) == [("dev", '["f",23.5]')]

    asyncio.run(main())
    assert sum("commit failed" in r.getMessage() for r in caplog.records) == 1


def test_telemetry_is_written_at_once_without_a_loop(store: SqliteStore) -> None:
    """A script or the CLI (no running loop): nothing would commit a buffer later."""
    store.append_points([point(21.5)])
    assert store.commit() is True
    assert committed_telemetry(store.path) == [("dev", '["f",21.5]')]


def test_a_new_endpoint_is_written_without_a_savepoint(store: SqliteStore) -> None:
    """The Register of an endpoint with no other row is one INSERT in the group transaction
    (issue 10's hot path: the unique index on the endpoint refuses it when there is a row);
    its times go into ``registration_times`` (schema 5) with the group's others, before any
    other write runs (here the next one); one that replaces a row still does it atomically in
    a savepoint, and all are durable at the commit."""
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    store.put_registration(registration("fresh"))
    verbs = [s.split()[0].upper() for s in statements]
    assert verbs == ["BEGIN", "INSERT"]
    assert "INTO registrations(" in statements[1]
    statements.clear()
    replacement = Registration(registration_id="id-2", endpoint="fresh", address=ADDRESS)
    assert store.put_registration(replacement) == registration("fresh")
    # the endpoint's row refuses the INSERT, then the first Register's times run before the
    # replacement's savepoint
    times_at = next(i for i, s in enumerate(statements) if "INTO registration_times(" in s)
    savepoint_at = next(i for i, s in enumerate(statements) if s.startswith("SAVEPOINT"))
    assert times_at < savepoint_at
    store.conn.set_trace_callback(None)
    assert store.commit()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT id FROM registrations").fetchall() == [("id-2",)]
        assert conn.execute("SELECT count(*) FROM registration_times").fetchone() == (1,)
    stored = store.registration_by_endpoint("fresh")
    assert stored is not None and stored.expires_at == replacement.expires_at


def test_a_replacement_keeps_the_group_and_drops_the_old_rows_observations(
    store: SqliteStore,
) -> None:
    """The replacing Register's first INSERT is refused by the endpoint's unique index: that
    undoes the statement alone. The group's earlier writes stay, the old registration is
    returned and its observations go with it, all committed together."""
    store.put_registration(registration("dev"))
    store.put_observation(
        Observation(
            token=b"\x01\x02",
            endpoint="dev",
            registration_id="id-dev",
            paths=(LwM2mPath.parse("/3/0/9"),),
        )
    )
    assert store.commit()
    store.put_registration(registration("other"))  # an earlier write of the same group
    replacement = Registration(registration_id="id-new", endpoint="dev", address=ADDRESS)
    assert store.put_registration(replacement) == registration("dev")
    assert store.commit()
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT endpoint, id FROM registrations ORDER BY endpoint")
        assert rows.fetchall() == [("dev", "id-new"), ("other", "id-other")]
        assert conn.execute("SELECT count(*) FROM observations").fetchone() == (0,)


def test_a_group_sqlite_rolled_back_by_itself_is_reported_failed(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """On SQLITE_FULL or SQLITE_IOERR sqlite may roll the whole transaction back when one
    statement fails: the other requests of the iteration must not be acknowledged."""

    async def main() -> None:
        store.put_registration(registration("kept"))
        assert store.commit() is True
        store.put_registration(registration("lost"))
        store.conn.execute("ROLLBACK")  # what sqlite does by itself on a full disk
        assert store.commit() is False
        assert committed_endpoints(store.path) == {"kept"}
        store.put_registration(registration("next"))
        assert store.commit() is True
        assert committed_endpoints(store.path) == {"kept", "next"}

    asyncio.run(main())
    assert sum("commit failed" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("later", ["register", "keep-alive", "update"])
def test_a_group_sqlite_rolled_back_by_itself_stays_failed_when_writes_follow(
    store: SqliteStore, later: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After sqlite rolled the group back by itself, a later write of the same iteration
    would begin a transaction of its own (sqlite3 opens one before a DML statement, and a
    SAVEPOINT outside a transaction is a BEGIN) and COMMIT would then succeed: the lost
    writes' replies must still be withheld, for the whole iteration."""
    kept = registration("kept")
    store.put_registration(kept)
    assert store.commit() is True
    store.put_registration(registration("lost"))
    store.conn.execute("ROLLBACK")  # what sqlite does by itself on a full disk
    if later == "register":
        store.put_registration(registration("after"))
    elif later == "keep-alive":
        assert store.touch_registration(attrs.evolve(kept, last_update=2000.0), moved=False)
    else:
        assert store.update_registration(attrs.evolve(kept, lifetime=60))
    assert store.commit() is False
    assert "lost" not in committed_endpoints(store.path)
    store.put_registration(registration("next"))
    assert store.commit() is True
    assert {"kept", "next"} <= committed_endpoints(store.path)
    assert sum("commit failed" in r.getMessage() for r in caplog.records) == 1


def committed_series(path: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT endpoint, key, path FROM telemetry_keys").fetchall()
    return {(str(e), str(k), str(p)) for e, k, p in rows}


@pytest.mark.parametrize("failure", ["commit", "insert"])
def test_a_series_of_a_failed_iteration_is_recorded_when_its_points_come_again(
    store: SqliteStore, failure: str
) -> None:
    """The store skips the series it knows committed (``telemetry_keys`` is probed once per
    series, not per point); a series whose iteration was rolled back is not one of them, even
    after a later iteration commits: its next point records it, and a history by key finds it."""

    async def main() -> None:
        store.append_points([point(21.5, endpoint="a")])
        conn = store._conn
        if failure == "commit":
            store._conn = FailingCommit(conn)  # type: ignore[arg-type, assignment]
        else:
            store.conn.execute("PRAGMA query_only = ON")  # the insert fails
        try:
            assert store.commit() is False
        finally:
            store._conn = conn
            store.conn.execute("PRAGMA query_only = OFF")
        store.append_points([point(22.5, endpoint="b")])  # another series commits
        assert store.commit() is True
        assert committed_series(store.path) == {("b", "sensorValue", "/3303/0/5700")}
        store.append_points([point(23.5, 3000, endpoint="a")])
        store.append_points([point(24.5, 4000, endpoint="b")])  # known: skipped, still there
        assert store.commit() is True
        assert committed_series(store.path) == {
            ("a", "sensorValue", "/3303/0/5700"),
            ("b", "sensorValue", "/3303/0/5700"),
        }
        assert [p.value for p in store.history("a", "sensorValue")] == [23.5]
        assert [p.value for p in store.history("b", "sensorValue")] == [24.5, 22.5]

    asyncio.run(main())


class SmallCheckpointStore(SqliteStore):
    GROUP_CHECKPOINT_PAGES = 40


def test_group_commit_checkpoints_less_often_and_keeps_the_wal_bounded(tmp_path: Path) -> None:
    """The WAL is checkpointed every ``GROUP_CHECKPOINT_PAGES`` pages and cut back to that size
    when it restarts: under a steady stream of points over many series the file stays near the
    bound, and every committed point is in the database for another reader."""
    store = SmallCheckpointStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    wal = tmp_path / "db.sqlite-wal"
    page = int(store.conn.execute("PRAGMA page_size").fetchone()[0])
    try:
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 40
        largest = 0
        for batch in range(300):
            points = [point(float(i), 1000 * batch + i, endpoint=f"dev-{i}") for i in range(64)]
            assert store.append_points(points) == 64
            assert store.commit() is True
            largest = max(largest, wal.stat().st_size)
        # past the bound by at most the pages of a commit or two (a checkpoint runs after
        # the commit that crossed it; the file is cut back when the log restarts)
        assert largest <= (40 + 200) * (page + 24) + 32
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 300 * 64
    finally:
        store.close()


def test_the_server_store_checkpoints_in_a_thread_with_the_loop_as_backstop(
    store: SqliteStore,
) -> None:
    """What the server runs (``enable_group_commit``): a checkpoint thread woken about every
    1000 WAL pages, and the loop's own autocheckpoint at 2500 pages only as the backstop that
    lets the WAL restart, the file cut back to that size (sqlite.py, "Checkpoints")."""
    checkpointer = store.checkpointer
    assert checkpointer is not None and checkpointer.running
    assert checkpointer.pages == 1000
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 2500
    page = int(store.conn.execute("PRAGMA page_size").fetchone()[0])
    assert store.conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 2500 * page


# -- the group's telemetry goes in without a savepoint -------------------------------------------

_POISON = "poison"
"""A value the test's trigger refuses, so an insert fails part-way through a group's rows."""


def _poisoned(store: SqliteStore) -> None:
    store.conn.execute(
        "CREATE TRIGGER IF NOT EXISTS refuse_poison BEFORE INSERT ON telemetry "
        f"WHEN NEW.value LIKE '%{_POISON}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )


def _contents(path: Path) -> tuple[list[tuple[Any, ...]], ...]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute(
                "SELECT endpoint, path, key, ts_ms, type, value FROM telemetry ORDER BY id"
            ).fetchall(),
            conn.execute("SELECT * FROM telemetry_latest ORDER BY endpoint, path").fetchall(),
            conn.execute("SELECT * FROM telemetry_keys ORDER BY endpoint, key, path").fetchall(),
            conn.execute("SELECT endpoint FROM registrations ORDER BY endpoint").fetchall(),
        )


_group_points = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["/3303/0/5700", "/3303/0/5701", "/3/0/0"]),
        st.integers(0, 50),
        st.one_of(st.floats(-5, 5), st.just(_POISON)),
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _group_points), min_size=1, max_size=6))
def test_group_telemetry_ends_as_the_savepoint_path_ends(
    tmp_path_factory: pytest.TempPathFactory,
    groups: list[tuple[bool, list[tuple[str, str, int, float | str]]]],
) -> None:
    """Groups of points, each with a registration written before them in the same iteration
    (so the group is open) or not, some failing part-way (a trigger refuses a poisoned value
    after the rows before it went in): the group's insert, which has no savepoint, leaves
    the file and the verdicts exactly as the general insert inside ``write()``'s savepoint
    (taken by a store whose ``_insert_group_rows`` is that general path)."""

    class SavepointStore(SqliteStore):
        def _insert_group_rows(self, rows: Any) -> bool:  # the code before the shortcut
            try:
                with self.write() as conn:
                    self._insert_rows(conn, rows, grouped=True)
            except StoreError as exc:
                self._abort_group(exc)
                return False
            return True

    results = []
    savepoints: list[int] = []
    for kind in (SqliteStore, SavepointStore):
        folder = tmp_path_factory.mktemp("db")
        store = kind(folder / "db.sqlite")
        store.enable_group_commit()
        _poisoned(store)
        statements: list[str] = []
        store.conn.set_trace_callback(statements.append)
        verdicts = []

        async def main(store: SqliteStore = store, verdicts: list[bool] = verdicts) -> None:
            for index, (with_registration, points) in enumerate(groups):
                if with_registration:
                    store.put_registration(registration(f"reg{index}"))
                for endpoint, path, ts, value in points:
                    rtype = ResourceType.STRING if isinstance(value, str) else ResourceType.FLOAT
                    point = TelemetryPoint(endpoint, path, "k", 1000 + ts, value, rtype)
                    store.append_points([point])
                verdicts.append(store.commit())

        asyncio.run(main())
        store.conn.set_trace_callback(None)
        store.close()
        results.append((verdicts, _contents(folder / "db.sqlite")))
        savepoints.append(sum(s.startswith("SAVEPOINT") for s in statements))
    assert results[0] == results[1]
    # new endpoints are written without a savepoint too: the shortcut's run has none left
    assert savepoints[0] == 0
    if any(points for _, points in groups):
        assert savepoints[1] > 0

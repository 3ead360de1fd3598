"""The telemetry history's layout (schema version 4): one index, ``(endpoint, path, ts_ms)``,
and ``telemetry_keys`` (the series of each key). What a user sees is unchanged: a history by
key merges every series that had points under that key, newest first (equal times in the order
they were stored), a history by path is that series, retention prunes every series; every
statement the store runs on the telemetry tables goes through an index (checked with
``EXPLAIN QUERY PLAN`` on the statements themselves, traced, so a changed query cannot fall
back to a scan unnoticed); and a version-3 file (three indexes, no ``telemetry_keys``) opens as
version 4 with its history intact."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from keystore.store import StoreError
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.store.sqlite import SCHEMA_VERSION, SqliteStore
from object_models.types import ResourceType

from .legacy import to_v4_layout

TEMP, HUMIDITY, OTHER = "/3303/0/5700", "/3304/0/5700", "/3303/1/5700"


def pt(
    ts_ms: int, value: float, path: str = TEMP, key: str = "sensorValue", ep: str = "ep1"
) -> TelemetryPoint:
    return TelemetryPoint(ep, path, key, ts_ms, value, ResourceType.FLOAT)


def history(store: SqliteStore, key: str, **kw: int) -> list[tuple[str, int, float]]:
    return [(p.path, p.ts_ms, p.value) for p in store.history("ep1", key, **kw)]  # type: ignore[misc]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path / "t.sqlite")
    yield db
    db.close()


def fill(store: SqliteStore) -> None:
    """Two objects share the key ``sensorValue`` (Temperature and Humidity); one path's key
    was renamed (an override) between its points; another endpoint has the same key."""
    store.append_points([pt(10, 1.0), pt(20, 2.0, HUMIDITY), pt(30, 3.0)])
    store.append_points([pt(30, 3.5, HUMIDITY), pt(40, 4.0, OTHER, key="sensorValue_1")])
    store.append_points([pt(50, 5.0, OTHER, key="outdoor"), pt(60, 6.0, ep="ep2")])


def test_a_history_by_key_merges_its_series_newest_first(store: SqliteStore) -> None:
    fill(store)
    assert history(store, "sensorValue") == [
        (HUMIDITY, 30, 3.5),  # equal times: the later stored first, as before
        (TEMP, 30, 3.0),
        (HUMIDITY, 20, 2.0),
        (TEMP, 10, 1.0),
    ]
    assert history(store, "sensorValue", limit=3) == history(store, "sensorValue")[:3]
    assert history(store, "sensorValue", since_ms=20, until_ms=30) == [(HUMIDITY, 20, 2.0)]
    assert history(store, TEMP) == [(TEMP, 30, 3.0), (TEMP, 10, 1.0)]
    # a path's points under each of its keys, and all of them by path
    assert history(store, "sensorValue_1") == [(OTHER, 40, 4.0)]
    assert history(store, "outdoor") == [(OTHER, 50, 5.0)]
    assert history(store, OTHER) == [(OTHER, 50, 5.0), (OTHER, 40, 4.0)]
    assert history(store, "nothing") == []


def test_retention_prunes_every_series_of_the_endpoint(store: SqliteStore) -> None:
    fill(store)
    assert store.prune_history("ep1", 45, limit=2) == 2
    assert store.prune_history("ep1", 45, limit=100) == 3
    assert store.prune_history("ep1", 45, limit=100) == 0
    assert history(store, OTHER) == [(OTHER, 50, 5.0)]
    assert history(store, "sensorValue") == []
    assert [p.ts_ms for p in store.history("ep2", "sensorValue")] == [60]


def test_every_telemetry_statement_goes_through_an_index(store: SqliteStore) -> None:
    fill(store)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        store.history("ep1", "sensorValue")
        store.history("ep1", TEMP, since_ms=0, until_ms=100, limit=5)
        store.latest("ep1")
        store.telemetry_endpoints(None, 10)
        store.telemetry_endpoints("ep1", 10)
        store.prune_history("ep1", 15, 10)
    finally:
        store.conn.set_trace_callback(None)
    reads = [
        s for s in statements if "telemetry" in s and s.lstrip().startswith(("SELECT", "DELETE"))
    ]
    assert len(reads) >= 6, statements
    for sql in reads:
        plan = [str(row[3]) for row in store.read(f"EXPLAIN QUERY PLAN {sql}")]
        assert not any(step.startswith("SCAN") or "TEMP B-TREE" in step for step in plan), (
            sql,
            plan,
        )
        assert any("telemetry" in step and "USING" in step for step in plan), (sql, plan)
        for step in plan:  # the history by series (or rowid), never all an endpoint's points
            if step.startswith("SEARCH telemetry ") and "(rowid=?)" not in step:
                assert "(endpoint=? AND path=?" in step, (sql, plan)
    indexes = store.read(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'telemetry'"
    )
    assert indexes == [("idx_telemetry_endpoint_path_ts_ms",)]


def make_v3_file(path: Path) -> None:
    """What version 3 left: the history with its three indexes, no ``telemetry_keys``."""
    store = SqliteStore(path)
    fill(store)
    store.close()
    to_v4_layout(path)  # and the registrations as versions 3 and 4 stored them
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE telemetry_keys")
        conn.execute(
            "CREATE INDEX idx_telemetry_endpoint_key_ts_ms ON telemetry(endpoint, key, ts_ms)"
        )
        conn.execute("CREATE INDEX idx_telemetry_endpoint_ts_ms ON telemetry(endpoint, ts_ms)")
        conn.execute("UPDATE meta SET value='3' WHERE name='schema'")


def test_a_version_3_file_opens_with_its_history_intact(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite"
    with SqliteStore(tmp_path / "fresh.sqlite") as fresh:
        fill(fresh)
        expected = {
            k: history(fresh, k) for k in ("sensorValue", "sensorValue_1", "outdoor", TEMP, OTHER)
        }
    make_v3_file(path)
    store = SqliteStore(path)
    try:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        assert SCHEMA_VERSION == 5
        assert store.read("PRAGMA integrity_check") == [("ok",)]
        assert store.read(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'telemetry'"
        ) == [("idx_telemetry_endpoint_path_ts_ms",)]
        assert {k: history(store, k) for k in expected} == expected
        store.append_points([pt(70, 7.0)])  # new points join the migrated series
        assert history(store, "sensorValue")[0] == (TEMP, 70, 7.0)
        assert store.prune_history("ep1", 45, limit=100) == 5
    finally:
        store.close()
    SqliteStore(path).close()  # the current version now: opens as is


def test_a_version_3_server_refuses_a_version_4_file(tmp_path: Path) -> None:
    """Its points would not reach ``telemetry_keys`` (a history by key would miss them):
    ``check_schema`` refuses the file (version 4 or later), naming it and both versions."""
    path = tmp_path / "v4.sqlite"
    SqliteStore(path).close()
    with (
        SqliteStore(path) as store,
        pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION}, expected 3"),
    ):
        store.check_schema("schema", 3)

"""``SqliteStore``: registrations, observations and telemetry in one sqlite file (sqlite-utils).

Durability. The file runs in WAL mode with ``synchronous=NORMAL``. A write is committed (the
transaction's frames are in the ``-wal`` file via ``write()``) before the method returns, so the
data is in the operating system's page cache when the CoAP layer replies. A process that is
killed (``kill -9``, OOM killer, a crash) loses nothing: the kernel still writes the page cache
out, and the next open replays the WAL. What NORMAL does not fsync on every commit is the WAL
itself, so a power cut or kernel crash can roll back the last commits (never corrupt the file:
WAL replay is atomic per transaction). That is the requirement here (survive the process dying)
at a fraction of FULL's cost (one fsync per commit would cap us at a few hundred Registers per
second on ordinary disks). Deployments that must survive power loss set ``synchronous="FULL"``.

Transactions. Every public write is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``);
``batch()`` groups many into one (a restart re-persisting 1,000 registrations, the benchmark);
nested writes inside a batch are savepoints, so a failing inner write is undone alone and the
batch still commits or rolls back as a whole. Input is converted and checked *before* the
transaction starts, so invalid input never leaves a partial write.

Threads. One connection, used from the thread that opened it (the asyncio loop thread); sqlite3
refuses use from other threads (``check_same_thread``). Calls block the loop for the duration of
a small transaction (well under a millisecond in WAL mode on local disk), which is cheaper and
simpler than a thread hop per write.

Errors. Every sqlite failure becomes ``StoreError`` naming the file: a file that is not a
database or is corrupt, a database locked by another process past ``busy_timeout``, a read-only
directory, a full disk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlite_utils

from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint

from .base import StoreError
from .records import (
    check_point,
    dumps,
    observation_from_json,
    observation_to_json,
    point_from_row,
    registration_from_json,
    registration_to_json,
)

SCHEMA_VERSION = 1
MAX_HISTORY = 100_000


class SqliteStore:
    """Implements ``RegistrationStore``, ``ObservationStore`` and ``TelemetryStore``."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = Path(path)
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        self._depth = 0
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout_ms / 1000)
            self._conn = conn
            self.db = sqlite_utils.Database(conn)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._create_schema()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise StoreError(f"{self.path}: cannot open the store: {_explain(exc)}") from exc
        except StoreError:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    def _create_schema(self) -> None:
        db = self.db
        db.table("meta").create({"name": str, "value": str}, pk="name", if_not_exists=True)
        row = self.conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
        db.table("registrations").create(
            {"id": str, "endpoint": str, "last_update": float, "data": str},
            pk="id",
            not_null={"endpoint", "last_update", "data"},
            if_not_exists=True,
        )
        db.table("registrations").create_index(["endpoint"], unique=True, if_not_exists=True)
        db.table("observations").create(
            {"token": str, "endpoint": str, "registration_id": str, "data": str},
            pk="token",
            not_null={"endpoint", "registration_id", "data"},
            if_not_exists=True,
        )
        db.table("observations").create_index(["endpoint"], if_not_exists=True)
        db.table("observations").create_index(["registration_id"], if_not_exists=True)
        db.table("telemetry").create(
            {
                "id": int,
                "endpoint": str,
                "path": str,
                "key": str,
                "ts_ms": int,
                "type": str,
                "value": str,
            },
            pk="id",
            not_null={"endpoint", "path", "key", "ts_ms", "type", "value"},
            if_not_exists=True,
        )
        db.table("telemetry").create_index(["endpoint", "key", "ts_ms"], if_not_exists=True)
        db.table("telemetry").create_index(["endpoint", "path", "ts_ms"], if_not_exists=True)
        db.table("telemetry_latest").create(
            {"endpoint": str, "path": str, "key": str, "ts_ms": int, "type": str, "value": str},
            pk=("endpoint", "path"),
            not_null={"key", "ts_ms", "type", "value"},
            if_not_exists=True,
        )
        if row is None:
            with self._write():
                self.conn.execute(
                    "INSERT INTO meta(name, value) VALUES('schema', ?)", (str(SCHEMA_VERSION),)
                )

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[SqliteStore]:
        """Group writes into one transaction (one commit for many registrations)."""
        with self._write():
            yield self

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        depth = self._depth
        savepoint = f"sp{depth}"
        try:
            conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write: {_explain(exc)}") from exc
        self._depth += 1
        try:
            yield conn
        except BaseException as exc:
            self._depth -= 1
            try:
                if depth == 0:
                    conn.rollback()
                else:
                    conn.execute(f"ROLLBACK TO {savepoint}")
                    conn.execute(f"RELEASE {savepoint}")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: write failed: {_explain(exc)}") from exc
            raise
        self._depth -= 1
        try:
            if depth == 0:
                conn.commit()
            else:
                conn.execute(f"RELEASE {savepoint}")
        except sqlite3.Error as exc:
            if depth == 0:
                with suppress(sqlite3.Error):
                    conn.rollback()
            raise StoreError(f"{self.path}: commit failed: {_explain(exc)}") from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: read failed: {_explain(exc)}") from exc

    # -- registrations -----------------------------------------------------------------------
    def put_registration(self, registration: Registration) -> Registration | None:
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        data = dumps(registration_to_json(registration))
        with self._write() as conn:
            replaced = None
            rows = conn.execute(
                "SELECT id, data FROM registrations WHERE endpoint = ? AND id != ?",
                (registration.endpoint, registration.registration_id),
            ).fetchall()
            for old_id, old_data in rows:
                replaced = self._decode_registration(old_data)
                self._delete_registration(conn, old_id)
            conn.execute(
                "INSERT INTO registrations(id, endpoint, last_update, data) VALUES(?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET endpoint=excluded.endpoint, "
                "last_update=excluded.last_update, data=excluded.data",
                (
                    registration.registration_id,
                    registration.endpoint,
                    registration.last_update,
                    data,
                ),
            )
        return replaced

    def put_registrations(self, registrations: Iterable[Registration]) -> int:
        """Many registrations in one transaction; returns how many were written."""
        regs = list(registrations)
        with self.batch():
            for reg in regs:
                self.put_registration(reg)
        return len(regs)

    def remove_registration(self, registration_id: str) -> Registration | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT data FROM registrations WHERE id = ?", (registration_id,)
            ).fetchone()
            if row is None:
                return None
            self._delete_registration(conn, registration_id)
        return self._decode_registration(row[0])

    def get_registration(self, registration_id: str) -> Registration | None:
        rows = self._read("SELECT data FROM registrations WHERE id = ?", (registration_id,))
        return self._decode_registration(rows[0][0]) if rows else None

    def registration_by_endpoint(self, endpoint: str) -> Registration | None:
        rows = self._read("SELECT data FROM registrations WHERE endpoint = ?", (endpoint,))
        return self._decode_registration(rows[0][0]) if rows else None

    def registrations(self) -> list[Registration]:
        rows = self._read("SELECT data FROM registrations ORDER BY last_update, id")
        return [self._decode_registration(r[0]) for r in rows]

    @staticmethod
    def _delete_registration(conn: sqlite3.Connection, registration_id: str) -> None:
        conn.execute("DELETE FROM observations WHERE registration_id = ?", (registration_id,))
        conn.execute("DELETE FROM registrations WHERE id = ?", (registration_id,))

    def _decode_registration(self, data: str) -> Registration:
        try:
            return registration_from_json(json.loads(data))
        except ValueError as exc:
            raise StoreError(f"{self.path}: corrupt registration record: {exc}") from exc

    # -- observations ------------------------------------------------------------------------
    def put_observation(self, observation: Observation) -> None:
        if not isinstance(observation, Observation):
            raise StoreError(f"expected an Observation, got {type(observation).__name__}")
        data = dumps(observation_to_json(observation))
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO observations(token, endpoint, registration_id, data) "
                "VALUES(?, ?, ?, ?)",
                (observation.token.hex(), observation.endpoint, observation.registration_id, data),
            )

    def remove_observation(self, token: bytes) -> Observation | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT data FROM observations WHERE token = ?", (token.hex(),)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM observations WHERE token = ?", (token.hex(),))
        return self._decode_observation(row[0])

    def observation_by_token(self, token: bytes) -> Observation | None:
        rows = self._read("SELECT data FROM observations WHERE token = ?", (token.hex(),))
        return self._decode_observation(rows[0][0]) if rows else None

    def observations_by_endpoint(self, endpoint: str) -> list[Observation]:
        rows = self._read(
            "SELECT data FROM observations WHERE endpoint = ? ORDER BY token", (endpoint,)
        )
        return [self._decode_observation(r[0]) for r in rows]

    def observations(self) -> list[Observation]:
        rows = self._read("SELECT data FROM observations ORDER BY token")
        return [self._decode_observation(r[0]) for r in rows]

    def _decode_observation(self, data: str) -> Observation:
        try:
            return observation_from_json(json.loads(data))
        except ValueError as exc:
            raise StoreError(f"{self.path}: corrupt observation record: {exc}") from exc

    # -- telemetry ---------------------------------------------------------------------------
    def append_points(self, points: Iterable[TelemetryPoint]) -> int:
        try:
            rows = [check_point(p) for p in points]
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: invalid telemetry point, nothing written: {exc}"
            ) from exc
        if not rows:
            return 0
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO telemetry(endpoint, path, key, ts_ms, type, value) "
                "VALUES(?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO telemetry_latest(endpoint, path, key, ts_ms, type, value) "
                "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(endpoint, path) DO UPDATE SET "
                "key=excluded.key, ts_ms=excluded.ts_ms, type=excluded.type, "
                "value=excluded.value WHERE excluded.ts_ms >= telemetry_latest.ts_ms",
                rows,
            )
        return len(rows)

    def latest(self, endpoint: str) -> dict[str, TelemetryPoint]:
        rows = self._read(
            "SELECT endpoint, path, key, ts_ms, type, value FROM telemetry_latest "
            "WHERE endpoint = ? ORDER BY path",
            (endpoint,),
        )
        return {r[1]: self._decode_point(r) for r in rows}

    def history(
        self,
        endpoint: str,
        key: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        if not 1 <= limit <= MAX_HISTORY:
            raise StoreError(f"history limit must be 1..{MAX_HISTORY}, got {limit}")
        lo = -(2**63) if since_ms is None else since_ms
        hi = 2**63 - 1 if until_ms is None else until_ms
        rows = self._read(
            "SELECT endpoint, path, key, ts_ms, type, value FROM telemetry "
            "WHERE endpoint = ? AND (key = ? OR path = ?) AND ts_ms >= ? AND ts_ms < ? "
            "ORDER BY ts_ms DESC, id DESC LIMIT ?",
            (endpoint, key, key, lo, hi, limit),
        )
        return [self._decode_point(r) for r in rows]

    def _decode_point(self, row: tuple[Any, ...]) -> TelemetryPoint:
        try:
            return point_from_row(*row)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: corrupt telemetry row: {exc}") from exc


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"{text} (another process holds a write lock on it)"
    if "not a database" in text or "malformed" in text:
        return f"{text} (the file is not a readable sqlite database: restore or move it)"
    return text

"""``SqliteStore``: registrations, observations and telemetry, in the process's sqlite file.

The file, its durability (WAL, ``synchronous=NORMAL``), transactions (``batch()``, savepoints)
and error wording are ``keystore.store.database.SqliteDatabase``'s, which this class extends
with its tables; the credential, profile and DTLS-session stores share the same connection.
Every public write is one transaction; input is converted and checked *before* the transaction
starts, so invalid input never leaves a partial write.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint

from .records import (
    check_point,
    observation_from_json,
    observation_to_json,
    point_from_row,
    registration_from_json,
    registration_to_json,
)

SCHEMA_VERSION = 1
MAX_HISTORY = 100_000


class SqliteStore(SqliteDatabase):
    """Implements ``RegistrationStore``, ``ObservationStore`` and ``TelemetryStore``."""

    def _create_schema(self) -> None:
        super()._create_schema()
        db = self.db
        known = self.check_schema("schema", SCHEMA_VERSION)
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
        if not known:
            self.record_schema("schema", SCHEMA_VERSION)

    # -- registrations -----------------------------------------------------------------------
    def put_registration(self, registration: Registration) -> Registration | None:
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        data = dumps(registration_to_json(registration))
        with self.write() as conn:
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
        with self.write() as conn:
            row = conn.execute(
                "SELECT data FROM registrations WHERE id = ?", (registration_id,)
            ).fetchone()
            if row is None:
                return None
            self._delete_registration(conn, registration_id)
        return self._decode_registration(row[0])

    def get_registration(self, registration_id: str) -> Registration | None:
        rows = self.read("SELECT data FROM registrations WHERE id = ?", (registration_id,))
        return self._decode_registration(rows[0][0]) if rows else None

    def registration_by_endpoint(self, endpoint: str) -> Registration | None:
        rows = self.read("SELECT data FROM registrations WHERE endpoint = ?", (endpoint,))
        return self._decode_registration(rows[0][0]) if rows else None

    def registrations(self) -> list[Registration]:
        rows = self.read("SELECT data FROM registrations ORDER BY last_update, id")
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
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO observations(token, endpoint, registration_id, data) "
                "VALUES(?, ?, ?, ?)",
                (observation.token.hex(), observation.endpoint, observation.registration_id, data),
            )

    def remove_observation(self, token: bytes) -> Observation | None:
        with self.write() as conn:
            row = conn.execute(
                "SELECT data FROM observations WHERE token = ?", (token.hex(),)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM observations WHERE token = ?", (token.hex(),))
        return self._decode_observation(row[0])

    def observation_by_token(self, token: bytes) -> Observation | None:
        rows = self.read("SELECT data FROM observations WHERE token = ?", (token.hex(),))
        return self._decode_observation(rows[0][0]) if rows else None

    def observations_by_endpoint(self, endpoint: str) -> list[Observation]:
        rows = self.read(
            "SELECT data FROM observations WHERE endpoint = ? ORDER BY token", (endpoint,)
        )
        return [self._decode_observation(r[0]) for r in rows]

    def observations(self) -> list[Observation]:
        rows = self.read("SELECT data FROM observations ORDER BY token")
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
        with self.write() as conn:
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
        rows = self.read(
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
        rows = self.read(
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

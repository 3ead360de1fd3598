"""The bootstrap server's own sqlite file: provisioning records and the session history.

Separate from the shared keystore (the LwM2M server's file) on purpose: that file holds what
``lwm2m-server`` needs to accept devices, this one what only the bootstrap server needs (who
is pre-provisioned, ``provisionState``, what each session did). Same engine and discipline as
``keystore.store.database``: WAL, one connection on the loop thread, each write one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import sqlite_utils

from keystore.secrets_io import ensure_private_dir
from keystore.store.errors import StoreError

from .core.client_info import ClientInfo
from .core.manager import SessionSummary
from .core.provisioning import DeviceRecord, ProvisionState

SESSIONS_KEPT = 10_000


class BootstrapStore(Protocol):
    """What the bootstrap server keeps: provisioning records (``DeviceRegistry``), the session
    log, and each endpoint's last Bootstrap-Discover (``DiscoveryLog``). Engines: this module's
    sqlite file, ``bootstrap_server.redis_store`` for several bootstrap servers on one Redis."""

    def get_device(self, endpoint: str) -> DeviceRecord | None: ...

    def put_device(self, record: DeviceRecord) -> None: ...

    def put_devices(self, records: Sequence[DeviceRecord]) -> None:
        """All or nothing (a CSV import)."""
        ...

    def devices(self) -> list[DeviceRecord]:
        """Every record, by endpoint."""
        ...

    def remove_device(self, endpoint: str) -> DeviceRecord | None: ...

    def add_session(self, summary: SessionSummary) -> None:
        """Log a finished session (the newest ``SESSIONS_KEPT`` are kept)."""
        ...

    def sessions(self, endpoint: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        """Newest first, as the API shows them."""
        ...

    def last_discover(self, endpoint: str) -> ClientInfo | None: ...

    def put_discover(self, endpoint: str, client: ClientInfo, now: float) -> None: ...

    def close(self) -> None: ...


class SqliteBootstrapStore:
    """``DeviceRegistry``, the session log, and each endpoint's last Bootstrap-Discover
    (``DiscoveryLog``: where a later Bootstrap-Pack must not write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            ensure_private_dir(self.path.parent)
            self._conn = sqlite3.connect(str(self.path), timeout=5.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            db = sqlite_utils.Database(self._conn)
            db.table("bs_devices").create(
                {"endpoint": str, "profile": str, "state": str, "reason": str, "updated": float,
                 "origin": str},
                pk="endpoint", not_null={"state", "reason", "updated", "origin"},
                if_not_exists=True,
            )  # fmt: skip
            db.table("bs_sessions").create(
                {"seq": int, "id": str, "endpoint": str, "ended": float, "data": str},
                pk="seq", not_null={"id", "endpoint", "ended", "data"}, if_not_exists=True,
            )  # fmt: skip
            db.table("bs_sessions").create_index(["endpoint"], if_not_exists=True)
            db.table("bs_discoveries").create(
                {"endpoint": str, "seen": float, "data": str},
                pk="endpoint", not_null={"seen", "data"}, if_not_exists=True,
            )  # fmt: skip
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: cannot open the bootstrap store: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        try:
            with self._conn:
                self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write failed: {exc}") from exc

    # -- DeviceRegistry ---------------------------------------------------------------------------
    def get_device(self, endpoint: str) -> DeviceRecord | None:
        rows = self._conn.execute(
            "SELECT endpoint, profile, state, reason, updated, origin FROM bs_devices "
            "WHERE endpoint = ?", (endpoint,)).fetchall()  # fmt: skip
        return _record(rows[0]) if rows else None

    def put_device(self, record: DeviceRecord) -> None:
        self.put_devices([record])

    def put_devices(self, records: Sequence[DeviceRecord]) -> None:
        self._write(
            "INSERT OR REPLACE INTO bs_devices(endpoint, profile, state, reason, updated, origin) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            [(r.endpoint, r.profile, r.state.value, r.reason, r.updated, r.origin)
             for r in records],
        )  # fmt: skip

    def devices(self) -> list[DeviceRecord]:
        rows = self._conn.execute(
            "SELECT endpoint, profile, state, reason, updated, origin FROM bs_devices "
            "ORDER BY endpoint").fetchall()  # fmt: skip
        return [_record(r) for r in rows]

    def remove_device(self, endpoint: str) -> DeviceRecord | None:
        old = self.get_device(endpoint)
        if old is not None:
            self._write("DELETE FROM bs_devices WHERE endpoint = ?", [(endpoint,)])
        return old

    # -- sessions ---------------------------------------------------------------------------------
    def add_session(self, summary: SessionSummary) -> None:
        data = json.dumps(summary.to_json())
        self._write("INSERT INTO bs_sessions(id, endpoint, ended, data) VALUES(?, ?, ?, ?)",
                    [(summary.session_id, summary.endpoint, summary.ended, data)])  # fmt: skip
        self._write("DELETE FROM bs_sessions WHERE seq <= (SELECT MAX(seq) FROM bs_sessions) - ?",
                    [(SESSIONS_KEPT,)])  # fmt: skip

    def sessions(self, endpoint: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        """Newest first, as the API shows them."""
        sql = "SELECT data FROM bs_sessions"
        params: tuple[object, ...] = ()
        if endpoint is not None:
            sql += " WHERE endpoint = ?"
            params = (endpoint,)
        rows = self._conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- DiscoveryLog -----------------------------------------------------------------------------
    def last_discover(self, endpoint: str) -> ClientInfo | None:
        """None when never seen, or when it cannot be read (then it is as if unknown: the pack
        keeps clear of /0/0 and /0/1, which is safe, rather than failing the device)."""
        try:
            rows = self._conn.execute("SELECT data FROM bs_discoveries WHERE endpoint = ?",
                                      (endpoint,)).fetchall()  # fmt: skip
            return ClientInfo.from_json(json.loads(rows[0][0])) if rows else None
        except (sqlite3.Error, ValueError):
            return None

    def put_discover(self, endpoint: str, client: ClientInfo, now: float) -> None:
        self._write("INSERT OR REPLACE INTO bs_discoveries(endpoint, seen, data) VALUES(?, ?, ?)",
                    [(endpoint, now, json.dumps(client.to_json()))])  # fmt: skip


def _record(row: tuple[object, ...]) -> DeviceRecord:
    endpoint, profile, state, reason, updated, origin = row
    return DeviceRecord(str(endpoint), None if profile is None else str(profile),
                        ProvisionState(str(state)), str(reason), float(updated),  # type: ignore[arg-type]
                        str(origin))  # fmt: skip

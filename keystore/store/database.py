"""``SqliteDatabase``: the one sqlite file (sqlite-utils) that every store of a process shares.

The credential, profile and DTLS-session stores here and the LwM2M server's registration store
(``lwm2m_server.store.sqlite.SqliteStore``, a subclass that adds its tables) all write through
this connection, so one ``batch()`` can span them.

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
simpler than a thread hop per write. (The LwM2M server's store in group commit adds one thread
with a connection of its own that only runs WAL checkpoints: ``lwm2m_server.store.checkpointer``.)

Errors. Every sqlite failure becomes ``StoreError`` naming the file: a file that is not a
database or is corrupt, a database locked by another process past ``busy_timeout``, a read-only
directory, a full disk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Self

import sqlite_utils

from ..secrets_io import restrict
from .errors import StoreError

DATABASE_FILE = "lwm2m-server.sqlite"
"""The shared database's name in a data folder. The LwM2M server's store, the keystore CLI and
the bootstrap server (its ``keystore`` default) all open ``<data_dir>/DATABASE_FILE``: defined
once, here below all three, so they can never point at different files."""


def dumps(obj: object) -> str:
    """The compact JSON text every store writes (no NaN: it is not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class SqliteDatabase:
    """The connection, its pragmas, the ``meta`` table and transactions. Subclasses add their
    tables by extending ``_create_schema`` (called once the connection is set up)."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    def _create_schema(self) -> None:
        self.db.table("meta").create({"name": str, "value": str}, pk="name", if_not_exists=True)

    def check_schema(self, name: str, expected: int) -> bool:
        """Refuse a file whose ``name`` schema (a row of ``meta``: each store versions its own
        tables) is not version ``expected`` (``StoreError``, naming the file). True when the
        file records the version, False when the tables are new (record it after creating them
        with ``record_schema``)."""
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is not None and int(row[0]) != expected:
            label = name.replace("_", " ")
            raise StoreError(f"{self.path}: {label} version {row[0]}, expected {expected}")
        return row is not None

    def restrict_to_owner(self) -> None:
        """Make the file (and its WAL/shared-memory files) 0600: called by every store that
        keeps secrets in it (device keys, DTLS session keys)."""
        try:
            for suffix in ("", "-wal", "-shm"):
                restrict(f"{self.path}{suffix}")
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot make the file owner-only: {exc}") from exc

    def record_schema(self, name: str, version: int) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta(name, value) VALUES(?, ?)", (name, str(version))
            )

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[Self]:
        """Group writes into one transaction (one commit for many registrations)."""
        with self.write():
            yield self

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction (a savepoint inside ``batch()`` or another ``write()``); a
        failure rolls it back alone and becomes ``StoreError``."""
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

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: read failed: {_explain(exc)}") from exc


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"{text} (another process holds a write lock on it)"
    if "not a database" in text or "malformed" in text:
        return f"{text} (the file is not a readable sqlite database: restore or move it)"
    return text

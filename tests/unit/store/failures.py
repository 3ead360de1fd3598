"""A sqlite connection whose COMMIT fails, for the group-commit tests of the sqlite store."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lwm2m_server.store.sqlite import SqliteStore


class FailingCommit:
    """Wraps a connection; ``commit`` raises what sqlite raises on a full disk, everything
    else goes to the real connection (the group's statements really ran)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def commit(self) -> None:
        raise sqlite3.OperationalError("database or disk is full")


def commit_fails(store: SqliteStore) -> None:
    """Commit the store's open group with a COMMIT that fails (a full disk): the store must
    report it (``commit()`` is False); its real connection is back afterwards."""
    conn = store._conn
    store._conn = FailingCommit(conn)  # type: ignore[arg-type, assignment]
    try:
        assert store.commit() is False
    finally:
        store._conn = conn

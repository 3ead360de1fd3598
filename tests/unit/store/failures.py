"""A sqlite connection whose COMMIT fails, for the group-commit tests of the sqlite store."""

from __future__ import annotations

import sqlite3
from typing import Any


class FailingCommit:
    """Wraps a connection; ``commit`` raises what sqlite raises on a full disk, everything
    else goes to the real connection (the group's statements really ran)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def commit(self) -> None:
        raise sqlite3.OperationalError("database or disk is full")

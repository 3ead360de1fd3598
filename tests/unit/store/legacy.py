"""Store files as older schema versions left them, built from a current file: the migration
tests open them and check nothing is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

V4_REGISTRATIONS = (
    'CREATE TABLE "registrations" (\n   "id" TEXT PRIMARY KEY,\n   "endpoint" TEXT NOT NULL,\n'
    '   "last_update" REAL NOT NULL,\n   "data" TEXT NOT NULL,\n   "lifetime" INTEGER,\n'
    '   "host" TEXT,\n   "port" INTEGER,\n   "identity" TEXT,\n   "expires_at" REAL\n)'
)
"""The table exactly as schema 4 created it (``sqlite_master.sql`` of a version-4 file)."""
V4_INDEXES = (
    'CREATE UNIQUE INDEX "idx_registrations_endpoint"\n    ON "registrations" ("endpoint")',
    'CREATE INDEX "idx_registrations_expires_at"\n    ON "registrations" ("expires_at")',
    'CREATE INDEX "idx_registrations_host_port"\n    ON "registrations" ("host", "port")',
    "CREATE INDEX idx_registrations_identity_bound ON registrations(identity) "
    "WHERE identity IS NOT NULL",
)


def to_v4_layout(path: Path) -> None:
    """Rewrite a closed current file's registrations as schema 4 stored them (the times in
    the row, no ``registration_times``), rowids kept, and record version 4."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT r.rid, r.id, r.endpoint, t.last_update, r.data, r.lifetime, r.host, "
            "r.port, r.identity, t.expires_at FROM registrations AS r "
            "JOIN registration_times AS t ON t.rid = r.rid"
        ).fetchall()
        conn.execute("DROP TABLE registrations")
        conn.execute("DROP TABLE registration_times")
        conn.execute(V4_REGISTRATIONS)
        for sql in V4_INDEXES:
            conn.execute(sql)
        conn.executemany(
            "INSERT INTO registrations(rowid, id, endpoint, last_update, data, lifetime, host, "
            "port, identity, expires_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("UPDATE meta SET value='4' WHERE name='schema'")
    conn.close()

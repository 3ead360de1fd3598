"""API tokens: the bearer credentials of the servers' HTTP APIs (who may read, who may change).

A token is shown once, when it is made (``lwm2m-keystore api-token create``, or the first admin
token a server writes to ``<data_dir>/api-token`` at its first start); only its SHA-256 is
stored, so a copy of the database does not let anyone into the API. A token is random (256
bits), so a plain digest is enough: there is nothing to guess that a slow hash would protect.

Two roles, as operators expect of a device-management API: ``read`` sees everything (clients,
values, events, telemetry) and changes nothing; ``admin`` may also write, execute, create,
delete, observe, write attributes, manage profiles and trigger bootstraps.

The tokens live in the keystore's sqlite file, shared by ``lwm2m-server`` and
``lwm2m-bootstrap``: one token works for both APIs.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import sqlite3
import time
from typing import Protocol

import attrs

from .store.database import SqliteDatabase
from .store.errors import StoreError

TOKEN_PREFIX = "lwm2m_"
NAME_MAX = 64


class Role(enum.Enum):
    READ = "read"
    ADMIN = "admin"

    def allows(self, method: str) -> bool:
        """Reads (GET/HEAD/OPTIONS) for every role; anything else for admins only."""
        return self is Role.ADMIN or method in ("GET", "HEAD", "OPTIONS")


@attrs.frozen
class ApiToken:
    """A token as stored: its name (who, in the audit log), role and digest — never the
    secret itself."""

    name: str
    role: Role
    sha256: str
    created_ms: int = 0


def new_secret() -> str:
    """A fresh token: a recognisable prefix (secret scanners, logs redaction) + 256 random
    bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str | None:
    """Why ``name`` cannot name a token (None when it can)."""
    if not name or len(name) > NAME_MAX:
        return f"a token name is 1 to {NAME_MAX} characters"
    if not all(c.isalnum() or c in "-_.@" for c in name):
        return f"{name!r}: a token name uses letters, digits and - _ . @"
    return None


class ApiTokenStore(Protocol):
    def put_token(self, token: ApiToken) -> ApiToken | None:
        """Insert or replace by name; the replaced token is returned (and stops working)."""
        ...

    def remove_token(self, name: str) -> ApiToken | None: ...

    def token_by_digest(self, sha256: str) -> ApiToken | None: ...

    def tokens(self) -> list[ApiToken]: ...


class SqliteApiTokenStore:
    """``ApiTokenStore`` in the keystore's sqlite file, on its one connection."""

    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        self.path = store.path
        store.restrict_to_owner()
        try:
            store.db.table("api_tokens").create(
                {"name": str, "role": str, "sha256": str, "created_ms": int},
                pk="name",
                not_null={"role", "sha256", "created_ms"},
                if_not_exists=True,
            )
            store.db.table("api_tokens").create_index(["sha256"], unique=True, if_not_exists=True)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the api_tokens table: {exc}") from exc

    def put_token(self, token: ApiToken) -> ApiToken | None:
        problem = check_name(token.name)
        if problem is not None:
            raise ValueError(problem)
        with self._store.write() as conn:
            old = self._one(conn, "SELECT * FROM api_tokens WHERE name = ?", (token.name,))
            conn.execute(
                "INSERT OR REPLACE INTO api_tokens(name, role, sha256, created_ms) "
                "VALUES (?, ?, ?, ?)",
                (token.name, token.role.value, token.sha256, token.created_ms or _now_ms()),
            )
        return old

    def remove_token(self, name: str) -> ApiToken | None:
        with self._store.write() as conn:
            old = self._one(conn, "SELECT * FROM api_tokens WHERE name = ?", (name,))
            conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
        return old

    def token_by_digest(self, sha256: str) -> ApiToken | None:
        rows = self._store.read(
            "SELECT name, role, sha256, created_ms FROM api_tokens WHERE sha256 = ?", (sha256,)
        )
        return _token(rows[0]) if rows else None

    def tokens(self) -> list[ApiToken]:
        rows = self._store.read(
            "SELECT name, role, sha256, created_ms FROM api_tokens ORDER BY name"
        )
        return [_token(row) for row in rows]

    @staticmethod
    def _one(conn: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> ApiToken | None:
        row = conn.execute(sql.replace("*", "name, role, sha256, created_ms"), params).fetchone()
        return None if row is None else _token(row)


def _token(row: tuple[object, ...]) -> ApiToken:
    name, role, sha256, created_ms = row
    return ApiToken(str(name), Role(str(role)), str(sha256), int(str(created_ms)))


def _now_ms() -> int:
    return int(time.time() * 1000)

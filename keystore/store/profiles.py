"""Device profiles and which device uses which: a small Protocol and its sqlite implementation
on the shared ``SqliteDatabase``. Both servers read it (the LwM2M server applies profiles, the
bootstrap server serves their bootstrap sections).

The store keeps profile *documents* (JSON-ready mappings) and never interprets them: validation
against the object models is ``lwm2m_server.profiles.loader``'s job, so a Redis engine only has to
move JSON around. What the LwM2M server derives from a profile (mapped attribute values, the
per-device status) is its own state: ``lwm2m_server.store.device_state``.

Same conventions as ``SqliteDatabase``: one connection, every write one transaction (or a
savepoint inside ``batch()``), ``StoreError`` naming the file on any failure.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from .database import SqliteDatabase, dumps
from .errors import StoreError

PROFILES_SCHEMA_VERSION = 1


@attrs.frozen
class StoredProfile:
    name: str
    document: Mapping[str, Any]
    source: str
    """A file path (managed by the profiles folder) or ``api``."""
    updated_at: float


class ProfileStore(Protocol):
    def put_profile(self, profile: StoredProfile) -> StoredProfile | None:
        """Insert or replace by name; return the replaced record."""
        ...

    def get_profile(self, name: str) -> StoredProfile | None: ...

    def profiles(self) -> list[StoredProfile]:
        """Every profile, by name."""
        ...

    def remove_profile(self, name: str) -> StoredProfile | None: ...

    def assign(self, endpoint: str, profile: str | None) -> None:
        """The device record's profile (``None`` removes the assignment)."""
        ...

    def assignments(self) -> dict[str, str]:
        """Endpoint -> profile name, for every device that has one."""
        ...

    def assignment(self, endpoint: str) -> str | None:
        """The device's assigned profile (a Register re-reads it: another process, e.g. the
        bootstrap server after provisioning, may have assigned it since)."""
        ...

    def assignments_of(self, endpoints: Sequence[str]) -> dict[str, str]:
        """``assignment`` of many devices in one read (the LwM2M server's Registers of one
        loop iteration): endpoint -> profile name for those that have one."""
        ...


class SqliteProfileStore:
    """``ProfileStore`` in the shared sqlite file."""

    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        self.path = store.path
        self._create_schema()

    def _create_schema(self) -> None:
        db = self._store.db
        try:
            known = self._store.check_schema("profiles_schema", PROFILES_SCHEMA_VERSION)
            db.table("profiles").create(
                {"name": str, "source": str, "updated_at": float, "document": str},
                pk="name",
                not_null={"source", "updated_at", "document"},
                if_not_exists=True,
            )
            db.table("profile_assignments").create(
                {"endpoint": str, "profile": str},
                pk="endpoint",
                not_null={"profile"},
                if_not_exists=True,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the profile tables: {exc}") from exc
        if not known:
            self._store.record_schema("profiles_schema", PROFILES_SCHEMA_VERSION)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._store.read(sql, params)

    def _json(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{self.path}: corrupt {what}: {exc}") from exc

    # -- profiles --------------------------------------------------------------------------------
    def put_profile(self, profile: StoredProfile) -> StoredProfile | None:
        try:
            document = dumps(profile.document)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"profile {profile.name!r} is not JSON-ready: {exc}") from exc
        old = self.get_profile(profile.name)
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO profiles(name, source, updated_at, document) "
                "VALUES(?, ?, ?, ?)",
                (profile.name, profile.source, profile.updated_at, document),
            )
        return old

    def _profile(self, row: tuple[Any, ...]) -> StoredProfile:
        name, source, updated_at, document = row
        return StoredProfile(name, self._json(document, f"profile {name!r}"), source, updated_at)

    def get_profile(self, name: str) -> StoredProfile | None:
        rows = self._read(
            "SELECT name, source, updated_at, document FROM profiles WHERE name = ?", (name,)
        )
        return self._profile(rows[0]) if rows else None

    def profiles(self) -> list[StoredProfile]:
        rows = self._read("SELECT name, source, updated_at, document FROM profiles ORDER BY name")
        return [self._profile(r) for r in rows]

    def remove_profile(self, name: str) -> StoredProfile | None:
        old = self.get_profile(name)
        if old is not None:
            with self._store.write() as conn:
                conn.execute("DELETE FROM profiles WHERE name = ?", (name,))
        return old

    def assign(self, endpoint: str, profile: str | None) -> None:
        with self._store.write() as conn:
            if profile is None:
                conn.execute("DELETE FROM profile_assignments WHERE endpoint = ?", (endpoint,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO profile_assignments(endpoint, profile) VALUES(?, ?)",
                    (endpoint, profile),
                )

    def assignments(self) -> dict[str, str]:
        rows = self._read("SELECT endpoint, profile FROM profile_assignments ORDER BY endpoint")
        return {endpoint: profile for endpoint, profile in rows}

    def assignment(self, endpoint: str) -> str | None:
        rows = self._read("SELECT profile FROM profile_assignments WHERE endpoint = ?", (endpoint,))
        return str(rows[0][0]) if rows else None

    def assignments_of(self, endpoints: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(endpoints), 500):  # below any sqlite build's variable limit
            chunk = tuple(endpoints[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                f"SELECT endpoint, profile FROM profile_assignments WHERE endpoint IN ({marks})",
                chunk,
            )
            found.update((str(endpoint), str(profile)) for endpoint, profile in rows)
        return found

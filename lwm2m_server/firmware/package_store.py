"""Where packages and download grants are kept: package metadata and grants in the server's
store (memory, sqlite or Redis, like every other store of the server), package bytes in a blob
location (files in the data dir, or Redis).

Why two Protocols and not one: the metadata is small and belongs with the rest of the server's
state (a grant made on one cluster node is redeemed on another), while the bytes are large and
read one block at a time. The engine pairs are:

* **sqlite** (the default): metadata in the shared sqlite file, bytes in ``FileBlobs`` under
  ``<data_dir>/packages/<id[:2]>/<id>``; a download block is one ``pread`` (HTTP downloads use
  ``sendfile``);
* **Redis** (several nodes): metadata and grants in Redis, bytes in ``RedisBlobs``, one string
  per package under ``P:fwblob:{pkg:<id>}`` (``GETRANGE`` per block), so every node serves every
  package without a shared file system. Redis keeps the bytes in memory: 16 MiB per package by
  default (``firmware.max_package_size``); a fleet with many large images on Redis needs the
  memory for them, which is why the limit is a setting;
* **memory**: both in dicts (tests, the core alone).

Redis keys (``P`` the prefix; the hash tags keep each key's slot explicit for Redis Cluster):

* ``{P:firmware}:packages``  hash  package id → the package (JSON);
* ``P:fwgrant:{<token>}``    string the grant (JSON), expiring ``KEEP_EXPIRED_MS`` after the
  grant does (so that a device fetching a stale URI is told "expired", not "unknown");
* ``P:fwgrants:{<ep>}``      set  the endpoint's tokens (``revoke`` deletes them);
* ``P:fwblob:{pkg:<id>}``    string the package bytes.

A package's record and its bytes are in different places, so adding writes the bytes first
(durable) and then the record, and deleting removes the record first: a crash in between
leaves bytes without a record (re-used by the next upload of the same bytes), never a record
without bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase

from .contracts import DownloadGrant, Package, PackageKind

FIRMWARE_SCHEMA = "firmware_packages_schema"
FIRMWARE_SCHEMA_VERSION = 1

KEEP_EXPIRED_MS = 24 * 3600 * 1000
"""How long an expired grant is remembered (answered "expired" rather than "unknown")."""


class PackageRecords(Protocol):
    def put_package(self, package: Package) -> Package:
        """Store ``package`` unless one with its id exists; return the stored one (the first
        upload's metadata wins: content-addressed, the same bytes are one package)."""
        ...

    def get_package(self, package_id: str) -> Package | None: ...

    def all_packages(self) -> list[Package]:
        """Every package, oldest first."""
        ...

    def remove_package(self, package_id: str) -> bool: ...


class GrantRecords(Protocol):
    def put_grant(self, grant: DownloadGrant) -> None: ...

    def get_grant(self, token: str) -> DownloadGrant | None:
        """The grant (expired ones too, for ``KEEP_EXPIRED_MS``), None when unknown."""
        ...

    def remove_grants(self, endpoint: str) -> int:
        """Forget every grant of ``endpoint``; how many there were."""
        ...

    def prune_grants(self, now_ms: int) -> int:
        """Forget grants expired more than ``KEEP_EXPIRED_MS`` before ``now_ms``."""
        ...


class FirmwareRecords(PackageRecords, GrantRecords, Protocol):
    """One engine holds both (they live in the server's store)."""


class Blobs(Protocol):
    """Package bytes by id. ``put`` and ``read`` may be called from worker threads."""

    def put(self, package_id: str, data: bytes) -> None:
        """Store ``data`` under ``package_id`` durably (nothing when already there)."""
        ...

    def exists(self, package_id: str) -> bool: ...

    def read(self, package_id: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes from ``offset`` (fewer at the end); ``StoreError`` when
        the bytes are gone."""
        ...

    def delete(self, package_id: str) -> None: ...

    def path(self, package_id: str) -> Path | None:
        """The file holding the bytes, when they are a file (HTTP serves it by ``sendfile``)."""
        ...

    def close(self) -> None: ...


# -- encoding ----------------------------------------------------------------------------------


def package_json(package: Package) -> str:
    return dumps(
        {
            "id": package.id,
            "kind": package.kind.value,
            "name": package.name,
            "version": package.version,
            "size": package.size,
            "created_ms": package.created_ms,
            "profile": package.profile,
        }
    )


def package_from_json(text: str | bytes, where: str) -> Package:
    try:
        d = json.loads(text)
        return Package(
            id=str(d["id"]),
            kind=PackageKind(d["kind"]),
            name=str(d["name"]),
            version=str(d["version"]),
            size=int(d["size"]),
            created_ms=int(d["created_ms"]),
            profile=None if d.get("profile") is None else str(d["profile"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{where}: corrupt package record: {exc}") from exc


def grant_json(grant: DownloadGrant) -> str:
    return dumps(
        {
            "token": grant.token,
            "package_id": grant.package_id,
            "endpoint": grant.endpoint,
            "expires_ms": grant.expires_ms,
        }
    )


def grant_from_json(text: str | bytes, where: str) -> DownloadGrant:
    try:
        d = json.loads(text)
        return DownloadGrant(
            token=str(d["token"]),
            package_id=str(d["package_id"]),
            endpoint=str(d["endpoint"]),
            expires_ms=int(d["expires_ms"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{where}: corrupt download grant: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- memory --------------------------------------------------------------------------------------


class MemoryFirmwareRecords:
    """``FirmwareRecords`` in dicts (tests; nothing durable)."""

    def __init__(self) -> None:
        self._packages: dict[str, Package] = {}
        self._grants: dict[str, DownloadGrant] = {}

    def put_package(self, package: Package) -> Package:
        return self._packages.setdefault(package.id, package)

    def get_package(self, package_id: str) -> Package | None:
        return self._packages.get(package_id)

    def all_packages(self) -> list[Package]:
        return sorted(self._packages.values(), key=lambda p: (p.created_ms, p.id))

    def remove_package(self, package_id: str) -> bool:
        return self._packages.pop(package_id, None) is not None

    def put_grant(self, grant: DownloadGrant) -> None:
        self._grants[grant.token] = grant

    def get_grant(self, token: str) -> DownloadGrant | None:
        return self._grants.get(token)

    def remove_grants(self, endpoint: str) -> int:
        gone = [t for t, g in self._grants.items() if g.endpoint == endpoint]
        for token in gone:
            del self._grants[token]
        return len(gone)

    def prune_grants(self, now_ms: int) -> int:
        gone = [t for t, g in self._grants.items() if g.expires_ms + KEEP_EXPIRED_MS < now_ms]
        for token in gone:
            del self._grants[token]
        return len(gone)


class MemoryBlobs:
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def put(self, package_id: str, data: bytes) -> None:
        self._data.setdefault(package_id, bytes(data))

    def exists(self, package_id: str) -> bool:
        return package_id in self._data

    def read(self, package_id: str, offset: int, length: int) -> bytes:
        data = self._data.get(package_id)
        if data is None:
            raise StoreError(f"the bytes of package {package_id} are gone")
        return data[offset : offset + length]

    def delete(self, package_id: str) -> None:
        self._data.pop(package_id, None)

    def path(self, package_id: str) -> Path | None:
        return None

    def close(self) -> None:
        pass


# -- sqlite + files --------------------------------------------------------------------------


class SqliteFirmwareRecords:
    """``FirmwareRecords`` in the server's sqlite file (tables ``firmware_packages`` and
    ``firmware_grants``, versioned as ``firmware_packages_schema``). Writes are in ``batch()``:
    durable when the call returns even under the server's group commit (an upload's 201, a
    Package URI written to a device, must not be undone by a crash a moment later)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self.path = db.path
        try:
            known = db.check_schema(FIRMWARE_SCHEMA, FIRMWARE_SCHEMA_VERSION)
            db.db.table("firmware_packages").create(
                {
                    "id": str,
                    "kind": str,
                    "name": str,
                    "version": str,
                    "size": int,
                    "created_ms": int,
                    "profile": str,
                },
                pk="id",
                not_null={"kind", "name", "version", "size", "created_ms"},
                if_not_exists=True,
            )
            db.db.table("firmware_grants").create(
                {"token": str, "package_id": str, "endpoint": str, "expires_ms": int},
                pk="token",
                not_null={"package_id", "endpoint", "expires_ms"},
                if_not_exists=True,
            )
            db.db.table("firmware_grants").create_index(
                ["endpoint"], index_name="firmware_grants_endpoint", if_not_exists=True
            )
            if not known:
                db.record_schema(FIRMWARE_SCHEMA, FIRMWARE_SCHEMA_VERSION)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the firmware tables: {exc}") from exc

    def put_package(self, package: Package) -> Package:
        with self._db.batch(), self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO firmware_packages"
                "(id, kind, name, version, size, created_ms, profile) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (
                    package.id,
                    package.kind.value,
                    package.name,
                    package.version,
                    package.size,
                    package.created_ms,
                    package.profile,
                ),
            )
        stored = self.get_package(package.id)
        if stored is None:
            raise StoreError(f"{self.path}: package {package.id} not stored")
        return stored

    _COLUMNS = "id, kind, name, version, size, created_ms, profile"

    def _package(self, row: tuple[object, ...]) -> Package:
        try:
            pid, kind, name, version, size, created_ms, profile = row
            return Package(
                id=str(pid),
                kind=PackageKind(kind),
                name=str(name),
                version=str(version),
                size=int(size),  # type: ignore[call-overload]
                created_ms=int(created_ms),  # type: ignore[call-overload]
                profile=None if profile is None else str(profile),
            )
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: corrupt package row: {exc}") from exc

    def get_package(self, package_id: str) -> Package | None:
        rows = self._db.read(
            f"SELECT {self._COLUMNS} FROM firmware_packages WHERE id = ?", (package_id,)
        )
        return self._package(rows[0]) if rows else None

    def all_packages(self) -> list[Package]:
        rows = self._db.read(
            f"SELECT {self._COLUMNS} FROM firmware_packages ORDER BY created_ms, id"
        )
        return [self._package(r) for r in rows]

    def remove_package(self, package_id: str) -> bool:
        with self._db.batch(), self._db.write() as conn:
            cursor = conn.execute("DELETE FROM firmware_packages WHERE id = ?", (package_id,))
        return cursor.rowcount > 0

    def put_grant(self, grant: DownloadGrant) -> None:
        with self._db.batch(), self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO firmware_grants(token, package_id, endpoint, expires_ms) "
                "VALUES(?, ?, ?, ?)",
                (grant.token, grant.package_id, grant.endpoint, grant.expires_ms),
            )

    def get_grant(self, token: str) -> DownloadGrant | None:
        rows = self._db.read(
            "SELECT token, package_id, endpoint, expires_ms FROM firmware_grants WHERE token = ?",
            (token,),
        )
        if not rows:
            return None
        t, package_id, endpoint, expires_ms = rows[0]
        return DownloadGrant(str(t), str(package_id), str(endpoint), int(expires_ms))

    def remove_grants(self, endpoint: str) -> int:
        with self._db.batch(), self._db.write() as conn:
            cursor = conn.execute("DELETE FROM firmware_grants WHERE endpoint = ?", (endpoint,))
        return cursor.rowcount

    def prune_grants(self, now_ms: int) -> int:
        with self._db.batch(), self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM firmware_grants WHERE expires_ms < ?", (now_ms - KEEP_EXPIRED_MS,)
            )
        return cursor.rowcount


class FileBlobs:
    """Package bytes as files ``<folder>/<id[:2]>/<id>``: written to a temporary file, fsync'd
    and renamed (a reader never sees half a package; a crash leaves a ``.tmp`` at most, removed
    by the next ``put`` of the same id), the directory fsync'd so the rename is durable too.

    Reads keep a few files open (the ``_OPEN`` most recently opened): a download block is then
    one ``pread`` instead of open + read + close."""

    _OPEN = 64

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def _file(self, package_id: str) -> Path:
        if len(package_id) != 64 or any(c not in "0123456789abcdef" for c in package_id):
            raise StoreError(f"{package_id!r} is not a package id (lowercase hex SHA-256)")
        return self.folder / package_id[:2] / package_id

    def put(self, package_id: str, data: bytes) -> None:
        target = self._file(package_id)
        try:
            if target.is_file() and target.stat().st_size == len(data):
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{package_id}.{secrets.token_hex(4)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StoreError(f"{target}: cannot store the package bytes: {exc}") from exc

    def exists(self, package_id: str) -> bool:
        return self._file(package_id).is_file()

    def _fd(self, package_id: str) -> int:
        fd = self._fds.get(package_id)  # the hot path: no lock, no reordering (FIFO eviction)
        if fd is not None:
            return fd
        with self._lock:
            fd = self._fds.get(package_id)
            if fd is not None:
                return fd
            fd = os.open(self._file(package_id), os.O_RDONLY)
            self._fds[package_id] = fd
            while len(self._fds) > self._OPEN:
                os.close(self._fds.popitem(last=False)[1])
            return fd

    def read(self, package_id: str, offset: int, length: int) -> bytes:
        try:
            return os.pread(self._fd(package_id), length, offset)
        except OSError as exc:
            raise StoreError(f"the bytes of package {package_id} are unreadable: {exc}") from exc

    def delete(self, package_id: str) -> None:
        target = self._file(package_id)
        with self._lock:
            fd = self._fds.pop(package_id, None)
            if fd is not None:
                os.close(fd)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"{target}: cannot delete the package bytes: {exc}") from exc

    def path(self, package_id: str) -> Path | None:
        return self._file(package_id)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- Redis ---------------------------------------------------------------------------------------


class RedisFirmwareRecords:
    """``FirmwareRecords`` on Redis (key layout in the module docstring)."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._packages = db.group_key("firmware", "packages")

    def put_package(self, package: Package) -> Package:
        with self._db.errors(f"cannot store package {package.id}"):
            self._db.client.hsetnx(self._packages, package.id, package_json(package))
        stored = self.get_package(package.id)
        if stored is None:
            raise StoreError(f"Redis store {self.url}: package {package.id} not stored")
        return stored

    def get_package(self, package_id: str) -> Package | None:
        with self._db.errors(f"cannot read package {package_id}"):
            raw = self._db.client.hget(self._packages, package_id)
        return None if raw is None else package_from_json(raw, f"Redis store {self.url}")

    def all_packages(self) -> list[Package]:
        with self._db.errors("cannot list packages"):
            raw = self._db.client.hvals(self._packages)
        found = [package_from_json(r, f"Redis store {self.url}") for r in raw]
        return sorted(found, key=lambda p: (p.created_ms, p.id))

    def remove_package(self, package_id: str) -> bool:
        with self._db.errors(f"cannot remove package {package_id}"):
            return bool(self._db.client.hdel(self._packages, package_id))

    def _grant_key(self, token: str) -> str:
        return self._db.endpoint_key("fwgrant", token)

    def put_grant(self, grant: DownloadGrant) -> None:
        keep_until = grant.expires_ms + KEEP_EXPIRED_MS
        index = self._db.endpoint_key("fwgrants", grant.endpoint)
        with self._db.errors(f"cannot store a download grant of {grant.endpoint!r}"):
            pipe = self._db.client.pipeline(transaction=False)  # two slots: no MULTI on a cluster
            pipe.set(self._grant_key(grant.token), grant_json(grant), pxat=keep_until)
            pipe.sadd(index, grant.token)
            # the index lives as long as its longest-lived grant: NX sets the first expiry,
            # GT only ever extends it (Redis 7)
            pipe.pexpireat(index, keep_until, nx=True)
            pipe.pexpireat(index, keep_until, gt=True)
            pipe.execute()

    def get_grant(self, token: str) -> DownloadGrant | None:
        with self._db.errors("cannot read a download grant"):
            raw = self._db.client.get(self._grant_key(token))
        return None if raw is None else grant_from_json(raw, f"Redis store {self.url}")

    def remove_grants(self, endpoint: str) -> int:
        index = self._db.endpoint_key("fwgrants", endpoint)
        with self._db.errors(f"cannot remove the download grants of {endpoint!r}"):
            tokens = self._db.client.smembers(index)
            removed = 0
            for raw in tokens:
                token = raw.decode() if isinstance(raw, bytes) else str(raw)
                removed += int(self._db.client.delete(self._grant_key(token)))
            self._db.client.delete(index)
        return removed

    def prune_grants(self, now_ms: int) -> int:
        return 0  # the keys expire by themselves (PXAT)


class RedisBlobs:
    """Package bytes as one Redis string each (``P:fwblob:{pkg:<id>}``), read by
    ``GETRANGE``: every node of a cluster serves every package."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db

    def _key(self, package_id: str) -> str:
        return self._db.endpoint_key("fwblob", f"pkg:{package_id}")

    def put(self, package_id: str, data: bytes) -> None:
        with self._db.errors(f"cannot store the bytes of package {package_id}"):
            self._db.client.set(self._key(package_id), data, nx=True)

    def exists(self, package_id: str) -> bool:
        with self._db.errors(f"cannot look up package {package_id}"):
            return bool(self._db.client.exists(self._key(package_id)))

    def read(self, package_id: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self._db.errors(f"cannot read package {package_id}"):
            data = self._db.client.getrange(self._key(package_id), offset, offset + length - 1)
        return data.encode("latin-1") if isinstance(data, str) else bytes(data)

    def delete(self, package_id: str) -> None:
        with self._db.errors(f"cannot delete the bytes of package {package_id}"):
            self._db.client.delete(self._key(package_id))

    def path(self, package_id: str) -> Path | None:
        return None

    def close(self) -> None:
        pass

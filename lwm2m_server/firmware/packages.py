"""``Library``: the ``PackageLibrary`` of the server (docs/firmware.md, "Packages").

Packages are content-addressed: a package's id is the lowercase hex SHA-256 of its bytes, so the
same image uploaded twice is one package (the first upload's name, version and profile stay;
the API answers the second with 200 and the existing package instead of 201). The bytes go to
a ``Blobs`` location (files in the data dir, or Redis on a cluster), the metadata to the
server's store (``package_store``).

Deleting refuses (4.09 Conflict, HTTP 409) while something still refers to the package: each
part that can (update jobs, campaigns, profiles) registers an ``in_use`` hook that says why
(``"job of device-7"``) or returns None. The hooks are plugged in by those parts, so this module
knows none of them.

Uploading is split for the HTTP API: ``prepare`` (size check, hash, write the bytes: seconds of
disk or network for a large image, so the API runs it in a worker thread) and ``register`` (the
metadata, on the event loop with the rest of the store's writes). ``add`` does both, as the
contract has it.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from keystore.store.database import SqliteDatabase
from keystore.store.redis_database import RedisDatabase
from object_models.errors import Lwm2mError, ResponseCode

from .contracts import Package, PackageKind
from .package_store import (
    Blobs,
    FileBlobs,
    FirmwareRecords,
    MemoryBlobs,
    MemoryFirmwareRecords,
    RedisBlobs,
    RedisFirmwareRecords,
    SqliteFirmwareRecords,
    sha256_hex,
)

log = logging.getLogger(__name__)

InUse = Callable[[str], str | None]
"""Given a package id: why it is still in use (shown in the 409), or None."""

MAX_LABEL = 255
"""Longest name, version or profile (object 5's PkgName/PkgVersion are strings; 255 is what
every device shows without truncation in practice)."""

DEFAULT_MAX_SIZE = 16 << 20


class PackageTooLarge(Lwm2mError):
    """Over ``firmware.max_package_size``: 4.13, HTTP 413."""

    code = ResponseCode.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, size: int | None, limit: int) -> None:
        what = "the package" if size is None else f"a package of {size} bytes"
        super().__init__(
            f"{what} is over firmware.max_package_size ({limit} bytes); raise that setting "
            "to accept it"
        )
        self.limit = limit


def check_label(value: str | None, what: str, *, required: bool = True) -> str | None:
    """A package's name, version or profile: non-empty (when required), at most ``MAX_LABEL``
    characters, no control characters. ``Lwm2mError`` 4.00 naming ``what`` otherwise."""
    if value is None or value == "":
        if required:
            raise Lwm2mError(f"the package {what} is required")
        return None
    if len(value) > MAX_LABEL:
        raise Lwm2mError(f"the package {what} is longer than {MAX_LABEL} characters")
    if value != value.strip() or any(unicodedata.category(c)[0] == "C" for c in value):
        raise Lwm2mError(
            f"the package {what} {value!r} has control characters or surrounding spaces"
        )
    return value


def check_package_id(package_id: str) -> str:
    if len(package_id) != 64 or any(c not in "0123456789abcdef" for c in package_id):
        raise Lwm2mError(
            f"{package_id[:80]!r} is not a package id (the lowercase hex SHA-256 of its bytes)",
            code=ResponseCode.NOT_FOUND,
        )
    return package_id


class Library:
    """``contracts.PackageLibrary`` over a ``FirmwareRecords`` engine and a ``Blobs`` location."""

    def __init__(
        self,
        records: FirmwareRecords,
        blobs: Blobs,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        clock: Callable[[], float] = time.time,
        in_use: InUse | None = None,
    ) -> None:
        self.records = records
        self.blobs = blobs
        self.max_size = max_size
        self.clock = clock
        self._in_use: list[InUse] = [] if in_use is None else [in_use]

    # -- in use --------------------------------------------------------------------------------
    def add_in_use(self, hook: InUse) -> None:
        """Register a part that may still refer to packages (jobs, campaigns, profiles)."""
        self._in_use.append(hook)

    def in_use(self, package_id: str) -> str | None:
        for hook in self._in_use:
            reason = hook(package_id)
            if reason:
                return reason
        return None

    # -- adding ----------------------------------------------------------------------------------
    def check_size(self, size: int | None) -> None:
        """Refuse a declared size (``Content-Length``) before reading the body."""
        if size is not None and size > self.max_size:
            raise PackageTooLarge(size, self.max_size)

    def prepare(self, data: bytes) -> str:
        """Check the size, hash and store the bytes; their id. Thread-safe (no store record)."""
        if not data:
            raise Lwm2mError("the package is empty")
        self.check_size(len(data))
        package_id = sha256_hex(data)
        self.blobs.put(package_id, data)
        return package_id

    def register(
        self,
        package_id: str,
        size: int,
        *,
        kind: PackageKind,
        name: str,
        version: str,
        profile: str | None = None,
    ) -> tuple[Package, bool]:
        """Record the metadata of bytes ``prepare`` stored; (the package, whether it is new)."""
        check_label(name, "name")
        check_label(version, "version")
        check_label(profile, "profile", required=False)
        existing = self.records.get_package(package_id)
        if existing is not None:
            return existing, False
        package = Package(
            id=package_id,
            kind=kind,
            name=name,
            version=version,
            size=size,
            created_ms=int(self.clock() * 1000),
            profile=profile or None,
        )
        stored = self.records.put_package(package)
        if stored == package:
            log.info(
                "package %s added: %s %s %s (%d bytes%s)",
                package_id[:12],
                kind.value,
                name,
                version,
                size,
                f", profile {profile}" if profile else "",
            )
        return stored, stored == package

    def add(
        self,
        data: bytes,
        *,
        kind: PackageKind,
        name: str,
        version: str,
        profile: str | None = None,
    ) -> Package:
        check_label(name, "name")
        check_label(version, "version")
        check_label(profile, "profile", required=False)
        package_id = self.prepare(data)
        return self.register(
            package_id, len(data), kind=kind, name=name, version=version, profile=profile
        )[0]

    # -- reading ---------------------------------------------------------------------------------
    def get(self, package_id: str) -> Package | None:
        return self.records.get_package(package_id)

    def packages(self) -> list[Package]:
        return self.records.all_packages()

    def read(self, package_id: str, offset: int = 0, length: int | None = None) -> bytes:
        package = self.records.get_package(package_id)
        if package is None:
            raise Lwm2mError(f"no package {package_id[:80]}", code=ResponseCode.NOT_FOUND)
        if offset < 0 or offset > package.size:
            raise Lwm2mError(f"offset {offset} is outside the package ({package.size} bytes)")
        if length is None:
            length = package.size - offset
        return self.blobs.read(package_id, offset, min(length, package.size - offset))

    def read_block(self, package: Package, offset: int, length: int) -> bytes:
        """The download server's hot path: no metadata lookup (it has the package)."""
        return self.blobs.read(package.id, offset, length)

    def path(self, package_id: str) -> Path | None:
        """The file of the bytes when the blob location is the data dir (HTTP ``sendfile``)."""
        return self.blobs.path(package_id)

    # -- deleting --------------------------------------------------------------------------------
    def delete(self, package_id: str) -> bool:
        package = self.records.get_package(package_id)
        if package is None:
            return False
        reason = self.in_use(package_id)
        if reason:
            raise Lwm2mError(
                f"package {package_id[:12]} ({package.name} {package.version}) is in use: {reason}",
                code=ResponseCode.CONFLICT,
            )
        removed = self.records.remove_package(package_id)
        self.blobs.delete(package_id)
        if removed:
            log.info("package %s deleted (%s %s)", package_id[:12], package.name, package.version)
        return removed

    def close(self) -> None:
        self.blobs.close()


def open_library(
    data_dir: Path | None,
    *,
    sqlite: SqliteDatabase | None = None,
    redis: RedisDatabase | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    clock: Callable[[], float] = time.time,
) -> Library:
    """The library of a store engine: Redis (metadata and bytes in Redis) when ``redis`` is
    given, else sqlite (metadata in ``sqlite``, bytes under ``<data_dir>/packages``), else
    memory (metadata in memory; bytes in ``data_dir`` if given)."""
    records: FirmwareRecords
    blobs: Blobs
    if redis is not None:
        records, blobs = RedisFirmwareRecords(redis), RedisBlobs(redis)
    elif sqlite is not None:
        if data_dir is None:
            raise ValueError("the sqlite engine keeps package bytes in the data dir")
        records, blobs = SqliteFirmwareRecords(sqlite), FileBlobs(Path(data_dir) / "packages")
    else:
        records = MemoryFirmwareRecords()
        blobs = MemoryBlobs() if data_dir is None else FileBlobs(Path(data_dir) / "packages")
    return Library(records, blobs, max_size=max_size, clock=clock)

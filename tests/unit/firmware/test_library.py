"""The package library and download grants on every store engine (memory, sqlite, Redis, Redis
Cluster): the same contract whatever keeps the data, checked through a second library object
on the same data (a restarted server, another cluster node)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keystore.store.database import SqliteDatabase
from lwm2m_server.firmware.contracts import DownloadGrant, PackageKind
from lwm2m_server.firmware.downloads import DownloadServer
from lwm2m_server.firmware.package_store import (
    KEEP_EXPIRED_MS,
    FileBlobs,
    MemoryBlobs,
    MemoryFirmwareRecords,
    RedisBlobs,
    RedisFirmwareRecords,
    SqliteFirmwareRecords,
)
from lwm2m_server.firmware.packages import Library
from object_models.errors import Lwm2mError, ResponseCode
from tests.store_engines import Engine, RedisEngine, SqliteEngine

IMAGE = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(IMAGE).hexdigest()


class Clock:
    """Explicit time, starting at the real one: Redis expires grant keys by its own clock
    (``PXAT``), a day after the grant expires."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now


Open = Callable[[Clock], Library]
"""A new library object on the same data."""


def _on_engine(engine: Engine, tmp_path: Path) -> Open:
    def open_library(clock: Clock) -> Library:
        if isinstance(engine, SqliteEngine):
            db = engine._keep(SqliteDatabase(engine.path))
            return Library(
                SqliteFirmwareRecords(db), FileBlobs(engine.folder / "packages"), clock=clock
            )
        assert isinstance(engine, RedisEngine)
        db = engine.database()
        return Library(RedisFirmwareRecords(db), RedisBlobs(db), clock=clock)

    return open_library


def _in_memory() -> Open:
    records, blobs = MemoryFirmwareRecords(), MemoryBlobs()
    return lambda clock: Library(records, blobs, clock=clock)


# -- the checks ---------------------------------------------------------------------------------


def same_bytes_are_one_package(open_library: Open) -> None:
    library = open_library(Clock())
    first = library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1.0")
    assert first.id == SHA == first.sha256 and first.size == len(IMAGE)
    again = open_library(Clock(time.time() + 3600)).add(
        IMAGE, kind=PackageKind.SOFTWARE, name="other", version="2.0"
    )
    assert again == first  # the first upload's metadata stays
    assert [p.id for p in open_library(Clock()).packages()] == [SHA]


def reads_by_offset(open_library: Open) -> None:
    open_library(Clock()).add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1.0")
    other = open_library(Clock())  # e.g. another cluster node
    assert other.read(SHA) == IMAGE
    assert other.read(SHA, 1024, 1024) == IMAGE[1024:2048]
    assert other.read(SHA, len(IMAGE) - 10, 1024) == IMAGE[-10:]
    package = other.get(SHA)
    assert package is not None
    assert other.read_block(package, 4096, 16) == IMAGE[4096:4112]


def lists_oldest_first_and_deletes(open_library: Open) -> None:
    clock = Clock()
    library = open_library(clock)
    a = library.add(b"a" * 100, kind=PackageKind.FIRMWARE, name="a", version="1")
    clock.now += 1
    b = library.add(b"b" * 100, kind=PackageKind.SOFTWARE, name="b", version="1", profile="p")
    assert [p.id for p in open_library(clock).packages()] == [a.id, b.id]
    assert open_library(clock).get(b.id) == b and b.profile == "p"
    assert library.delete(a.id) is True
    assert library.delete(a.id) is False
    other = open_library(clock)
    assert other.get(a.id) is None and [p.id for p in other.packages()] == [b.id]
    with pytest.raises(Lwm2mError) as raised:
        other.read(a.id)
    assert raised.value.code == ResponseCode.NOT_FOUND


def refuses_deleting_what_is_in_use(open_library: Open) -> None:
    library = open_library(Clock())
    package = library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1.0")
    users = {package.id: "job of device-7"}
    library.add_in_use(lambda pid: None)
    library.add_in_use(users.get)
    with pytest.raises(Lwm2mError) as raised:
        library.delete(package.id)
    assert raised.value.code == ResponseCode.CONFLICT
    assert "job of device-7" in raised.value.message
    assert open_library(Clock()).read(package.id) == IMAGE  # nothing was removed
    users.clear()
    assert library.delete(package.id) is True


def refuses_over_the_size_limit_and_bad_input(open_library: Open) -> None:
    library = open_library(Clock())
    library.max_size = 1000
    with pytest.raises(Lwm2mError) as raised:
        library.add(b"x" * 1001, kind=PackageKind.FIRMWARE, name="fw", version="1")
    assert raised.value.code == ResponseCode.REQUEST_ENTITY_TOO_LARGE
    assert "firmware.max_package_size" in raised.value.message and "1000" in raised.value.message
    for data, name, version in ((b"", "fw", "1"), (b"x", "", "1"), (b"x", "fw", "1\n")):
        with pytest.raises(Lwm2mError) as bad:
            library.add(data, kind=PackageKind.FIRMWARE, name=name, version=version)
        assert bad.value.code == ResponseCode.BAD_REQUEST
    assert library.packages() == []


def grants_survive_a_restart_and_expire(open_library: Open) -> None:
    clock = Clock()
    library = open_library(clock)
    library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1.0")
    downloads = DownloadServer(library.records, library, clock=clock)
    grant = downloads.grant(SHA, "dev-1", 60.0)
    assert grant.expires_ms == int((clock.now + 60) * 1000) and len(grant.token) >= 32
    assert downloads.grant(SHA, "dev-1", 60.0).token != grant.token  # unguessable, fresh
    restarted = open_library(clock)
    assert restarted.records.get_grant(grant.token) == grant
    assert restarted.records.get_grant("no-such-token") is None
    # expired grants are still known (answered "expired") until KEEP_EXPIRED_MS later
    clock.now += 61
    assert restarted.records.get_grant(grant.token) == grant
    restarted.records.prune_grants(int(clock.now * 1000))
    assert restarted.records.get_grant(grant.token) == grant


def revoke_forgets_every_grant_of_the_endpoint(open_library: Open) -> None:
    clock = Clock()
    library = open_library(clock)
    library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1.0")
    downloads = DownloadServer(library.records, library, clock=clock)
    mine = [downloads.grant(SHA, "dev-1", 60.0) for _ in range(3)]
    theirs = downloads.grant(SHA, "dev-2", 60.0)
    DownloadServer(open_library(clock).records, library, clock=clock).revoke("dev-1")
    other = open_library(clock)
    assert all(other.records.get_grant(g.token) is None for g in mine)
    assert other.records.get_grant(theirs.token) == theirs


def grant_refuses_unknown_packages_and_bad_ttls(open_library: Open) -> None:
    library = open_library(Clock())
    downloads = DownloadServer(library.records, library, clock=Clock())
    with pytest.raises(Lwm2mError) as raised:
        downloads.grant("0" * 64, "dev-1", 60.0)
    assert raised.value.code == ResponseCode.NOT_FOUND
    library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1.0")
    with pytest.raises(Lwm2mError):
        downloads.grant(SHA, "dev-1", 0)


CHECKS = [
    same_bytes_are_one_package,
    reads_by_offset,
    lists_oldest_first_and_deletes,
    refuses_deleting_what_is_in_use,
    refuses_over_the_size_limit_and_bad_input,
    grants_survive_a_restart_and_expire,
    revoke_forgets_every_grant_of_the_endpoint,
    grant_refuses_unknown_packages_and_bad_ttls,
]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_store_engine(check: Callable[[Open], None], engine: Engine, tmp_path: Path) -> None:
    check(_on_engine(engine, tmp_path))


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_memory_engine(check: Callable[[Open], None]) -> None:
    check(_in_memory())


# -- engine specifics ---------------------------------------------------------------------------


def test_expired_grants_are_pruned_a_day_after_expiry(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "s.sqlite")
    records = SqliteFirmwareRecords(db)
    grant = DownloadGrant("tok", SHA, "dev-1", 1_000_000)
    records.put_grant(grant)
    assert records.prune_grants(1_000_000 + KEEP_EXPIRED_MS) == 0
    assert records.get_grant("tok") == grant
    assert records.prune_grants(1_000_001 + KEEP_EXPIRED_MS) == 1
    assert records.get_grant("tok") is None
    db.close()


def test_package_files_are_content_addressed_in_the_data_dir(tmp_path: Path) -> None:
    blobs = FileBlobs(tmp_path / "packages")
    library = Library(MemoryFirmwareRecords(), blobs)
    library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1")
    target = tmp_path / "packages" / SHA[:2] / SHA
    assert target.read_bytes() == IMAGE
    assert [p.name for p in target.parent.iterdir()] == [SHA]  # no temporary file left
    library.delete(SHA)
    assert not target.exists()
    blobs.close()


def test_redis_keeps_the_bytes_where_every_node_reads_them(redis_url: str) -> None:
    """Bytes in Redis under a key hash-tagged by the package (``{pkg:<id>}``)."""
    engine = RedisEngine(redis_url)
    try:
        db = engine.database()
        Library(RedisFirmwareRecords(db), RedisBlobs(db)).add(
            IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1"
        )
        assert db.client.get(f"test:fwblob:{{pkg:{SHA}}}") == IMAGE
    finally:
        engine.close()

"""An API change is answered only once it is committed (``lwm2m_server.api.durability``): an
upload whose commit fails (the disk filled up between the write and the COMMIT) is a 503, not
a 201 for a package that is not there."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.auth import HEADERS

from .conftest import SHA, Running


class CommitFailsOnce:
    """The store's connection, whose next COMMIT fails as sqlite's does on a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.failed = False

    def commit(self) -> None:
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        self._conn.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def failing_commit(running: Running) -> Iterator[CommitFailsOnce]:
    """The server's store, whose next COMMIT fails (restored after the test)."""
    store = running.server.store
    failing = CommitFailsOnce(store.conn)
    store._conn = failing  # type: ignore[assignment]
    try:
        yield failing
    finally:
        store._conn = failing._conn


def stored_packages(running: Running) -> list[str]:
    """What another reader of the sqlite file sees (only committed rows)."""
    with sqlite3.connect(running.server.config.database) as conn:
        return [str(r[0]) for r in conn.execute("SELECT * FROM firmware_packages")]


async def test_an_upload_whose_commit_fails_is_503_and_a_retry_is_stored(
    running: Running, failing_commit: CommitFailsOnce
) -> None:
    response = await running.upload()
    assert failing_commit.failed
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"] == "1"
    assert "could not commit" in (await response.json())["error"]
    assert SHA not in stored_packages(running)
    async with aiohttp.ClientSession() as session:
        listed = await session.get(f"{running.http}/api/packages", headers=HEADERS)
        assert SHA not in await listed.text()
    retried = await running.upload()
    assert retried.status == 201
    assert SHA in stored_packages(running)


def stored_profiles(running: Running) -> list[str]:
    with sqlite3.connect(running.server.config.database) as conn:
        return [str(r[0]) for r in conn.execute("SELECT name FROM profiles")]


async def test_a_profile_put_whose_commit_fails_is_503_not_201(
    running: Running, failing_commit: CommitFailsOnce
) -> None:
    """``PUT /api/profiles/{name}`` writes in the loop iteration's group (no commit of its
    own): without the middleware it answered 201 and the group's commit, one loop turn later,
    lost the profile."""
    doc = {"endpoints": ["meter-*"], "resources": {}}
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        url = f"{running.http}/api/profiles/meter"
        response = await session.put(url, json=doc)
        assert failing_commit.failed
        assert response.status == 503, await response.text()
        assert "meter" not in stored_profiles(running)
        retried = await session.put(url, json=doc)
        # 200 "replaced": the profile catalog in memory kept what the store lost (its
        # cache is not rolled back with the group; the retry stores it again)
        assert retried.status in (200, 201)
        assert "meter" in stored_profiles(running)

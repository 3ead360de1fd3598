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
        # 201: the profile catalog's cache was read again from the store when the commit
        # failed, so the retry creates it (test_a_profile_whose_put_commit_failed_...)
        assert retried.status == 201
        assert "meter" in stored_profiles(running)


async def test_a_profile_whose_put_commit_failed_is_not_served_from_the_catalog(
    running: Running, failing_commit: CommitFailsOnce
) -> None:
    """The profile catalog is a cache of the store: a PUT whose commit failed must leave it as
    the store is (before: the API went on listing the profile, devices matching its patterns
    resolved to it, and the retry said 200 "replaced" for a profile that never was stored)."""
    doc = {"endpoints": ["meter-*"], "resources": {}}
    catalog = running.server.profiles.catalog  # type: ignore[union-attr]
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        url = f"{running.http}/api/profiles/meter"
        response = await session.put(url, json=doc)
        assert response.status == 503, await response.text()
        assert failing_commit.failed
        assert (await session.get(url)).status == 404
        listed = await (await session.get(f"{running.http}/api/profiles")).text()
        assert '"meter"' not in listed
        assert catalog.resolve("meter-1")[0].name != "meter"
        retried = await session.put(url, json=doc)
        assert retried.status == 201, await retried.text()
        assert "meter" in stored_profiles(running)
        assert catalog.resolve("meter-1")[0].name == "meter"


async def test_a_profile_whose_delete_commit_failed_is_still_served(
    running: Running, failing_commit: CommitFailsOnce
) -> None:
    doc = {"endpoints": ["meter-*"], "resources": {}}
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        url = f"{running.http}/api/profiles/meter"
        failing_commit.failed = True  # the PUT commits
        assert (await session.put(url, json=doc)).status == 201
        failing_commit.failed = False  # the DELETE's commit fails
        response = await session.delete(url)
        assert response.status == 503, await response.text()
        assert "meter" in stored_profiles(running)
        assert (await session.get(url)).status == 200


async def test_an_assignment_whose_commit_failed_is_not_used(
    running: Running, failing_commit: CommitFailsOnce
) -> None:
    catalog = running.server.profiles.catalog  # type: ignore[union-attr]
    doc = {"endpoints": ["other-*"], "resources": {}}
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        failing_commit.failed = True  # the PUT commits
        assert (await session.put(f"{running.http}/api/profiles/p", json=doc)).status == 201
        failing_commit.failed = False  # the assignment's commit fails
        response = await session.put(
            f"{running.http}/api/clients/dev-1/profile", json={"profile": "p"}
        )
        assert response.status == 503, await response.text()
        assert catalog.assignment("dev-1") is None
        assert catalog.resolve("dev-1")[0].name != "p"

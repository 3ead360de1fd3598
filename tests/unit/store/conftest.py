"""The ``engine`` fixture: every test that takes it runs once per store engine (engines.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwm2m_server.store.base import CoreStore
from lwm2m_server.store.memory import MemoryStore
from lwm2m_server.store.sqlite import SqliteStore

from .engines import ENGINES, Engine


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    opened: list[Any] = []
    if request.param == "memory":
        shared = MemoryStore()
        yield Engine("memory", lambda: shared)
        return
    if request.param in ("redis", "redis-cluster"):
        from keystore.store.redis_database import RedisDatabase
        from lwm2m_server.store.redis import RedisStore

        cluster = request.param == "redis-cluster"
        url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")

        def open_redis() -> CoreStore:
            store = RedisStore(RedisDatabase(url, prefix="core", cluster=cluster))
            opened.append(store)
            return store

        yield Engine(request.param, open_redis)
    else:

        def open_sqlite() -> CoreStore:
            store = SqliteStore(tmp_path / "shared.sqlite", shared=True)
            opened.append(store)
            return store

        yield Engine("sqlite", open_sqlite)
    for store in opened:
        store.close()


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[SqliteStore]:
    """A sqlite store with group commit on, as the server runs it: writes wait for
    ``commit()`` (the CoAP driver's call after each loop iteration)."""
    store = SqliteStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    yield store
    store.close()

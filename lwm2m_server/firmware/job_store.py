"""``JobStore``: the update jobs, kept in the server's store so that a restarted server resumes
every unfinished one (``manager.FirmwareManager.start``: observe again, re-arm the timers from
the stored deadlines).

One job per endpoint: the latest (a new job for an endpoint replaces its finished one; the API
refuses a new one while one runs). A job is stored whole, as ``UpdateJob.to_json``, after each
change; it is small (a few hundred bytes) and changes a handful of times per update, so there
is nothing to gain from storing parts of it.

Engines: ``MemoryJobStore`` (reference, tests), ``SqliteJobStore`` (table ``firmware_jobs`` in
the server's sqlite file; each ``put`` commits at once, even inside the CoAP layer's group
commit: a job's step is decided by the manager, not by a device request a flush acknowledges)
and ``RedisJobStore``. A stored job that cannot be read back is skipped with an error naming
it, so one bad row never stops the others from resuming.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Protocol

from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase, text

from .jobs import UpdateJob

log = logging.getLogger(__name__)


class JobStore(Protocol):
    def put(self, job: UpdateJob) -> None:
        """Insert or replace the endpoint's job; durable when the call returns."""
        ...

    def get(self, endpoint: str) -> UpdateJob | None: ...

    def all(self) -> list[UpdateJob]:
        """Every stored job, by endpoint."""
        ...

    def remove(self, endpoint: str) -> bool: ...


def _encode(job: UpdateJob) -> str:
    if not isinstance(job, UpdateJob):
        raise StoreError(f"expected an UpdateJob, got {type(job).__name__}")
    try:
        return dumps(job.to_json())
    except (TypeError, ValueError) as exc:
        raise StoreError(f"the job of {job.endpoint!r} is not storable: {exc}") from exc


def _decode(where: str, endpoint: str, raw: str | bytes) -> UpdateJob | None:
    try:
        return UpdateJob.from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError) as exc:
        log.error("%s: the update job of %r cannot be read, skipped: %s", where, endpoint, exc)
        return None


class MemoryJobStore:
    """``JobStore`` in a dict of encoded jobs (a stored job is a copy, as with the others)."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}

    def put(self, job: UpdateJob) -> None:
        self._jobs[job.endpoint] = _encode(job)

    def get(self, endpoint: str) -> UpdateJob | None:
        raw = self._jobs.get(endpoint)
        return None if raw is None else _decode("memory", endpoint, raw)

    def all(self) -> list[UpdateJob]:
        jobs = (_decode("memory", ep, raw) for ep, raw in sorted(self._jobs.items()))
        return [j for j in jobs if j is not None]

    def remove(self, endpoint: str) -> bool:
        return self._jobs.pop(endpoint, None) is not None


class SqliteJobStore:
    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        self.path = store.path
        try:
            store.db.table("firmware_jobs").create(
                {"endpoint": str, "state": str, "campaign": str, "data": str},
                pk="endpoint",
                not_null={"state", "data"},
                if_not_exists=True,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the firmware_jobs table: {exc}") from exc

    def put(self, job: UpdateJob) -> None:
        data = _encode(job)
        with self._store.batch() as store, store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO firmware_jobs(endpoint, state, campaign, data) "
                "VALUES(?, ?, ?, ?)",
                (job.endpoint, job.state.value, job.campaign, data),
            )

    def get(self, endpoint: str) -> UpdateJob | None:
        rows = self._store.read("SELECT data FROM firmware_jobs WHERE endpoint = ?", (endpoint,))
        return _decode(str(self.path), endpoint, rows[0][0]) if rows else None

    def all(self) -> list[UpdateJob]:
        rows = self._store.read("SELECT endpoint, data FROM firmware_jobs ORDER BY endpoint")
        jobs = (_decode(str(self.path), ep, data) for ep, data in rows)
        return [j for j in jobs if j is not None]

    def remove(self, endpoint: str) -> bool:
        with self._store.batch() as store, store.write() as conn:
            cursor = conn.execute("DELETE FROM firmware_jobs WHERE endpoint = ?", (endpoint,))
        return cursor.rowcount > 0


class RedisJobStore:
    """Keys (``P`` is the prefix): ``P:fwjob:{ep}`` (string: the job, JSON) in the endpoint's
    hash-tag slot, and ``{P:fwjob}:endpoints`` (set: every endpoint with a job, to find them
    all at start-up). Two slots on a Redis Cluster, so a change is two commands, ordered so a
    failure between them never hides a job: ``put`` adds to the index first, ``remove``
    deletes the job first (an index entry without its job is dropped when seen)."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._index = db.group_key("fwjob", "endpoints")

    def _key(self, endpoint: str) -> str:
        return self._db.endpoint_key("fwjob", endpoint)

    def put(self, job: UpdateJob) -> None:
        data = _encode(job)
        with self._db.errors(f"cannot store the update job of {job.endpoint!r}"):
            self._db.client.sadd(self._index, job.endpoint)
            self._db.client.set(self._key(job.endpoint), data)

    def get(self, endpoint: str) -> UpdateJob | None:
        with self._db.errors(f"cannot read the update job of {endpoint!r}"):
            raw = self._db.client.get(self._key(endpoint))
        return None if raw is None else _decode(f"Redis store {self.url}", endpoint, raw)

    def all(self) -> list[UpdateJob]:
        with self._db.errors("cannot read the update jobs"):
            endpoints = sorted(text(e) for e in self._db.client.smembers(self._index))
        jobs: list[UpdateJob] = []
        stale: list[str] = []
        for endpoint in endpoints:
            with self._db.errors(f"cannot read the update job of {endpoint!r}"):
                raw: Any = self._db.client.get(self._key(endpoint))
            if raw is None:
                stale.append(endpoint)
                continue
            job = _decode(f"Redis store {self.url}", endpoint, raw)
            if job is not None:
                jobs.append(job)
        if stale:  # a remove that stopped half-way
            with self._db.errors("cannot clean the update jobs index"):
                self._db.client.srem(self._index, *stale)
        return jobs

    def remove(self, endpoint: str) -> bool:
        with self._db.errors(f"cannot remove the update job of {endpoint!r}"):
            removed = self._db.client.delete(self._key(endpoint))
            self._db.client.srem(self._index, endpoint)
        return bool(removed)

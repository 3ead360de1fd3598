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

On Redis several nodes share the jobs, and ``RedisJobStore`` also keeps **who drives each
unfinished job** (docs/firmware.md, "Updates in a cluster"): a lease key per job holding the
driving node's id with a TTL. Every change of a job by its driver is a compare-and-set on that
key (``put_as``: refused once another node took the job), so a node that lost a job can never
write it again, and a job whose driver died becomes free when its lease expires (``claim``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
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


_FINISHED = (
    "local function finished(raw) local s = cjson.decode(raw)['state'] "
    "return s == 'succeeded' or s == 'failed' or s == 'cancelled' end\n"
)

_CLAIM = (
    _FINISHED
    + """
local job = redis.call('GET', KEYS[2])
if not job then return {0} end
if finished(job) then return {2, job} end
local driver = redis.call('GET', KEYS[1])
if driver and driver ~= ARGV[1] and ARGV[3] ~= '1' then return {0, driver} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, job}
"""
)
"""KEYS: lease, job; ARGV: node, lease ms, steal. {1, job}: claimed; {2, job}: finished (no
lease); {0, driver}: driven by another live node; {0}: no job."""

_PUT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] == '1' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"""
"""KEYS: lease, job; ARGV: node, lease ms, job, finished. 0, writing nothing, unless ``node``
holds the lease: another node claimed the job, finished it (the lease is gone with it), or
this node's lease expired (the job is free: a node's scan claims it again, from the store)."""

_CREATE = (
    _FINISHED
    + """
local current = redis.call('GET', KEYS[2])
if current and not finished(current) then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] == '1' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else redis.call('DEL', KEYS[1]) end
return 1
"""
)
"""KEYS: lease, job; ARGV: node, lease ms, job, drive. 0: the endpoint has an unfinished job."""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisJobStore:
    """Keys (``P`` is the prefix): ``P:fwjob:{ep}`` (string: the job, JSON) and
    ``P:fwlease:{ep}`` (string: the id of the node driving the unfinished job, with the lease
    as TTL), both in the endpoint's hash-tag slot so the scripts that change them are atomic
    on a Redis Cluster too; ``{P:fwjob}:endpoints`` (set: every endpoint with a job, to find
    them all at start-up) and ``{P:fwjob}:leases`` (sorted set: unfinished jobs, scored by
    when their lease ends as last renewed, in ms: where nodes look for jobs to take over; a
    hint only, the lease key decides). The group keys are another slot, so a change is
    several commands, ordered so a failure between them never hides a job: ``put`` adds to
    the indexes first, ``remove`` deletes the job first (an index entry without its job is
    dropped when seen)."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._index = db.group_key("fwjob", "endpoints")
        self._leases = db.group_key("fwjob", "leases")
        self._claim = db.script(_CLAIM)
        self._put = db.script(_PUT)
        self._create = db.script(_CREATE)
        self._renew = db.script(_RENEW)
        self._release = db.script(_RELEASE)

    def _key(self, endpoint: str) -> str:
        return self._db.endpoint_key("fwjob", endpoint)

    def _lease_key(self, endpoint: str) -> str:
        return self._db.endpoint_key("fwlease", endpoint)

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
            removed = self._db.client.delete(self._key(endpoint), self._lease_key(endpoint))
            self._db.client.srem(self._index, endpoint)
            self._db.client.zrem(self._leases, endpoint)
        return bool(removed)

    # -- leases (docs/firmware.md, "Updates in a cluster") --------------------------------------
    def _hint(self, endpoint: str, until: float | None) -> None:
        """The leases index: ``until`` (seconds since the epoch) when the job's lease ends,
        None once the job is finished."""
        if until is None:
            self._db.client.zrem(self._leases, endpoint)
        else:
            self._db.client.zadd(self._leases, {endpoint: int(until * 1000)})

    def create(self, job: UpdateJob, node: str, lease: float, *, drive: bool) -> bool:
        """Store a new job unless the endpoint has an unfinished one (False). ``drive``: with
        ``node`` as its driver; else free, for the node that holds the device to claim."""
        data = _encode(job)
        with self._db.errors(f"cannot store the update job of {job.endpoint!r}"):
            self._db.client.sadd(self._index, job.endpoint)
            self._hint(job.endpoint, time.time() + lease if drive else 0.0)
            keys = [self._lease_key(job.endpoint), self._key(job.endpoint)]
            done = self._create(keys, [node, int(lease * 1000), data, "1" if drive else "0"])
        return bool(done)

    def put_as(self, job: UpdateJob, node: str, lease: float) -> bool:
        """Store the job if ``node`` still drives it (and renew the lease; release it when
        the job is finished); False, writing nothing, when another node has taken it."""
        data = _encode(job)
        finished = job.finished
        with self._db.errors(f"cannot store the update job of {job.endpoint!r}"):
            keys = [self._lease_key(job.endpoint), self._key(job.endpoint)]
            done = self._put(keys, [node, int(lease * 1000), data, "1" if finished else "0"])
            if done:
                self._hint(job.endpoint, None if finished else time.time() + lease)
        return bool(done)

    def claim(
        self, endpoint: str, node: str, lease: float, *, steal: bool = False
    ) -> tuple[UpdateJob | None, str | None]:
        """Take over the endpoint's unfinished job: ``(job, None)`` when ``node`` drives it
        now (as stored at that instant: its former driver cannot write it any more);
        ``(None, driver)`` when another node's lease runs (always taken with ``steal``);
        ``(None, None)`` when there is no unfinished job."""
        keys = [self._lease_key(endpoint), self._key(endpoint)]
        with self._db.errors(f"cannot claim the update job of {endpoint!r}"):
            answer = self._claim(keys, [node, int(lease * 1000), "1" if steal else "0"])
            status = int(answer[0])
            if status == 2:
                self._hint(endpoint, None)
            elif status == 1:
                self._hint(endpoint, time.time() + lease)
        if status == 1:
            return _decode(f"Redis store {self.url}", endpoint, answer[1]), None
        if status == 0 and len(answer) > 1:
            return None, text(answer[1])
        return None, None

    def renew(self, endpoints: list[str], node: str, lease: float) -> list[str]:
        """Extend ``node``'s leases; the endpoints whose job another node has taken."""
        if not endpoints:
            return []
        ms = int(lease * 1000)
        with self._db.errors("cannot renew the update jobs' leases"):
            # one script call per job (a pipeline of scripts fails with NOSCRIPT on a Redis
            # Cluster node that has not loaded it): a node drives at most its campaigns'
            # concurrent jobs, renewed every few seconds
            kept = [self._renew([self._lease_key(e)], [node, ms]) for e in endpoints]
            until = int((time.time() + lease) * 1000)
            mine = {e: until for e, ok in zip(endpoints, kept, strict=True) if ok}
            if mine:
                self._db.client.zadd(self._leases, mine)
        return [e for e, ok in zip(endpoints, kept, strict=True) if not ok]

    def release(self, endpoint: str, node: str) -> None:
        """Give the job up (this node stops): free at once for another node."""
        with self._db.errors(f"cannot release the update job of {endpoint!r}"):
            if self._release([self._lease_key(endpoint)], [node]):
                self._hint(endpoint, 0.0)

    def expired(self, now: float) -> list[str]:
        """Unfinished jobs whose lease, as last renewed, has ended (candidates to claim)."""
        with self._db.errors("cannot read the update jobs' leases"):
            found: Any = self._db.client.zrangebyscore(self._leases, "-inf", int(now * 1000))
        return [text(e) for e in found]

"""``RedisDeviceStateStore``: ``DeviceStateStore`` (profile attribute values and the profile
status of each device) on Redis.

Keys (``P`` is the prefix), all in the endpoint's hash-tag slot ``{ep}``:

* ``P:attr:{ep}``     hash  attribute key → ``[path, type, value]`` (JSON; the value encoded as
  the sqlite rows encode it, ``records.check_point``);
* ``P:attrts:{ep}``   hash  attribute key → its time (ms);
* ``P:pstatus:{ep}``  string  the profile status (JSON).

"Keep the latest value unless an older one arrives" is one Lua script per endpoint (compare the
times, then write both hashes), so two processes writing the same device never leave an older
value over a newer one. A call with points of several endpoints sends one script per endpoint in
one pipeline: every point is checked before anything is sent (bad input writes nothing), and
each endpoint's points are all or nothing, but not the call as a whole (on Redis Cluster the
endpoints live in different slots, which no transaction spans).

**Statuses ride the group commit** (``group``: the node's ``RedisStore``, on one Redis). The
profile engine writes the statuses of a loop iteration's applications in one call (every
Register's, even without a profile); a pipeline of SETs of its own was one more synchronous
round trip per busy Register iteration. With ``group`` they are held and sent as one MSET in the
next group commit's round trip (``RedisStore.write_later``), and this store answers its own
reads from what it holds until Redis has it (read your writes: the engine drops a status from
its memory once the call returns, and reads it back from here). A commit that fails leaves them
held and re-sent (with a later commit, tried again a second later at the earliest: an outage
does not spin the loop), so a status is never lost while the process lives, and a failed
status write never withholds a device's reply (a status is not what the device was answered:
the Register itself is in the same commit, and its 2.01 is withheld if that fails). Other nodes
see a status one commit later than before. On a Redis Cluster (no group commit) the writes are
synchronous, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from keystore.log_limit import PerPeerLimit
from keystore.store.database import dumps
from keystore.store.errors import StoreError
from keystore.store.redis_database import MISSING, ReadAhead, RedisDatabase, text
from lwm2m_server.core.telemetry import TelemetryPoint

from .device_state import status_text
from .records import check_point, point_from_row

log = logging.getLogger(__name__)

_RETRY_AFTER = 1.0
"""Seconds before statuses a failed commit left held are queued again (not at once: during an
outage every commit fails, and re-queueing at once would send one per loop iteration)."""


class GroupCommit(Protocol):
    """What the statuses ride: ``RedisStore.write_later`` (one command in the next group
    commit's round trip; False when the store does not group, on a Redis Cluster)."""

    def write_later(self, queue: Callable[[Any], object], done: Callable[[Any], None]) -> bool: ...

    def read_with_registers(
        self,
        reader: Callable[[list[str]], tuple[Callable[[Any], object], Callable[[Any], None]] | None],
    ) -> None: ...


# KEYS values, times; ARGV (key, ts, value)...: per key, a value older than the stored one
# is ignored (device attributes here, latest telemetry in ``redis.RedisTelemetryStore``)
NEWEST_WINS = """
local i = 1
while i <= #ARGV do
  local key, ts = ARGV[i], ARGV[i + 1]
  local stored = redis.call('HGET', KEYS[2], key)
  if not stored or tonumber(ts) >= tonumber(stored) then
    redis.call('HSET', KEYS[1], key, ARGV[i + 2])
    redis.call('HSET', KEYS[2], key, ts)
  end
  i = i + 3
end
return 'ok'
"""


class RedisDeviceStateStore:
    """``lwm2m_server.store.device_state.DeviceStateStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase, group: GroupCommit | None = None) -> None:
        self._db = db
        self.url = db.url
        self._group = group
        self._held: dict[str, str] = {}
        """Status key → the newest status text not yet known to be in Redis (held for the next
        commit, in flight, or refused by a commit and waiting to be sent again)."""
        self._queued: object | None = None
        """The write queued for the next commit (its token), None when none is."""
        self._retry: asyncio.TimerHandle | None = None
        self._log = PerPeerLimit(60.0)  # an outage fails every commit: once a minute
        self.status_writes = 0
        """MSETs of held statuses that Redis acknowledged (tests)."""
        self._ahead = ReadAhead()
        """The stored statuses of the devices whose Registers the last commits carried."""
        if group is not None:
            group.read_with_registers(self._read_ahead)

    def _read_ahead(
        self, endpoints: list[str]
    ) -> tuple[Callable[[Any], object], Callable[[Any], None]]:
        """One MGET of the statuses of a commit's Registers, in that commit (one Redis only,
        where keys of any slot may share a command): the profile engine asks for them in the
        next loop iteration (``statuses``), which then costs no round trip of its own."""
        keys = [self._db.endpoint_key("pstatus", endpoint) for endpoint in endpoints]

        def done(answer: Any) -> None:
            if not isinstance(answer, BaseException):
                self._ahead.fill(dict(zip(endpoints, answer, strict=True)))

        return (lambda pipe: pipe.mget(keys)), done

    def _keys(self, endpoint: str) -> list[str]:
        return [self._db.endpoint_key("attr", endpoint), self._db.endpoint_key("attrts", endpoint)]

    def put_attributes(self, attributes: Iterable[TelemetryPoint]) -> int:
        try:
            rows = [check_point(p) for p in attributes]
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"Redis store {self.url}: invalid attribute, nothing written: {exc}"
            ) from exc
        if not rows:
            return 0
        by_endpoint: dict[str, list[str | int]] = {}
        for endpoint, path, key, ts_ms, type_name, value in rows:
            by_endpoint.setdefault(endpoint, []).extend(
                [key, ts_ms, dumps([path, type_name, value])]
            )
        with self._db.errors("cannot write device attributes"):
            pipe = self._db.client.pipeline(transaction=False)
            for endpoint, args in by_endpoint.items():
                # EVAL, not EVALSHA: a pipeline (a cluster's above all) does not load scripts
                pipe.execute_command("EVAL", NEWEST_WINS, 2, *self._keys(endpoint), *args)
            pipe.execute()
        return len(rows)

    def attributes(self, endpoint: str) -> dict[str, TelemetryPoint]:
        values_key, times_key = self._keys(endpoint)
        with self._db.errors(f"cannot read the attributes of {endpoint!r}"):
            pipe = self._db.client.pipeline(transaction=True)
            pipe.hgetall(values_key)
            pipe.hgetall(times_key)
            values, times = pipe.execute()
        out: dict[str, TelemetryPoint] = {}
        try:
            for raw_key in sorted(values, key=text):
                key = text(raw_key)
                path, type_name, value = json.loads(values[raw_key])
                ts_ms = int(times[raw_key])
                out[key] = point_from_row(endpoint, path, key, ts_ms, type_name, value)
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"Redis store {self.url}: corrupt attribute: {exc}") from exc
        return out

    def put_status(self, endpoint: str, status: Mapping[str, Any]) -> None:
        self.put_status_texts([(endpoint, status_text(endpoint, status))])

    def put_statuses(self, statuses: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Each status is encoded before anything is sent; then ``put_status_texts``."""
        self.put_status_texts([(endpoint, status_text(endpoint, s)) for endpoint, s in statuses])

    def put_status_texts(self, rows: Sequence[tuple[str, str]]) -> None:
        """``put_statuses`` of statuses encoded already (``device_state.status_text``; the
        profile engine uses it when the store has it). Held for the next group commit when
        there is one (the module docstring), else one pipeline of SETs (no transaction: on a
        cluster the devices' keys live in different slots)."""
        if not rows:
            return
        key = self._db.endpoint_key
        for endpoint, _ in rows:  # what was read ahead is older than this
            self._ahead.forget(endpoint)
        if self._group is not None:
            held = self._held
            for endpoint, value in rows:
                held[key("pstatus", endpoint)] = value
            if self._queue():
                return
            values = list(held.items())  # not grouping: written here, now
        else:
            values = [(key("pstatus", endpoint), value) for endpoint, value in rows]
        with self._db.errors(f"cannot write the profile status of {len(values)} devices"):
            pipe = self._db.client.pipeline(transaction=False)
            for k, value in values:
                pipe.set(k, value)
            pipe.execute()
        for k, value in values:
            if self._held.get(k) is value:
                del self._held[k]

    def _queue(self) -> bool:
        """Queue one MSET of the held statuses for the next group commit, unless one is queued
        already (it sends what is held when the commit is sent). False: the store does not
        group (nothing queued)."""
        if self._queued is not None:
            return True
        if self._group is None:
            return False
        token = object()
        sent: dict[str, str] = {}

        def queue(pipe: Any) -> object:
            if self._queued is token:  # statuses held from now on go with a later commit
                self._queued = None
            sent.update(self._held)
            # exactly one command per advisory write: a PING when a synchronous write took
            # everything meanwhile
            return pipe.mset(sent) if sent else pipe.ping()

        def done(answer: Any) -> None:
            if self._queued is token:  # the commit failed before it queued the write
                self._queued = None
            self._written(sent, answer)

        if not self._group.write_later(queue, done):
            return False
        self._queued = token
        return True

    def _written(self, sent: dict[str, str], answer: Any) -> None:
        """A commit's answer to its MSET: forget what Redis now has (unless a newer status of
        the device is held), or keep it held and queue it again a little later."""
        held = self._held
        if not isinstance(answer, BaseException):
            if sent:
                self.status_writes += 1
            for k, value in sent.items():
                if held.get(k) is value:
                    del held[k]
            return
        if self._log.allow("status", time.monotonic()):
            log.warning(
                "Redis store %s: profile status of %d devices not stored yet (kept, sent again "
                "with a later commit): %s",
                self.url,
                len(held),
                answer,
            )
        if held and self._retry is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (nothing commits by itself): with the next commit
                self._queue()
                return
            self._retry = loop.call_later(_RETRY_AFTER, self._requeue)

    def _requeue(self) -> None:
        self._retry = None
        if self._held:
            self._queue()

    def statuses(self, endpoints: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What this store holds for the next commit, what the Registers' commit read ahead,
        and one pipeline of GETs for the rest (not MGET: on a cluster the keys live in
        different slots)."""
        if not endpoints:
            return {}
        key = self._db.endpoint_key
        raws: dict[str, bytes | str | None] = {}
        missing: list[str] = []
        held = self._held
        ahead = self._ahead
        for endpoint in endpoints:
            value = held.get(key("pstatus", endpoint)) if held else None
            if value is None:
                value = ahead.take(endpoint)
                if value is MISSING:
                    missing.append(endpoint)
                    continue
            raws[endpoint] = value
        if missing:
            with self._db.errors(f"cannot read the profile status of {len(missing)} devices"):
                pipe = self._db.client.pipeline(transaction=False)
                for endpoint in missing:
                    pipe.get(key("pstatus", endpoint))
                raws.update(zip(missing, pipe.execute(), strict=True))
        found: dict[str, dict[str, Any]] = {}
        for endpoint in endpoints:
            raw = raws.get(endpoint)
            if raw is not None:
                data = self._decode(endpoint, raw)
                if data is not None:
                    found[endpoint] = data
        return found

    def status(self, endpoint: str) -> dict[str, Any] | None:
        k = self._db.endpoint_key("pstatus", endpoint)
        raw: bytes | str | None = self._held.get(k)
        if raw is None:
            with self._db.errors(f"cannot read the profile status of {endpoint!r}"):
                raw = self._db.client.get(k)
        if raw is None:
            return None
        return self._decode(endpoint, raw)

    def _decode(self, endpoint: str, raw: bytes | str) -> dict[str, Any] | None:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StoreError(
                f"Redis store {self.url}: corrupt profile status of {endpoint!r}: {exc}"
            ) from exc
        return data if isinstance(data, dict) else None

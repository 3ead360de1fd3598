"""``RedisQueuedRequestStore``: ``QueuedRequestStore`` (queued downlink requests) on Redis.

Keys (``P`` is the prefix):

* ``P:queued:{ep}``     hash  request id → the entry (JSON, ``queued_requests.entry_to_json``),
  in the endpoint's hash-tag slot;
* ``{P:queued}:ids``    hash  request id → endpoint (finds an entry by id, and every endpoint
  with entries at start-up).

The two keys are in different slots on a Redis Cluster, so a change is two commands, ordered so
that a failure between them never hides an entry: ``put`` writes the index first, ``remove``
deletes the entry first (an index entry without its entry is skipped and cleaned up).
Durability is Redis's (AOF/replication settings): the call returns once Redis has the write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from keystore.store.redis_database import RedisDatabase, text

from .queued_requests import StoredRequest, _check, _ordered, entry_from_json

log = logging.getLogger(__name__)


class RedisQueuedRequestStore:
    """``lwm2m_server.store.queued_requests.QueuedRequestStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._ids = db.group_key("queued", "ids")

    def _key(self, endpoint: str) -> str:
        return self._db.endpoint_key("queued", endpoint)

    def put(self, entry: StoredRequest) -> None:
        value = _check(entry)
        with self._db.errors(f"cannot store queued request {entry.request_id!r}"):
            self._db.client.hset(self._ids, entry.request_id, entry.endpoint)
            self._db.client.hset(self._key(entry.endpoint), entry.request_id, value)

    def remove(self, request_id: str) -> bool:
        with self._db.errors(f"cannot remove queued request {request_id!r}"):
            endpoint = self._db.client.hget(self._ids, request_id)
            if endpoint is None:
                return False
            removed = self._db.client.hdel(self._key(text(endpoint)), request_id)
            self._db.client.hdel(self._ids, request_id)
        return bool(removed)

    def by_endpoint(self, endpoint: str) -> list[StoredRequest]:
        with self._db.errors(f"cannot read the queued requests of {endpoint!r}"):
            raw = self._db.client.hgetall(self._key(endpoint))
        return _ordered(self._decode(endpoint, raw))

    def all(self) -> list[StoredRequest]:
        with self._db.errors("cannot read the queued requests"):
            index = self._db.client.hgetall(self._ids)
        endpoints = sorted({text(e) for e in index.values()})
        entries = []
        for endpoint in endpoints:
            entries.extend(self.by_endpoint(endpoint))
        found = {e.request_id for e in entries}
        stale = [text(i) for i in index if text(i) not in found]
        if stale:  # a remove that stopped half-way: the entry is gone, drop its index
            with self._db.errors("cannot clean the queued requests index"):
                self._db.client.hdel(self._ids, *stale)
        return _ordered(entries)

    def _decode(self, endpoint: str, raw: Mapping[Any, Any]) -> list[StoredRequest]:
        entries = []
        for request_id, value in raw.items():
            try:
                entries.append(entry_from_json(value))
            except (ValueError, TypeError, KeyError) as exc:
                log.error(
                    "Redis store %s: queued request %r of %r cannot be read, dropped: %s",
                    self.url,
                    text(request_id),
                    endpoint,
                    exc,
                )
                self.remove(text(request_id))
        return entries

"""``RedisQueuedRequestStore``: ``QueuedRequestStore`` (queued downlink requests) on Redis.

Keys (``P`` is the prefix):

* ``P:queued:{ep}``     hash  request id → the entry (JSON, ``queued_requests.entry_to_json``),
  in the endpoint's hash-tag slot;
* ``P:qowner:{ep}``     hash  request id → the node (``ClusterNode.node_id``) whose in-memory
  queue holds it, in the same slot (entries written without a node have none);
* ``{P:queued}:ids``    hash  request id → endpoint (finds an entry by id, and every endpoint
  with entries at start-up).

**Owners** (docs/cluster.md, "Queued requests across nodes"): a request is queued in the memory
of the node whose API accepted it, but the sleeping device may wake up on any node. A store
opened with ``node=`` records that node as each entry's owner; the node that sees the device
wake ``take()``s the endpoint's entries in one script (every entry becomes its own, the previous
owners are returned so that they can be told to let go), and delivers them. ``remove`` by a node
that no longer owns an entry leaves it alone (the new owner delivers it; a late expiry or
cancellation on the old one must not delete it), and ``all()`` (start-up) returns only the
node's own entries and those without an owner: a restarted node has a new id, so the entries of
its previous life wait for their device's next wake-up, where any node adopts them.

The two keys are in different slots on a Redis Cluster, so a change is two commands, ordered so
that a failure between them never hides an entry: ``put`` writes the index first, ``remove``
deletes the entry first (an index entry without its entry is skipped and cleaned up).
Durability is Redis's (AOF/replication settings): the call returns once Redis has the write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase, text

from .queued_requests import StoredRequest, _check, _ordered, entry_from_json

log = logging.getLogger(__name__)

# KEYS: entries, owners. ARGV: id, value, node ('' = none).
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
else redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS: entries, owners. ARGV: id, node ('' = any). 1 removed, 0 not stored, -1 another owner's.
_REMOVE = """
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] ~= '' and owner and owner ~= ARGV[2] then return -1 end
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# KEYS: entries, owners. ARGV: node. Every entry becomes the node's; returns id, value, previous
# owner ('' for none) of each.
_TAKE = """
local entries = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #entries, 2 do
  local previous = redis.call('HGET', KEYS[2], entries[i]) or ''
  redis.call('HSET', KEYS[2], entries[i], ARGV[1])
  out[#out + 1] = entries[i]
  out[#out + 1] = entries[i + 1]
  out[#out + 1] = previous
end
return out
"""


class RedisQueuedRequestStore:
    """``lwm2m_server.store.queued_requests.QueuedRequestStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase, *, node: str | None = None) -> None:
        self._db = db
        self.url = db.url
        self.node = node
        """This node's id (the owner of what it queues); None: no owners (one process)."""
        self._ids = db.group_key("queued", "ids")
        self._put = db.script(_PUT)
        self._remove = db.script(_REMOVE)
        self._take = db.script(_TAKE)
        self.taken = 0
        """Entries this node took over from another node (for /api/health and tests)."""

    def _key(self, endpoint: str) -> str:
        return self._db.endpoint_key("queued", endpoint)

    def _owners_key(self, endpoint: str) -> str:
        return self._db.endpoint_key("qowner", endpoint)

    def put(self, entry: StoredRequest) -> None:
        value = _check(entry)
        keys = [self._key(entry.endpoint), self._owners_key(entry.endpoint)]
        with self._db.errors(f"cannot store queued request {entry.request_id!r}"):
            self._db.client.hset(self._ids, entry.request_id, entry.endpoint)
            self._put(keys=keys, args=[entry.request_id, value, self.node or ""])

    def remove(self, request_id: str) -> bool:
        """False also when another node owns the entry now (it took it: it delivers it)."""
        with self._db.errors(f"cannot remove queued request {request_id!r}"):
            endpoint = self._db.client.hget(self._ids, request_id)
            if endpoint is None:
                return False
            keys = [self._key(text(endpoint)), self._owners_key(text(endpoint))]
            removed = int(self._remove(keys=keys, args=[request_id, self.node or ""]))
            if removed < 0:
                return False
            self._db.client.hdel(self._ids, request_id)
        return bool(removed)

    def take(self, endpoint: str) -> list[tuple[StoredRequest, str | None]]:
        """Make every entry of ``endpoint`` this node's, atomically (the device woke up here);
        returns them, oldest first, each with its previous owner (None: none). An entry that
        cannot be read is dropped, as by ``by_endpoint``."""
        if self.node is None:
            raise StoreError("take() needs a store opened with node=")
        keys = [self._key(endpoint), self._owners_key(endpoint)]
        with self._db.errors(f"cannot take the queued requests of {endpoint!r}"):
            raw = self._take(keys=keys, args=[self.node])
        return self.taken_entries(endpoint, raw)

    def queue_take(self, pipe: Any, endpoint: str) -> None:
        """Queue the take of ``endpoint``'s entries on ``pipe`` (the group commit's MULTI/EXEC:
        no round trip of its own); ``taken_entries`` reads its answer."""
        assert self.node is not None
        keys = [self._key(endpoint), self._owners_key(endpoint)]
        pipe.execute_command("EVAL", _TAKE, 2, *keys, self.node)

    def taken_entries(self, endpoint: str, raw: Any) -> list[tuple[StoredRequest, str | None]]:
        found: dict[str, str | None] = {}
        values: dict[Any, Any] = {}
        for i in range(0, len(raw) - 2, 3):  # id, value, previous owner
            request_id = text(raw[i])
            values[request_id] = raw[i + 1]
            found[request_id] = text(raw[i + 2]) or None
        entries = _ordered(self._decode(endpoint, values))
        self.taken += sum(1 for e in entries if found.get(e.request_id) != self.node)
        return [(e, found.get(e.request_id)) for e in entries]

    def by_endpoint(self, endpoint: str) -> list[StoredRequest]:
        with self._db.errors(f"cannot read the queued requests of {endpoint!r}"):
            raw = self._db.client.hgetall(self._key(endpoint))
        return _ordered(self._decode(endpoint, raw))

    def all(self) -> list[StoredRequest]:
        """Every entry; with ``node``, only this node's and those without an owner (the
        module docstring)."""
        with self._db.errors("cannot read the queued requests"):
            index = self._db.client.hgetall(self._ids)
        endpoints = sorted({text(e) for e in index.values()})
        entries = []
        found = set()
        for endpoint in endpoints:
            mine = self.by_endpoint(endpoint)
            found |= {e.request_id for e in mine}
            if self.node is not None and mine:
                with self._db.errors("cannot read the queued requests' owners"):
                    raw = self._db.client.hgetall(self._owners_key(endpoint))
                owners = {text(k): text(v) for k, v in raw.items()}
                mine = [e for e in mine if owners.get(e.request_id, self.node) == self.node]
            entries.extend(mine)
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

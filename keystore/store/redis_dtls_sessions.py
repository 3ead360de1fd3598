"""``RedisDtlsSessionStore``: the CoAPs endpoint's DTLS sessions on Redis
(``keystore.coaps.persistence.SharedDtlsSessionStore``), so that a session outlives the process
that made it, as with the sqlite engine, and so that any node of a cluster can continue it.

Keys (``P`` is the prefix; one hash-tag group, ``{P:dtls}``), by session id:

* ``{P:dtls}:state``   hash  id → the fixed part (``state_to_json``: suite, master secret …);
* ``{P:dtls}:seq``     hash  id → the reserved write sequence number (decimal);
* ``{P:dtls}:window``  hash  id → ``host|port|read_top|read_bitmap(hex)|saved_at`` (what moves);
* ``{P:dtls}:owner``   hash  id → the token of the store handle (node) that may write it;
* ``{P:dtls}:addr``    hash  ``host|port`` → id (the session's current peer address);
* ``{P:dtls}:cid``     hash  our Connection ID (hex) → id.

What must be durable before a reply (docs/coaps-transport.md, "Sessions survive a restart") is
kept by one Lua script per save: new sessions, progress and removals are one isolated step
(all or nothing, like the sqlite transaction); the write sequence number only moves forward
(the script keeps the larger of the stored and the given number, compared as numbers and
stored as decimal text, exact up to 2^53, far above the 2^48 DTLS limit); progress of a
session that is not stored (removed meanwhile) is dropped, as the sqlite UPDATE matches no row.

**Ownership** (docs/coaps-transport.md, "DTLS across nodes"): a session is written by one
node at a time, the one whose handle made it or last *claimed* it (``claim_dtls_session``:
the reservation moves ahead by ``reserve`` and the owner changes, in one script). Progress
and removals of a session another node owns are refused by the script and reported back
(``save_owned_dtls_sessions`` returns their ids): the old node then forgets the session
without sending anything in it. That is what keeps two nodes from ever using the same write
sequence number (a reused AES-CCM nonce): the new owner starts at the stored reservation, and
the old one can no longer extend its own beyond it. Rows written before owners existed have
none and are anybody's (progress accepted).

A write is acknowledged when Redis has it: Redis persistence (AOF) is what makes it survive a
Redis restart (docs/cluster.md). The values hold key material (master secrets), like the sqlite
rows: nothing here logs them, and the Redis server is the deployment's secret store (ACLs, TLS,
no public exposure).

One group, not a key per session: ``load_dtls_sessions`` reads every session and
``save_dtls_sessions`` changes several at once atomically, which on Redis Cluster needs one
slot (a key per session would spread the progress writes: docs/cluster.md, "Not yet").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from ..coaps.persistence import SessionProgress, StoredSession
from .dtls_sessions import state_from_json, state_to_json
from .redis_database import RedisDatabase, text

log = logging.getLogger(__name__)

# KEYS: state, seq, window, owner, addr, cid. ARGV: counts, owner token, then the items.
# Returns the ids of progress the script refused because another node owns the session.
_SAVE = """
local n_new, n_progress, n_removed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local me = ARGV[4]
local function addr_of(window)
  return window and string.match(window, '^([^|]*|[^|]*)|') or nil
end
local function unindex(id)
  local old = addr_of(redis.call('HGET', KEYS[3], id))
  if old and redis.call('HGET', KEYS[5], old) == id then redis.call('HDEL', KEYS[5], old) end
  local state = redis.call('HGET', KEYS[1], id)
  if state then
    local ok, doc = pcall(cjson.decode, state)
    if ok and type(doc) == 'table' and type(doc['own_cid']) == 'string' then
      if redis.call('HGET', KEYS[6], doc['own_cid']) == id then
        redis.call('HDEL', KEYS[6], doc['own_cid'])
      end
    end
  end
end
local lost = {}
local i = 5
for _ = 1, n_new do
  local id = ARGV[i]
  unindex(id)
  redis.call('HSET', KEYS[1], id, ARGV[i + 1])
  redis.call('HSET', KEYS[2], id, ARGV[i + 2])
  redis.call('HSET', KEYS[3], id, ARGV[i + 3])
  redis.call('HSET', KEYS[4], id, me)
  redis.call('HSET', KEYS[5], addr_of(ARGV[i + 3]), id)
  if ARGV[i + 4] ~= '' then redis.call('HSET', KEYS[6], ARGV[i + 4], id) end
  i = i + 5
end
for _ = 1, n_progress do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    local owner = redis.call('HGET', KEYS[4], id)
    if owner and owner ~= me then
      lost[#lost + 1] = id
    else
      local stored = redis.call('HGET', KEYS[2], id)
      if not stored or tonumber(stored) < tonumber(ARGV[i + 1]) then
        redis.call('HSET', KEYS[2], id, ARGV[i + 1])
      end
      local old = addr_of(redis.call('HGET', KEYS[3], id))
      local new = addr_of(ARGV[i + 2])
      if old ~= new and old and redis.call('HGET', KEYS[5], old) == id then
        redis.call('HDEL', KEYS[5], old)
      end
      redis.call('HSET', KEYS[5], new, id)
      redis.call('HSET', KEYS[3], id, ARGV[i + 2])
    end
  end
  i = i + 3
end
for _ = 1, n_removed do
  local id = ARGV[i]
  local owner = redis.call('HGET', KEYS[4], id)
  if not owner or owner == me then
    unindex(id)
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
  i = i + 1
end
return lost
"""

# KEYS: state, seq, window, owner, addr, cid. ARGV: index ('addr'|'cid'), index key, cutoff
# (sessions saved before it are idle: deleted, not returned). Read only but for that.
_FIND = """
local index = ARGV[1] == 'cid' and KEYS[6] or KEYS[5]
local id = redis.call('HGET', index, ARGV[2])
if not id then return false end
local state = redis.call('HGET', KEYS[1], id)
local seq = redis.call('HGET', KEYS[2], id)
local window = redis.call('HGET', KEYS[3], id)
if not (state and seq and window) then
  redis.call('HDEL', index, ARGV[2])
  return false
end
local saved_at = tonumber(string.match(window, '|([^|]*)$'))
if saved_at and saved_at < tonumber(ARGV[3]) then
  local addr = string.match(window, '^([^|]*|[^|]*)|')
  if addr and redis.call('HGET', KEYS[5], addr) == id then redis.call('HDEL', KEYS[5], addr) end
  if ARGV[1] == 'cid' then redis.call('HDEL', KEYS[6], ARGV[2]) end
  for k = 1, 4 do redis.call('HDEL', KEYS[k], id) end
  return false
end
return {id, state, seq, window}
"""

# KEYS: state, seq, window, owner. ARGV: id, owner token, reserve. The session becomes the
# caller's; its reservation moves ``reserve`` ahead; returns {state, old seq, window}.
_CLAIM = """
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], id)
local seq = redis.call('HGET', KEYS[2], id)
local window = redis.call('HGET', KEYS[3], id)
if not (state and seq and window) then return false end
redis.call('HSET', KEYS[2], id, string.format('%.0f', tonumber(seq) + tonumber(ARGV[3])))
redis.call('HSET', KEYS[4], id, ARGV[2])
return {state, seq, window}
"""

# KEYS: state, seq, window, owner, addr, cid. ARGV: cutoff, then candidate ids. Deletes those
# whose last save is before the cutoff (checked here, atomically), with their index entries.
_EXPIRE = """
local cutoff = tonumber(ARGV[1])
local deleted = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local window = redis.call('HGET', KEYS[3], id)
  local saved_at = window and tonumber(string.match(window, '|([^|]*)$')) or nil
  if window == false or (saved_at and saved_at < cutoff) then
    local addr = window and string.match(window, '^([^|]*|[^|]*)|') or nil
    if addr and redis.call('HGET', KEYS[5], addr) == id then redis.call('HDEL', KEYS[5], addr) end
    local state = redis.call('HGET', KEYS[1], id)
    if state then
      local ok, doc = pcall(cjson.decode, state)
      if ok and type(doc) == 'table' and type(doc['own_cid']) == 'string' then
        if redis.call('HGET', KEYS[6], doc['own_cid']) == id then
          redis.call('HDEL', KEYS[6], doc['own_cid'])
        end
      end
    end
    for k = 1, 4 do redis.call('HDEL', KEYS[k], id) end
    deleted = deleted + 1
  end
end
return deleted
"""

# KEYS: state, seq, window, owner, addr, cid. ARGV: ids. Adds the address and CID index entries
# of sessions written before the indexes existed, never over an entry another session holds.
_INDEX = """
local added = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local window = redis.call('HGET', KEYS[3], id)
  local addr = window and string.match(window, '^([^|]*|[^|]*)|') or nil
  if addr and redis.call('HSETNX', KEYS[5], addr, id) == 1 then added = added + 1 end
  local state = redis.call('HGET', KEYS[1], id)
  if state then
    local ok, doc = pcall(cjson.decode, state)
    if ok and type(doc) == 'table' and type(doc['own_cid']) == 'string' then
      if redis.call('HSETNX', KEYS[6], doc['own_cid'], id) == 1 then added = added + 1 end
    end
  end
end
return added
"""

_INDEX_VERSION = "1"
"""The ``{P:dtls}:indexed`` marker: every stored session has its index entries."""


def _window(host: str, port: int, read_top: int, read_bitmap: int, saved_at: float) -> str:
    return f"{host}|{port}|{read_top}|{read_bitmap:x}|{saved_at!r}"


class RedisDtlsSessionStore:
    """``SharedDtlsSessionStore`` on a ``RedisDatabase``. Each handle is one owner (a random
    token): two server processes, or two servers in one process, each open their own."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self.owner = os.urandom(8).hex()
        self._keys = [
            db.group_key("dtls", name)
            for name in ("state", "seq", "window", "owner", "addr", "cid")
        ]
        self._save = db.script(_SAVE)
        self._find = db.script(_FIND)
        self._claim = db.script(_CLAIM)
        self._expire = db.script(_EXPIRE)
        self._index = db.script(_INDEX)
        self._indexed_key = db.group_key("dtls", "indexed")
        self._index_checked = False
        """``index_stored_sessions`` ran for this handle (at its first lookup miss)."""

    def index_stored_sessions(self, count: int = 500) -> int:
        """Give the sessions stored before the address and CID indexes existed their index
        entries, once per Redis (a marker key says it was done); returns how many entries
        were added. Why: a node finds another node's session only through them, so the
        devices of such sessions would otherwise need a new handshake when their datagrams
        reach another node (or this one after a restart). Run by ``find_dtls_session`` at the
        first miss of each handle (then one GET of the marker), a slice of ``count`` sessions
        per round trip; an entry another session holds is left alone (HSETNX). Sessions saved
        since are indexed by the save script."""
        client = self._db.client
        added = 0
        with self._db.errors("cannot index the stored DTLS sessions"):
            if client.get(self._indexed_key) == _INDEX_VERSION.encode():
                return 0
            cursor = 0
            while True:
                cursor, found = client.hscan(self._keys[0], cursor, count=count)
                ids = [text(k) for k in found]
                if ids:
                    added += int(self._index(keys=self._keys, args=ids))
                if not cursor:
                    break
            client.set(self._indexed_key, _INDEX_VERSION)
        if added:
            log.info(
                "%s: %d index entries added for DTLS sessions stored before the index",
                self.url,
                added,
            )
        return added

    def load_dtls_sessions(self) -> list[StoredSession]:
        with self._db.errors("cannot read the DTLS sessions"):
            pipe = self._db.client.pipeline(transaction=True)
            for key in self._keys[:3]:
                pipe.hgetall(key)
            states, seqs, windows = (
                {text(k): text(v) for k, v in h.items()} for h in pipe.execute()
            )
        sessions: list[StoredSession] = []
        for session_id in sorted(states):
            try:
                host, port, read_top, bitmap, saved_at = windows[session_id].rsplit("|", 4)
                saved = state_from_json(
                    states[session_id], int(seqs[session_id]), int(read_top), int(bitmap, 16)
                )
                sessions.append(StoredSession(session_id, host, int(port), saved, float(saved_at)))
            except (ValueError, KeyError, TypeError) as exc:
                # the reason names the kind of damage, never a value (values are secrets)
                log.error(
                    "%s: DTLS session %s unreadable (%s), skipped",
                    self.url,
                    session_id,
                    type(exc).__name__,
                )
        sessions.sort(key=lambda s: s.saved_at)
        return sessions

    def save_dtls_sessions(
        self,
        new: Sequence[StoredSession],
        progress: Sequence[SessionProgress],
        removed: Sequence[str],
    ) -> None:
        self.save_owned_dtls_sessions(new, progress, removed)

    def save_owned_dtls_sessions(
        self,
        new: Sequence[StoredSession],
        progress: Sequence[SessionProgress],
        removed: Sequence[str],
    ) -> list[str]:
        args: list[str | int] = [len(new), len(progress), len(removed), self.owner]
        for s in new:
            state = s.state
            args += [
                s.id,
                state_to_json(state),
                str(state.write_seq),
                _window(s.host, s.port, state.read_top, state.read_bitmap, s.saved_at),
                "" if state.own_cid is None else state.own_cid.hex(),
            ]
        for p in progress:
            args += [
                p.id,
                str(p.write_seq),
                _window(p.host, p.port, p.read_top, p.read_bitmap, p.saved_at),
            ]
        args += list(removed)
        if len(args) == 4:
            return []
        with self._db.errors("cannot save DTLS sessions"):
            lost = self._save(keys=self._keys, args=args)
        return [text(i) for i in lost or []]

    def find_dtls_session(
        self, *, address: tuple[str, int] | None = None, cid: bytes | None = None, cutoff: float
    ) -> StoredSession | None:
        """The session our Connection ID ``cid`` (else the one at ``address``) names, read
        only; None when there is none, or it was saved before ``cutoff`` (idle: deleted)."""
        if cid is not None:
            args: list[str | float] = ["cid", cid.hex(), cutoff]
        elif address is not None:
            args = ["addr", f"{address[0]}|{address[1]}", cutoff]
        else:
            return None
        with self._db.errors("cannot look up a DTLS session"):
            found = self._find(keys=self._keys, args=args)
        if not found and not self._index_checked:
            # the first miss: sessions stored before the index may lack their entries
            added = self.index_stored_sessions()
            self._index_checked = True
            if added:
                with self._db.errors("cannot look up a DTLS session"):
                    found = self._find(keys=self._keys, args=args)
        if not found:
            return None
        session_id, state, seq, window = (text(v) for v in found)
        return self._row(session_id, state, seq, window)

    def claim_dtls_session(self, session_id: str, reserve: int) -> StoredSession | None:
        """Make the session ours: its stored reservation moves ``reserve`` numbers ahead and
        its owner becomes this handle, atomically; returns the row as it was stored (so
        ``state.write_seq`` is the first number we may use, ``+ reserve`` the new reservation)
        or None when it is gone."""
        with self._db.errors("cannot claim a DTLS session"):
            found = self._claim(keys=self._keys[:4], args=[session_id, self.owner, reserve])
        if not found:
            return None
        state, seq, window = (text(v) for v in found)
        return self._row(session_id, state, seq, window)

    def expire_dtls_sessions(self, cutoff: float, cursor: int = 0, count: int = 500) -> int:
        """Delete up to about ``count`` sessions last saved before ``cutoff`` (wall clock),
        scanning from ``cursor``; returns the cursor to continue from (0: the scan went round).

        Why: a node no longer loads (and so no longer weeds) every stored session at start;
        sessions of devices that never come back would stay in Redis for ever. Each node's
        periodic sweep calls this, a slice at a time (HSCAN, then one script that checks the
        time again atomically), so no call blocks Redis long."""
        with self._db.errors("cannot expire DTLS sessions"):
            cursor, found = self._db.client.hscan(self._keys[0], cursor, count=count)
            ids = [text(k) for k in found]
            if ids:
                self._expire(keys=self._keys, args=[cutoff, *ids])
        return int(cursor)

    def _row(self, session_id: str, state: str, seq: str, window: str) -> StoredSession | None:
        try:
            host, port, read_top, bitmap, saved_at = window.rsplit("|", 4)
            saved = state_from_json(state, int(seq), int(read_top), int(bitmap, 16))
            return StoredSession(session_id, host, int(port), saved, float(saved_at))
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "%s: DTLS session %s unreadable (%s), skipped",
                self.url,
                session_id,
                type(exc).__name__,
            )
            return None

    def remove_dtls_sessions(self, ids: Sequence[str]) -> None:
        if ids:
            self.save_dtls_sessions([], [], ids)

    def count(self) -> int:
        """How many sessions are stored (tests, the operator CLI)."""
        with self._db.errors("cannot count the DTLS sessions"):
            return int(self._db.client.hlen(self._keys[0]))

"""``RedisDtlsSessionStore``: the CoAPs endpoint's DTLS sessions on Redis
(``keystore.coaps.persistence.SharedDtlsSessionStore``), so that a session outlives the process
that made it, as with the sqlite engine, and so that any node of a cluster can continue it.

Keys (``P`` is the prefix; docs/cluster.md, "Key layout"):

* ``P:dtls:{id}``      hash  one per session, in the session's own slot: ``state`` (the fixed
  part, ``state_to_json``: suite, master secret …), ``seq`` (the reserved write sequence
  number, decimal), ``window`` (``host|port|read_top|read_bitmap(hex)|saved_at``: what moves),
  ``owner`` (the token of the store handle, i.e. node, that may write it); the id of a session
  keyed by its CID is ``c:<CID hex>`` (below), so its hash is in the CID's slot;
* ``{P:dtls}:ids``     hash  id → the index entries made for the session (JSON: when the first
  was added, its addresses, its CIDs), so that they can be removed after it;
* ``{P:dtls}:addr``    hash  ``host|port`` → id (the session's current peer address);
* ``{P:dtls}:cid``     hash  our Connection ID (hex) → id;
* ``{P:dtls}:layout``  string  ``2``: no session of the one-slot layout is left (migrated).

**Sessions keyed by their CID** (session 11). A session made with a Connection ID of ours
(``CID_KEYED_MIN`` bytes or more) gets the id ``c:<CID hex>`` (``new_session_id``), so its hash
``P:dtls:{c:<CID hex>}`` follows from the CID: a lookup by CID reads it directly (one round
trip on a Redis Cluster too, where the index, then the session, were two), falling back to the
``cid`` index for sessions stored before (random ids, no migration). The id is the store's,
never on the wire (the DTLS session id of a ServerHello is another, random value). A CID is
random, so two live sessions may draw the same one (two nodes; 48 bits by default): a new
session is written by ``_CREATE`` only where no session is stored under its id, and a refused
one is reported to the endpoint, which saves it again under a random id (index path). Every
other step (index entries, progress, claim, removal, sweep) is the same for both kinds of id.

**Why a hash per session.** The write that comes with traffic is a session's progress (its
replay window after every iteration that accepted a record of it, its reservation every ~512
records sent): with each session in its own slot those writes spread over a Redis Cluster,
where the one-slot layout before (every row, index and owner under ``{P:dtls}``) sent all of
them to one node. The indexes and the id list stay in one slot: they are written when a
session is made, moves to another address or ends (handshake rate), never per record.

**What is atomic.** Each session's write is one script on its hash (the claim, the progress,
the removal): the write sequence number only moves forward (the larger of the stored and the
given number, compared as numbers, stored as decimal text: exact up to 2^53, far above the
2^48 DTLS limit); progress of a session that is not stored (removed meanwhile) is dropped, as
the sqlite UPDATE matches no row. A ``save_dtls_sessions`` of several sessions is one script
per session, each all or nothing, the call as a whole not (the sessions are in different
slots). That is enough for the caller (``DtlsEndpoint._commit``): every write is safe to
repeat and moves nothing backwards, so when the call raises, after some of its sessions were
written, the endpoint treats all of them as not written (a stored reservation is then higher
than it believes, a stored window newer: both harmless) and writes again later; replies wait
for a call that returned.

**Indexes** (``addr``, ``cid``, ``ids``) follow the rule of the server's records on a cluster
(docs/cluster.md, "Atomicity of the server's records"): an entry is added *before* the session
is written and removed *after* it is gone (or moved), so an index may hold an entry that is no
longer true, never miss one that is; every lookup reads the session and ignores what disagrees
(another address, another CID, no session); the sweep removes the entries of a session whose
record is gone once they are older than the idle timeout (a process killed between the steps).

**Ownership** (docs/coaps-transport.md, "DTLS across nodes"): a session is written by one node
at a time, the one whose handle made it or last *claimed* it (``claim_dtls_session``: the
reservation moves ahead by ``reserve`` and the owner changes, in one script on the session's
hash). Progress and removals of a session another node owns are refused by the script and
reported back (``save_owned_dtls_sessions`` returns their ids): the old node then forgets the
session without sending anything in it. That is what keeps two nodes from ever using the same
write sequence number (a reused AES-CCM nonce). Rows written before owners existed have none
and are anybody's (progress accepted).

**Migration.** Sessions stored in the one-slot layout (``{P:dtls}:state``/``seq``/``window``/
``owner`` hashes, before session 7) are moved to their own hashes when a handle opens
(``migrate_stored_sessions``, a slice at a time; the ``layout`` marker makes it one GET once
done), with the index entries that rows from before the indexes lack: their devices continue
without a handshake.

A write is acknowledged when Redis has it: Redis persistence (AOF) is what makes it survive a
Redis restart (docs/cluster.md). The values hold key material (master secrets), like the sqlite
rows: nothing here logs them, and the Redis server is the deployment's secret store (ACLs, TLS,
no public exposure).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from ..coaps.persistence import SessionProgress, StoredSession
from .dtls_sessions import state_from_json, state_to_json
from .redis_database import RedisDatabase, text

log = logging.getLogger(__name__)

BATCH = 500
"""Sessions per script call on one Redis (bounds a script's run time and argument list)."""

LAYOUT = "2"
"""The ``{P:dtls}:layout`` marker: every session is in its own hash."""

CID_ID_PREFIX = "c:"
"""How the id of a session keyed by its CID begins (``cid_session_id``). Ids the endpoint made
before are 24 hex digits (``os.urandom(12).hex()``): none begins with ``c:``."""

CID_KEYED_MIN = 4
"""The shortest CID (bytes) that names its session. Below it a CID drawn at random is too
often drawn twice (two live sessions, or a new one and an ended one whose removal is still
under way) for one key per CID; such sessions get a random id and the index path."""


def cid_session_id(cid: bytes) -> str:
    """The id of a session keyed by our Connection ID ``cid``: ``c:<cid hex>``. Its hash
    ``P:dtls:{c:<cid hex>}`` follows from the CID alone, so a lookup by CID reads it in one
    round trip, in its own slot, on a Redis Cluster too (no index in another slot first)."""
    return CID_ID_PREFIX + cid.hex()


# Lua helpers shared by the session scripts: the address of a window, our CID of a state.
_HELPERS = """
local function addr_of(window)
  return window and string.match(window, '^([^|]*|[^|]*)|') or ''
end
local function cid_of(state)
  if not state then return '' end
  local ok, doc = pcall(cjson.decode, state)
  if ok and type(doc) == 'table' and type(doc['own_cid']) == 'string' then
    return doc['own_cid']
  end
  return ''
end
"""

# The per-session scripts take the hashes of any number of sessions (KEYS) and give one answer
# per session: on a Redis Cluster each call has one session (a script's keys must share a
# slot), on one Redis one call has them all (one command for the whole commit).

# KEYS: the sessions' hashes. ARGV: owner token, then (seq, window) per session. The progress
# of each: {'ok', old address if it moved else ''} | {'lost', ''} (another node owns it) |
# {'gone', ''} (not stored).
_PROGRESS = (
    _HELPERS
    + """
local me = ARGV[1]
local out = {}
for k, key in ipairs(KEYS) do
  local seq, window = ARGV[2 * k], ARGV[2 * k + 1]
  if redis.call('HEXISTS', key, 'state') == 0 then
    out[k] = {'gone', ''}
  else
    local owner = redis.call('HGET', key, 'owner')
    if owner and owner ~= me then
      out[k] = {'lost', ''}
    else
      local stored = redis.call('HGET', key, 'seq')
      if not stored or tonumber(stored) < tonumber(seq) then
        redis.call('HSET', key, 'seq', seq)
      end
      local old = addr_of(redis.call('HGET', key, 'window'))
      redis.call('HSET', key, 'window', window)
      if old == addr_of(window) then old = '' end
      out[k] = {'ok', old}
    end
  end
end
return out
"""
)

# KEYS: the sessions' hashes. ARGV: owner token. Per session: {'removed', address, cid} (its
# index entries to remove after) | {'lost', '', ''} (another node owns it: not removed).
_REMOVE = (
    _HELPERS
    + """
local out = {}
for k, key in ipairs(KEYS) do
  local owner = redis.call('HGET', key, 'owner')
  if owner and owner ~= ARGV[1] then
    out[k] = {'lost', '', ''}
  else
    local addr = addr_of(redis.call('HGET', key, 'window'))
    local cid = cid_of(redis.call('HGET', key, 'state'))
    redis.call('DEL', key)
    out[k] = {'removed', addr, cid}
  end
end
return out
"""
)

# KEYS: the sessions' hashes. ARGV: cutoff (wall clock). A session saved before it is idle:
# deleted. Per session: {'ok', state, seq, window} | {'expired', address, cid} | {'missing'}.
_FIND = (
    _HELPERS
    + """
local out = {}
for k, key in ipairs(KEYS) do
  local row = redis.call('HMGET', key, 'state', 'seq', 'window')
  if not (row[1] and row[2] and row[3]) then
    out[k] = {'missing'}
  else
    local saved_at = tonumber(string.match(row[3], '|([^|]*)$'))
    if saved_at and saved_at < tonumber(ARGV[1]) then
      redis.call('DEL', key)
      out[k] = {'expired', addr_of(row[3]), cid_of(row[1])}
    else
      out[k] = {'ok', row[1], row[2], row[3]}
    end
  end
end
return out
"""
)

# One Redis only (a script may read a key it was not given there, never on a cluster): the
# lookup of an unknown peer in one round trip, where it was two (the index, then the session).
# KEYS[1]: the index hash (addr or cid); KEYS[2] (a lookup by CID only): the hash a session
# keyed by that CID would have (``cid_session_id``), read first. ARGV: the field, the cutoff,
# the sessions' key prefix (``P:dtls:{``), the CID-keyed id (with KEYS[2]). {'none'} (no
# entry) | {'id', id} (an id that is not plain: the caller reads the session itself) | as
# _FIND with the id second: {'ok', id, state, seq, window} | {'expired', id, address, cid} |
# {'missing', id}.
_FIND_INDEXED = (
    _HELPERS
    + """
local function answer(sid, key, row)
  local saved_at = tonumber(string.match(row[3], '|([^|]*)$'))
  if saved_at and saved_at < tonumber(ARGV[2]) then
    redis.call('DEL', key)
    return {'expired', sid, addr_of(row[3]), cid_of(row[1])}
  end
  return {'ok', sid, row[1], row[2], row[3]}
end
if KEYS[2] then
  local row = redis.call('HMGET', KEYS[2], 'state', 'seq', 'window')
  if row[1] and row[2] and row[3] then return answer(ARGV[4], KEYS[2], row) end
end
local sid = redis.call('HGET', KEYS[1], ARGV[1])
if not sid then return {'none'} end
if not string.match(sid, '^%w+$') then return {'id', sid} end
local key = ARGV[3] .. sid .. '}'
local row = redis.call('HMGET', key, 'state', 'seq', 'window')
if not (row[1] and row[2] and row[3]) then return {'missing', sid} end
return answer(sid, key, row)
"""
)

# KEYS: the hashes of new sessions whose id names their CID (``cid_session_id``). ARGV: owner
# token, then (state, seq, window) per session. Per session: 'ok' (written) | 'taken' (a
# session with that CID is stored already, another node's that drew the same random CID, or
# one idle and not yet swept: not overwritten; the caller gives the new session a random id).
_CREATE = """
local out = {}
for k, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, 'state') == 1 then
    out[k] = 'taken'
  else
    redis.call('HSET', key, 'state', ARGV[3 * k - 1], 'seq', ARGV[3 * k],
               'window', ARGV[3 * k + 1], 'owner', ARGV[1])
    out[k] = 'ok'
  end
end
return out
"""

# KEYS: the session's hash. ARGV: owner token, reserve. The session becomes the caller's; its
# reservation moves ``reserve`` ahead; returns {state, old seq, window}.
_CLAIM = """
local row = redis.call('HMGET', KEYS[1], 'state', 'seq', 'window')
if not (row[1] and row[2] and row[3]) then return false end
redis.call('HSET', KEYS[1], 'seq', string.format('%.0f', tonumber(row[2]) + tonumber(ARGV[2])),
           'owner', ARGV[1])
return row
"""

# KEYS: the sessions' hashes. ARGV: (state, seq, window, owner ('' none)) per session. A session
# of the one-slot layout moves into its hash; if the hash is there already (another node
# migrated it, or it moved on since), only the larger reservation is kept. 1 per session.
_MIGRATE = """
local out = {}
for k, key in ipairs(KEYS) do
  local state, seq, window, owner = ARGV[4 * k - 3], ARGV[4 * k - 2], ARGV[4 * k - 1], ARGV[4 * k]
  if redis.call('HEXISTS', key, 'state') == 0 then
    redis.call('HSET', key, 'state', state, 'seq', seq, 'window', window)
    if owner ~= '' then redis.call('HSET', key, 'owner', owner) end
  else
    local stored = redis.call('HGET', key, 'seq')
    if not stored or tonumber(stored) < tonumber(seq) then redis.call('HSET', key, 'seq', seq) end
  end
  out[k] = 1
end
return out
"""

# KEYS: ids, addr, cid. ARGV: now, mode ('set': the entries become the session's; 'nx': only
# where no other session holds one, for migrated rows), then (id, address, cid) triples ('' for
# none). Adds the entries *before* the sessions are written, and lists them under the id so
# that they can be removed after. Returns how many entries were set.
_INDEX_ADD = """
local now, nx = tonumber(ARGV[1]), ARGV[2] == 'nx'
local added = 0
local function listed(list, value)
  for _, v in ipairs(list) do if v == value then return end end
  list[#list + 1] = value
end
local function point(hash, key, id)
  if nx then
    if redis.call('HSETNX', hash, key, id) == 1 then added = added + 1 end
  else
    redis.call('HSET', hash, key, id)
    added = added + 1
  end
end
for i = 3, #ARGV, 3 do
  local id, addr, cid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local raw = redis.call('HGET', KEYS[1], id)
  local ok, doc = false, nil
  if raw then ok, doc = pcall(cjson.decode, raw) end
  if not (ok and type(doc) == 'table') then doc = {t = now} end
  if type(doc['a']) ~= 'table' then doc['a'] = {} end
  if type(doc['c']) ~= 'table' then doc['c'] = {} end
  if addr ~= '' then listed(doc['a'], addr); point(KEYS[2], addr, id) end
  if cid ~= '' then listed(doc['c'], cid); point(KEYS[3], cid, id) end
  redis.call('HSET', KEYS[1], id, cjson.encode(doc))
end
return added
"""

# KEYS: ids, addr, cid. ARGV: cutoff, then (id, what, address, cid) quads. ``what``: 'all' (the
# session is gone: every entry listed for it, and the given ones, go, only where they still
# point to it, and so does its id), 'orphan' (the same, only if its first entry is older than
# the cutoff: a session whose record is missing because a process died between the steps,
# never one being written), 'addr' (the session moved away from the given address).
_INDEX_DROP = """
local cutoff = tonumber(ARGV[1])
local function drop(hash, key, id)
  if key ~= '' and redis.call('HGET', hash, key) == id then redis.call('HDEL', hash, key) end
end
for i = 2, #ARGV, 4 do
  local id, what, addr, cid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local raw = redis.call('HGET', KEYS[1], id)
  local ok, doc = false, nil
  if raw then ok, doc = pcall(cjson.decode, raw) end
  if not (ok and type(doc) == 'table') then doc = {t = 0} end
  local addrs = type(doc['a']) == 'table' and doc['a'] or {}
  local cids = type(doc['c']) == 'table' and doc['c'] or {}
  if what == 'all' or (what == 'orphan' and tonumber(doc['t'] or 0) < cutoff) then
    for _, a in ipairs(addrs) do drop(KEYS[2], a, id) end
    for _, c in ipairs(cids) do drop(KEYS[3], c, id) end
    drop(KEYS[2], addr, id)
    drop(KEYS[3], cid, id)
    redis.call('HDEL', KEYS[1], id)
  elseif what == 'addr' then
    drop(KEYS[2], addr, id)
    if raw then
      local kept = {}
      for _, a in ipairs(addrs) do if a ~= addr then kept[#kept + 1] = a end end
      doc['a'] = kept
      redis.call('HSET', KEYS[1], id, cjson.encode(doc))
    end
  end
end
return 0
"""


def _window(host: str, port: int, read_top: int, read_bitmap: int, saved_at: float) -> str:
    return f"{host}|{port}|{read_top}|{read_bitmap:x}|{saved_at!r}"


def _address(host: str, port: int) -> str:
    return f"{host}|{port}"


class RedisDtlsSessionStore:
    """``SharedDtlsSessionStore`` on a ``RedisDatabase``. Each handle is one owner (a random
    token): two server processes, or two servers in one process, each open their own. Opening
    one moves the sessions of the one-slot layout into their own hashes (``migrate``)."""

    def __init__(self, db: RedisDatabase, *, migrate: bool = True) -> None:
        self._db = db
        self.url = db.url
        self.owner = os.urandom(8).hex()
        self._ids_key = db.group_key("dtls", "ids")
        self._index_keys = [
            self._ids_key,
            db.group_key("dtls", "addr"),
            db.group_key("dtls", "cid"),
        ]
        self._layout_key = db.group_key("dtls", "layout")
        self._old_keys = [
            db.group_key("dtls", name) for name in ("state", "seq", "window", "owner")
        ]
        self._scripts: dict[str, Any] = {}
        for name, source in (
            ("progress", _PROGRESS),
            ("remove", _REMOVE),
            ("find", _FIND),
            ("find_indexed", _FIND_INDEXED),
            ("create", _CREATE),
            ("claim", _CLAIM),
            ("migrate", _MIGRATE),
            ("index_add", _INDEX_ADD),
            ("index_drop", _INDEX_DROP),
        ):
            self._scripts[name] = db.script(source)
        self._addresses: dict[str, str] = {}
        """id → the address this handle last saw indexed for the session: a progress from
        another address first adds its index entry (before), then drops the old one (after)."""
        if migrate:
            self.migrate_stored_sessions()

    def session_key(self, session_id: str) -> str:
        """The session's hash, in a slot of its own (``P:dtls:{id}``; for an id that names
        its CID, ``P:dtls:{c:<cid hex>}``, the CID's slot)."""
        return self._db.endpoint_key("dtls", session_id)

    def new_session_id(self, cid: bytes | None) -> str:
        """The id for a session whose handshake just completed: ``cid_session_id(cid)`` when
        it has a CID of ours long enough (``CID_KEYED_MIN``), else random (as every id
        before). Never on the wire (the DTLS session id of a ServerHello is another value)."""
        if cid is not None and len(cid) >= CID_KEYED_MIN:
            return cid_session_id(cid)
        return os.urandom(12).hex()

    # -- scripts -----------------------------------------------------------------------------
    def _run(self, name: str, key_list: list[str], args: Sequence[str | int | float]) -> Any:
        return self._scripts[name](keys=key_list, args=list(args))

    def _per_session(
        self,
        name: str,
        shared: Sequence[str | int | float],
        items: Sequence[tuple[str, Sequence[str | int | float]]],
    ) -> list[Any]:
        """Run a per-session script (``_PROGRESS``, ``_REMOVE``, ``_FIND``, ``_MIGRATE``) on
        ``items`` (session key, its arguments); ``shared`` arguments come first. Returns the
        answer of each session, in order.

        On one Redis: one call with every session (up to ``BATCH``), so a commit costs one
        command as in the one-slot layout, and is even all or nothing. On a Redis Cluster: one
        call per session (a script's keys must share a slot), in one pipeline (no
        transaction: different slots); EVALSHA, and a script a node does not know (restarted,
        a new node) is loaded and its calls sent again (a NOSCRIPT call did not run). Raises
        the first error (the caller's ``errors()`` maps it)."""
        if not items:
            return []
        script = self._scripts[name]
        if not self._db.cluster:
            replies: list[Any] = []
            for start in range(0, len(items), BATCH):
                chunk = items[start : start + BATCH]
                args = [*shared, *(a for _, item_args in chunk for a in item_args)]
                replies += script(keys=[key for key, _ in chunk], args=args)
            return replies
        from redis.exceptions import NoScriptError

        client = self._db.client
        results: list[Any] = [None] * len(items)
        pending = list(range(len(items)))
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for index in pending:
                key, item_args = items[index]
                pipe.evalsha(script.sha, 1, key, *shared, *item_args)
            retry: list[int] = []
            for index, reply in zip(pending, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    retry.append(index)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[index] = reply[0]
            if not retry:
                break
            client.script_load(script.script)
            pending = retry
        return results

    # -- the Protocol ------------------------------------------------------------------------
    def load_dtls_sessions(self) -> list[StoredSession]:
        with self._db.errors("cannot read the DTLS sessions"):
            ids = sorted(text(i) for i in self._db.client.hkeys(self._ids_key))
            pipe = self._db.client.pipeline(transaction=False)
            for session_id in ids:
                pipe.hmget(self.session_key(session_id), "state", "seq", "window")
            rows = pipe.execute()
        sessions: list[StoredSession] = []
        for session_id, (state, seq, window) in zip(ids, rows, strict=True):
            if state is None or seq is None or window is None:
                continue  # being written, or its index entries outlived it (the sweep's)
            row = self._row(session_id, text(state), text(seq), text(window))
            if row is not None:
                sessions.append(row)
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
        """Three steps, each one round trip and only when needed: the index entries of new
        sessions and of sessions at a new address (before); one script or HSET per session
        (each atomic; a new session keyed by its CID only where no session is stored under
        its id, else its id is returned with the refused ones); the index entries of removed
        sessions and of old addresses (after)."""
        if not (new or progress or removed):
            return []
        before: list[str | float] = []
        for s in new:
            cid = "" if s.state.own_cid is None else s.state.own_cid.hex()
            before += [s.id, _address(s.host, s.port), cid]
        for p in progress:
            address = _address(p.host, p.port)
            if self._addresses.get(p.id) != address:
                before += [p.id, address, ""]
        with self._db.errors("cannot save DTLS sessions"):
            if before:
                self._run("index_add", self._index_keys, [time.time(), "set", *before])
            pipe_new = self._db.client.pipeline(transaction=False)
            keyed: list[tuple[str, Sequence[str]]] = []
            for s in new:
                state = s.state
                if s.id.startswith(CID_ID_PREFIX):  # one hash per CID: never overwritten
                    keyed.append(
                        (
                            self.session_key(s.id),
                            [
                                state_to_json(state),
                                str(state.write_seq),
                                _window(
                                    s.host, s.port, state.read_top, state.read_bitmap, s.saved_at
                                ),
                            ],
                        )
                    )
                    continue
                pipe_new.hset(
                    self.session_key(s.id),
                    mapping={
                        "state": state_to_json(state),
                        "seq": str(state.write_seq),
                        "window": _window(
                            s.host, s.port, state.read_top, state.read_bitmap, s.saved_at
                        ),
                        "owner": self.owner,
                    },
                )
            if len(keyed) < len(new):
                pipe_new.execute()
            created = iter(self._per_session("create", [self.owner], keyed))
            taken = {
                s.id for s in new if s.id.startswith(CID_ID_PREFIX) and text(next(created)) != "ok"
            }
            replies = self._per_session(
                "progress",
                [self.owner],
                [
                    (
                        self.session_key(p.id),
                        [
                            str(p.write_seq),
                            _window(p.host, p.port, p.read_top, p.read_bitmap, p.saved_at),
                        ],
                    )
                    for p in progress
                ],
            )
            replies += self._per_session(
                "remove", [self.owner], [(self.session_key(i), []) for i in removed]
            )
            after: list[str] = []
            lost: list[str] = []
            for s in new:
                if s.id in taken:  # not written: the caller retries it under a random id
                    lost.append(s.id)
                else:
                    self._addresses[s.id] = _address(s.host, s.port)
            for p, reply in zip(progress, replies[: len(progress)], strict=True):
                status, old = (text(v) for v in reply)
                if status == "ok":
                    self._addresses[p.id] = _address(p.host, p.port)
                    if old:
                        after += [p.id, "addr", old, ""]
                elif status == "lost":
                    self._addresses.pop(p.id, None)
                    lost.append(p.id)
                else:  # gone (removed meanwhile): what the first step added for it goes too
                    self._addresses.pop(p.id, None)
                    after += [p.id, "all", "", ""]
            for session_id, reply in zip(removed, replies[len(progress) :], strict=True):
                status, address, cid = (text(v) for v in reply)
                if status == "removed":
                    self._addresses.pop(session_id, None)
                    after += [session_id, "all", address, cid]
            if after:
                self._run("index_drop", self._index_keys, [0, *after])
        return lost

    def find_dtls_session(
        self, *, address: tuple[str, int] | None = None, cid: bytes | None = None, cutoff: float
    ) -> StoredSession | None:
        """The session our Connection ID ``cid`` (else the one at ``address``) names; None
        when there is none, the index entry disagrees with the session (a stale entry), or it
        was saved before ``cutoff`` (idle: deleted). One round trip on one Redis (a script
        reads the session the CID names, else the index entry and the session it names). On a
        Redis Cluster: by CID one (the session the CID names and the index entry in one
        pipeline; a session stored before ids named CIDs takes a second, its hash); by address
        two (the index, then the session: different slots, which no script spans)."""
        keyed: list[str] = []  # a lookup by CID: the session that CID names, read first
        if cid is not None:
            index, field = self._index_keys[2], cid.hex()
            if len(cid) >= CID_KEYED_MIN:
                keyed = [cid_session_id(cid)]
        elif address is not None:
            index, field = self._index_keys[1], _address(*address)
        else:
            return None
        with self._db.errors("cannot look up a DTLS session"):
            found: list[str] = []
            if not self._db.cluster:
                prefix = f"{self._db.prefix}:dtls:{{"  # ``P:dtls:{``: the id and ``}`` follow
                keys = [index, *(self.session_key(i) for i in keyed)]
                reply = self._run("find_indexed", keys, [field, cutoff, prefix, *keyed])
                found = [text(v) for v in reply]
                if found[0] == "none":
                    return None
                session_id = found[1]
                del found[1]  # as _FIND answers: status first, then its values
            elif keyed:
                session_id, found = self._find_keyed_on_cluster(keyed[0], index, field, cutoff)
                if not session_id:
                    return None
            else:
                found_id = self._db.client.hget(index, field)
                if found_id is None:
                    return None
                session_id = text(found_id)
            if not found or found[0] == "id":  # a cluster, or an id that is not plain
                key = self.session_key(session_id)
                (reply,) = self._per_session("find", [cutoff], [(key, [])])
                found = [text(v) for v in reply]
            if found[0] == "expired":
                self._addresses.pop(session_id, None)
                self._run("index_drop", self._index_keys, [0, session_id, "all", *found[1:]])
        if found[0] != "ok":
            return None
        row = self._row(session_id, *found[1:])
        if row is None:
            return None
        if cid is not None and row.state.own_cid != cid:
            return None  # the entry outlived the session's CID: not this one
        if cid is None and (row.host, row.port) != address:
            return None  # the session moved on; the entry is removed by its writer
        return row

    def _find_keyed_on_cluster(
        self, session_id: str, index: str, field: str, cutoff: float
    ) -> tuple[str, list[str]]:
        """A lookup by CID on a Redis Cluster: the session the CID names (``_FIND`` on its
        hash) and the CID's index entry, in one pipeline (two slots, sent together: one
        round trip). The session if it is there; else the index entry's id (a session stored
        before ids named CIDs, or one whose CID was drawn twice), whose session the caller
        then reads (``found`` empty), or ``""`` when there is neither."""
        from redis.exceptions import NoScriptError

        script = self._scripts["find"]
        key = self.session_key(session_id)
        for attempt in range(2):
            pipe = self._db.client.pipeline(transaction=False)
            pipe.evalsha(script.sha, 1, key, cutoff)
            pipe.hget(index, field)
            reply, indexed = pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 0:
                self._db.client.script_load(script.script)  # a node that forgot it
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(indexed, Exception):
                raise indexed
            found = [text(v) for v in reply[0]]
            if found[0] != "missing":
                return session_id, found
            break
        if indexed is None:
            return "", []
        other = text(indexed)
        if other == session_id:  # the entry names the session that is not there
            return "", []
        return other, []

    def claim_dtls_session(self, session_id: str, reserve: int) -> StoredSession | None:
        """Make the session ours: its stored reservation moves ``reserve`` numbers ahead and
        its owner becomes this handle, atomically (one script on its hash); returns the row
        as it was stored (so ``state.write_seq`` is the first number we may use, ``+ reserve``
        the new reservation) or None when it is gone."""
        with self._db.errors("cannot claim a DTLS session"):
            found = self._run("claim", [self.session_key(session_id)], [self.owner, reserve])
        if not found:
            return None
        state, seq, window = (text(v) for v in found)
        row = self._row(session_id, state, seq, window)
        if row is not None:
            self._addresses[session_id] = _address(row.host, row.port)
        return row

    def expire_dtls_sessions(self, cutoff: float, cursor: int = 0, count: int = 500) -> int:
        """Delete up to about ``count`` sessions last saved before ``cutoff`` (wall clock),
        scanning the id list from ``cursor``; returns the cursor to continue from (0: the
        scan went round).

        Why: a node no longer loads (and so no longer weeds) every stored session at start;
        sessions of devices that never come back would stay in Redis for ever. Each node's
        periodic sweep calls this, a slice at a time (HSCAN, one pipeline of scripts that check
        the time again atomically on each session, one script for their index entries), so no
        call blocks Redis long. Ids whose session is gone (a process died between a removal's
        steps) lose their index entries here once they are older than ``cutoff``."""
        with self._db.errors("cannot expire DTLS sessions"):
            cursor, found = self._db.client.hscan(self._ids_key, cursor, count=count)
            ids = [text(k) for k in found]
            replies = self._per_session("find", [cutoff], [(self.session_key(i), []) for i in ids])
            drops: list[str | float] = []
            for session_id, reply in zip(ids, replies, strict=True):
                status = text(reply[0])
                if status == "expired":
                    drops += [session_id, "all", text(reply[1]), text(reply[2])]
                    self._addresses.pop(session_id, None)
                elif status == "missing":
                    drops += [session_id, "orphan", "", ""]
            if drops:
                self._run("index_drop", self._index_keys, [cutoff, *drops])
        return int(cursor)

    def remove_dtls_sessions(self, ids: Sequence[str]) -> None:
        if ids:
            self.save_dtls_sessions([], [], ids)

    def count(self) -> int:
        """How many sessions are listed (tests, the operator CLI; a session whose removal a
        killed process left half done counts until the sweep)."""
        with self._db.errors("cannot count the DTLS sessions"):
            return int(self._db.client.hlen(self._ids_key))

    # -- the one-slot layout (before session 7) ------------------------------------------------
    def migrate_stored_sessions(self, count: int = 500) -> int:
        """Move the sessions stored in the one-slot layout into their own hashes; returns how
        many moved. Once per Redis (the ``layout`` marker; then one GET per handle opened), a
        slice of ``count`` sessions at a time, each slice in the order of the index rule: the
        index entries (added only where no other session holds one, so rows from before the
        indexes get theirs too), then the sessions' hashes, then the old rows are deleted. A
        node killed half way leaves old rows that the next handle migrates again (the hash
        already there keeps the larger reservation). Rows missing a part (damaged) are
        deleted, counted in the log line, never copied."""
        client = self._db.client
        moved = damaged = 0
        state_key = self._old_keys[0]
        with self._db.errors("cannot migrate the stored DTLS sessions"):
            if client.get(self._layout_key) == LAYOUT.encode():
                return 0
            while True:
                _, found = client.hscan(state_key, 0, count=count)
                ids = [text(k) for k in found]
                if not ids:
                    break
                pipe = client.pipeline(transaction=True)
                for key in self._old_keys:
                    pipe.hmget(key, ids)
                states, seqs, windows, owners = pipe.execute()
                index: list[str | float] = []
                items: list[tuple[str, Sequence[str | int | float]]] = []
                for i, session_id in enumerate(ids):
                    state, seq, window = states[i], seqs[i], windows[i]
                    if state is None or seq is None or window is None:
                        damaged += 1
                        continue
                    state, seq, window = text(state), text(seq), text(window)
                    owner = "" if owners[i] is None else text(owners[i])
                    address = window.rsplit("|", 3)[0]
                    index += [session_id, address, self._old_cid(session_id, state)]
                    items.append((self.session_key(session_id), [state, seq, window, owner]))
                if index:
                    self._run("index_add", self._index_keys, [time.time(), "nx", *index])
                moved += len(self._per_session("migrate", [], items))
                pipe = client.pipeline(transaction=True)
                for key in self._old_keys:
                    pipe.hdel(key, *ids)
                pipe.execute()
            # what no row of the old layout points to any more (parts of damaged rows), and
            # the marker of the old layout's index migration
            client.delete(*self._old_keys[1:], self._db.group_key("dtls", "indexed"))
            client.set(self._layout_key, LAYOUT)
        if moved or damaged:
            log.info(
                "%s: %d DTLS sessions moved to one hash per session (%d damaged rows dropped)",
                self.url,
                moved,
                damaged,
            )
        return moved

    def _old_cid(self, session_id: str, state: str) -> str:
        try:
            state_doc = state_from_json(state, 0, 0, 0)
        except (ValueError, KeyError, TypeError):
            return ""
        return "" if state_doc.own_cid is None else state_doc.own_cid.hex()

    def _row(self, session_id: str, state: str, seq: str, window: str) -> StoredSession | None:
        try:
            host, port, read_top, bitmap, saved_at = window.rsplit("|", 4)
            saved = state_from_json(state, int(seq), int(read_top), int(bitmap, 16))
            return StoredSession(session_id, host, int(port), saved, float(saved_at))
        except (ValueError, KeyError, TypeError) as exc:
            # the reason names the kind of damage, never a value (values are secrets)
            log.error(
                "%s: DTLS session %s unreadable (%s), skipped",
                self.url,
                session_id,
                type(exc).__name__,
            )
            return None

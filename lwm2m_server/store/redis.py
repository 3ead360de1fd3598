"""``RedisStore``: registrations and observations (``CoreStore``) on Redis, shared by every
``lwm2m-server`` process of a cluster (docs/cluster.md, "The LwM2M server on Redis").

Keys (``P`` is the prefix); the records of one endpoint are in its hash-tag slot ``{ep}``:

* ``P:reg:{ep}``        hash   the endpoint's registration: ``id``, ``data`` (the JSON record of
  ``records.registration_to_json``) and the fields the cheap Update writes alone (``lu``
  last_update, ``lt`` lifetime, ``host``, ``port``) and ``exp`` (expires_at, ``repr`` of the
  float: the conditional removal compares the text, so it is exact);
* ``P:obs:{ep}``        hash   token (hex) → observation JSON, the endpoint's observations;
* ``{P:reg}:ids``       hash   registration id → endpoint;
* ``{P:reg}:expiry``    zset   registration id, scored by expires_at (``expiring_before``);
* ``P:byaddr:{h|p}``    set    registration ids whose requests come from host ``h`` port ``p``;
* ``P:byident:{m|i}``   set    registration ids bound to DTLS identity ``i`` of mode ``m``;
* ``{P:obs}:tokens``    hash   token (hex) → endpoint.

**Atomicity.** The record of an endpoint (its registration and its observations) changes in one
Lua script on its slot: a Register that replaces another registration of the endpoint drops the
old one's observations with it; an Update, the cheap Update and the removal only act while the
stored id (and for an expiry, the stored ``exp``) is the one the caller names, so of several
nodes expiring a registration exactly one gets it back. The indexes are keys of other slots. On
one Redis a Register is one Lua script over all its keys (the id's owner check, index entries,
record, expiry score, and a replaced registration's id, expiry and token entries: atomic; under
group commit one script for the iteration's Registers), a synchronous Update sends index
entries, record script and expiry score as one MULTI/EXEC (atomic), and the group commit's
Updates are one script for all of them. No Redis Cluster transaction spans slots, so there, and
for removals and observations on both, the indexes are kept by separate, repeatable steps with
one rule: **an index may hold entries that are no longer true, never miss one that is.** An
entry is added before the record it points to is written and removed after the record is gone,
and every lookup through an index checks the record (id, endpoint, address, identity, expiry)
and ignores what disagrees. The expiry index's score may be earlier than the record's expiry
after a crash, two concurrent writers or group-committed keep-alives (``_TOUCH_MANY`` scores
about once per half lifetime; the sweep then reads the record, sees it is not due and
repairs the score with a compare-and-set), never later, except in one race documented in
docs/cluster.md. A process killed between the steps leaves at most stale entries (ignored; the
sweep drops those of the expiry index), never a half-written registration.

**Group commit** (``enable_group_commit()``, what the server runs on one Redis): the cheap
Updates (``touch_registration``, the hot path) of a loop iteration are held and sent as one
script (``_TOUCH_MANY``: atomic, and one command for redis-py to pack, where three per Update
cost more CPU than the rest of an Update) by ``commit()``, the ``Committer`` hook the CoAP
driver calls before the iteration's replies leave; any other call sends them first (it is
ordered after them and sees them). Advisory writes (``write_later``: the cluster's holder
records, queue take-overs, the profile statuses) ride in the same round trip instead of one
each; their failure is logged and never withholds a reply. So do the reads other stores make
for the devices of a commit's Registers (``read_with_registers``: the profile assignments and
statuses the profile engine reads the next loop iteration), and, last in every commit, the
credential version (``RedisDatabase.read_with_commits``: the resolver's cache then needs no GET
of its own in the next iteration, docs/cluster.md, "Credential cache"). A held Update is
answered True at once; if the commit then finds its registration gone (another node removed it)
or Redis fails, ``commit()`` returns False and the driver withholds the replies of the
iteration; the device's retransmission is handled again, and that registration's next Update is
written synchronously, so the core answers it 4.04. **Registers** (``put_registration_later``)
are held the same way and sent as one more script (``_REGISTER_MANY``) in the commit's round
trip; each is told, when the commit answered and before the replies leave, whether it is stored
and what it replaced (the core does the rest of the Register then: docs/cluster.md, "Group
commit on Redis"). Every other write (``put_registration``, an Update that changes more,
De-register, expiry, observations) is synchronous: its answer (who won an expiry) decides the
reply. On a Redis Cluster every write is synchronous (the steps of an Update span slots, and a
cluster pipeline does not keep their order).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any, Concatenate, ParamSpec, TypeVar

import attrs

from keystore.log_limit import PerPeerLimit
from keystore.resolver import IdentityBinding
from keystore.store.database import dumps
from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase, text, unreachable
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint

from .records import (
    check_point,
    observation_from_json,
    observation_to_json,
    point_from_row,
    registration_from_json,
    registration_to_json,
)
from .redis_device_state import NEWEST_WINS  # telemetry latest: the same rule

log = logging.getLogger(__name__)


def _replace_record(reg: int, obs: int, data: int) -> str:
    """The Lua both scripts below share: write the endpoint's registration hash (KEYS[reg]);
    when it held another id, return that record's fields in ``replaced`` and drop its
    observations (KEYS[obs], their tokens in ``tokens``). ARGV[1] is the id; ARGV[data] and the
    five after it are data, lu, lt, host, port, exp."""
    d = data
    return f"""
local old = redis.call('HGETALL', KEYS[{reg}])
local replaced, tokens = {{}}, {{}}
local old_id = nil
for i = 1, #old, 2 do if old[i] == 'id' then old_id = old[i + 1] end end
if old_id and old_id ~= ARGV[1] then
  replaced = old
  tokens = redis.call('HKEYS', KEYS[{obs}])
  redis.call('DEL', KEYS[{obs}])
end
redis.call('DEL', KEYS[{reg}])
redis.call('HSET', KEYS[{reg}], 'id', ARGV[1], 'data', ARGV[{d}], 'lu', ARGV[{d + 1}],
  'lt', ARGV[{d + 2}], 'host', ARGV[{d + 3}], 'port', ARGV[{d + 4}], 'exp', ARGV[{d + 5}])
"""


# KEYS: reg, obs. ARGV: id, data, lu, lt, host, port, exp.
# Returns {replaced fields (flat) or {}, tokens of the dropped observations}.
_PUT = _replace_record(reg=1, obs=2, data=2) + "return {replaced, tokens}\n"

# One Redis only (its keys span slots): a whole Register in one step. KEYS: ids, expiry, reg,
# obs, index keys... ARGV: id, endpoint, force ('1': do not check the id's owner), data, lu, lt,
# host, port, exp. Returns {'moved', endpoint} when the id belongs to another endpoint (nothing
# written: the caller removes that record first), else {'ok', replaced, tokens} as _PUT.
_REGISTER = (
    """
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] ~= '1' and prev and prev ~= ARGV[2] then return {'moved', prev} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 5, #KEYS do redis.call('SADD', KEYS[i], ARGV[1]) end
"""
    + _replace_record(reg=3, obs=4, data=4)
    + """redis.call('ZADD', KEYS[2], ARGV[9], ARGV[1])
return {'ok', replaced, tokens}
"""
)

# KEYS: reg. ARGV: id, then field/value pairs. Writes them only while the stored id is ARGV[1],
# and drops ``xs`` (the caller writes the expiry score itself: _TOUCH_MANY's ``xs`` no longer
# names the score); returns the old host and port, or false.
_UPDATE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return false end
local old = redis.call('HMGET', KEYS[1], 'host', 'port')
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', KEYS[1], 'xs')
return old
"""

# One Redis only (the group commit): the cheap Updates of a loop iteration in one script, one
# command (redis-py packs and parses one command instead of three per Update). KEYS: expiry, then
# per Update its reg key and index keys. ARGV[1]: a JSON array of strings, four per Update: the
# number of its keys (one digit), lu, exp, and its ``token``: ``s`` (the expiry score it would
# write), lt, id, host, port joined by ``|`` (one argument for all of them: redis-py encodes
# every argument in Python, ~0.4 µs each, and an Update had seven; cjson decodes it several
# times faster than Lua patterns split lines). Each Update as _UPDATE (only while the stored id
# is its id), with its expiry score and, when its address moved, its index entries (a
# keep-alive's are there: the Register, or the Update that moved it, added them in the same
# atomic step as the record). Returns only what Python must act on (a keep-alive from the same
# address, nearly every Update, adds nothing to parse): {i} for the i-th Update whose id is gone
# (nothing written), {i, old host, old port} for one whose address changed.
# A repeated keep-alive is one HGET and one HSET of two fields, no number parsed
# (docs/performance.md, "Session 10: Redis CPU per Update"): ``s`` is the Update's expiry
# rounded down to a multiple of half its lifetime (``_score``: never later than the expiry,
# earlier by less than half a lifetime), and the record's ``xs`` is the token this script last
# wrote for it. Every other writer of the record's id, lifetime, address or expiry score drops
# ``xs`` in the same atomic step (a Register rewrites the record, a removal deletes it, a
# synchronous Update and the sweep's re-score delete ``xs``), so ``xs`` equal to the Update's
# token means: the stored id is the Update's (no resurrection of a removed registration), the
# stored lifetime and address are its own (the index entries are there), and the index holds
# ``s``, not later than this Update's expiry (early by less than half a lifetime, which the
# index rule allows: the sweep reads the record, sees it is not due and re-scores it, module
# docstring). Then only lu and exp are written; otherwise the HMGET of id and address decides as
# _UPDATE does, and the score is written with the new token (about once per half lifetime for
# a device that keeps its address and lifetime).
_TOUCH_MANY = """
local a, out, count = cjson.decode(ARGV[1]), {}, {['1'] = 1, ['2'] = 2, ['3'] = 3}
local k, i = 2, 0
for b = 1, #a, 4 do
  local n, t = count[a[b]], a[b + 3]
  i = i + 1
  local reg = KEYS[k]
  if redis.call('HGET', reg, 'xs') == t then
    redis.call('HSET', reg, 'lu', a[b + 1], 'exp', a[b + 2])
  else
    local s, lt, id, host, port = string.match(t, '^([^|]*)|([^|]*)|(.*)|([^|]*)|([^|]*)$')
    local old = redis.call('HMGET', reg, 'id', 'host', 'port')
    if old[1] ~= id then
      out[#out + 1] = {i}
    else
      if old[2] ~= host or old[3] ~= port then
        out[#out + 1] = {i, old[2], old[3]}
        for j = 1, n - 1 do redis.call('SADD', KEYS[k + j], id) end
      end
      redis.call('HSET', reg, 'lu', a[b + 1], 'lt', lt, 'host', host, 'port', port,
        'exp', a[b + 2], 'xs', t)
      redis.call('ZADD', KEYS[1], s, id)
    end
  end
  k = k + n
end
return out
"""

# One Redis only (the group commit): the Registers of a loop iteration in one script, after
# _TOUCH_MANY in the same round trip. KEYS: ids, expiry, tokens, then per Register its reg and obs
# keys and its index keys. ARGV[1]: one line per Register, tab-separated: the number of its keys,
# id, endpoint, lu, lt, host, port, exp; ARGV[1 + i]: the i-th Register's JSON record. Each
# Register as _REGISTER, and a registration it replaces loses its id, expiry and token entries in
# the same step (atomic: its address and identity entries are dropped later, by the index rule).
# Returns per Register {'moved', endpoint} when its id belongs to another endpoint (nothing
# written), else {'ok', the replaced registration's fields (flat) or {}}.
_REGISTER_MANY = """
local k, i, out = 4, 1, {}
for line in string.gmatch(ARGV[1], '[^\\n]+') do
  i = i + 1
  local n, id, ep, lu, lt, host, port, exp = string.match(line,
    '^(%d+)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)$')
  n = tonumber(n)
  local reg, obs = KEYS[k], KEYS[k + 1]
  local prev = redis.call('HGET', KEYS[1], id)
  if prev and prev ~= ep then
    out[#out + 1] = {'moved', prev}
  else
    redis.call('HSET', KEYS[1], id, ep)
    for j = 2, n - 1 do redis.call('SADD', KEYS[k + j], id) end
    local old = redis.call('HGETALL', reg)
    local replaced, old_id = {}, nil
    for f = 1, #old, 2 do if old[f] == 'id' then old_id = old[f + 1] end end
    if old_id and old_id ~= id then
      replaced = old
      for _, token in ipairs(redis.call('HKEYS', obs)) do
        if redis.call('HGET', KEYS[3], token) == ep then redis.call('HDEL', KEYS[3], token) end
      end
      redis.call('DEL', obs)
      if redis.call('HGET', KEYS[1], old_id) == ep then redis.call('HDEL', KEYS[1], old_id) end
      redis.call('ZREM', KEYS[2], old_id)
    end
    redis.call('DEL', reg)
    redis.call('HSET', reg, 'id', id, 'data', ARGV[i], 'lu', lu, 'lt', lt, 'host', host,
      'port', port, 'exp', exp)
    redis.call('ZADD', KEYS[2], exp, id)
    out[#out + 1] = {'ok', replaced}
  end
  k = k + n
end
return out
"""

_TOUCH_MANY_SHA = hashlib.sha1(_TOUCH_MANY.encode()).hexdigest()
_REGISTER_MANY_SHA = hashlib.sha1(_REGISTER_MANY.encode()).hexdigest()
_SCRIPT_BODIES = {_TOUCH_MANY_SHA: _TOUCH_MANY, _REGISTER_MANY_SHA: _REGISTER_MANY}
"""The group commit's scripts by SHA1 (``EVALSHA``): the ~2 KB body is sent, and hashed by
Redis, only by the first commit with it after a failure (``RedisStore._by_sha``)."""

# KEYS: reg, obs. ARGV: id, exp ('' = any). Returns {record (flat), tokens} or false.
_REMOVE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return false end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'exp') ~= ARGV[2] then return false end
local old = redis.call('HGETALL', KEYS[1])
local tokens = redis.call('HKEYS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return {old, tokens}
"""

# KEYS: ids, expiry. ARGV: id, endpoint. Drops the id's entries while they still point to the
# endpoint (after its record is gone: repeatable).
_DROP_ID = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: expiry [, reg]. ARGV: id, score read, new score [, the record's exp as read].
# Compare-and-set of a score (the sweep's repair). With the record's key (one Redis): only while
# the record's ``exp`` is still the one the new score was read from, dropping its ``xs`` (the
# index no longer holds the score _TOUCH_MANY wrote); returns 0 when that ``exp`` changed
# (nothing written), else 1.
_RESCORE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  if KEYS[2] then
    if redis.call('HGET', KEYS[2], 'exp') ~= ARGV[4] then return 0 end
    redis.call('HDEL', KEYS[2], 'xs')
  end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
"""

# KEYS: tokens. ARGV: endpoint, token... Drops the tokens' entries that point to the endpoint.
_DROP_TOKENS = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""

# KEYS: obs. ARGV: token. Returns the observation's JSON, removed, or false.
_POP = """
local data = redis.call('HGET', KEYS[1], ARGV[1])
if data then redis.call('HDEL', KEYS[1], ARGV[1]) end
return data
"""


_SWEEP_PAGE = 100
_MAX_LOST = 10_000

P = ParamSpec("P")
R = TypeVar("R")


def _after_pending(
    method: Callable[Concatenate[RedisStore, P], R],
) -> Callable[Concatenate[RedisStore, P], R]:
    """Send the pending Updates (group commit) before ``method``: every other call sees them
    and is ordered after them, as the sqlite engine's open transaction is."""

    @functools.wraps(method)
    def run(self: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._inflight:  # answers of the asynchronous commits first: ordered after them
            self._drain()
        if self._pending or self._registers:
            self._flush()
        return method(self, *args, **kwargs)

    return run


def _plain(value: str) -> bool:
    """``value`` fits in a field of ``_REGISTER_MANY``'s lines (no tab, no line break)."""
    return "\t" not in value and "\n" not in value


def _quotable(reg: Registration) -> bool:
    """The Update fits in ``_TOUCH_MANY``'s JSON strings as is: no quote or backslash in its id
    or host (nothing to escape), no ``|`` in its host (the token's separator)."""
    reg_id, host = reg.registration_id, reg.address.host
    return not ('"' in reg_id or "\\" in reg_id or '"' in host or "\\" in host or "|" in host)


_EXACT = 2.0**53
"""Floats below this in magnitude have every integer exactly."""


def _score(expires_at: float, lifetime: int) -> str:
    """The expiry score ``_TOUCH_MANY`` writes for an Update, as text: its expiry rounded down
    to a multiple of half its lifetime (whole seconds), so that the keep-alives of one half
    lifetime name the same score (compared as text in Redis, no number parsed); never later than
    the expiry, earlier by less than half a lifetime. An integer, formatted as such (cheaper than
    a float's ``repr``): ``expires_at // half`` is exact here (``x - fmod(x, half)`` is an
    integer below 2**53). The expiry itself for a lifetime below 2 or an expiry that is not a
    finite number of that size."""
    half = lifetime // 2
    if half > 0 and -_EXACT < expires_at < _EXACT:  # False for NaN and infinities
        return str(int(expires_at // half) * half)
    return repr(expires_at)


def _srem(key: str, member: str, pipe: Any) -> None:
    pipe.srem(key, member)


def _ignore(answer: object) -> None:
    """The answer of an advisory write nothing waits for."""
    del answer


def _registered(outcomes: list[tuple[RegisterDone, bool, Registration | None]]) -> None:
    """Tell each held Register its outcome (one failing callback must not keep the others'
    in-memory state unsettled)."""
    for done, stored, replaced in outcomes:
        try:
            done(stored, replaced)
        except Exception:
            log.exception("after a Register of the group commit")


def _call(callbacks: list[tuple[Callable[[bool], None], bool]], ok: bool) -> None:
    """Tell each waiting ``commit_async`` call its outcome (one failing callback must not
    keep the others' replies held for ever)."""
    for done, failed in callbacks:
        try:
            done(ok and not failed)
        except Exception:
            log.exception("after a group commit")


RegisterDone = Callable[[bool, Registration | None], None]
"""What ``RedisStore.put_registration_later`` calls when its commit answered: whether the
Register is stored, and the registration it replaced (as the store had it; None: none)."""

Extra = tuple[Callable[[Any], object], Callable[[Any], None]]
"""One command for a group commit's pipeline: what queues it, what gets its answer."""

RegisterReader = Callable[[list[str]], Extra | None]
"""``RedisStore.read_with_registers``: given the endpoints of a commit's held Registers, one
read (an ``Extra``) to send in that commit, or None."""


@attrs.define(eq=False)
class _InFlight:
    """An asynchronous commit sent and not answered yet (``RedisStore.commit_async``)."""

    pipe: Any
    """The pipeline the commands were queued on: it parses their answers."""
    commands: list[Any]
    pending: list[Registration]
    index_keys: list[list[str]]
    registers: list[tuple[Registration, RegisterDone]]
    extras: list[tuple[Callable[[Any], object], Callable[[Any], None]]]
    first_extra: int
    sent_at: float
    callbacks: list[tuple[Callable[[bool], None], bool]] = attrs.Factory(list)
    """``done`` of each ``commit_async`` call waiting for it, and whether it already failed."""
    poisoned: bool = False
    """An earlier commit failed while this one was in flight: its callers get False."""


def _identity_text(identity: IdentityBinding) -> str:
    return f"{identity.mode}|{identity.identity}"


def _flat(raw: Sequence[Any]) -> dict[str, str]:
    return {text(raw[i]): text(raw[i + 1]) for i in range(0, len(raw), 2)}


class RedisStore:
    """Implements ``RegistrationStore`` and ``ObservationStore`` (``CoreStore``) on a
    ``RedisDatabase`` (see the module docstring)."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._ids = db.group_key("reg", "ids")
        self._expiry = db.group_key("reg", "expiry")
        self._tokens = db.group_key("obs", "tokens")
        self._put = db.script(_PUT)
        self._register = db.script(_REGISTER)
        self._update = db.script(_UPDATE)
        self._remove = db.script(_REMOVE)
        self._drop_id = db.script(_DROP_ID)
        self._rescore = db.script(_RESCORE)
        self._drop_tokens = db.script(_DROP_TOKENS)
        self._pop = db.script(_POP)
        self._by_sha: set[str] = set()
        """The group commit's scripts Redis has (by SHA1), sent as ``EVALSHA``: a script is
        added by a commit with it that succeeded, all are dropped after any failure (a
        connection lost: Redis may have restarted and forgotten its scripts; a ``NOSCRIPT``
        answer: ``SCRIPT FLUSH``), and the next commit sends the bodies (``EVAL``, which
        caches them in Redis again). A script answered ``NOSCRIPT`` did not run: the
        synchronous commit sends it again with its body at once (``_execute_by_sha``); an
        asynchronous one fails as any commit whose script failed (its replies withheld,
        nothing acknowledged), since the commits sent after it ran meanwhile and running it
        later would put its writes after theirs."""
        self._pending: list[Registration] = []
        self._registers: list[tuple[Registration, RegisterDone]] = []
        """Registers held for the next group commit (``put_registration_later``)."""
        self._extras: list[tuple[Callable[[Any], object], Callable[[Any], None]]] = []
        """Advisory writes (``write_later``) for the next group commit's pipeline."""
        self._readers: list[RegisterReader] = []
        """Reads that ride the commit of held Registers (``read_with_registers``)."""
        self._lost: set[str] = set()
        """Ids whose held Update found the registration gone: touched synchronously next."""
        self._inflight: deque[_InFlight] = deque()
        """Asynchronous commits sent and not answered yet, oldest first (``commit_async``)."""
        self._conn: Any = None
        """The connection of the asynchronous commits (its own: answers come in order)."""
        self._conn_pool: Any = None
        self._conn_fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = PerPeerLimit(60.0)
        """Redis down fails every commit: each kind of failure is logged once a minute."""

    @property
    def database(self) -> RedisDatabase:
        return self._db

    # -- group commit (docs/cluster.md, "Group commit") ----------------------------------------
    _grouping = False
    _asynchronous = False
    _group_failed = False
    _armed = False
    _failed_commits = 0
    commits = 0
    """Pipelines of pending Updates sent (for metrics and tests)."""

    def enable_group_commit(self, *, asynchronous: bool = False) -> None:
        """The cheap Updates (``touch_registration``) of a loop iteration are held and sent as
        one script by ``commit()``, which the CoAP driver calls before the iteration's
        replies leave; every other call sends them first. On one Redis only: on a cluster the
        steps of an Update are ordered across slots, which one pipeline does not keep.

        ``asynchronous``: ``commit_async`` sends the script and answers when Redis does, the
        loop going on meanwhile (docs/cluster.md, "Group commit on Redis"); off by default:
        on the shared 2-core benchmark machine it cost more CPU per Update than the
        synchronous wait (smaller iterations), docs/performance.md.
        """
        self._grouping = not self._db.cluster
        self._asynchronous = asynchronous and self._grouping

    def commit(self) -> bool:
        """The ``Committer`` hook: True when everything since the last call is in Redis; False
        when a pending Update failed (Redis error) or found its registration gone (another
        node removed it): the driver withholds the iteration's replies and the device's
        retransmission is handled again, then answered 4.04 (the lost id is touched
        synchronously the next time)."""
        ok = self._flush() if self._pending or self._registers or self._extras else True
        failed, self._group_failed = self._group_failed, False
        return ok and not failed

    def commit_async(self, done: Callable[[bool], None]) -> None:
        """The driver's ``AsyncCommitter`` hook (lwm2m_runtime.driver). Unless the group
        commit is asynchronous (``enable_group_commit``): ``commit()``, and ``done`` at once.
        Asynchronous: send the iteration's script on the store's own connection without
        waiting for Redis; ``done(ok)`` when it answered (from the loop's reader of that
        connection, or ``poll``), in the order of the calls.
        Nothing to send: ``done`` waits for the last commit in flight, or is called at once.
        A commit that fails (Redis error, a registration another node removed) answers False
        to its own ``done`` and to every call made while it was in flight; a send that fails
        at once (Redis down: connection refused) answers False at once, as ``commit()``."""
        if not self._asynchronous:  # the synchronous commit, answered at once
            done(self.commit())
            return
        failed, self._group_failed = self._group_failed, False
        inflight = self._inflight
        if inflight and time.monotonic() - inflight[0].sent_at > self._answer_timeout():
            # a Redis that stopped answering: as a synchronous command's socket timeout
            self._drop_connection(TimeoutError("Redis did not answer the group commit"))
        if self._pending or self._registers or self._extras:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to read the answer: the synchronous commit
                ok = self._flush()
                done(ok and not failed and not self._take_failed())
                return
            if not self._send(loop):
                failed = True
                self._group_failed = False
        if self._inflight:
            self._inflight[-1].callbacks.append((done, failed))
        else:
            done(not failed)

    def _answer_timeout(self) -> float:
        pool = getattr(self._db.client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {})
        return float(kwargs.get("socket_timeout") or 5.0)

    def _take_failed(self) -> bool:
        failed, self._group_failed = self._group_failed, False
        return failed

    def _send(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Send the pending Updates and advisory writes on the commit connection; their
        answers are read by ``_on_readable``. False when the send failed (logged as
        ``_flush`` does; the in-flight commits on the connection fail with it)."""
        pending, self._pending = self._pending, []
        registers, self._registers = self._registers, []
        extras, self._extras = self._with_reads(registers, self._extras), []
        from redis.exceptions import RedisError

        pipe = self._db.client.pipeline(transaction=False)
        index_keys = self._queue_touches(pipe, pending)
        self._queue_registers(pipe, registers)
        first_extra = len(pipe.command_stack)
        try:
            for queue, _ in extras:
                queue(pipe)
            commands = list(pipe.command_stack)
            conn = self._connection(loop)
            conn.send_packed_command(conn.pack_commands([args for args, _ in commands]))
        except (RedisError, StoreError, OSError) as exc:
            self._drop_connection(exc)
            self._not_stored(pending, registers, extras, exc)
            return not pending and not registers
        self._inflight.append(
            _InFlight(
                pipe=pipe,
                commands=commands,
                pending=pending,
                index_keys=index_keys,
                registers=registers,
                extras=extras,
                first_extra=first_extra,
                sent_at=time.monotonic(),
            )
        )
        return True

    def _connection(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The commit connection, (re)opened from the client's pool; its socket is watched
        by the loop while it is open."""
        pool: Any = getattr(self._db.client, "connection_pool", None)  # one Redis only
        if self._conn is not None and self._conn_pool is pool and self._loop is loop:
            return self._conn
        self._drop_connection(None)
        conn = pool.get_connection()
        try:
            fd = conn._sock.fileno()  # connected by get_connection
            loop.add_reader(fd, self._on_readable)
        except BaseException:
            pool.release(conn)
            raise
        self._conn, self._conn_pool, self._conn_fd, self._loop = conn, pool, fd, loop
        return conn

    def _drop_connection(self, exc: BaseException | None) -> None:
        """Forget the commit connection (broken, or the client changed); commits in flight
        on it fail with ``exc``."""
        conn, self._conn = self._conn, None
        self._by_sha.clear()  # the next connection may reach a restarted Redis
        if conn is None:
            return
        if self._loop is not None and self._conn_fd >= 0:
            with suppress(Exception):
                self._loop.remove_reader(self._conn_fd)
        self._conn_fd = -1
        with suppress(Exception):
            conn.disconnect()
        with suppress(Exception):
            self._conn_pool.release(conn)
        if self._inflight:
            self._fail_inflight(exc or ConnectionError("the commit connection was closed"))

    def _on_readable(self) -> None:
        """The loop's reader of the commit connection: finish every commit whose answer is
        complete."""
        conn = self._conn
        from redis.exceptions import RedisError

        try:
            # ``self._conn is conn``: a callback may have dropped it (``can_read`` of a
            # dropped connection would open it again)
            while self._inflight and conn is not None and self._conn is conn and conn.can_read(0):
                self._receive(conn)
            if not self._inflight and conn is not None and self._conn is conn and conn.can_read(0):
                raise ConnectionError("an answer nobody asked for on the commit connection")
        except (RedisError, OSError) as exc:
            self._drop_connection(exc)

    def poll(self) -> None:
        """The driver's ``AsyncCommitter.poll``: finish the commits already answered (one
        ``poll`` system call when some are in flight)."""
        if self._inflight:
            self._on_readable()

    def _drain(self) -> None:
        """Wait for every commit in flight (a synchronous call must be ordered after them)."""
        from redis.exceptions import RedisError

        try:
            while self._inflight:
                self._receive(self._conn)
        except (RedisError, OSError) as exc:
            self._drop_connection(exc)

    def _receive(self, conn: Any) -> None:
        """Read the oldest in-flight commit's answers and finish it."""
        entry = self._inflight[0]
        from redis.exceptions import ResponseError

        results: list[Any] = []
        for args, options in entry.commands:
            try:
                results.append(entry.pipe.parse_response(conn, args[0], **options))
            except ResponseError as exc:
                results.append(exc)
        self._inflight.popleft()
        group_failed = self._group_failed  # the current iteration's, not this commit's
        ok = self._finish(entry, results)
        self._group_failed = group_failed
        if not ok:  # the calls made meanwhile may have read what it wrote: they fail too
            for later in self._inflight:
                later.poisoned = True
        _call(entry.callbacks, ok and not entry.poisoned)

    def _finish(self, entry: _InFlight, results: list[Any]) -> bool:
        """An asynchronous commit answered: as the end of ``_flush``."""
        from redis.exceptions import RedisError

        pending, registers, extras = entry.pending, entry.registers, entry.extras
        answers = results[entry.first_extra :]
        failure = next((r for r in results[: entry.first_extra] if isinstance(r, Exception)), None)
        if failure is not None:  # a script failed: nothing of it is stored
            self._answer(extras, answers)
            self._not_stored(pending, registers, [], failure)
            return False
        ok = self._after_registers(registers, results[1 if pending else 0] if registers else [])
        try:
            touched = self._after_touches(pending, entry.index_keys, results[0] if pending else [])
            ok = touched and ok
        except (RedisError, StoreError) as exc:  # an Update's index clean-up failed
            self._answer(extras, answers)
            self._not_stored(pending, [], [], exc)
            return False
        self._answer(extras, answers)
        if self._db.down:
            self._db.reachable()
        self._scripts_known(pending, registers)
        self.commits += 1
        return ok

    def _fail_inflight(self, exc: BaseException) -> None:
        """The commit connection broke: every commit in flight failed (nothing is known to be
        stored; a device's retransmission repeats its write)."""
        entries, self._inflight = list(self._inflight), deque()
        group_failed = self._group_failed  # the current iteration's, not these commits'
        for entry in entries:
            self._not_stored(entry.pending, entry.registers, entry.extras, exc)
        self._group_failed = group_failed
        for entry in entries:
            _call(entry.callbacks, False)

    def close(self) -> None:
        if self._inflight:
            self._drain()
        self._drop_connection(None)
        if self._pending or self._registers or self._extras:
            with suppress(StoreError):
                self._flush()
        self._db.close()

    def write_later(self, queue: Callable[[Any], object], done: Callable[[Any], None]) -> bool:
        """Send one command with the next group commit, instead of a round trip of its own:
        ``queue(pipeline)`` queues it (with redis-py's method, which parses its answer), ``done``
        gets the answer. False when not grouping (on a cluster): the caller writes it itself.
        For advisory writes only (the cluster's holder records, lwm2m_server/cluster):
        a failure is logged and given to ``done`` as the exception, it never withholds a reply
        (nothing a device asked for depends on it)."""
        if not self._grouping:
            return False
        self._extras.append((queue, done))
        self._arm()
        return True

    def read_with_registers(self, reader: RegisterReader) -> None:
        """Have ``reader`` add a read to every commit that carries held Registers: what the
        node reads about each registered device in the next loop iteration (the profile
        engine's assignment and stored status, after the REGISTRATION events) then comes with
        the Registers' own round trip instead of round trips of its own. Its answer (or the
        exception, when the commit failed) goes to the reader's ``done``; like an advisory
        write, it never withholds a reply."""
        self._readers.append(reader)

    def _with_reads(
        self, registers: list[tuple[Registration, RegisterDone]], extras: list[Extra]
    ) -> list[Extra]:
        """``extras``, the reads of ``read_with_registers`` for ``registers``, and last the
        reads every commit carries (``RedisDatabase.read_with_commits``: the credential
        version, read after the commit's writes)."""
        reads: list[Extra] = []
        if registers and self._readers:
            endpoints = [reg.endpoint for reg, _ in registers]
            reads = [read for read in (reader(endpoints) for reader in self._readers) if read]
        for each in self._db.commit_readers:
            read = each()
            if read is not None:
                reads.append(read)
        return extras + reads if reads else extras

    def _arm(self) -> None:
        if not self._armed:  # a write outside a datagram's handling: the loop commits it
            with suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self._commit_pending)
                self._armed = True

    def _commit_pending(self) -> None:
        """The loop's turn after a write: send what is held. It runs before the CoAP driver's
        flush of the same iteration (armed by the first write, before the driver's), so it
        sends asynchronously and the driver's ``commit_async`` then waits for this commit;
        a send that fails marks the iteration failed for that call, as ``_flush`` does."""
        self._armed = False
        if self._pending or self._registers or self._extras:
            if not self._asynchronous:
                self._flush()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush()
                return
            self._send(loop)

    def _flush(self) -> bool:
        """Send the pending Updates (one script: atomic) and the advisory writes in one
        round trip."""
        pending, self._pending = self._pending, []
        registers, self._registers = self._registers, []
        extras, self._extras = self._with_reads(registers, self._extras), []
        from redis.exceptions import RedisError

        try:
            # one script for the Updates and one for the Registers (each atomic), the advisory
            # writes after them: independent single commands, so no MULTI/EXEC around them
            pipe = self._db.client.pipeline(transaction=False)
            index_keys = self._queue_touches(pipe, pending)
            self._queue_registers(pipe, registers)
            first_extra = len(pipe.command_stack)
            for queue, _ in extras:
                queue(pipe)
            if first_extra and not self._by_sha.isdisjoint(_SCRIPT_BODIES):
                results = self._execute_by_sha(pipe, first_extra)
            else:
                results = pipe.execute()
        except (RedisError, StoreError) as exc:
            self._not_stored(pending, registers, extras, exc)
            return not pending and not registers
        # the Registers first: they are stored whatever the Updates' answers say
        ok = self._after_registers(registers, results[1 if pending else 0] if registers else [])
        try:
            ok = self._after_touches(pending, index_keys, results[0] if pending else []) and ok
        except (RedisError, StoreError) as exc:  # an Update's index clean-up failed
            self._answer(extras, results[first_extra:])
            self._not_stored(pending, [], [], exc)
            return False
        self._answer(extras, results[first_extra:])
        if self._db.down:  # the outage's end, logged once by the database
            self._db.reachable()
        if not ok:
            self._group_failed = True
        self._scripts_known(pending, registers)
        self.commits += 1
        return ok

    def _execute_by_sha(self, pipe: Any, scripts: int) -> list[Any]:
        """``pipe.execute()`` of a synchronous commit whose first ``scripts`` commands are
        its scripts, some by SHA: a script Redis answered ``NOSCRIPT`` (it restarted
        without this connection failing first, or ``SCRIPT FLUSH``) did not run, and is sent
        again with its body in a second round trip, so the commit does not fail for it.
        Safe only here, with nothing in flight: the advisory writes and reads that ran
        before it touch other keys than the scripts (or other members of the same address and
        identity sets), so running the scripts after them changes nothing they see. Raises
        the first error as ``execute()`` does."""
        from redis.exceptions import NoScriptError

        commands = pipe.command_stack[:scripts]  # (``execute`` empties the stack)
        results: list[Any] = pipe.execute(raise_on_error=False)
        missing = [i for i in range(scripts) if isinstance(results[i], NoScriptError)]
        if missing:
            again = self._db.client.pipeline(transaction=False)
            for i in missing:
                args = commands[i][0]
                again.execute_command("EVAL", _SCRIPT_BODIES[args[1]], *args[2:])
            for i, result in zip(missing, again.execute(raise_on_error=False), strict=True):
                results[i] = result
        error = next((r for r in results if isinstance(r, Exception)), None)
        if error is not None:
            raise error
        return results

    def _queue_touches(self, pipe: Any, pending: list[Registration]) -> list[list[str]]:
        """Queue the held Updates on ``pipe`` as one ``_TOUCH_MANY`` script; their index
        keys. The keys of an endpoint and a host with nothing to escape in a hash tag (no
        ``%``, ``{``, ``}``: every name the server sees, but for IPv6 zones) are formatted here
        as ``endpoint_key`` does, without its three calls per key."""
        index_keys: list[list[str]] = []
        if pending:
            prefix = self._db.prefix
            keys: list[str] = [self._expiry]
            lines: list[str] = []
            for reg in pending:
                endpoint, address = reg.endpoint, reg.address
                host = address.host
                if (
                    endpoint
                    and reg.identity is None
                    and "%" not in endpoint
                    and "{" not in endpoint
                    and "}" not in endpoint
                    and "%" not in host
                    and "{" not in host
                    and "}" not in host
                ):
                    keys.append(f"{prefix}:reg:{{{endpoint}}}")
                    indexes = [f"{prefix}:byaddr:{{{host}|{address.port}}}"]
                else:
                    keys.append(self._reg_key(endpoint))
                    indexes = self._index_keys(reg)
                index_keys.append(indexes)
                keys += indexes
                lifetime, exp = reg.lifetime, float(reg.expires_at)
                lines.append(
                    f'"{1 + len(indexes)}","{float(reg.last_update)!r}","{exp!r}","'
                    f"{_score(exp, lifetime)}|{lifetime}|{reg.registration_id}|{host}|"
                    f'{address.port}"'
                )
            if _TOUCH_MANY_SHA in self._by_sha:
                pipe.execute_command(
                    "EVALSHA", _TOUCH_MANY_SHA, len(keys), *keys, f"[{','.join(lines)}]"
                )
            else:
                pipe.execute_command("EVAL", _TOUCH_MANY, len(keys), *keys, f"[{','.join(lines)}]")
        return index_keys

    def _queue_registers(
        self, pipe: Any, registers: list[tuple[Registration, RegisterDone]]
    ) -> None:
        """Queue the held Registers on ``pipe`` as one ``_REGISTER_MANY`` script."""
        if not registers:
            return
        keys: list[str] = [self._ids, self._expiry, self._tokens]
        lines: list[str] = []
        records: list[str] = []
        for reg, _ in registers:
            endpoint = reg.endpoint
            indexes = self._index_keys(reg)
            keys += (self._reg_key(endpoint), self._obs_key(endpoint), *indexes)
            lu, lt, host, port, exp = self._touch_values(reg)
            lines.append(
                f"{2 + len(indexes)}\t{reg.registration_id}\t{endpoint}\t{lu}\t{lt}\t{host}"
                f"\t{port}\t{exp}"
            )
            records.append(dumps(registration_to_json(reg)))
        if _REGISTER_MANY_SHA in self._by_sha:
            script: tuple[str, str] = ("EVALSHA", _REGISTER_MANY_SHA)
        else:
            script = ("EVAL", _REGISTER_MANY)
        pipe.execute_command(*script, len(keys), *keys, "\n".join(lines), *records)

    def _after_registers(
        self, registers: list[tuple[Registration, RegisterDone]], answers: Any
    ) -> bool:
        """The Register script's answers, handed to each Register's ``done``; False when one
        was not written (its fresh id belongs to another endpoint: the iteration's replies are
        withheld, and the device's retransmission gets another id). The address and identity
        entries of a registration a Register replaced are dropped with the next commit (stale
        entries are ignored by every lookup: the module docstring's index rule)."""
        ok = True
        outcomes: list[tuple[RegisterDone, bool, Registration | None]] = []
        for (reg, done), answer in zip(registers, answers, strict=True):
            if text(answer[0]) != "ok":
                ok = False
                outcomes.append((done, False, None))
                continue
            replaced = None
            if answer[1]:
                fields = _flat(answer[1])
                replaced = self._decode(reg.endpoint, fields)
                if replaced is not None:
                    self._drop_entries_later(replaced)
            outcomes.append((done, True, replaced))
        _registered(outcomes)
        return ok

    def _drop_entries_later(self, replaced: Registration) -> None:
        """SREM the address and identity entries of a replaced registration with the next
        group commit (advisory: a failure leaves a stale entry, which lookups ignore)."""
        reg_id = replaced.registration_id
        for key in self._index_keys(replaced):
            self.write_later(functools.partial(_srem, key, reg_id), _ignore)

    def _after_touches(
        self, pending: list[Registration], index_keys: list[list[str]], answers: Any
    ) -> bool:
        """The script's answers (only the Updates whose id was gone or whose address moved):
        False when an Update found its registration gone (its id is then touched
        synchronously the next time)."""
        ok = True
        for answer in answers:
            n = int(answer[0]) - 1
            reg = pending[n]
            if not self._after_rewrite(reg, index_keys[n], answer[1:]):
                ok = False
                if len(self._lost) >= _MAX_LOST:
                    self._lost.clear()
                self._lost.add(reg.registration_id)
        return ok

    def _answer(
        self,
        extras: list[tuple[Callable[[Any], object], Callable[[Any], None]]],
        answers: list[Any],
    ) -> None:
        for (_, done), answer in zip(extras, answers, strict=True):
            try:
                done(answer)
            except Exception:  # a bug in the caller's callback must not fail the commit
                log.exception("after an advisory write of the group commit")

    def _scripts_known(self, pending: Sequence[object], registers: Sequence[object]) -> None:
        """A commit succeeded: Redis has the scripts it ran (cached by their ``EVAL``)."""
        if pending:
            self._by_sha.add(_TOUCH_MANY_SHA)
        if registers:
            self._by_sha.add(_REGISTER_MANY_SHA)

    def _not_stored(
        self,
        pending: Sequence[object],
        registers: list[tuple[Registration, RegisterDone]],
        extras: list[tuple[Callable[[Any], object], Callable[[Any], None]]],
        exc: BaseException,
    ) -> None:
        """A commit that was not sent or whose connection broke: every advisory write is
        answered with ``exc``, every held Register is told it is not stored, and the failure
        is counted and logged as the Updates' and Registers' (their replies are withheld) or,
        with neither in it, as the advisory writes'."""
        self._by_sha.clear()  # Redis may have lost its scripts (restart, SCRIPT FLUSH)
        self._answer(extras, [exc] * len(extras))
        if pending or registers:
            self._failed(len(pending) + len(registers), exc)
        elif extras:
            self._extras_failed(len(extras), exc)
        _registered([(done, False, None) for _, done in registers])

    def _extras_failed(self, count: int, exc: BaseException) -> None:
        if unreachable(exc):
            self._db.unavailable(exc)
        if self._log.allow("advisory", time.monotonic()):
            log.warning("Redis store %s: %d advisory writes not stored: %s", self.url, count, exc)

    def _failed(self, count: int, exc: BaseException) -> None:
        self._group_failed = True
        self._failed_commits += 1
        if unreachable(exc):  # the outage: its start and end are logged by the database
            self._db.unavailable(exc)
        if self._log.allow("commit", time.monotonic()):
            log.error(
                "Redis store %s: %d pending Updates not stored (Registers included; %d failed "
                "commits so far), their replies withheld: %s",
                self.url,
                count,
                self._failed_commits,
                exc,
            )

    # -- keys ----------------------------------------------------------------------------------
    def _reg_key(self, endpoint: str) -> str:
        return self._db.endpoint_key("reg", endpoint)

    def _obs_key(self, endpoint: str) -> str:
        return self._db.endpoint_key("obs", endpoint)

    def _addr_key(self, address: Address) -> str:
        return self._db.endpoint_key("byaddr", f"{address.host}|{address.port}")

    def _ident_key(self, identity: IdentityBinding) -> str:
        return self._db.endpoint_key("byident", _identity_text(identity))

    def _index_keys(self, reg: Registration) -> list[str]:
        keys = [self._addr_key(reg.address)]
        if reg.identity is not None:
            keys.append(self._ident_key(reg.identity))
        return keys

    # -- registrations -------------------------------------------------------------------------
    @_after_pending
    def put_registration(self, registration: Registration) -> Registration | None:
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        reg_id, endpoint = registration.registration_id, registration.endpoint
        data = dumps(registration_to_json(registration))
        keys = [self._reg_key(endpoint), self._obs_key(endpoint)]
        args = [reg_id, data, *self._touch_values(registration)]
        client = self._db.client
        with self._db.errors(f"cannot store the registration of {endpoint!r}"):
            if self._db.cluster:
                previous = client.hget(self._ids, reg_id)
                if previous is not None and text(previous) != endpoint:
                    # the id moves to another endpoint: its old record goes first (repeatable)
                    self._remove_record(reg_id, text(previous), None)
                self._add_indexes(registration)
                replaced_raw, tokens = self._put(keys=keys, args=args)
                client.zadd(self._expiry, {reg_id: registration.expires_at})
            else:  # one Redis: the whole Register in one script, one round trip
                replaced_raw, tokens = self._register_once(registration, keys, args)
            replaced = None
            if replaced_raw:
                fields = _flat(replaced_raw)
                replaced = self._decode(endpoint, fields)
                self._drop_indexes(fields.get("id", ""), endpoint, replaced, tokens)
        return replaced

    def _register_once(
        self, registration: Registration, keys: list[str], args: list[Any]
    ) -> tuple[Any, Any]:
        """One Redis: the id's owner check, indexes, record and expiry score in one script.
        An id that belongs to another endpoint (a random id met again: practically never) has
        that endpoint's record removed first, as on a cluster, then the write is forced."""
        reg_id, endpoint = registration.registration_id, registration.endpoint
        script_keys = [self._ids, self._expiry, *keys, *self._index_keys(registration)]
        result = self._register(keys=script_keys, args=[reg_id, endpoint, "0", *args[1:]])
        if text(result[0]) == "moved":
            previous = text(result[1])
            self._remove_record(reg_id, previous, None)
            self._drop_id(keys=[self._ids, self._expiry], args=[reg_id, previous])
            result = self._register(keys=script_keys, args=[reg_id, endpoint, "1", *args[1:]])
        return result[1], result[2]

    @_after_pending
    def update_registration(self, registration: Registration) -> bool:
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        data = dumps(registration_to_json(registration))
        return self._rewrite(registration, ["data", data])

    def touch_registration(self, registration: Registration, *, moved: bool = True) -> bool:
        """Only the fields an Update changes; the JSON record is not rewritten. Under group
        commit, held until ``commit()`` and answered True (the module docstring). ``moved``
        is not used here (the sqlite engine's index hint)."""
        del moved
        if self._grouping and registration.registration_id not in self._lost:
            if not isinstance(registration, Registration):
                raise StoreError(f"expected a Registration, got {type(registration).__name__}")
            if not _quotable(registration):
                return self._rewrite(registration, [])  # not plain JSON strings: alone
            self._pending.append(registration)
            self._arm()
            return True
        self._lost.discard(registration.registration_id)
        return self._rewrite(registration, [])

    def put_registration_later(self, registration: Registration, done: RegisterDone) -> bool:
        """A Register held for the iteration's group commit (``commit()``, before the replies
        leave), instead of ``put_registration``'s round trip of its own: the Registers of an
        iteration are one script in the commit's round trip. ``done(stored, replaced)`` is
        called when the commit answered (``stored`` False: Redis failed, or the fresh id
        belongs to another endpoint; the commit then answers False, the replies are withheld);
        ``replaced`` is the endpoint's registration the Register replaced (its observations,
        id, expiry and token entries went in the same script). False, holding nothing, when
        not grouping (a cluster) or when a field cannot be one line of the script: the caller
        then calls ``put_registration``. Any other call sends the held Registers first."""
        if not self._grouping:
            return False
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        if not (
            _plain(registration.registration_id)
            and _plain(registration.endpoint)
            and _plain(registration.address.host)
        ):
            return False
        self._registers.append((registration, done))
        self._arm()
        return True

    def _touch_values(self, reg: Registration) -> list[str | int]:
        return [
            repr(float(reg.last_update)),
            reg.lifetime,
            reg.address.host,
            reg.address.port,
            repr(float(reg.expires_at)),
        ]

    @_after_pending
    def _rewrite(self, registration: Registration, extra: list[str]) -> bool:
        """An Update: on one Redis, indexes, record and expiry score in one MULTI/EXEC (one
        round trip, atomic); on a cluster, the three steps of the module docstring."""
        reg_id, endpoint = registration.registration_id, registration.endpoint
        with self._db.errors(f"cannot update the registration of {endpoint!r}"):
            if self._db.cluster:
                fields = self._rewrite_fields(registration, extra)
                self._add_indexes(registration, new=False)
                old = self._update(keys=[self._reg_key(endpoint)], args=[reg_id, *fields])
                if old:
                    self._db.client.zadd(self._expiry, {reg_id: registration.expires_at})
                return self._after_rewrite(registration, self._index_keys(registration), old)
            pipe = self._db.client.pipeline(transaction=True)
            start, index_keys = self._queue_rewrite(pipe, registration, extra)
            return self._after_rewrite(registration, index_keys, pipe.execute()[start])

    def _rewrite_fields(self, registration: Registration, extra: list[str]) -> list[Any]:
        lu, lt, host, port, exp = self._touch_values(registration)
        return [*extra, "lu", lu, "lt", lt, "host", host, "port", port, "exp", exp]

    def _queue_rewrite(
        self, pipe: Any, registration: Registration, extra: list[str]
    ) -> tuple[int, list[str]]:
        """Queue an Update's commands on ``pipe`` (a MULTI/EXEC on one Redis): the index
        entries, the record's script, the expiry score. Returns the position of the script's
        answer among the pipe's answers, and the index keys."""
        reg_id = registration.registration_id
        index_keys = self._index_keys(registration)
        start = len(pipe.command_stack)
        for index in index_keys:
            pipe.sadd(index, reg_id)
        # EVAL: a pipeline would check EVALSHA's script with a round trip of its own
        fields = self._rewrite_fields(registration, extra)
        key = self._reg_key(registration.endpoint)
        pipe.execute_command("EVAL", _UPDATE, 1, key, reg_id, *fields)
        pipe.zadd(self._expiry, {reg_id: registration.expires_at})
        return start + len(index_keys), index_keys

    def _after_rewrite(self, registration: Registration, index_keys: list[str], old: Any) -> bool:
        """After an Update's script: take back the index entries of a registration that is not
        stored (any more), or drop the entry of the address it moved from."""
        reg_id = registration.registration_id
        address = registration.address
        client = self._db.client
        with self._db.errors(f"cannot update the indexes of {registration.endpoint!r}"):
            if not old:
                for index in index_keys:
                    client.srem(index, reg_id)
                if client.hget(self._ids, reg_id) is None:
                    client.zrem(self._expiry, reg_id)
                return False
            old_host, old_port = (None if v is None else text(v) for v in old)
            if (old_host, old_port) != (address.host, str(address.port)):
                old_address = Address(old_host or "", int(old_port or 0))
                client.srem(self._addr_key(old_address), reg_id)
        return True

    def _add_indexes(self, reg: Registration, *, new: bool = True) -> None:
        """Before the record is written (the module docstring's rule): the expiry score only
        goes down here (``LT``), the exact score is set after the write."""
        client = self._db.client
        pipe = client.pipeline(transaction=False)
        if new:
            pipe.hset(self._ids, reg.registration_id, reg.endpoint)
        pipe.zadd(self._expiry, {reg.registration_id: reg.expires_at}, lt=True)
        for key in self._index_keys(reg):
            pipe.sadd(key, reg.registration_id)
        pipe.execute()

    def _drop_indexes(
        self, reg_id: str, endpoint: str, reg: Registration | None, tokens: Sequence[Any]
    ) -> None:
        """After the record is gone (repeatable). On one Redis in one pipeline (one round trip:
        a re-Register after a reboot replaces the old registration, and waits for this)."""
        if not self._db.cluster:
            pipe = self._db.client.pipeline(transaction=False)
            pipe.execute_command("EVAL", _DROP_ID, 2, self._ids, self._expiry, reg_id, endpoint)
            if reg is not None:
                for key in self._index_keys(reg):
                    pipe.srem(key, reg_id)
            if tokens:
                hex_tokens = [text(t) for t in tokens]
                pipe.execute_command("EVAL", _DROP_TOKENS, 1, self._tokens, endpoint, *hex_tokens)
            pipe.execute()
            return
        self._drop_id(keys=[self._ids, self._expiry], args=[reg_id, endpoint])
        if reg is not None:
            for key in self._index_keys(reg):
                self._db.client.srem(key, reg_id)
        if tokens:
            self._drop_tokens(keys=[self._tokens], args=[endpoint, *(text(t) for t in tokens)])

    def _remove_record(
        self, reg_id: str, endpoint: str, expires_at: float | None
    ) -> Registration | None:
        exp = "" if expires_at is None else repr(float(expires_at))
        result = self._remove(
            keys=[self._reg_key(endpoint), self._obs_key(endpoint)], args=[reg_id, exp]
        )
        if not result:
            return None
        fields = _flat(result[0])
        reg = self._decode(endpoint, fields)
        self._drop_indexes(reg_id, endpoint, reg, result[1])
        return reg

    @_after_pending
    def remove_registration(
        self, registration_id: str, *, expires_at: float | None = None
    ) -> Registration | None:
        with self._db.errors(f"cannot remove registration {registration_id!r}"):
            endpoint = self._db.client.hget(self._ids, registration_id)
            if endpoint is None:
                return None
            return self._remove_record(registration_id, text(endpoint), expires_at)

    @_after_pending
    def get_registration(self, registration_id: str) -> Registration | None:
        with self._db.errors(f"cannot read registration {registration_id!r}"):
            endpoint = self._db.client.hget(self._ids, registration_id)
            if endpoint is None:
                return None
            reg = self._read(text(endpoint))
        return reg if reg is not None and reg.registration_id == registration_id else None

    @_after_pending
    def registration_by_endpoint(self, endpoint: str) -> Registration | None:
        with self._db.errors(f"cannot read the registration of {endpoint!r}"):
            return self._read(endpoint)

    @_after_pending
    def registrations_by_address(self, address: Address) -> list[Registration]:
        with self._db.errors(f"cannot look up registrations from {address}"):
            found = self._by_ids(self._db.client.smembers(self._addr_key(address)))
        return _oldest_first(r for r in found if r.address == address)

    @_after_pending
    def registrations_by_identity(self, identity: IdentityBinding) -> list[Registration]:
        with self._db.errors("cannot look up registrations by DTLS identity"):
            found = self._by_ids(self._db.client.smembers(self._ident_key(identity)))
        return _oldest_first(r for r in found if r.identity == identity)

    @_after_pending
    def expiring_before(self, t: float, limit: int) -> list[Registration]:
        """ZRANGEBYSCORE, each entry checked against its record: a stale entry (record gone)
        is dropped, an early one (the record was refreshed) re-scored, and the page read on
        until ``limit`` due registrations are found or none is left before ``t``."""
        due: list[Registration] = []
        client = self._db.client
        with self._db.errors("cannot read the expiry index"):
            offset = 0
            while len(due) < limit:
                page: list[tuple[Any, float]] = client.zrangebyscore(  # type: ignore[assignment]
                    self._expiry, "-inf", f"({t!r}", start=offset, num=_SWEEP_PAGE, withscores=True
                )
                if not page:
                    break
                offset += len(page)
                ids = [text(member) for member, _ in page]
                endpoints = client.hmget(self._ids, ids)
                regs = self._read_many([text(e) for e in endpoints if e is not None])
                by_id = {r.registration_id: r for r in regs}
                for (_, score), reg_id, endpoint in zip(page, ids, endpoints, strict=True):
                    reg = by_id.get(reg_id)
                    if reg is None:
                        # gone (a write in progress has a future expiry, not one before t)
                        current = None if endpoint is None else self._read(text(endpoint))
                        if current is None or current.registration_id != reg_id:
                            self._drop_id(
                                keys=[self._ids, self._expiry],
                                args=[reg_id, "" if endpoint is None else text(endpoint)],
                            )
                            offset -= 1
                        continue
                    if reg.expires_at < t:
                        due.append(reg)
                    elif reg.expires_at != score and self._repair(reg, score):
                        offset -= 1  # moved past t: the next page starts one earlier
        due.sort(key=lambda r: (r.expires_at, r.registration_id))
        return due[:limit]

    def _repair(self, reg: Registration, score: float) -> bool:
        """Re-score an early expiry entry from its record (compare-and-set). On one Redis also
        only while the record's expiry is the one read, dropping its ``xs`` (``_TOUCH_MANY``);
        False when that expiry changed meanwhile (the entry stays early, as the rule allows)."""
        reg_id, exp = reg.registration_id, reg.expires_at
        if self._db.cluster:  # the record is in another slot; no _TOUCH_MANY writes ``xs``
            return bool(self._rescore(keys=[self._expiry], args=[reg_id, score, exp]))
        keys = [self._expiry, self._reg_key(reg.endpoint)]
        return bool(self._rescore(keys=keys, args=[reg_id, score, exp, repr(float(exp))]))

    @_after_pending
    def registrations(self) -> list[Registration]:
        with self._db.errors("cannot read the registrations"):
            ids = {text(k): text(v) for k, v in self._db.client.hgetall(self._ids).items()}
            regs = self._read_many(sorted(set(ids.values())))
        return _oldest_first(r for r in regs if ids.get(r.registration_id) == r.endpoint)

    @_after_pending
    def registration_count(self) -> int:
        """How many registrations the id index holds: one HLEN, not a scan (it may count an
        entry a killed process left for a moment, module docstring)."""
        with self._db.errors("cannot count the registrations"):
            return int(self._db.client.hlen(self._ids))

    @_after_pending
    def registrations_page(self, after: str | None, limit: int) -> list[Registration]:
        """Up to ``limit`` registrations whose endpoint sorts after ``after``, in endpoint
        order: the endpoints come from the id index (short strings), only the page's records
        are read."""
        with self._db.errors("cannot read the registrations"):
            ids = {text(k): text(v) for k, v in self._db.client.hgetall(self._ids).items()}
            endpoints = sorted(set(ids.values()))
            start = 0 if after is None else bisect_right(endpoints, after)
            page: list[Registration] = []
            while len(page) < limit and start < len(endpoints):
                chunk = endpoints[start : start + limit - len(page)]
                start += len(chunk)
                page += [r for r in self._read_many(chunk) if ids.get(r.registration_id)]
        return page

    # -- reading records -----------------------------------------------------------------------
    def _by_ids(self, members: Iterable[Any]) -> list[Registration]:
        ids = sorted(text(m) for m in members)
        if not ids:
            return []
        endpoints = self._db.client.hmget(self._ids, ids)
        regs = self._read_many(sorted({text(e) for e in endpoints if e is not None}))
        wanted = set(ids)
        return [r for r in regs if r.registration_id in wanted]

    def _read(self, endpoint: str) -> Registration | None:
        raw = self._db.client.hgetall(self._reg_key(endpoint))
        return self._decode(endpoint, {text(k): text(v) for k, v in raw.items()}) if raw else None

    def _read_many(self, endpoints: Sequence[str]) -> list[Registration]:
        if not endpoints:
            return []
        pipe = self._db.client.pipeline(transaction=False)
        for endpoint in endpoints:
            pipe.hgetall(self._reg_key(endpoint))
        found = []
        for endpoint, raw in zip(endpoints, pipe.execute(), strict=True):
            if raw:
                reg = self._decode(endpoint, {text(k): text(v) for k, v in raw.items()})
                if reg is not None:
                    found.append(reg)
        return found

    def _decode(self, endpoint: str, fields: dict[str, str]) -> Registration | None:
        """The record, with the fields the cheap Update wrote; None (and a WARNING) for a
        record that cannot be read: one damaged key must not stop a server with 99,999 good
        ones (it is left in Redis for inspection; the device's next Register replaces it)."""
        try:
            data = json.loads(fields["data"])
            if not isinstance(data, dict):
                raise ValueError("the data field is not a JSON object")
            reg = registration_from_json(data)
            if reg.endpoint != endpoint or reg.registration_id != fields["id"]:
                raise ValueError("the record disagrees with its key or id field")
            return attrs.evolve(
                reg,
                last_update=float(fields["lu"]),
                lifetime=int(fields["lt"]),
                address=Address(fields["host"], int(fields["port"])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            log.warning(
                "%s: unreadable registration record of endpoint %r ignored: %s",
                self.url,
                endpoint,
                str(exc) or type(exc).__name__,
            )
            return None

    # -- observations --------------------------------------------------------------------------
    @_after_pending
    def put_observation(self, observation: Observation) -> None:
        if not isinstance(observation, Observation):
            raise StoreError(f"expected an Observation, got {type(observation).__name__}")
        token, endpoint = observation.token.hex(), observation.endpoint
        data = dumps(observation_to_json(observation))
        client = self._db.client
        with self._db.errors(f"cannot store an observation of {endpoint!r}"):
            previous = client.hget(self._tokens, token)
            client.hset(self._tokens, token, endpoint)
            client.hset(self._obs_key(endpoint), token, data)
            if previous is not None and text(previous) != endpoint:
                client.hdel(self._obs_key(text(previous)), token)

    @_after_pending
    def remove_observation(self, token: bytes) -> Observation | None:
        hex_token = token.hex()
        with self._db.errors(f"cannot remove observation {hex_token}"):
            endpoint = self._db.client.hget(self._tokens, hex_token)
            if endpoint is None:
                return None
            raw = self._pop(keys=[self._obs_key(text(endpoint))], args=[hex_token])
            self._drop_tokens(keys=[self._tokens], args=[text(endpoint), hex_token])
        return None if raw is None else self._decode_observation(text(endpoint), hex_token, raw)

    @_after_pending
    def observation_by_token(self, token: bytes) -> Observation | None:
        hex_token = token.hex()
        with self._db.errors(f"cannot read observation {hex_token}"):
            endpoint = self._db.client.hget(self._tokens, hex_token)
            if endpoint is None:
                return None
            raw = self._db.client.hget(self._obs_key(text(endpoint)), hex_token)
        return None if raw is None else self._decode_observation(text(endpoint), hex_token, raw)

    @_after_pending
    def observations_by_endpoint(self, endpoint: str) -> list[Observation]:
        with self._db.errors(f"cannot read the observations of {endpoint!r}"):
            raw = self._db.client.hgetall(self._obs_key(endpoint))
        return self._observations_of(endpoint, raw)

    @_after_pending
    def observations(self) -> list[Observation]:
        with self._db.errors("cannot read the observations"):
            tokens = {text(k): text(v) for k, v in self._db.client.hgetall(self._tokens).items()}
            endpoints = sorted(set(tokens.values()))
            pipe = self._db.client.pipeline(transaction=False)
            for endpoint in endpoints:
                pipe.hgetall(self._obs_key(endpoint))
            found: list[Observation] = []
            for endpoint, raw in zip(endpoints, pipe.execute(), strict=True):
                found += [
                    o for o in self._observations_of(endpoint, raw) if tokens.get(o.token.hex())
                ]
        return sorted(found, key=lambda o: o.token)

    def _observations_of(self, endpoint: str, raw: dict[Any, Any]) -> list[Observation]:
        found = [self._decode_observation(endpoint, text(k), v) for k, v in raw.items()]
        return sorted((o for o in found if o is not None), key=lambda o: o.token)

    def _decode_observation(self, endpoint: str, token: str, raw: Any) -> Observation | None:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            obs = observation_from_json(data)
            if obs.token.hex() != token or obs.endpoint != endpoint:
                raise ValueError("the record disagrees with its key")
            return obs
        except (ValueError, TypeError, KeyError) as exc:
            log.warning(
                "%s: unreadable observation %s of endpoint %r ignored: %s",
                self.url,
                token,
                endpoint,
                str(exc) or type(exc).__name__,
            )
            return None


class RedisClientPages:
    """The API's ``ClientPages`` (``lwm2m_server/api/listing.py``) on Redis: other nodes
    register devices this node's cache has never seen, so the listing asks the store."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def clients_page(self, after: str | None, limit: int) -> list[Registration]:
        return self.store.registrations_page(after, limit)

    def client_count(self) -> int:
        return self.store.registration_count()


class RedisTelemetryStore:
    """``TelemetryStore`` of a server on Redis: the **latest** value of each path in Redis
    (every node's API shows what any node received; newest wins, one Lua script per endpoint,
    as for the profile attributes), the **history** in the node's local sqlite file (its
    ``history``), written first (group-committed with the iteration). History is per node: a
    series shows the points this node received (docs/cluster.md)."""

    def __init__(self, db: RedisDatabase, history: Any) -> None:
        self._db = db
        self._history = history
        self.url = db.url

    def _keys(self, endpoint: str) -> list[str]:
        return [self._db.endpoint_key("tlatest", endpoint), self._db.endpoint_key("tlts", endpoint)]

    def append_points(self, points: Iterable[TelemetryPoint]) -> int:
        """Redis first, then the history: when Redis refuses, nothing is written anywhere, so
        the device's retransmission of the unacknowledged notification is stored once (the
        latest-value write is idempotent: newest wins; the history append is not)."""
        batch = list(points)
        by_endpoint: dict[str, list[str | int]] = {}
        try:
            for endpoint, path, key, ts_ms, type_name, value in (check_point(p) for p in batch):
                by_endpoint.setdefault(endpoint, []).extend(
                    [path, ts_ms, dumps([key, type_name, value])]
                )
        except (TypeError, ValueError) as exc:
            raise StoreError(f"invalid telemetry point, nothing written: {exc}") from exc
        if not by_endpoint:
            return 0
        with self._db.errors("cannot write the latest telemetry"):
            pipe = self._db.client.pipeline(transaction=False)
            for endpoint, args in by_endpoint.items():
                pipe.execute_command("EVAL", NEWEST_WINS, 2, *self._keys(endpoint), *args)
            pipe.execute()
        return int(self._history.append_points(batch))

    def latest(self, endpoint: str) -> dict[str, TelemetryPoint]:
        values_key, times_key = self._keys(endpoint)
        with self._db.errors(f"cannot read the latest telemetry of {endpoint!r}"):
            pipe = self._db.client.pipeline(transaction=False)
            pipe.hgetall(values_key)
            pipe.hgetall(times_key)
            values, times = pipe.execute()
        out: dict[str, TelemetryPoint] = {}
        try:
            for raw_path in sorted(values, key=text):
                path = text(raw_path)
                key, type_name, value = json.loads(values[raw_path])
                out[path] = point_from_row(
                    endpoint, path, key, int(times[raw_path]), type_name, value
                )
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"Redis store {self.url}: corrupt telemetry value: {exc}") from exc
        return out

    def history(
        self,
        endpoint: str,
        key: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        result: list[TelemetryPoint] = self._history.history(
            endpoint, key, since_ms=since_ms, until_ms=until_ms, limit=limit
        )
        return result

    # -- retention: the history is the node's sqlite file; the latest values stay in Redis ----
    def telemetry_endpoints(self, after: str | None, limit: int) -> list[str]:
        return list(self._history.telemetry_endpoints(after, limit))

    def prune_history(self, endpoint: str, before_ms: int, limit: int) -> int:
        return int(self._history.prune_history(endpoint, before_ms, limit))


def _oldest_first(registrations: Iterable[Registration]) -> list[Registration]:
    regs = list(registrations)
    regs.sort(key=lambda r: (r.last_update, r.registration_id))
    return regs

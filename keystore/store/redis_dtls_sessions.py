"""``RedisDtlsSessionStore``: the CoAPs endpoint's DTLS sessions on Redis
(``keystore.coaps.persistence.DtlsSessionStore``), so that a session outlives the process
that made it, as with the sqlite engine.

Keys (``P`` is the prefix; one hash-tag group, ``{P:dtls}``), by session id:

* ``{P:dtls}:state``   hash  id → the fixed part (``state_to_json``: suite, master secret …);
* ``{P:dtls}:seq``     hash  id → the reserved write sequence number (decimal);
* ``{P:dtls}:window``  hash  id → ``host|port|read_top|read_bitmap(hex)|saved_at`` (what moves).

What must be durable before a reply (docs/coaps-transport.md, "Sessions survive a restart") is
kept by one Lua script per ``save_dtls_sessions``: new sessions, progress and removals are one
isolated step (all or nothing, like the sqlite transaction); the write sequence number only
moves forward (the script keeps the larger of the stored and the given number, compared as
numbers and stored as the caller's decimal text, exact up to 2^53, far above the 2^48 DTLS
limit); progress of a session that is not stored (removed meanwhile) is dropped, as the sqlite
UPDATE matches no row. A write is acknowledged when Redis has it: Redis persistence (AOF) is
what makes it survive a Redis restart (docs/cluster.md).

The values hold key material (master secrets), like the sqlite rows: nothing here logs them,
and the Redis server is the deployment's secret store (ACLs, TLS, no public exposure).

One group, not a key per session: ``load_dtls_sessions`` reads every session and
``save_dtls_sessions`` changes several at once atomically, which on Redis Cluster needs one
slot. Sharing sessions across nodes by Connection ID is phase 2 (docs/cluster.md, "Not yet").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..coaps.persistence import SessionProgress, StoredSession
from .dtls_sessions import state_from_json, state_to_json
from .redis_database import RedisDatabase, text

log = logging.getLogger(__name__)

_SAVE = """
local n_new, n_progress, n_removed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
for _ = 1, n_new do
  local id = ARGV[i]
  redis.call('HSET', KEYS[1], id, ARGV[i + 1])
  redis.call('HSET', KEYS[2], id, ARGV[i + 2])
  redis.call('HSET', KEYS[3], id, ARGV[i + 3])
  i = i + 4
end
for _ = 1, n_progress do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    local stored = redis.call('HGET', KEYS[2], id)
    if not stored or tonumber(stored) < tonumber(ARGV[i + 1]) then
      redis.call('HSET', KEYS[2], id, ARGV[i + 1])
    end
    redis.call('HSET', KEYS[3], id, ARGV[i + 2])
  end
  i = i + 3
end
for _ = 1, n_removed do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  i = i + 1
end
return 'ok'
"""


def _window(host: str, port: int, read_top: int, read_bitmap: int, saved_at: float) -> str:
    return f"{host}|{port}|{read_top}|{read_bitmap:x}|{saved_at!r}"


class RedisDtlsSessionStore:
    """``DtlsSessionStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._keys = [db.group_key("dtls", name) for name in ("state", "seq", "window")]
        self._save = db.script(_SAVE)

    def load_dtls_sessions(self) -> list[StoredSession]:
        with self._db.errors("cannot read the DTLS sessions"):
            pipe = self._db.client.pipeline(transaction=True)
            for key in self._keys:
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
        args: list[str | int] = [len(new), len(progress), len(removed)]
        for s in new:
            state = s.state
            args += [
                s.id,
                state_to_json(state),
                str(state.write_seq),
                _window(s.host, s.port, state.read_top, state.read_bitmap, s.saved_at),
            ]
        for p in progress:
            args += [
                p.id,
                str(p.write_seq),
                _window(p.host, p.port, p.read_top, p.read_bitmap, p.saved_at),
            ]
        args += list(removed)
        if len(args) == 3:
            return
        with self._db.errors("cannot save DTLS sessions"):
            self._save(keys=self._keys, args=args)

    def remove_dtls_sessions(self, ids: Sequence[str]) -> None:
        if ids:
            self.save_dtls_sessions([], [], ids)

    def count(self) -> int:
        """How many sessions are stored (tests, the operator CLI)."""
        with self._db.errors("cannot count the DTLS sessions"):
            return int(self._db.client.hlen(self._keys[0]))

"""``keystore.api_tokens.ApiTokenStore`` on a ``RedisDatabase``: the API tokens of servers whose
keystore is in Redis (``store.engine: redis``), shared by every node.

Keys (one slot, ``{prefix:tok}``): ``:byname`` name → ``{"role", "sha256", "created_ms"}`` and
``:bysha`` digest → name. A put or remove changes both in one Lua script, so a replaced or
revoked token stops matching on every node at once.
"""

from __future__ import annotations

import json
from typing import Any

from ..api_tokens import ApiToken, Role, check_name
from .errors import StoreError
from .redis_database import RedisDatabase, text

_SWAP = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local sha = cjson.decode(old)['sha256']
  if redis.call('HGET', KEYS[2], sha) == ARGV[1] then redis.call('HDEL', KEYS[2], sha) end
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
end
return old
"""


class RedisApiTokenStore:
    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._byname = db.group_key("tok", "byname")
        self._bysha = db.group_key("tok", "bysha")
        self._swap = db.script(_SWAP)

    def _decode(self, name: str, raw: bytes | str) -> ApiToken:
        try:
            data = json.loads(raw)
            return ApiToken(name, Role(data["role"]), str(data["sha256"]), int(data["created_ms"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"Redis store {self.url}: corrupt API token {name!r}: {exc}") from exc

    def _change(self, name: str, value: str, sha256: str) -> ApiToken | None:
        with self._db.errors(f"cannot write API token {name!r}"):
            old: Any = self._swap(keys=[self._byname, self._bysha], args=[name, value, sha256])
        return None if old is None else self._decode(name, old)

    def put_token(self, token: ApiToken) -> ApiToken | None:
        problem = check_name(token.name)
        if problem is not None:
            raise ValueError(problem)
        created = token.created_ms or _now_ms()
        value = json.dumps(
            {"role": token.role.value, "sha256": token.sha256, "created_ms": created}
        )
        return self._change(token.name, value, token.sha256)

    def remove_token(self, name: str) -> ApiToken | None:
        return self._change(name, "", "")

    def token_by_digest(self, sha256: str) -> ApiToken | None:
        with self._db.errors("cannot read the API tokens"):
            name = self._db.client.hget(self._bysha, sha256)
            if name is None:
                return None
            raw = self._db.client.hget(self._byname, text(name))
        return None if raw is None else self._decode(text(name), raw)

    def tokens(self) -> list[ApiToken]:
        with self._db.errors("cannot read the API tokens"):
            raw = self._db.client.hgetall(self._byname)
        found = {text(k): v for k, v in raw.items()}
        return [self._decode(name, found[name]) for name in sorted(found)]


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

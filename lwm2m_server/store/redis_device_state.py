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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from keystore.store.database import dumps
from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase, text
from lwm2m_server.core.telemetry import TelemetryPoint

from .records import check_point, point_from_row

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

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url

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
        try:
            value = dumps(status)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"profile status of {endpoint!r} is not JSON-ready: {exc}") from exc
        with self._db.errors(f"cannot write the profile status of {endpoint!r}"):
            self._db.client.set(self._db.endpoint_key("pstatus", endpoint), value)

    def put_statuses(self, statuses: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """One pipeline of SETs (no transaction: on a cluster the devices' keys live in
        different slots); each status is encoded before anything is sent."""
        values: list[tuple[str, str]] = []
        for endpoint, status in statuses:
            try:
                values.append((self._db.endpoint_key("pstatus", endpoint), dumps(status)))
            except (TypeError, ValueError) as exc:
                raise StoreError(
                    f"profile status of {endpoint!r} is not JSON-ready: {exc}"
                ) from exc
        if not values:
            return
        with self._db.errors(f"cannot write the profile status of {len(values)} devices"):
            pipe = self._db.client.pipeline(transaction=False)
            for key, value in values:
                pipe.set(key, value)
            pipe.execute()

    def statuses(self, endpoints: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One pipeline of GETs (not MGET: on a cluster the keys live in different slots)."""
        if not endpoints:
            return {}
        with self._db.errors(f"cannot read the profile status of {len(endpoints)} devices"):
            pipe = self._db.client.pipeline(transaction=False)
            for endpoint in endpoints:
                pipe.get(self._db.endpoint_key("pstatus", endpoint))
            raws = pipe.execute()
        found: dict[str, dict[str, Any]] = {}
        for endpoint, raw in zip(endpoints, raws, strict=True):
            if raw is not None:
                data = self._decode(endpoint, raw)
                if data is not None:
                    found[endpoint] = data
        return found

    def status(self, endpoint: str) -> dict[str, Any] | None:
        with self._db.errors(f"cannot read the profile status of {endpoint!r}"):
            raw = self._db.client.get(self._db.endpoint_key("pstatus", endpoint))
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

"""``RedisBootstrapStore``: the bootstrap server's store (``store.BootstrapStore``) on Redis, so
several bootstrap servers behind one address share provisioning records and history.

Keys (``P`` is the prefix):

* ``{P:bs}:dev``       hash  endpoint → provisioning record (JSON);
* ``{P:bs}:sessions``  list  finished sessions, newest first (JSON), trimmed to
  ``SESSIONS_KEPT`` in the same MULTI/EXEC that adds one;
* ``P:bs:disc:{ep}``   string  the endpoint's last Bootstrap-Discover (JSON), in its own slot.

Records are one hash because ``devices()`` lists them all and ``put_devices`` (a CSV import) is
all or nothing: one HSET of many fields is atomic, on Redis Cluster too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase, text

from .core.client_info import ClientInfo
from .core.manager import SessionSummary
from .core.provisioning import DeviceRecord, ProvisionState
from .store import SESSIONS_KEPT


class RedisBootstrapStore:
    """``BootstrapStore`` on a ``RedisDatabase``."""

    def __init__(self, db: RedisDatabase, *, owns_db: bool = False) -> None:
        self._db = db
        self._owns = owns_db
        self.url = db.url
        self._devices = db.group_key("bs", "dev")
        self._sessions = db.group_key("bs", "sessions")

    def close(self) -> None:
        if self._owns:
            self._db.close()

    def _decode(self, endpoint: str, raw: bytes | str) -> DeviceRecord:
        try:
            data = json.loads(raw)
            return DeviceRecord(
                endpoint,
                data["profile"],
                ProvisionState(data["state"]),
                str(data["reason"]),
                float(data["updated"]),
                str(data["origin"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"Redis store {self.url}: corrupt bootstrap record of {endpoint!r}: {exc}"
            ) from exc

    # -- DeviceRegistry ---------------------------------------------------------------------------
    def get_device(self, endpoint: str) -> DeviceRecord | None:
        with self._db.errors(f"cannot read the bootstrap record of {endpoint!r}"):
            raw = self._db.client.hget(self._devices, endpoint)
        return None if raw is None else self._decode(endpoint, raw)

    def put_device(self, record: DeviceRecord) -> None:
        self.put_devices([record])

    def put_devices(self, records: Sequence[DeviceRecord]) -> None:
        if not records:
            return
        mapping = {
            r.endpoint: json.dumps(
                {"profile": r.profile, "state": r.state.value, "reason": r.reason,
                 "updated": r.updated, "origin": r.origin}
            )
            for r in records
        }  # fmt: skip
        with self._db.errors("cannot write bootstrap records"):
            self._db.client.hset(self._devices, mapping=mapping)  # type: ignore[arg-type]

    def devices(self) -> list[DeviceRecord]:
        with self._db.errors("cannot read the bootstrap records"):
            raw = self._db.client.hgetall(self._devices)
        found = {text(k): v for k, v in raw.items()}
        return [self._decode(endpoint, found[endpoint]) for endpoint in sorted(found)]

    def remove_device(self, endpoint: str) -> DeviceRecord | None:
        with self._db.errors(f"cannot remove the bootstrap record of {endpoint!r}"):
            pipe = self._db.client.pipeline(transaction=True)
            pipe.hget(self._devices, endpoint)
            pipe.hdel(self._devices, endpoint)
            old: Any = pipe.execute()[0]
        return None if old is None else self._decode(endpoint, old)

    # -- sessions ---------------------------------------------------------------------------------
    def add_session(self, summary: SessionSummary) -> None:
        data = json.dumps(summary.to_json())
        with self._db.errors("cannot log a bootstrap session"):
            pipe = self._db.client.pipeline(transaction=True)
            pipe.lpush(self._sessions, data)
            pipe.ltrim(self._sessions, 0, SESSIONS_KEPT - 1)
            pipe.execute()

    def sessions(self, endpoint: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        """Newest first, as the API shows them."""
        if limit <= 0:
            return []
        with self._db.errors("cannot read the bootstrap sessions"):
            raw = self._db.client.lrange(self._sessions, 0, limit - 1 if endpoint is None else -1)
        out: list[dict[str, object]] = []
        for item in raw:
            data = json.loads(item)
            if endpoint is None or data.get("endpoint") == endpoint:
                out.append(data)
                if len(out) == limit:
                    break
        return out

    # -- DiscoveryLog -----------------------------------------------------------------------------
    def last_discover(self, endpoint: str) -> ClientInfo | None:
        """None when never seen, or when it cannot be read (as the sqlite store: the pack then
        keeps clear of /0/0 and /0/1, which is safe, rather than failing the device)."""
        try:
            with self._db.errors("cannot read a Bootstrap-Discover"):
                raw = self._db.client.get(self._db.endpoint_key("bs:disc", endpoint))
            return None if raw is None else ClientInfo.from_json(json.loads(raw)["data"])
        except (StoreError, ValueError, KeyError, TypeError):
            return None

    def put_discover(self, endpoint: str, client: ClientInfo, now: float) -> None:
        value = json.dumps({"seen": now, "data": client.to_json()})
        with self._db.errors(f"cannot store the Bootstrap-Discover of {endpoint!r}"):
            self._db.client.set(self._db.endpoint_key("bs:disc", endpoint), value)

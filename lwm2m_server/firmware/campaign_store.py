"""Where campaigns are kept, so that a restarted server resumes them (``campaigns``).

A campaign is one row (its spec, state, reason and token bucket, as JSON) plus one row per
device (status, job state, result, detail), so that a device's change writes one small row and
not the whole campaign (a campaign of 100k devices changes a device at a time). Three engines,
as the server's other stores (``store.engine``): memory (tests), the server's sqlite file, and
Redis (where every key of the campaigns is in one hash-tag slot, ``{P:campaigns}``, so that a
campaign's rows are written in one MULTI/EXEC even on Redis Cluster).

The rows are the ``Campaign.header_json`` / ``DeviceOutcome.to_json`` dicts: the store does not
interpret them beyond the campaign id, the endpoint and the device's index (page order).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from keystore.store.redis_database import RedisDatabase, text

CAMPAIGNS_SCHEMA_VERSION = 1

Row = Mapping[str, Any]


class CampaignStore(Protocol):
    def save(self, campaign: Row, devices: Iterable[Row] = ()) -> None:
        """Write the campaign's row and these device rows (each replaces the endpoint's)."""
        ...

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign's row, oldest first."""
        ...

    def devices(self, campaign_id: str) -> list[dict[str, Any]]:
        """The campaign's device rows in index order."""
        ...

    def delete(self, campaign_id: str) -> bool: ...


def _check(campaign: Row, devices: Iterable[Row]) -> tuple[str, str, list[tuple[str, int, str]]]:
    """Everything is checked and encoded before anything is written (bad input writes
    nothing)."""
    try:
        campaign_id = str(campaign["id"])
        rows = [(str(d["endpoint"]), int(d["index"]), dumps(d)) for d in devices]
        return campaign_id, dumps(campaign), rows
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"campaign row is not storable, nothing written: {exc}") from exc


def _decode(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StoreError(f"corrupt {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"corrupt {what}: not an object")
    return data


class MemoryCampaignStore:
    """In memory (tests; a server without persistence)."""

    def __init__(self) -> None:
        self._campaigns: dict[str, str] = {}
        self._devices: dict[str, dict[str, tuple[int, str]]] = {}

    def save(self, campaign: Row, devices: Iterable[Row] = ()) -> None:
        campaign_id, doc, rows = _check(campaign, devices)
        self._campaigns[campaign_id] = doc
        table = self._devices.setdefault(campaign_id, {})
        for endpoint, index, row in rows:
            table[endpoint] = (index, row)

    def campaigns(self) -> list[dict[str, Any]]:
        found = [_decode(doc, f"campaign {cid}") for cid, doc in self._campaigns.items()]
        return sorted(found, key=lambda c: (c.get("created", 0), c["id"]))

    def devices(self, campaign_id: str) -> list[dict[str, Any]]:
        rows = sorted(self._devices.get(campaign_id, {}).values())
        return [_decode(row, f"device row of campaign {campaign_id}") for _, row in rows]

    def delete(self, campaign_id: str) -> bool:
        self._devices.pop(campaign_id, None)
        return self._campaigns.pop(campaign_id, None) is not None


class SqliteCampaignStore:
    """In the server's sqlite file (two tables, versioned as ``campaigns_schema``)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database
        self.path = database.path
        try:
            known = database.check_schema("campaigns_schema", CAMPAIGNS_SCHEMA_VERSION)
            database.db.table("campaigns").create(
                {"id": str, "doc": str}, pk="id", not_null={"doc"}, if_not_exists=True
            )
            database.db.table("campaign_devices").create(
                {"campaign": str, "endpoint": str, "idx": int, "doc": str},
                pk=("campaign", "endpoint"),
                not_null={"idx", "doc"},
                if_not_exists=True,
            )
            database.db.execute(
                "CREATE INDEX IF NOT EXISTS campaign_devices_order "
                "ON campaign_devices(campaign, idx)"
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the campaign tables: {exc}") from exc
        if not known:
            database.record_schema("campaigns_schema", CAMPAIGNS_SCHEMA_VERSION)

    def save(self, campaign: Row, devices: Iterable[Row] = ()) -> None:
        campaign_id, doc, rows = _check(campaign, devices)
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO campaigns(id, doc) VALUES(?, ?)", (campaign_id, doc)
            )
            conn.executemany(
                "INSERT OR REPLACE INTO campaign_devices(campaign, endpoint, idx, doc) "
                "VALUES(?, ?, ?, ?)",
                [(campaign_id, ep, idx, row) for ep, idx, row in rows],
            )

    def campaigns(self) -> list[dict[str, Any]]:
        rows = self._db.read("SELECT id, doc FROM campaigns")
        found = [_decode(doc, f"{self.path}: campaign {cid}") for cid, doc in rows]
        return sorted(found, key=lambda c: (c.get("created", 0), c["id"]))

    def devices(self, campaign_id: str) -> list[dict[str, Any]]:
        rows = self._db.read(
            "SELECT doc FROM campaign_devices WHERE campaign = ? ORDER BY idx", (campaign_id,)
        )
        return [_decode(r[0], f"{self.path}: device row of campaign {campaign_id}") for r in rows]

    def delete(self, campaign_id: str) -> bool:
        with self._db.write() as conn:
            conn.execute("DELETE FROM campaign_devices WHERE campaign = ?", (campaign_id,))
            gone = conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,)).rowcount
        return bool(gone)


class RedisCampaignStore:
    """On Redis. Keys (``P`` the prefix), all in the slot of ``{P:campaigns}``:

    * ``{P:campaigns}:all``       hash  campaign id → its row (JSON);
    * ``{P:campaigns}:dev:<id>``  hash  endpoint → ``[index, row]`` (JSON).
    """

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._all = db.group_key("campaigns", "all")

    def _devices_key(self, campaign_id: str) -> str:
        return self._db.group_key("campaigns", f"dev:{campaign_id}")

    def save(self, campaign: Row, devices: Iterable[Row] = ()) -> None:
        campaign_id, doc, rows = _check(campaign, devices)
        with self._db.errors(f"cannot write campaign {campaign_id}"):
            pipe = self._db.client.pipeline(transaction=True)
            pipe.hset(self._all, campaign_id, doc)
            if rows:
                pipe.hset(
                    self._devices_key(campaign_id),
                    mapping={ep: f"[{idx},{row}]" for ep, idx, row in rows},
                )
            pipe.execute()

    def campaigns(self) -> list[dict[str, Any]]:
        with self._db.errors("cannot read the campaigns"):
            raw = self._db.client.hgetall(self._all)
        found = [_decode(v, f"Redis store {self.url}: campaign {text(k)}") for k, v in raw.items()]
        return sorted(found, key=lambda c: (c.get("created", 0), c["id"]))

    def devices(self, campaign_id: str) -> list[dict[str, Any]]:
        with self._db.errors(f"cannot read the devices of campaign {campaign_id}"):
            raw = self._db.client.hgetall(self._devices_key(campaign_id))
        rows: list[tuple[int, dict[str, Any]]] = []
        for key, value in raw.items():
            try:
                index, row = json.loads(value)
            except (ValueError, TypeError) as exc:
                raise StoreError(
                    f"Redis store {self.url}: corrupt device row {text(key)!r} of campaign "
                    f"{campaign_id}: {exc}"
                ) from exc
            rows.append((int(index), row))
        rows.sort(key=lambda r: r[0])
        return [row for _, row in rows]

    def delete(self, campaign_id: str) -> bool:
        with self._db.errors(f"cannot delete campaign {campaign_id}"):
            pipe = self._db.client.pipeline(transaction=True)
            pipe.hdel(self._all, campaign_id)
            pipe.delete(self._devices_key(campaign_id))
            gone, _ = pipe.execute()
        return bool(gone)


def open_campaign_store(server: Any) -> CampaignStore:
    """The store of the server's ``store.engine``: Redis when the registrations are there
    (campaigns are shared state), else the server's sqlite file."""
    from ..store.redis import RedisStore

    core = server.stores.core
    if isinstance(core, RedisStore):
        return RedisCampaignStore(core.database)
    return SqliteCampaignStore(server.store)

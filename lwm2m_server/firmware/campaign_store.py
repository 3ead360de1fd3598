"""Where campaigns are kept, so that a restarted server resumes them (``campaigns``).

A campaign is one row (its spec, state, reason and token bucket, as JSON) plus one row per
device (status, job state, result, detail), so that a device's change writes one small row and
not the whole campaign (a campaign of 100k devices changes a device at a time). Three engines,
as the server's other stores (``store.engine``): memory (tests), the server's sqlite file, and
Redis (where every key of the campaigns is in one hash-tag slot, ``{P:campaigns}``, so that a
campaign's rows are written in one MULTI/EXEC even on Redis Cluster).

The rows are the ``Campaign.header_json`` / ``DeviceOutcome.to_json`` dicts: the store does not
interpret them beyond the campaign id, the endpoint and the device's index (page order), and, on
Redis, whether the campaign still needs a runner (``needs_runner``).

On Redis several nodes share the campaigns, and ``RedisCampaignStore`` also keeps **which node
runs each campaign** (docs/firmware.md, "Campaigns in a cluster"): a lease key per campaign,
in the campaigns' slot, holding the running node's id with a TTL. Every write of the runner is
a compare-and-set on it (``save_as``: refused, writing nothing, once another node holds it), so
a node that lost a campaign can never write it again, and a campaign whose node died becomes
free when its lease expires (``claim``). Operator actions made through another node's API are
queued in the store for the runner (``request``, ``take_requests``).
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


def needs_runner(header: Row) -> bool:
    """Whether a stored campaign still needs a node to run it: unfinished, or finished with
    jobs still running (an aborted campaign records the outcomes of the jobs it let finish)."""
    if header.get("state") not in ("completed", "cancelled", "aborted"):
        return True
    counts = header.get("counts")
    return isinstance(counts, Mapping) and bool(counts.get("running"))


_NEEDS_RUNNER = """
local function needs_runner(raw)
  local h = cjson.decode(raw)
  local s = h['state']
  if s ~= 'completed' and s ~= 'cancelled' and s ~= 'aborted' then return true end
  local c = h['counts']
  return type(c) == 'table' and type(c['running']) == 'number' and c['running'] > 0
end
"""

_SAVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
if ARGV[5] == '1' then redis.call('DEL', KEYS[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
"""KEYS: lease, all, devices; ARGV: node, lease ms, id, row, done, then endpoint/row pairs.
0, writing nothing, unless ``node`` holds the lease; ``done`` (the campaign needs no runner any
more) deletes the lease with the write, else it is renewed."""

_CLAIM = (
    _NEEDS_RUNNER
    + """
local header = redis.call('HGET', KEYS[2], ARGV[3])
if not header then return {0} end
if not needs_runner(header) then return {2} end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and ARGV[4] ~= '1' then return {0, holder} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, header, redis.call('HGETALL', KEYS[3])}
"""
)
"""KEYS: lease, all, devices; ARGV: node, lease ms, id, steal. {1, row, devices}: claimed (as
stored at that instant: its former runner cannot write it any more); {2}: done, nobody needs
to run it; {0, holder}: run by another live node; {0}: no such campaign."""

_TAKE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local queued = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return queued
"""
"""KEYS: lease, requests; ARGV: node. The queued operator actions, emptied (nil: ``node`` does
not run the campaign, and takes nothing)."""

_REQUEST = """
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('GET', KEYS[1])
"""
"""KEYS: lease, requests; ARGV: action, ms to keep it. The runner's id (nil: nobody runs it)."""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

REQUEST_TTL = 86_400.0
"""Seconds an operator action waits for a runner before Redis forgets it (a campaign nobody
runs for a day has bigger problems; the key must not stay for ever)."""


class RedisCampaignStore:
    """On Redis. Keys (``P`` the prefix), all in the slot of ``{P:campaigns}`` (so that the
    scripts that check the lease and write the rows are atomic on a Redis Cluster too):

    * ``{P:campaigns}:all``        hash    campaign id → its row (JSON);
    * ``{P:campaigns}:dev:<id>``   hash    endpoint → ``[index, row]`` (JSON);
    * ``{P:campaigns}:lease:<id>`` string  the id of the node running it, the lease as TTL;
    * ``{P:campaigns}:req:<id>``   list    operator actions (``pause``, ``resume``,
      ``cancel``) made through another node's API, for the runner to carry out.
    """

    def __init__(self, db: RedisDatabase) -> None:
        self._db = db
        self.url = db.url
        self._all = db.group_key("campaigns", "all")
        self._save = db.script(_SAVE)
        self._claim = db.script(_CLAIM)
        self._take = db.script(_TAKE)
        self._request = db.script(_REQUEST)
        self._renew = db.script(_RENEW)
        self._release = db.script(_RELEASE)

    def _devices_key(self, campaign_id: str) -> str:
        return self._db.group_key("campaigns", f"dev:{campaign_id}")

    def _lease_key(self, campaign_id: str) -> str:
        return self._db.group_key("campaigns", f"lease:{campaign_id}")

    def _requests_key(self, campaign_id: str) -> str:
        return self._db.group_key("campaigns", f"req:{campaign_id}")

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
            pipe.delete(
                self._devices_key(campaign_id),
                self._lease_key(campaign_id),
                self._requests_key(campaign_id),
            )
            gone, _ = pipe.execute()
        return bool(gone)

    def header(self, campaign_id: str) -> dict[str, Any] | None:
        """One campaign's row (None: no such campaign)."""
        with self._db.errors(f"cannot read campaign {campaign_id}"):
            raw = self._db.client.hget(self._all, campaign_id)
        return None if raw is None else _decode(raw, f"Redis store {self.url}: campaign")

    # -- the runner's lease (docs/firmware.md, "Campaigns in a cluster") -----------------------
    def acquire(self, campaign_id: str, node: str, lease: float) -> bool:
        """Take the lease of a new campaign (before its first write); False if held."""
        with self._db.errors(f"cannot take the lease of campaign {campaign_id}"):
            done = self._db.client.set(
                self._lease_key(campaign_id), node, px=int(lease * 1000), nx=True
            )
        return bool(done)

    def save_as(
        self,
        campaign: Row,
        devices: Iterable[Row],
        node: str,
        lease: float,
        *,
        done: bool = False,
    ) -> bool:
        """``save`` if ``node`` still runs the campaign (and renew its lease; delete it when
        ``done``: the campaign needs no runner any more); False, writing nothing, when another
        node took it or the lease expired."""
        campaign_id, doc, rows = _check(campaign, devices)
        args: list[Any] = [node, int(lease * 1000), campaign_id, doc, "1" if done else "0"]
        for endpoint, index, row in rows:
            args += [endpoint, f"[{index},{row}]"]
        keys = [self._lease_key(campaign_id), self._all, self._devices_key(campaign_id)]
        with self._db.errors(f"cannot write campaign {campaign_id}"):
            written = self._save(keys, args)
        return bool(written)

    def claim(
        self, campaign_id: str, node: str, lease: float, *, steal: bool = False
    ) -> tuple[tuple[dict[str, Any], list[dict[str, Any]]] | None, str | None]:
        """Take the campaign over: ``((row, devices), None)`` when ``node`` runs it now (as
        stored at that instant); ``(None, holder)`` while another node's lease runs (taken
        anyway with ``steal``); ``(None, None)`` when there is no such campaign or it needs no
        runner."""
        keys = [self._lease_key(campaign_id), self._all, self._devices_key(campaign_id)]
        with self._db.errors(f"cannot claim campaign {campaign_id}"):
            answer = self._claim(
                keys, [node, int(lease * 1000), campaign_id, "1" if steal else "0"]
            )
        status = int(answer[0])
        if status == 1:
            header = _decode(answer[1], f"Redis store {self.url}: campaign {campaign_id}")
            flat = answer[2]
            rows: list[tuple[int, dict[str, Any]]] = []
            for i in range(0, len(flat), 2):
                try:
                    index, row = json.loads(flat[i + 1])
                except (ValueError, TypeError) as exc:
                    raise StoreError(
                        f"Redis store {self.url}: corrupt device row {text(flat[i])!r} of "
                        f"campaign {campaign_id}: {exc}"
                    ) from exc
                rows.append((int(index), row))
            rows.sort(key=lambda r: r[0])
            return (header, [row for _, row in rows]), None
        if status == 0 and len(answer) > 1:
            return None, text(answer[1])
        return None, None

    def holder(self, campaign_id: str) -> str | None:
        """The node running the campaign now (None: nobody)."""
        with self._db.errors(f"cannot read who runs campaign {campaign_id}"):
            raw = self._db.client.get(self._lease_key(campaign_id))
        return None if raw is None else text(raw)

    def renew(self, campaign_ids: list[str], node: str, lease: float) -> list[str]:
        """Extend ``node``'s leases; the campaigns it no longer runs."""
        ms = int(lease * 1000)
        lost = []
        with self._db.errors("cannot renew the campaigns' leases"):
            for campaign_id in campaign_ids:  # one script each: a pipeline of scripts fails
                if not self._renew([self._lease_key(campaign_id)], [node, ms]):  # (NOSCRIPT)
                    lost.append(campaign_id)
        return lost

    def release(self, campaign_id: str, node: str) -> None:
        """Give the campaign up (this node stops): free at once for another node."""
        with self._db.errors(f"cannot release campaign {campaign_id}"):
            self._release([self._lease_key(campaign_id)], [node])

    def request(self, campaign_id: str, action: str) -> str | None:
        """Queue an operator action for the runner; the runner's id (None: nobody runs it)."""
        keys = [self._lease_key(campaign_id), self._requests_key(campaign_id)]
        with self._db.errors(f"cannot queue {action} for campaign {campaign_id}"):
            holder = self._request(keys, [action, int(REQUEST_TTL * 1000)])
        return None if holder is None else text(holder)

    def take_requests(self, campaign_id: str, node: str) -> list[str] | None:
        """The queued actions, taken (in order), if ``node`` runs the campaign; else None."""
        keys = [self._lease_key(campaign_id), self._requests_key(campaign_id)]
        with self._db.errors(f"cannot take the requests of campaign {campaign_id}"):
            queued = self._take(keys, [node])
        return None if queued is None else [text(q) for q in queued]

    def pending_requests(self, campaign_id: str) -> int:
        """Actions queued and not yet taken by the runner."""
        with self._db.errors(f"cannot read the requests of campaign {campaign_id}"):
            return int(self._db.client.llen(self._requests_key(campaign_id)))


def open_campaign_store(server: Any) -> CampaignStore:
    """The store of the server's ``store.engine``: Redis when the registrations are there
    (campaigns are shared state), else the server's sqlite file."""
    from ..store.redis import RedisStore

    core = server.stores.core
    if isinstance(core, RedisStore):
        return RedisCampaignStore(core.database)
    return SqliteCampaignStore(server.store)

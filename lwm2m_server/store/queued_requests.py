"""``QueuedRequestStore``: the downlink requests queued for sleeping queue-mode devices.

A request queued for a sleeping device was acknowledged to its HTTP caller with 202 and a
``requestId``: the caller was told "it will be delivered". So the request must outlive the
process that accepted it: the service writes an entry here before the 202 leaves, removes it
once the device answered (or the entry expired, or the registration ended), and at start-up
puts every stored entry back into the in-memory queue (``RequestQueues``), whose answers then
go out as ``REQUEST_RESPONSE`` events with the same ``requestId`` (the original caller is gone).

The in-memory queue stays the working copy (ordering, the awake window, the delivery of one
request at a time); this store only makes it survive a restart. Entries are plain values
(``StoredRequest``): the request in the form ``coap.requests.DownlinkRequest`` has, which holds
only strings, numbers and bytes, so it is rebuilt exactly.

Engines: ``MemoryQueuedRequestStore`` (reference, tests), ``SqliteQueuedRequestStore`` (the
server's sqlite file; ``put`` commits at once even under the group commit, because the 202 it
acknowledges is an HTTP answer, which no CoAP flush orders) and
``lwm2m_server.store.redis_queued_requests.RedisQueuedRequestStore``. The contract is
``tests/unit/store/test_queued_requests_contract.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from typing import Any, Protocol

import attrs

from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from object_models.path import LwM2mPath

from ..coap.requests import DownlinkRequest

log = logging.getLogger(__name__)


@attrs.frozen
class StoredRequest:
    """One queued request as stored."""

    request_id: str
    endpoint: str
    request: DownlinkRequest
    created_at: float
    """Unix time it was queued."""
    ttl: float
    """Seconds it may wait in the queue (``queue.ttl`` when it was queued)."""
    timeout: float
    """Seconds to wait for the device's answer once it is sent."""

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl


class QueuedRequestStore(Protocol):
    def put(self, entry: StoredRequest) -> None:
        """Insert or replace by ``request_id``; durable when the call returns."""
        ...

    def remove(self, request_id: str) -> bool:
        """Forget the entry (delivered, expired, dropped); False if it was not stored."""
        ...

    def by_endpoint(self, endpoint: str) -> list[StoredRequest]:
        """The entries of ``endpoint``, oldest first (the queue's order)."""
        ...

    def all(self) -> list[StoredRequest]:
        """Every entry, by endpoint and then oldest first (start-up)."""
        ...


# -- the record's serialised form -----------------------------------------------------------------


def request_to_json(request: DownlinkRequest) -> dict[str, Any]:
    return {
        "operation": request.operation,
        "method": request.method,
        "path": str(request.path),
        "paths": [str(p) for p in request.paths],
        "payload": base64.b64encode(request.payload).decode("ascii"),
        "content_format": request.content_format,
        "accept": request.accept,
        "query": list(request.query),
        "observe": request.observe,
        "token": None if request.token is None else request.token.hex(),
    }


def request_from_json(data: Any) -> DownlinkRequest:
    """The inverse of ``request_to_json``; ``ValueError``/``TypeError``/``KeyError`` when the
    data is not one."""
    if not isinstance(data, dict):
        raise TypeError("a queued request is a JSON object")
    token = data["token"]
    return DownlinkRequest(
        operation=str(data["operation"]),
        method=str(data["method"]),
        path=LwM2mPath.parse(data["path"]),
        paths=tuple(LwM2mPath.parse(p) for p in data["paths"]),
        payload=base64.b64decode(data["payload"], validate=True),
        content_format=_optional_int(data["content_format"]),
        accept=_optional_int(data["accept"]),
        query=tuple(str(q) for q in data["query"]),
        observe=_optional_int(data["observe"]),
        token=None if token is None else bytes.fromhex(token),
    )


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def entry_to_json(entry: StoredRequest) -> str:
    return dumps(
        {
            "request_id": entry.request_id,
            "endpoint": entry.endpoint,
            "request": request_to_json(entry.request),
            "created_at": entry.created_at,
            "ttl": entry.ttl,
            "timeout": entry.timeout,
        }
    )


def entry_from_json(text: str | bytes) -> StoredRequest:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("a queued request entry is a JSON object")
    return StoredRequest(
        request_id=str(data["request_id"]),
        endpoint=str(data["endpoint"]),
        request=request_from_json(data["request"]),
        created_at=float(data["created_at"]),
        ttl=float(data["ttl"]),
        timeout=float(data["timeout"]),
    )


def _check(entry: StoredRequest) -> str:
    if not isinstance(entry, StoredRequest):
        raise StoreError(f"expected a StoredRequest, got {type(entry).__name__}")
    try:
        return entry_to_json(entry)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"queued request {entry.request_id!r} is not storable: {exc}") from exc


def _ordered(entries: list[StoredRequest]) -> list[StoredRequest]:
    return sorted(entries, key=lambda e: (e.endpoint, e.created_at, e.request_id))


# -- engines --------------------------------------------------------------------------------------


class MemoryQueuedRequestStore:
    """``QueuedRequestStore`` in a dict (nothing durable: the reference and tests)."""

    def __init__(self) -> None:
        self._entries: dict[str, StoredRequest] = {}

    def put(self, entry: StoredRequest) -> None:
        _check(entry)
        self._entries[entry.request_id] = entry

    def remove(self, request_id: str) -> bool:
        return self._entries.pop(request_id, None) is not None

    def by_endpoint(self, endpoint: str) -> list[StoredRequest]:
        return _ordered([e for e in self._entries.values() if e.endpoint == endpoint])

    def all(self) -> list[StoredRequest]:
        return _ordered(list(self._entries.values()))


class SqliteQueuedRequestStore:
    """``QueuedRequestStore`` in the server's sqlite file (table ``queued_requests``). A row that
    cannot be read back is skipped with an error naming it (one bad row must not stop the
    others from being delivered) and deleted."""

    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        self.path = store.path
        try:
            store.db.table("queued_requests").create(
                {"request_id": str, "endpoint": str, "created_at": float, "data": str},
                pk="request_id",
                not_null={"endpoint", "created_at", "data"},
                if_not_exists=True,
            )
            store.db.table("queued_requests").create_index(
                ["endpoint", "created_at"], if_not_exists=True
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: cannot create the queued_requests table: {exc}"
            ) from exc

    def put(self, entry: StoredRequest) -> None:
        text = _check(entry)
        # batch(): committed when the block ends, even inside the server's group commit
        with self._store.batch() as store, store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO queued_requests(request_id, endpoint, created_at, data) "
                "VALUES(?, ?, ?, ?)",
                (entry.request_id, entry.endpoint, entry.created_at, text),
            )

    def remove(self, request_id: str) -> bool:
        with self._store.write() as conn:
            cursor = conn.execute("DELETE FROM queued_requests WHERE request_id = ?", (request_id,))
        return cursor.rowcount > 0

    def by_endpoint(self, endpoint: str) -> list[StoredRequest]:
        return self._decode(
            self._store.read(
                "SELECT request_id, data FROM queued_requests WHERE endpoint = ? "
                "ORDER BY created_at, request_id",
                (endpoint,),
            )
        )

    def all(self) -> list[StoredRequest]:
        return self._decode(
            self._store.read(
                "SELECT request_id, data FROM queued_requests "
                "ORDER BY endpoint, created_at, request_id"
            )
        )

    def _decode(self, rows: list[tuple[Any, ...]]) -> list[StoredRequest]:
        entries = []
        for request_id, data in rows:
            try:
                entries.append(entry_from_json(data))
            except (ValueError, TypeError, KeyError) as exc:
                log.error(
                    "%s: queued request %r cannot be read, dropped: %s", self.path, request_id, exc
                )
                self.remove(request_id)
        return entries

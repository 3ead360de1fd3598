"""What the profile engine keeps per device: mapped attribute values and the profile status.

This is the LwM2M server's own state (derived from what devices report), so it lives with the
server's store, next to telemetry, and not in ``keystore`` with the profile documents. An
attribute value is a ``TelemetryPoint`` (endpoint, path, key, time, typed value) kept as the
latest value per key rather than as a series, so it reuses the telemetry rows' encoding
(``records.check_point``). The tables sit in the shared sqlite file, under the profile tables'
schema version (``keystore.store.profiles.PROFILES_SCHEMA_VERSION``).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from keystore.store.profiles import PROFILES_SCHEMA_VERSION
from lwm2m_server.core.telemetry import TelemetryPoint

from .records import check_point, point_from_row


class DeviceStateStore(Protocol):
    def put_attributes(self, attributes: Iterable[TelemetryPoint]) -> int:
        """Keep each as the latest value of its (endpoint, key) unless an older one."""
        ...

    def attributes(self, endpoint: str) -> dict[str, TelemetryPoint]:
        """The device's attribute values, by key."""
        ...

    def put_status(self, endpoint: str, status: Mapping[str, Any]) -> None: ...

    def put_statuses(self, statuses: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """``put_status`` of many devices at once (the profile engine's batch of a loop
        iteration): every status is encoded before anything is written."""
        ...

    def status(self, endpoint: str) -> dict[str, Any] | None: ...

    def statuses(self, endpoints: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``status`` of many devices in one read; devices without one are left out."""
        ...


class SqliteDeviceStateStore:
    """``DeviceStateStore`` in the shared sqlite file."""

    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        self.path = store.path
        self._create_schema()

    def _create_schema(self) -> None:
        db = self._store.db
        try:
            self._store.check_schema("profiles_schema", PROFILES_SCHEMA_VERSION)
            db.table("device_attributes").create(
                {"endpoint": str, "key": str, "path": str, "ts_ms": int, "type": str, "value": str},
                pk=("endpoint", "key"),
                not_null={"path", "ts_ms", "type", "value"},
                if_not_exists=True,
            )
            db.table("profile_status").create(
                {"endpoint": str, "status": str},
                pk="endpoint",
                not_null={"status"},
                if_not_exists=True,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the device state tables: {exc}") from exc

    def put_attributes(self, attributes: Iterable[TelemetryPoint]) -> int:
        try:
            rows = [check_point(p) for p in attributes]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: invalid attribute, nothing written: {exc}") from exc
        if not rows:
            return 0
        with self._store.write() as conn:
            conn.executemany(
                "INSERT INTO device_attributes(endpoint, path, key, ts_ms, type, value) "
                "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(endpoint, key) DO UPDATE SET "
                "path=excluded.path, ts_ms=excluded.ts_ms, type=excluded.type, "
                "value=excluded.value WHERE excluded.ts_ms >= device_attributes.ts_ms",
                rows,
            )
        return len(rows)

    def attributes(self, endpoint: str) -> dict[str, TelemetryPoint]:
        rows = self._store.read(
            "SELECT endpoint, path, key, ts_ms, type, value FROM device_attributes "
            "WHERE endpoint = ? ORDER BY key",
            (endpoint,),
        )
        try:
            return {r[2]: point_from_row(*r) for r in rows}
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: corrupt attribute row: {exc}") from exc

    def put_status(self, endpoint: str, status: Mapping[str, Any]) -> None:
        text = _status_text(endpoint, status)
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO profile_status(endpoint, status) VALUES(?, ?)",
                (endpoint, text),
            )

    def put_statuses(self, statuses: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """One statement for all: a single statement is atomic by itself, and one per device
        (each wrapped in its savepoint) cost the Register path a statement and two
        savepoint commands per device."""
        rows = [(endpoint, _status_text(endpoint, status)) for endpoint, status in statuses]
        if not rows:
            return
        with self._store.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO profile_status(endpoint, status) VALUES(?, ?)", rows
            )

    def put_status_texts(self, rows: Sequence[tuple[str, str]]) -> None:
        """``put_statuses`` of statuses encoded already, each ``status_text`` of its status
        (the profile engine's batch: a ``PlainStatus`` is encoded from its seven atoms, without
        the dict ``_status_text`` would take apart again; not part of ``DeviceStateStore``,
        the engine uses it when the store has it)."""
        if not rows:
            return
        with self._store.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO profile_status(endpoint, status) VALUES(?, ?)", rows
            )

    def status(self, endpoint: str) -> dict[str, Any] | None:
        rows = self._store.read("SELECT status FROM profile_status WHERE endpoint = ?", (endpoint,))
        if not rows:
            return None
        return self._decode(endpoint, rows[0][0])

    def statuses(self, endpoints: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(endpoints), 500):  # below any sqlite build's variable limit
            chunk = tuple(endpoints[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._store.read(
                f"SELECT endpoint, status FROM profile_status WHERE endpoint IN ({marks})", chunk
            )
            for endpoint, text in rows:
                data = self._decode(endpoint, text)
                if data is not None:
                    found[endpoint] = data
        return found

    def _decode(self, endpoint: str, text: str) -> dict[str, Any] | None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"{self.path}: corrupt profile status of {endpoint!r}: {exc}") from exc
        return data if isinstance(data, dict) else None


_string = json.encoder.encode_basestring
"""The JSON string literal of a ``str`` as ``dumps`` writes it (``ensure_ascii=False``; C)."""
_EMPTY = {list: "[]", dict: "{}"}


_PLAIN_KEYS = (
    "endpoint",
    "profile",
    "profileDigest",
    "chosenBy",
    "state",
    "reason",
    "appliedAt",
    "observations",
    "attributesWritten",
    "problems",
    "requests",
    "valueProblems",
)
"""The keys of ``profiles.status.DeviceStatus.to_json``, in its order."""
_PLAIN_END = (
    ',"observations":[],"attributesWritten":{},"problems":[],"requests":[],"valueProblems":[]}'
)
_PLAIN_TEXT = (
    '{"endpoint":%s,"profile":%s,"profileDigest":%s,"chosenBy":%s,"state":%s,"reason":%s,'
    '"appliedAt":%s' + _PLAIN_END
)


def plain_status_text(
    endpoint: str, profile: str, digest: str, chosen_by: str, applied_at: float
) -> str | None:
    """The text ``_status_text`` gives the status of a Register whose profile asks nothing
    (``profiles.status.PlainStatus``: state ``applied``, reason ``register``, every list
    empty), filled straight from its atoms; None when one is not of the type the template
    assumes (the caller then encodes the dict). ``tests/unit/store/test_records.py`` holds it
    to ``dumps``."""
    if (
        type(endpoint) is str
        and type(profile) is str
        and type(digest) is str
        and type(chosen_by) is str
        and type(applied_at) is float
        and math.isfinite(applied_at)
    ):
        key = (profile, digest, chosen_by)
        middle = _plain_middles.get(key)
        if middle is None:
            middle = _PLAIN_MIDDLE % (_string(profile), _string(digest), _string(chosen_by))
            if len(_plain_middles) >= _PLAIN_MIDDLES_CACHE:
                del _plain_middles[next(iter(_plain_middles))]
            _plain_middles[key] = middle
        return "".join(
            ('{"endpoint":', _string(endpoint), middle, float.__repr__(applied_at), _PLAIN_END)
        )
    return None


_PLAIN_MIDDLE = (
    ',"profile":%s,"profileDigest":%s,"chosenBy":%s,"state":"applied","reason":"register",'
    '"appliedAt":'
)
_PLAIN_MIDDLES_CACHE = 256
_plain_middles: dict[tuple[str, str, str], str] = {}
"""(profile, digest, chosen-by) -> the part of ``plain_status_text`` they make: a fleet's
plain Registers share a few profiles, so only the endpoint and the time are escaped and
formatted per Register (bounded, oldest out first)."""


def status_text(endpoint: str, status: Mapping[str, Any]) -> str:
    """What ``SqliteDeviceStateStore.put_status`` stores for ``status``: ``dumps(status)``,
    the same text (``StoreError`` when it is not JSON-ready)."""
    return _status_text(endpoint, status)


def _status_text(endpoint: str, status: Mapping[str, Any]) -> str:
    """``dumps(status)``, the same text. The status of a plan that sent nothing (a device
    whose profile asks nothing: every Register of most fleets; ``DeviceStatus.to_json`` with
    six strings, a time and five empty lists) is filled into a template: ~2.3 µs where the
    join below took ~4 on the development machine (docs/performance.md, "Register: the store
    and the events"). Any other status whose values are all strings, finite floats, None or
    empty containers is joined directly, about a third faster than ``json.dumps``. Anything
    else, and every error, is the reference path's (``tests/unit/store/test_records.py``
    holds all three to the same text)."""
    if type(status) is dict and tuple(status) == _PLAIN_KEYS:
        (
            ep, profile, digest, chosen, state, reason, at,
            observed, written, problems, requests, value_problems,
        ) = status.values()  # fmt: skip
        if (
            type(ep) is str
            and type(profile) is str
            and type(digest) is str
            and type(chosen) is str
            and type(state) is str
            and type(reason) is str
            and (at is None or (type(at) is float and math.isfinite(at)))
            and type(observed) is list
            and not observed
            and type(written) is dict
            and not written
            and type(problems) is list
            and not problems
            and type(requests) is list
            and not requests
            and type(value_problems) is list
            and not value_problems
        ):
            return _PLAIN_TEXT % (
                _string(ep),
                _string(profile),
                _string(digest),
                _string(chosen),
                _string(state),
                _string(reason),
                "null" if at is None else float.__repr__(at),
            )
    if type(status) is dict:
        parts = []
        for key, value in status.items():
            kind = type(value)
            if type(key) is not str:
                break
            if kind is str:
                text = _string(value)
            elif kind is float and math.isfinite(value):
                text = float.__repr__(value)
            elif value is None:
                text = "null"
            elif (kind is list or kind is dict) and not value:
                text = _EMPTY[kind]
            else:
                break
            parts.append(f"{_string(key)}:{text}")
        else:
            return "{" + ",".join(parts) + "}"
    try:
        return dumps(status)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"profile status of {endpoint!r} is not JSON-ready: {exc}") from exc

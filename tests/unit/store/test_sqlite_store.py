"""SqliteStore on a real file: round trips, reopen, kill -9, batches, bad input, bad files."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keystore.resolver import IdentityBinding
from keystore.store import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.store import ObservationStore, RegistrationStore, TelemetryStore
from lwm2m_server.store.records import value_from_json, value_to_json
from lwm2m_server.store.sqlite import SqliteStore
from object_models.path import LwM2mPath
from object_models.types import ObjectLink, ResourceType, Value

ROOT = Path(__file__).resolve().parents[3]


def make_reg(n: int = 0, endpoint: str | None = None, **kw: object) -> Registration:
    fields: dict[str, object] = {
        "registration_id": f"id{n}",
        "endpoint": endpoint or f"ep{n}",
        "address": Address("2001:db8::1", 5683 + n),
        "lifetime": 300,
        "lwm2m_version": "1.1",
        "binding": "UT",
        "sms_number": "+4912345",
        "queue_mode": True,
        "object_links": ObjectLinks(
            text='</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>,</3303/2>',
            objects={1: None, 3: None, 3303: "1.1"},
            instances={1: (0,), 3: (0,), 3303: (0, 2)},
            root_path="/",
            content_formats=frozenset({110, 112}),
        ),
        "transport": "coaps",
        "identity": IdentityBinding("psk", "dev-ü"),
        "registered_at": 1000.5,
        "last_update": 1000.5 + n,
        "additional_attributes": {"et": "sensor"},
    }
    fields.update(kw)
    return Registration(**fields)  # type: ignore[arg-type]


def make_obs(token: bytes, reg: Registration, *paths: str, composite: bool = False) -> Observation:
    return Observation(
        token,
        reg.endpoint,
        reg.registration_id,
        tuple(LwM2mPath.parse(p) for p in (paths or ("/3/0/1",))),
        content_format=112,
        created_at=5.25,
        composite=composite,
        last_notification=7.5,
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "data" / "server.db")
    yield s  # type: ignore[misc]
    s.close()


def test_implements_the_protocols(store: SqliteStore) -> None:
    reg_store: RegistrationStore = store
    obs_store: ObservationStore = store
    tel_store: TelemetryStore = store
    assert reg_store and obs_store and tel_store


def test_wal_and_synchronous_normal(store: SqliteStore) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


VALUES: list[Value] = [
    None,
    True,
    False,
    0,
    -(2**63),
    2**64 - 1,
    1.0,
    -0.5,
    1e308,
    float("inf"),
    float("-inf"),
    "",
    "ünïcode ✓",
    b"",
    b"\x00\xff\x10",
    ObjectLink(3, 0),
    ObjectLink(65535, 65535),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_value_json_roundtrip(value: Value) -> None:
    back = value_from_json(value_to_json(value))
    assert type(back) is type(value)
    assert back == value


def test_nan_roundtrip() -> None:
    back = value_from_json(value_to_json(float("nan")))
    assert isinstance(back, float) and math.isnan(back)


@pytest.mark.parametrize("bad", [[], ["x", 1], ["i", "1"], ["b", 1], ["o", "!!"], "s"])
def test_unreadable_values_raise(bad: object) -> None:
    with pytest.raises(ValueError):
        value_from_json(bad)


def test_registration_roundtrip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    reg = make_reg(1)
    plain = make_reg(2, identity=None, object_links=ObjectLinks(), sms_number=None)
    with SqliteStore(path) as s:
        assert s.put_registration(reg) is None
        assert s.put_registration(plain) is None
        assert s.get_registration("id1") == reg
    with SqliteStore(path) as s:
        assert s.get_registration("id1") == reg
        assert s.registration_by_endpoint("ep2") == plain
        assert s.registrations() == [reg, plain]
        assert s.get_registration("nope") is None


def test_put_same_endpoint_replaces_and_drops_old_observations(store: SqliteStore) -> None:
    old = make_reg(1, endpoint="dev")
    store.put_registration(old)
    store.put_observation(make_obs(b"\x01", old))
    new = make_reg(2, endpoint="dev")
    assert store.put_registration(new) == old
    assert store.get_registration("id1") is None
    assert store.observation_by_token(b"\x01") is None
    assert store.registrations() == [new]
    # same id again is an update in place, nothing replaced
    assert store.put_registration(make_reg(2, endpoint="dev", lifetime=9)) is None
    assert store.get_registration("id2").lifetime == 9  # type: ignore[union-attr]


def test_remove_registration_cascades(store: SqliteStore) -> None:
    reg = make_reg(1)
    other = make_reg(2)
    store.put_registrations([reg, other])
    store.put_observation(make_obs(b"\x01", reg))
    store.put_observation(make_obs(b"\x02", other))
    assert store.remove_registration("id1") == reg
    assert store.remove_registration("id1") is None
    assert [o.token for o in store.observations()] == [b"\x02"]


def test_observation_roundtrip(store: SqliteStore) -> None:
    reg = make_reg(1)
    store.put_registration(reg)
    single = make_obs(b"\xca\xfe", reg)
    comp = make_obs(b"\x00", reg, "/3/0/1", "/3303/0/5700", composite=True)
    store.put_observation(single)
    store.put_observation(comp)
    assert store.observation_by_token(b"\xca\xfe") == single
    assert store.observations_by_endpoint("ep1") == [comp, single]
    assert store.remove_observation(b"\x00") == comp
    assert store.remove_observation(b"\x00") is None
    assert store.observations() == [single]


def point(
    ts: int,
    value: Value,
    rtype: ResourceType,
    path: str = "/3303/0/5700",
    key: str = "sensorValue",
    ep: str = "ep1",
) -> TelemetryPoint:
    return TelemetryPoint(ep, path, key, ts, value, rtype)


def test_telemetry_every_type_roundtrips(store: SqliteStore, tmp_path: Path) -> None:
    typed: list[tuple[Value, ResourceType]] = [
        ("s", ResourceType.STRING),
        (-5, ResourceType.INTEGER),
        (2**64 - 1, ResourceType.UNSIGNED_INTEGER),
        (21.5, ResourceType.FLOAT),
        (True, ResourceType.BOOLEAN),
        (b"\x01\x02", ResourceType.OPAQUE),
        (1700000000, ResourceType.TIME),
        (ObjectLink(1, 2), ResourceType.OBJLNK),
        ("</3/0>", ResourceType.CORELNK),
        (None, ResourceType.NONE),
    ]
    points = [point(i, v, t, path=f"/9/0/{i}", key=f"k{i}") for i, (v, t) in enumerate(typed)]
    assert store.append_points(points) == len(points)
    store.close()
    with SqliteStore(tmp_path / "data" / "server.db") as again:
        latest = again.latest("ep1")
        assert [latest[p.path] for p in points] == points
        for p in points:
            assert again.history("ep1", p.key) == [p]


def test_latest_keeps_newest_and_history_ranges(store: SqliteStore) -> None:
    store.append_points([point(t, float(t), ResourceType.FLOAT) for t in (10, 30, 20)])
    assert store.latest("ep1")["/3303/0/5700"].ts_ms == 30  # older point did not win
    store.append_points([point(5, 0.5, ResourceType.FLOAT)])
    assert store.latest("ep1")["/3303/0/5700"].ts_ms == 30
    hist = store.history("ep1", "sensorValue")
    assert [p.ts_ms for p in hist] == [30, 20, 10, 5]
    assert [p.ts_ms for p in store.history("ep1", "/3303/0/5700", limit=2)] == [30, 20]
    assert [p.ts_ms for p in store.history("ep1", "sensorValue", since_ms=10, until_ms=30)] == [
        20,
        10,
    ]
    assert store.history("ep2", "sensorValue") == []
    assert store.latest("ep2") == {}
    with pytest.raises(StoreError):
        store.history("ep1", "sensorValue", limit=0)


def test_invalid_points_write_nothing(store: SqliteStore) -> None:
    good = point(1, 1.0, ResourceType.FLOAT)
    bad = [
        point(2, object(), ResourceType.FLOAT),  # type: ignore[arg-type]
        point(True, 1.0, ResourceType.FLOAT),  # type: ignore[arg-type]
        point(2**63, 1.0, ResourceType.FLOAT),
        point(2, 1.0, "Float"),  # type: ignore[arg-type]
        point(2, 1.0, ResourceType.FLOAT, key=""),
    ]
    for b in bad:
        with pytest.raises(StoreError, match="nothing written"):
            store.append_points([good, b])
    assert store.history("ep1", "sensorValue") == []
    assert store.append_points([]) == 0


def test_batch_is_atomic(store: SqliteStore) -> None:
    with pytest.raises(RuntimeError), store.batch():
        store.put_registration(make_reg(1))
        store.append_points([point(1, 1.0, ResourceType.FLOAT)])
        raise RuntimeError("boom")
    assert store.registrations() == []
    assert store.latest("ep1") == {}


def test_failed_write_inside_batch_is_undone_alone(store: SqliteStore) -> None:
    with store.batch():
        store.put_registration(make_reg(1))
        with pytest.raises(StoreError):
            store.append_points([point(2**63, 1.0, ResourceType.FLOAT)])
        store.put_registration(make_reg(2))
    assert [r.registration_id for r in store.registrations()] == ["id1", "id2"]


def test_put_many_thousand_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    regs = [make_reg(n) for n in range(1000)]
    with SqliteStore(path) as s:
        assert s.put_registrations(regs) == 1000
    with SqliteStore(path) as s:
        assert s.registrations() == regs


def test_put_many_is_one_transaction(tmp_path: Path) -> None:
    """A failure at the 500th row leaves none of the 1,000 written (not 499 commits)."""
    regs = [make_reg(n) for n in range(1000)]
    with SqliteStore(tmp_path / "s.db") as s:
        s.conn.execute(
            "CREATE TRIGGER refuse_500 BEFORE INSERT ON registrations WHEN NEW.id = 'id500' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        with pytest.raises(StoreError):
            s.put_registrations(regs)
        assert s.registrations() == []


def test_wrong_types_are_refused(store: SqliteStore) -> None:
    with pytest.raises(StoreError):
        store.put_registration("nope")  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.put_observation(None)  # type: ignore[arg-type]


def test_corrupt_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(path) in str(info.value)
    assert "not a" in str(info.value)
    assert path.read_bytes().startswith(b"this is not")  # left untouched for inspection


def test_locked_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as s:
        s.put_registration(make_reg(1))
    holder = sqlite3.connect(str(path))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with SqliteStore(path, busy_timeout_ms=100) as s, pytest.raises(StoreError) as info:
            s.put_registration(make_reg(2))
        assert str(path) in str(info.value) and "lock" in str(info.value)
    except StoreError as exc:  # opening itself may already hit the lock
        assert str(path) in str(exc)
    finally:
        holder.rollback()
        holder.close()
    with SqliteStore(path) as s:
        assert [r.registration_id for r in s.registrations()] == ["id1"]


def test_closed_store_raises(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.registrations()


def test_survives_sigkill(tmp_path: Path) -> None:
    """A writer is killed with SIGKILL right after its writes returned: everything it was told
    is stored must still be there (WAL + synchronous=NORMAL)."""
    path = tmp_path / "kill.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.unit.store.test_sqlite_store import make_reg, point
        from lwm2m_server.store.sqlite import SqliteStore
        from object_models.types import ResourceType
        s = SqliteStore({str(path)!r})
        for n in range(200):
            s.put_registration(make_reg(n))
        s.append_points([point(t, float(t), ResourceType.FLOAT) for t in range(500)])
        print("written", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=str(ROOT), text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert Path(str(path) + "-wal").exists()  # not checkpointed: recovery comes from the WAL
    with SqliteStore(path) as s:
        assert len(s.registrations()) == 200
        assert s.get_registration("id199") == make_reg(199)
        assert len(s.history("ep1", "sensorValue", limit=1000)) == 500


def test_every_registration_is_listed_oldest_update_first_whatever_the_columns_hold(
    store: SqliteStore,
) -> None:
    """``registrations()`` (the start-up load) lists in (last_update, id) order, sorted in
    Python rather than by sqlite (issue 10's restart); a hand-edited ``last_update`` of
    another type (text, which Python cannot compare with a number) falls back to sqlite's
    order, and the unreadable row is quarantined, not raised."""
    regs = [make_reg(n, last_update=t) for n, t in enumerate([5.0, 1.0, 5.0, 3.0, 1.0])]
    store.put_registrations(reversed(regs))
    expected = [
        r.registration_id for r in sorted(regs, key=lambda r: (r.last_update, r.registration_id))
    ]
    assert [r.registration_id for r in store.registrations()] == expected
    store.put_registration(make_reg(9))
    with store.write() as conn:
        conn.execute(
            "UPDATE registration_times SET last_update = 'soon' "
            "WHERE rid = (SELECT rid FROM registrations WHERE id = 'id9')"
        )
    assert [r.registration_id for r in store.registrations()] == expected
    assert store.quarantined() == 1

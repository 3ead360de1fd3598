"""The bootstrap server's store on every engine (``engine``: sqlite and Redis): provisioning
records, the session log, and what a second store object on the same data sees."""

from __future__ import annotations

import pytest

from bootstrap_server.core.manager import SessionSummary
from bootstrap_server.core.provisioning import DeviceRecord, ProvisionState
from tests.store_engines import Engine


def summary(session_id: str, endpoint: str, ended: float) -> SessionSummary:
    return SessionSummary(
        session_id=session_id, endpoint=endpoint, profile=None, initiated_by="client",
        started=ended - 1, ended=ended, success=True, outcome="finished", failed_step=None,
        records=(), notes=(),
    )  # fmt: skip


def test_records(engine: Engine) -> None:
    store = engine.bootstrap()
    assert store.get_device("a") is None and store.devices() == []
    b = DeviceRecord("b", "fleet", ProvisionState.NEW, "", 1.5, "import")
    a = DeviceRecord("a", None, ProvisionState.NEW, "", 1.0, "auto")
    store.put_devices([b, a])
    assert store.devices() == [a, b]
    done = DeviceRecord("a", None, ProvisionState.PROVISIONED, "ok", 2.0, "auto")
    store.put_device(done)
    other = engine.bootstrap()  # another bootstrap server on the same store
    assert other.get_device("a") == done
    assert other.remove_device("a") == done
    assert store.remove_device("a") is None and store.devices() == [b]


def test_sessions_newest_first(engine: Engine) -> None:
    store = engine.bootstrap()
    for i in range(5):
        store.add_session(summary(f"s{i}", "even" if i % 2 == 0 else "odd", float(i)))
    assert [s["id"] for s in store.sessions()] == ["s4", "s3", "s2", "s1", "s0"]
    assert [s["id"] for s in store.sessions(limit=2)] == ["s4", "s3"]
    assert [s["id"] for s in engine.bootstrap().sessions("even", 2)] == ["s4", "s2"]
    assert store.sessions("nobody") == []


def test_session_log_is_trimmed(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import bootstrap_server.redis_store
    import bootstrap_server.store

    monkeypatch.setattr(bootstrap_server.store, "SESSIONS_KEPT", 3)
    monkeypatch.setattr(bootstrap_server.redis_store, "SESSIONS_KEPT", 3)
    store = engine.bootstrap()
    for i in range(5):
        store.add_session(summary(f"s{i}", "ep", float(i)))
    assert [s["id"] for s in store.sessions(limit=10)] == ["s4", "s3", "s2"]

"""Telemetry retention (issue 13 item 6): history older than the endpoint's TTL is deleted in
small batches, the latest value of each key is always kept; per deployment and per profile;
with an explicit clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keystore.config_error import ConfigError
from lwm2m_server.config import load_config
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.profiles.loader import parse_profile
from lwm2m_server.store.sqlite import SqliteStore
from lwm2m_server.telemetry_retention import RetentionPruner, parse_duration
from object_models.registry import ModelRegistry
from object_models.types import ResourceType

DAY = 86400.0
NOW = 1_800_000_000.0
TEMP = "/3303/0/5700"


def point(endpoint: str, age_days: float, value: float, path: str = TEMP) -> TelemetryPoint:
    ts_ms = int((NOW - age_days * DAY) * 1000)
    return TelemetryPoint(endpoint, path, "temperature", ts_ms, value, ResourceType.FLOAT)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path / "t.sqlite")
    yield db
    db.close()


def ages(store: SqliteStore, endpoint: str, path: str = TEMP) -> list[float]:
    return [
        round((NOW * 1000 - p.ts_ms) / 1000 / DAY, 3)
        for p in store.history(endpoint, path, limit=10_000)
    ]


def pruner(store: SqliteStore, ttl: dict[str, float | None], **kw: object) -> RetentionPruner:
    return RetentionPruner(
        store,
        lambda ep: ttl.get(ep),
        active=lambda: any(v is not None for v in ttl.values()),
        clock=kw.pop("clock", Clock()),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 12 * 3600.0),
        ("90m", 5400.0),
        ("45s", 45.0),
        ("2w", 14 * DAY),
        ("3600", 3600.0),
        (" 1.5d ", 1.5 * DAY),
        (7200, 7200.0),
        ("0", None),
        ("", None),
        ("forever", None),
        (0, None),
    ],
)
def test_durations(text: str | int, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30x", "d", "-5", "1 day", "1d2h"])
def test_bad_durations_are_refused_with_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration|negative"):
        parse_duration(text)


def test_old_points_go_in_batches_and_the_latest_value_stays(store: SqliteStore) -> None:
    store.append_points([point("a", age, float(age)) for age in range(40, 0, -1)])  # 40 days
    store.append_points([point("b", age, float(age)) for age in (100, 50, 45)])  # all old
    prune = pruner(store, {"a": 30 * DAY, "b": 30 * DAY}, batch=4)
    steps = []
    while True:
        deleted, done = prune.step()
        steps.append(deleted)
        assert deleted <= 4  # never more than one batch per turn
        if done:
            break
    assert sum(steps) == 10 + 3 and len(steps) >= 4
    assert ages(store, "a") == [float(d) for d in range(1, 31)]  # 30 days and younger
    assert ages(store, "b") == []  # no history left ...
    assert store.latest("b")[TEMP].value == 45.0  # ... but its latest value is kept
    assert store.latest("a")[TEMP].value == 1.0
    assert prune.run_pass() == 0  # nothing more until time passes


def test_the_clock_moves_the_cutoff(store: SqliteStore) -> None:
    store.append_points([point("a", age, 0.0) for age in (3, 2, 1)])
    clock = Clock()
    prune = pruner(store, {"a": 2.5 * DAY}, clock=clock)
    assert prune.run_pass() == 1
    clock.now += DAY
    assert prune.run_pass() == 1
    assert ages(store, "a") == [1.0]


def test_per_endpoint_ttls_and_keep_forever(store: SqliteStore) -> None:
    for endpoint in ("short", "long", "forever"):
        store.append_points([point(endpoint, age, 0.0) for age in (400, 60, 10, 1)])
    ttl = {"short": 7 * DAY, "long": 365 * DAY, "forever": None}
    assert pruner(store, ttl).run_pass() == 3 + 1
    assert ages(store, "short") == [1.0]
    assert ages(store, "long") == [1.0, 10.0, 60.0]
    assert ages(store, "forever") == [1.0, 10.0, 60.0, 400.0]


def test_nothing_is_read_when_no_ttl_is_set(store: SqliteStore) -> None:
    store.append_points([point("a", 1000, 0.0)])

    class Untouchable:
        def telemetry_endpoints(self, after: str | None, limit: int) -> list[str]:
            raise AssertionError("walked the endpoints with retention off")

        def prune_history(self, endpoint: str, before_ms: int, limit: int) -> int:
            raise AssertionError("deleted with retention off")

    off = RetentionPruner(Untouchable(), lambda ep: None, active=lambda: False, clock=Clock())
    assert off.step() == (0, True)


def test_an_endpoint_with_more_than_a_batch_continues_next_turn(store: SqliteStore) -> None:
    store.append_points([point("a", 10 + n / 100, 0.0) for n in range(25)])
    store.append_points([point("b", 10, 0.0), point("b", 0, 0.0)])
    prune = pruner(store, {"a": DAY, "b": DAY}, batch=10)
    assert prune.step() == (10, False)
    assert prune.step() == (10, False)
    assert prune.step() == (6, True)  # a's last 5, b's 1, then the pass is complete
    assert ages(store, "a") == [] and ages(store, "b") == [0.0]


async def test_run_keeps_going_after_a_store_error(store: SqliteStore) -> None:
    """A failing delete is logged and retried at the next pass, never the end of the task."""
    import asyncio

    calls = {"n": 0}

    class Flaky:
        def telemetry_endpoints(self, after: str | None, limit: int) -> list[str]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("disk full")
            return []

        def prune_history(self, endpoint: str, before_ms: int, limit: int) -> int:
            return 0

    prune = RetentionPruner(
        Flaky(), lambda ep: DAY, active=lambda: True, clock=Clock(), interval=0.0, pause=0.0
    )
    task = asyncio.create_task(prune.run())
    for _ in range(100):
        if prune.passes >= 1:
            break
        await asyncio.sleep(0)
    task.cancel()
    assert prune.passes >= 1 and calls["n"] >= 2


# -- configuration and profiles -------------------------------------------------------------------


def test_the_deployment_retention_key(tmp_path: Path) -> None:
    assert load_config(env={}).telemetry.retention == ""  # keep forever by default
    config = load_config(env={"LWM2M_SERVER_TELEMETRY_RETENTION": "30d"})
    assert parse_duration(config.telemetry.retention) == 30 * DAY
    with pytest.raises(ConfigError, match=r"telemetry\.retention"):
        load_config(env={"LWM2M_SERVER_TELEMETRY_RETENTION": "30 days"})


def test_a_profile_retention(tmp_path: Path) -> None:
    registry = ModelRegistry.builtin()
    assert parse_profile({"name": "p"}, "p.yaml", registry).retention is None
    assert parse_profile({"name": "p", "retention": "7d"}, "p.yaml", registry).retention == (
        7 * DAY
    )
    assert parse_profile({"name": "p", "retention": 0}, "p.yaml", registry).retention == 0.0
    with pytest.raises(ConfigError, match=r"retention.*not a duration"):
        parse_profile({"name": "p", "retention": "a week"}, "p.yaml", registry)
    with pytest.raises(ConfigError, match="retention"):
        parse_profile({"name": "p", "retention": [1]}, "p.yaml", registry)


def test_on_redis_the_node_history_is_pruned_and_the_shared_latest_kept(
    redis_url: str, tmp_path: Path
) -> None:
    from keystore.store.redis_database import RedisDatabase
    from lwm2m_server.store.redis import RedisTelemetryStore

    db = RedisDatabase(redis_url, prefix="retention")
    local = SqliteStore(tmp_path / "node.sqlite")
    try:
        telemetry = RedisTelemetryStore(db, local)
        telemetry.append_points([point("a", age, float(age)) for age in (50, 40, 5)])
        prune = RetentionPruner(telemetry, lambda ep: 30 * DAY, active=lambda: True, clock=Clock())
        assert prune.run_pass() == 2
        assert [p.value for p in telemetry.history("a", TEMP)] == [5.0]
        assert telemetry.latest("a")[TEMP].value == 5.0
        telemetry.append_points([point("b", 60, 1.0)])
        assert prune.run_pass() == 1
        assert telemetry.history("b", TEMP) == [] and telemetry.latest("b")[TEMP].value == 1.0
    finally:
        local.close()
        db.close()

"""Queue mode: awake/sleeping windows, bounded FIFO, drain, requeue and entry expiry."""

from __future__ import annotations

import pytest

from lwm2m_server.core.events import Awake, QueuedRequestExpired, Sleeping
from lwm2m_server.core.queue import (
    DEFAULT_AWAKE_TIME,
    QueueConfig,
    QueueFullError,
    RequestQueues,
)
from object_models.errors import ResponseCode

from .helpers import Clock


def test_default_awake_time_is_max_transmit_wait() -> None:
    assert DEFAULT_AWAKE_TIME == 93.0
    assert QueueConfig().awake_time == 93.0


def test_awake_then_sleeping(clock: Clock) -> None:
    q: RequestQueues[str] = RequestQueues()
    assert not q.is_awake("a", clock.now)
    assert q.heard_from("a", clock.now) == [Awake("a", clock.now + 93)]
    assert q.is_awake("a", clock.now + 92.9)
    assert q.next_deadline() == clock.now + 93
    assert q.tick(clock.now + 92) == []
    assert q.tick(clock.now + 93) == [Sleeping("a", clock.now + 93)]
    assert not q.is_awake("a", clock.now + 93)
    assert q.next_deadline() is None


def test_messages_extend_the_window_without_extra_events(clock: Clock) -> None:
    q: RequestQueues[str] = RequestQueues(QueueConfig(awake_time=10))
    q.heard_from("a", clock.now)
    for i in range(1, 100):
        assert q.heard_from("a", clock.now + i * 0.1) == []
    end = clock.now + 9.9 + 10
    assert len(q._timers) == 1  # one sleep timer per client, however chatty
    assert q.tick(clock.now + 10) == []  # first timer fires early and re-arms
    assert q.tick(end) == [Sleeping("a", end)]
    assert q.heard_from("a", end + 100) == [Awake("a", end + 110)]


def test_enqueue_drain_fifo_only_when_awake(clock: Clock) -> None:
    q: RequestQueues[str] = RequestQueues()
    for i in range(3):
        assert q.enqueue("a", f"req{i}", clock.now) == "queued"
    assert q.drain("a", clock.now) == []  # asleep: nothing goes out
    assert [e.request for e in q.pending("a")] == ["req0", "req1", "req2"]
    q.heard_from("a", clock.advance(5))
    drained = q.drain("a", clock.now)
    assert [e.request for e in drained] == ["req0", "req1", "req2"]
    assert q.pending("a") == []


def test_bound_raises_queue_full(clock: Clock) -> None:
    q: RequestQueues[int] = RequestQueues(QueueConfig(max_length=2))
    q.enqueue("a", 1, clock.now)
    q.enqueue("a", 2, clock.now)
    with pytest.raises(QueueFullError) as info:
        q.enqueue("a", 3, clock.now)
    assert info.value.code is ResponseCode.SERVICE_UNAVAILABLE
    q.enqueue("b", 1, clock.now)  # bounds are per client


def test_requeue_puts_unsent_back_in_order(clock: Clock) -> None:
    q: RequestQueues[int] = RequestQueues()
    for i in range(4):
        q.enqueue("a", i, clock.now)
    q.heard_from("a", clock.now)
    drained = q.drain("a", clock.now)
    q.enqueue("a", 99, clock.now)  # arrives while we were sending
    q.requeue("a", drained[2:])  # sending #2 failed: #2 and #3 go back first
    assert [e.request for e in q.pending("a")] == [2, 3, 99]


def test_entries_expire_with_events(clock: Clock) -> None:
    q: RequestQueues[str] = RequestQueues(QueueConfig(entry_ttl=60))
    t0 = clock.now
    q.enqueue("a", "old", t0)
    q.enqueue("a", "new", t0 + 30)
    assert q.next_deadline() == t0 + 60
    assert q.tick(t0 + 60) == [QueuedRequestExpired("a", "old", t0)]
    assert [e.request for e in q.pending("a")] == ["new"]
    assert q.next_deadline() == t0 + 90
    assert q.tick(t0 + 90) == [QueuedRequestExpired("a", "new", t0 + 30)]
    assert q.next_deadline() is None


def test_expired_entries_are_not_drained_and_are_reported(clock: Clock) -> None:
    q: RequestQueues[str] = RequestQueues(QueueConfig(entry_ttl=10))
    q.enqueue("a", "stale", clock.now)
    q.enqueue("a", "fresh", clock.now + 8)
    q.heard_from("a", clock.now + 12)
    assert [e.request for e in q.drain("a", clock.now + 12)] == ["fresh"]
    assert q.next_deadline() == float("-inf")  # a report is due at once
    assert q.tick(clock.now + 12) == [QueuedRequestExpired("a", "stale", clock.now)]


def test_full_queue_frees_space_after_expiry(clock: Clock) -> None:
    q: RequestQueues[int] = RequestQueues(QueueConfig(max_length=1, entry_ttl=5))
    q.enqueue("a", 1, clock.now)
    assert q.enqueue("a", 2, clock.now + 5) == "queued"
    assert q.tick(clock.now + 5) == [QueuedRequestExpired("a", 1, clock.now)]


def test_remove_returns_pending_and_ignores_old_timers(clock: Clock) -> None:
    q: RequestQueues[int] = RequestQueues(QueueConfig(awake_time=10))
    q.heard_from("a", clock.now)
    q.enqueue("a", 1, clock.now)
    assert [e.request for e in q.remove("a")] == [1]
    assert q.tick(clock.now + 10) == []  # the removed client's timers are inert
    q.heard_from("a", clock.now + 20)
    q.heard_from("a", clock.now + 25)
    assert q.tick(clock.now + 40) == [Sleeping("a", clock.now + 35)]


@pytest.mark.parametrize("kwargs", [{"max_length": 0}, {"entry_ttl": 0}, {"awake_time": -1}])
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        QueueConfig(**kwargs)  # type: ignore[arg-type]

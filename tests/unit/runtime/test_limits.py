"""The per-source token bucket (``lwm2m_runtime.limits.RateLimit``) with an explicit clock."""

from __future__ import annotations

from lwm2m_runtime.limits import RateLimit


def test_burst_then_rate_with_the_wait_in_whole_seconds() -> None:
    limit = RateLimit(rate=0.5, burst=3)
    assert [limit.take("10.0.0.1", 0.0) for _ in range(3)] == [0, 0, 0]
    assert limit.take("10.0.0.1", 0.0) == 2  # one token takes 2 s at 0.5/s
    assert limit.take("10.0.0.2", 0.0) == 0  # another source has its own bucket
    assert limit.take("10.0.0.1", 1.0) == 1
    assert limit.take("10.0.0.1", 2.0) == 0
    assert limit.refused == 2


def test_rate_zero_is_no_limit() -> None:
    limit = RateLimit(rate=0.0, burst=1)
    assert all(limit.take("10.0.0.1", 0.0) == 0 for _ in range(1000))
    assert len(limit) == 0 and not limit.enabled


def test_the_table_is_bounded_least_recently_used_first() -> None:
    limit = RateLimit(rate=1.0, burst=1, capacity=100)
    for i in range(10_000):
        limit.take(f"spoofed-{i}", 0.0)
    assert len(limit) == 100
    assert limit.take("spoofed-9999", 0.0) == 1  # recent: still limited

"""PerPeerLimit: one log line per peer and interval, with a bounded table."""

from keystore.log_limit import PerPeerLimit


def test_once_per_interval_per_peer() -> None:
    limit = PerPeerLimit(interval=60.0)
    assert limit.allow("10.0.0.1", 0.0)
    assert not limit.allow("10.0.0.1", 59.9)
    assert limit.allow("10.0.0.2", 1.0)  # another peer is not held back
    assert limit.allow("10.0.0.1", 60.0)


def test_table_stays_bounded_under_a_flood() -> None:
    limit = PerPeerLimit(interval=60.0, limit=100)
    for n in range(10_000):
        assert limit.allow(f"spoofed-{n}", 0.0)
    assert len(limit._last) == 100
    assert limit.allow("spoofed-0", 0.0)  # forgotten: the oldest keys go first

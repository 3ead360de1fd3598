"""``DedupCache`` alone (the endpoint's tests cover it through the protocol): at capacity a new
request evicts the oldest *live* entry, skipping the items of entries forgotten meanwhile, and
the per-peer counts (which decide who is refused in a flood) follow every eviction."""

from __future__ import annotations

from lwm2m_runtime.coap.dedup import FULL, DedupCache

P, Q = ("10.0.0.1", 5683), ("10.0.0.2", 5683)


def test_at_capacity_the_oldest_live_entry_goes_and_forgotten_ones_are_skipped() -> None:
    cache = DedupCache(lifetime=100.0, capacity=3)
    first = object()
    assert cache.setdefault((P, 1), first, 0.0) is None
    assert cache.setdefault((P, 2), "v2", 1.0) is None
    assert cache.setdefault((P, 3), "v3", 2.0) is None
    assert cache.discard((P, 1), first)  # an answer withdrawn: its order item is stale now
    assert cache.setdefault((Q, 4), "v4", 3.0) is None  # room left: nothing evicted
    assert cache.evicted == 0
    assert cache.setdefault((Q, 5), "v5", 4.0) is None  # full: (P, 2) goes, not (P, 1)'s item
    assert cache.evicted == 1 and len(cache) == 3
    assert cache.get((P, 2), 4.0) is None
    assert [cache.get(k, 4.0) for k in ((P, 3), (Q, 4), (Q, 5))] == ["v3", "v4", "v5"]
    assert (cache.peer_entries(P), cache.peer_entries(Q)) == (1, 2)
    assert cache.setdefault((Q, 4), "again", 4.5) == "v4"  # a duplicate is still a duplicate


def test_a_heavy_peer_is_refused_while_the_oldest_entry_is_recent() -> None:
    cache = DedupCache(lifetime=100.0, capacity=4, safe_age=45.0)
    for mid in range(3):
        cache.setdefault((P, mid), b"ack", float(mid))
    cache.setdefault((Q, 0), b"ack", 3.0)
    assert cache.setdefault((P, 9), b"", 4.0) is FULL  # P holds 3 of 4: it waits
    assert cache.refused == 1 and cache.evicted == 0 and len(cache) == 4
    assert cache.setdefault((Q, 1), b"", 5.0) is None  # a light peer makes room
    assert cache.evicted == 1 and cache.peer_entries(P) == 2
    assert cache.setdefault((P, 9), b"", 50.0) is None  # the oldest is past safe_age now
    assert cache.size_bytes == len(cache) * 384 + 2 * len(b"ack")

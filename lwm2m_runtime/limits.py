"""Per-source rate limits: a token bucket per key (a peer's host), in a bounded table.

Why a token bucket: it lets a burst through (a fleet behind one NAT re-registering after an
outage) and then holds a source to a sustained rate, and its refusal comes with an exact
"try again in" for the 5.03's Max-Age (RFC 7252 §5.9.3.4). Why bounded: the keys are source
addresses, which a flood from spoofed addresses makes up at will: when the table is full the
least recently used bucket is forgotten (O(1); that source starts afresh with a full burst,
which only matters to a source that was idle while ``capacity`` others were busy).

The cost on the hot path is one dict lookup and a little float arithmetic per checked request,
no allocation for a known source.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimit"]


class RateLimit:
    """``take(key, now)``: 0 when ``key`` may go on (one token taken), else the whole seconds
    to wait. ``rate`` tokens per second, at most ``burst`` saved; ``rate`` 0 = no limit."""

    __slots__ = ("_buckets", "burst", "capacity", "rate", "refused")

    def __init__(self, rate: float, burst: int, *, capacity: int = 100_000) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.capacity = capacity
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()
        """key → [tokens, when they were counted]."""
        self.refused = 0
        """Requests refused so far (for ``/api/health``)."""

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float) -> int:
        if self.rate <= 0:
            return 0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.capacity:
                self._buckets.popitem(last=False)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        self._buckets.move_to_end(key)
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0
        bucket[0] = tokens
        self.refused += 1
        return min(0xFFFFFFFF, max(1, math.ceil((1.0 - tokens) / self.rate)))

"""Message deduplication (RFC 7252 §4.5): (peer, MID) → what we answered, for EXCHANGE_LIFETIME.

Why this shape: entries expire in insertion order (the lifetime is constant), so a deque of
``(expires, key)`` beside a dict gives O(1) insert, lookup and expiry with no per-entry timer, and
a cap evicts the oldest entries first so that memory is bounded under any load.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

DedupKey = tuple[Hashable, int]


class DedupCache:
    """Values are opaque to the cache: reply bytes to replay, or an in-progress marker object."""

    __slots__ = ("_entries", "_order", "capacity", "lifetime")

    def __init__(self, lifetime: float, capacity: int) -> None:
        self.lifetime = lifetime
        self.capacity = capacity
        self._entries: dict[DedupKey, tuple[float, object]] = {}
        self._order: deque[tuple[float, DedupKey]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: DedupKey, now: float) -> object | None:
        """The value remembered for ``key``, or None when unknown or expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def setdefault(self, key: DedupKey, value: object, now: float) -> object | None:
        """One lookup for the hot path: the live value of ``key`` if there is one (a duplicate),
        otherwise remember ``value`` for it and return None."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        self.add(key, value, now)
        return None

    def add(self, key: DedupKey, value: object, now: float) -> None:
        order = self._order
        if order and order[0][0] <= now:
            self.expire(now)
        expires = now + self.lifetime
        self._entries[key] = (expires, value)
        self._order.append((expires, key))
        if len(self._order) > self.capacity:
            self._evict_one()

    def update(self, key: DedupKey, value: object) -> None:
        """Replace the value of a live entry, keeping its expiry (the answer to a request)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries[key] = (entry[0], value)

    def discard(self, key: DedupKey, value: object) -> bool:
        """Forget ``key`` if it still holds exactly ``value`` (an answer that was never sent,
        say because the write it acknowledges was not committed): a retransmission of the
        request is then processed again instead of replayed. Its deque entry expires alone."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] is value:
            del self._entries[key]
            return True
        return False

    def expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] <= now:
            self._drop(*order.popleft())

    def _evict_one(self) -> None:
        while self._order:
            expires, key = self._order.popleft()
            if self._drop(expires, key):
                return

    def _drop(self, expires: float, key: DedupKey) -> bool:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == expires:
            del self._entries[key]
            return True
        return False

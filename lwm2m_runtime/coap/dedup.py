"""Message deduplication (RFC 7252 §4.5): (peer, MID) → what we answered, for EXCHANGE_LIFETIME.

Why this shape: entries expire in insertion order (the lifetime is constant), so a deque of
``(expires, key)`` beside a dict gives O(1) insert, lookup and expiry with no per-entry timer.

Memory is bounded in entries (``capacity``) and in bytes (``max_bytes``: a fixed cost per entry
plus the answer it replays). What happens when the cache is full, and why:

* Forgetting a *live* entry is not free: a retransmission of that request would be processed a
  second time (a second Register, a Send stored twice). But a CON's retransmissions all leave
  within MAX_TRANSMIT_SPAN of its first transmission (RFC 7252 §4.8.2); an entry older than
  that (``safe_age``) is only kept for a late network copy. So when the oldest entry is at least
  ``safe_age`` old it is evicted: this is what a legitimate high request rate needs, and it
  costs (almost) nothing.
* When the cache filled up within ``safe_age`` (a flood), evicting would mean forgetting
  requests whose retransmissions are still on their way. Then a *new* request is refused
  instead (:data:`FULL`: the endpoint answers a CON with 5.03 Service Unavailable and Max-Age,
  RFC 7252 §5.9.3.4, and drops a NON) — but only from a *heavy* peer: one holding more than
  half of the entries, or at least twice the average share. The flooder waits, light peers go
  on; a legitimate high rate spread over many devices (every peer near the average) is never
  refused, it makes room by evicting the oldest entries as before.
  A refused request did no work, so a retransmission of it is simply refused (or served) again.
* A request from a light peer while the cache is full of recent entries evicts the oldest
  entry (under a flood, most of them are the heavy peers'): the bound holds under any load,
  including a flood of spoofed sources, where every "peer" is light. Only then may a lost
  answer's retransmission be processed twice: the price of bounded memory, and the reason
  ``capacity`` should hold MAX_TRANSMIT_SPAN (45 s) of the expected request rate.

:meth:`add` (the client side's bookkeeping of responses and notifications) always makes room
by evicting the oldest entry: refusing there is not possible, the message is already in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable

DedupKey = tuple[Hashable, int]

ENTRY_COST = 384
"""Approximate bytes per entry besides the answer it replays (dict slot, key tuple, deque item,
expiry float, peer count), for ``max_bytes``: bench/coap_layer.py's ``dedup_entry_bytes``
measures ~400 bytes with a cached empty ACK."""


class _Full:
    """The type of :data:`FULL`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FULL"


FULL = _Full()
"""What :meth:`DedupCache.setdefault` returns when a new request must be refused."""


class DedupCache:
    """Values are opaque to the cache: reply bytes to replay, or an in-progress marker object."""

    __slots__ = (
        "_answer_bytes",
        "_entries",
        "_order",
        "_per_peer",
        "capacity",
        "evicted",
        "lifetime",
        "max_bytes",
        "refused",
        "safe_age",
    )

    def __init__(
        self,
        lifetime: float,
        capacity: int,
        max_bytes: int = 1 << 62,
        safe_age: float = 0.0,
    ) -> None:
        self.lifetime = lifetime
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.safe_age = safe_age
        """Age from which evicting an entry cannot let a CON retransmission through twice."""
        self._entries: dict[DedupKey, tuple[float, object]] = {}
        self._order: deque[tuple[float, DedupKey]] = deque()
        self._per_peer: dict[Hashable, int] = {}
        self._answer_bytes = 0
        """Bytes of the answers (``bytes`` values) held; ``ENTRY_COST`` per entry comes on top."""
        self.evicted = 0
        """Live entries forgotten to make room (for metrics)."""
        self.refused = 0
        """New requests refused because the cache was full of recent entries (for metrics)."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return len(self._entries) * ENTRY_COST + self._answer_bytes

    def peer_entries(self, peer: Hashable) -> int:
        return self._per_peer.get(peer, 0)

    def get(self, key: DedupKey, now: float) -> object | None:
        """The value remembered for ``key``, or None when unknown or expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def setdefault(self, key: DedupKey, value: object, now: float) -> object | None:
        """One lookup for the hot path: the live value of ``key`` if there is one (a duplicate),
        otherwise remember ``value`` for it and return None — or return :data:`FULL` (nothing
        remembered) when the cache is full and ``key``'s peer must wait (module docstring)."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        order = self._order
        if order and order[0][0] <= now:
            self.expire(now)  # an expired entry of ``key`` goes too: its item is due
        if (
            len(entries) >= self.capacity
            or len(entries) * ENTRY_COST + self._answer_bytes >= self.max_bytes
        ) and not self._make_room(key[0], now):
            self.refused += 1
            return FULL
        # ``_insert`` inline (once per request)
        expires = now + self.lifetime
        entries[key] = (expires, value)
        order.append((expires, key))
        if value.__class__ is bytes:
            self._answer_bytes += len(value)
        per_peer = self._per_peer
        peer = key[0]
        per_peer[peer] = per_peer.get(peer, 0) + 1
        return None

    def retry_after(self, now: float) -> int:
        """Whole seconds until the oldest entry may be evicted (Max-Age of a 5.03), at least 1."""
        order = self._order
        if not order:
            return 1
        started = order[0][0] - self.lifetime
        return max(1, math.ceil(started + self.safe_age - now))

    def add(self, key: DedupKey, value: object, now: float) -> None:
        """Remember ``value`` for ``key`` whatever the state: room is made by evicting the
        oldest entries (the caller cannot refuse: the message is already in)."""
        order = self._order
        if order and order[0][0] <= now:
            self.expire(now)
        old = self._entries.get(key)
        if old is not None:  # replaced: its deque item goes stale
            self._forget(key, old)
        self._insert(key, value, now)
        entries = self._entries
        while (
            len(entries) > self.capacity
            or len(entries) * ENTRY_COST + self._answer_bytes > self.max_bytes
        ) and self._evict_one():
            pass

    def _insert(self, key: DedupKey, value: object, now: float) -> None:
        expires = now + self.lifetime
        self._entries[key] = (expires, value)
        self._order.append((expires, key))
        if value.__class__ is bytes:
            self._answer_bytes += len(value)
        per_peer = self._per_peer
        peer = key[0]
        per_peer[peer] = per_peer.get(peer, 0) + 1

    def update(self, key: DedupKey, value: object) -> None:
        """Replace the value of a live entry, keeping its expiry (the answer to a request)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries[key] = (entry[0], value)
            old = entry[1]
            if old.__class__ is bytes:
                self._answer_bytes -= len(old)
            if value.__class__ is bytes:
                self._answer_bytes += len(value)

    def discard(self, key: DedupKey, value: object) -> bool:
        """Forget ``key`` if it still holds exactly ``value`` (an answer that was never sent,
        say because the write it acknowledges was not committed): a retransmission of the
        request is then processed again instead of replayed. Its deque entry expires alone."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] is value:
            self._forget(key, entry)
            return True
        return False

    def expire(self, now: float) -> None:
        order = self._order
        entries = self._entries
        while order and order[0][0] <= now:
            expires, key = order.popleft()
            entry = entries.get(key)
            if entry is not None and entry[0] == expires:
                self._forget(key, entry)

    def _make_room(self, peer: Hashable, now: float) -> bool:
        """Room for one entry of ``peer``: evict what may be evicted; False if ``peer`` must
        wait (the cache filled within ``safe_age`` and ``peer`` is heavy). The stale-item
        skip and the eviction are inline: at capacity this runs once per new request."""
        entries = self._entries
        order = self._order
        per_peer = self._per_peer
        lifetime = self.lifetime
        safe_age = self.safe_age
        while len(entries) >= self.capacity or (
            len(entries) * ENTRY_COST + self._answer_bytes >= self.max_bytes
        ):
            while order:
                expires, key = order[0]
                entry = entries.get(key)
                if entry is not None and entry[0] == expires:
                    break
                order.popleft()  # stale items (replaced or discarded entries)
            else:
                return True
            if expires - lifetime + safe_age > now:
                # the oldest entry is recent: a flood; the heavy peers wait
                count = per_peer.get(peer, 0)
                if count * 2 > len(entries) or count * len(per_peer) >= 2 * len(entries):
                    return False
            order.popleft()
            self.evicted += 1
            self._forget(key, entry)
        return True

    def _evict_one(self) -> bool:
        while self._order:
            expires, key = self._order.popleft()
            if self._drop(expires, key):
                self.evicted += 1
                return True
        return False

    def _drop(self, expires: float, key: DedupKey) -> bool:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == expires:
            self._forget(key, entry)
            return True
        return False

    def _forget(self, key: DedupKey, entry: tuple[float, object]) -> None:
        del self._entries[key]
        value = entry[1]
        if value.__class__ is bytes:
            self._answer_bytes -= len(value)
        per_peer = self._per_peer
        peer = key[0]
        left = per_peer[peer] - 1
        if left:
            per_peer[peer] = left
        else:
            del per_peer[peer]

"""At most one log line per peer and interval, so that a flood of bad input is "logged once"
without letting the log (or this table) grow with the number of peers."""

from __future__ import annotations

from collections import OrderedDict


class PerPeerLimit:
    """``allow(key, now)`` is True at most once per ``key`` per ``interval`` seconds; the table
    keeps the ``limit`` most recently seen keys (the oldest are forgotten, so memory is bounded
    even under a flood from spoofed addresses)."""

    def __init__(self, interval: float = 60.0, limit: int = 10_000) -> None:
        self.interval = interval
        self.limit = limit
        self._last: OrderedDict[str, float] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.limit:
            self._last.popitem(last=False)
        return True

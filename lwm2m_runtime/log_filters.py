"""Log filters both servers install on their transports' loggers.

``RateLimit`` keeps a flood of bad datagrams from flooding the log: a warning (or worse) whose
message template was logged less than ``interval`` seconds ago is dropped. The table of
templates is bounded (``limit``), so it cannot grow with the input.
"""

from __future__ import annotations

import logging


class RateLimit(logging.Filter):
    """Pass each message template at most once per ``interval`` seconds (bounded memory)."""

    def __init__(self, interval: float = 60.0, limit: int = 1000) -> None:
        super().__init__()
        self.interval = interval
        self.limit = limit
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = str(record.msg)
        last = self._last.get(key)
        if last is not None and record.created - last < self.interval:
            return False
        if len(self._last) >= self.limit:
            self._last.clear()
        self._last[key] = record.created
        return True

"""Telemetry retention: history points older than a TTL are deleted in the background.

The TTL is per deployment (``telemetry.retention``) and per profile (a profile file's
``retention``, which wins for the devices of that profile; ThingsBoard's per-profile TTL). Both
are durations: ``90d``, ``12h``, ``30m``, ``45s``, ``2w``, or a bare number of seconds; ``0`` (or
empty, or ``forever``) keeps points forever. Nothing is deleted unless one is set: an operator
who upgrades must not lose history they did not ask to lose.

Only the history is pruned (the ``telemetry`` table); the latest value of each key lives in its
own table (sqlite) or hash (Redis) and is never deleted by retention, so a device that has been
quiet for longer than the TTL still shows its last reading.

Deleting runs on the event loop the CoAP listeners share, so it must never hold it long: each
turn deletes at most ``batch`` rows (``DELETE ... WHERE rowid IN (SELECT rowid ... LIMIT n)``
through the ``(endpoint, path, ts_ms)`` index, each series of the endpoint in turn, about a
millisecond per thousand rows) and then sleeps
``pause`` seconds; the deletes join the group commit of the loop iteration they run in. A pass
walks the endpoints that have telemetry in pages, in endpoint order, each with its own cutoff;
when a pass finishes, the next one starts ``interval`` seconds later. An endpoint with more old
rows than one batch is continued at the next turn.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")

DEFAULT_BATCH = 1000
DEFAULT_PAUSE = 0.05
"""Seconds between two batches: at most ~20,000 rows deleted per second while catching up."""
DEFAULT_INTERVAL = 60.0
"""Seconds between the end of a pass and the start of the next."""
ENDPOINTS_PER_TURN = 100


def parse_duration(value: str | float | None) -> float | None:
    """Seconds, or None for "keep forever" (``0``, empty, ``forever``, None). ``ValueError``
    with the accepted forms for anything else."""
    if value is None or isinstance(value, bool):
        if value is None:
            return None
        raise ValueError(f"{value!r} is not a duration (like 30d, 12h, 90m, 3600)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return float(value) or None
    text = value.strip().lower()
    if text in ("", "forever"):
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{value!r} is not a duration (a number with unit s, m, h, d or w, like 30d, 12h; "
            "a bare number is seconds; 0 or forever keeps everything)"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return seconds or None


class HistoryPruning(Protocol):
    """What the pruner needs from a telemetry store (``SqliteStore``, ``RedisTelemetryStore``)."""

    def telemetry_endpoints(self, after: str | None, limit: int) -> list[str]: ...

    def prune_history(self, endpoint: str, before_ms: int, limit: int) -> int: ...


RetentionFor = Callable[[str], float | None]
"""The TTL in seconds of an endpoint's history (None: keep forever)."""


class RetentionPruner:
    """Deletes history older than each endpoint's TTL, a batch per turn (module docstring).

    ``retention_for(endpoint)``: the endpoint's TTL; ``active()``: whether any TTL is set at
    all (when not, a pass does not even walk the endpoints); ``clock``: seconds since the epoch.
    """

    def __init__(
        self,
        store: HistoryPruning,
        retention_for: RetentionFor,
        *,
        active: Callable[[], bool],
        clock: Callable[[], float],
        batch: int = DEFAULT_BATCH,
        pause: float = DEFAULT_PAUSE,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.store = store
        self.retention_for = retention_for
        self.active = active
        self.clock = clock
        self.batch = batch
        self.pause = pause
        self.interval = interval
        self._page: list[str] = []
        self._after: str | None = None
        self.deleted = 0
        """Rows deleted since start (shown in logs)."""
        self.passes = 0

    def step(self) -> tuple[int, bool]:
        """One turn: deletes at most ``batch`` rows. Returns (rows deleted, whether the pass
        is complete)."""
        if not self.active():
            self._page, self._after = [], None
            return 0, True
        budget = self.batch
        now_ms = int(self.clock() * 1000)
        while budget > 0:
            if not self._page:
                self._page = self.store.telemetry_endpoints(self._after, ENDPOINTS_PER_TURN)
                if not self._page:  # the pass is complete
                    self._after = None
                    self.passes += 1
                    deleted = self.batch - budget
                    self.deleted += deleted
                    return deleted, True
            endpoint = self._page[0]
            ttl = self.retention_for(endpoint)
            removed = 0
            if ttl is not None:
                removed = self.store.prune_history(endpoint, now_ms - int(ttl * 1000), budget)
                budget -= removed
            if removed and budget == 0:
                break  # it may have more: the same endpoint again next turn
            self._page.pop(0)
            self._after = endpoint
        deleted = self.batch - budget
        self.deleted += deleted
        return deleted, False

    def run_pass(self) -> int:
        """A whole pass at once (tests, the CLI): the rows deleted."""
        total = 0
        while True:
            deleted, done = self.step()
            total += deleted
            if done:
                return total

    async def run(self) -> None:
        """Forever, paced (module docstring); a store error is logged and retried at the next
        pass, never the end of the task."""
        this_pass = 0
        while True:
            try:
                deleted, done = self.step()
            except Exception:
                log.exception("telemetry retention: deleting old history failed")
                self._page, self._after = [], None
                deleted, done = 0, True
            this_pass += deleted
            if done:
                if this_pass:
                    log.info("telemetry retention: %d points past their TTL deleted", this_pass)
                this_pass = 0
                await asyncio.sleep(self.interval)
            else:
                await asyncio.sleep(self.pause)

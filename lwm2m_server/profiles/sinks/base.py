"""The sink contract, the bounded queue + worker every sink shares, and the set the engine feeds
(see the package docstring for why it never blocks)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000


@attrs.frozen
class SinkRecord:
    """``kind`` is ``telemetry`` (``payload = {"ts": ms, "values": {key: value}}``) or
    ``attributes`` (``payload = {key: value}``); values are JSON-ready."""

    endpoint: str
    kind: str
    payload: Mapping[str, Any]
    profile: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ep": self.endpoint, "profile": self.profile, "kind": self.kind, **self.payload}


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    def offer(self, record: SinkRecord) -> None:
        """Queue a record; never blocks, never raises."""
        ...

    async def stop(self) -> None: ...


class QueuedSink:
    """Bounded queue + one worker; subclasses implement ``deliver`` (raise to retry later)."""

    name = "sink"
    retry_initial = 0.5
    retry_max = 30.0

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue: collections.deque[SinkRecord] = collections.deque()
        self._size = queue_size
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.delivered = 0
        self.failing = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def offer(self, record: SinkRecord) -> None:
        if len(self._queue) >= self._size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(record)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def deliver(self, records: Sequence[SinkRecord]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Release the target (file, connection); called when the sink stops."""

    async def _run(self) -> None:
        delay = self.retry_initial
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = list(self._queue)
                dropped = self.dropped
                try:
                    await self.deliver(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not self.failing:
                        log.warning(
                            "%s is down (%s); keeping up to %d records", self.name, exc, self._size
                        )
                    self.failing = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max)
                    continue
                if self.failing:
                    log.info("%s is back", self.name)
                self.failing = False
                delay = self.retry_initial
                # records offered meanwhile stay queued; ones dropped meanwhile were ours
                for _ in range(len(batch) - (self.dropped - dropped)):
                    if self._queue:
                        self._queue.popleft()
                self.delivered += len(batch)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (tests, shutdown); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._queue and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self._queue

    async def stop(self) -> None:
        if self._task is not None:
            await self.flush(1.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.close()

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queued": len(self._queue),
            "dropped": self.dropped,
            "delivered": self.delivered,
            "up": not self.failing,
        }


class SinkSet:
    """The configured sinks, fed together."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks = list(sinks)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    def offer(self, record: SinkRecord) -> None:
        for sink in self.sinks:
            try:
                sink.offer(record)
            except Exception:  # a sink's bug must not reach the notification path
                log.exception("sink %s refused a record", sink.name)

    async def stop(self) -> None:
        for sink in self.sinks:
            await sink.stop()

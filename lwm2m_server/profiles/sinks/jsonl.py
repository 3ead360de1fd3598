"""JSON lines: one record per line (``{"ep", "profile", "kind", "ts", "values"}`` or
``{"ep", "profile", "kind", <key>: <value>…}``), appended to a file, for ``tail -f``, log shippers
and quick analysis with ``jq``. Writes run in a thread so a slow disk never stalls the loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from .base import DEFAULT_QUEUE_SIZE, QueuedSink, SinkRecord


class JsonLinesSink(QueuedSink):
    def __init__(self, path: str | Path, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        super().__init__(queue_size)
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"

    async def deliver(self, records: Sequence[SinkRecord]) -> None:
        text = "".join(json.dumps(r.to_json(), separators=(",", ":")) + "\n" for r in records)
        await asyncio.to_thread(self._append, text)

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(text)

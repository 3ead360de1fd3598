"""Optional copies of mapped values outside sqlite: a JSON-lines file, an MQTT broker.

sqlite is the record; a sink is a copy that may be down. So a sink never blocks the caller and
never makes it fail: ``offer`` puts the record in the sink's own bounded queue and returns; a
worker task delivers in order, and retries with backoff while its target is unreachable. When
the queue is full the *oldest* record is dropped and counted (``dropped``): memory stays bounded
whatever the outage, and what is lost is only the copy, never the stored value.
"""

from __future__ import annotations

from .base import QueuedSink, Sink, SinkRecord, SinkSet

__all__ = ["QueuedSink", "Sink", "SinkRecord", "SinkSet"]

"""MQTT publisher (aiomqtt): each record goes to a topic made from a template, e.g.
``lwm2m/{ep}/{kind}`` -> ``lwm2m/dev-1/telemetry``. Placeholders: ``{ep}``, ``{kind}``
(``telemetry`` or ``attributes``), ``{profile}``. The payload is the record's JSON.

The connection is opened lazily and re-opened after a failure (with the queue's backoff), so a
broker that is down at start or goes away later only delays the copies.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

from .base import DEFAULT_QUEUE_SIZE, QueuedSink, SinkRecord

DEFAULT_TOPIC = "lwm2m/{ep}/{kind}"


def check_topic(template: str) -> str | None:
    """A reason the template is unusable, or None."""
    try:
        topic = template.format(ep="ep", kind="telemetry", profile="p")
    except (KeyError, IndexError, ValueError) as exc:
        return f"only {{ep}}, {{kind}} and {{profile}} may be used: {exc}"
    if not topic or "#" in topic or "+" in topic:
        return "a topic to publish to must not be empty nor contain # or +"
    return None


class MqttSink(QueuedSink):
    def __init__(
        self,
        url: str,
        topic: str = DEFAULT_TOPIC,
        *,
        qos: int = 1,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        super().__init__(queue_size)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"expected mqtt://host[:port], got {url!r}")
        problem = check_topic(topic)
        if problem:
            raise ValueError(f"topic {topic!r}: {problem}")
        self.host = parts.hostname
        self.port = parts.port or 1883
        self.username = parts.username
        self.password = parts.password
        self.topic = topic
        self.qos = qos
        self.name = f"mqtt://{self.host}:{self.port}"
        self._client: Any = None

    async def _connect(self) -> Any:
        if self._client is None:
            import aiomqtt

            client = aiomqtt.Client(
                self.host, self.port, username=self.username, password=self.password, timeout=5
            )
            await client.__aenter__()
            self._client = client
        return self._client

    async def deliver(self, records: Sequence[SinkRecord]) -> None:
        try:
            client = await self._connect()
            for record in records:
                topic = self.topic.format(
                    ep=record.endpoint, kind=record.kind, profile=record.profile
                )
                payload = json.dumps(record.to_json(), separators=(",", ":"))
                await client.publish(topic, payload, qos=self.qos)
        except Exception:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

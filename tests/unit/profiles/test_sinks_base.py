"""The sink queue: bounded (oldest dropped, counted), ordered, retried, never blocking."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from lwm2m_server.profiles.sinks import QueuedSink, SinkRecord, SinkSet
from lwm2m_server.profiles.sinks.jsonl import JsonLinesSink
from lwm2m_server.profiles.sinks.mqtt import MqttSink, check_topic


class Flaky(QueuedSink):
    retry_initial = 0.01
    retry_max = 0.02

    def __init__(self, queue_size: int) -> None:
        super().__init__(queue_size)
        self.up = False
        self.got: list[int] = []

    async def deliver(self, records: Sequence[SinkRecord]) -> None:
        if not self.up:
            raise ConnectionError("down")
        self.got += [int(r.payload["n"]) for r in records]


def record(n: int) -> SinkRecord:
    return SinkRecord("dev-1", "telemetry", {"n": n})


async def test_down_sink_keeps_the_newest_and_catches_up() -> None:
    sink = Flaky(queue_size=3)
    sinks = SinkSet([sink])
    await sinks.start()
    for n in range(5):
        sinks.offer(record(n))  # returns at once while the sink is down
    await asyncio.sleep(0.05)
    assert sink.failing and sink.dropped == 2 and len(sink) == 3
    sink.up = True
    assert await sink.flush(2)
    assert sink.got == [2, 3, 4] and not sink.failing
    await sinks.stop()


async def test_jsonl_appends_lines(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "x" / "out.jsonl"
    sink = JsonLinesSink(path)
    await sink.start()
    sink.offer(SinkRecord("dev-1", "attributes", {"units": "Cel"}, "p"))
    await sink.flush()
    await sink.stop()
    assert path.read_text() == '{"ep":"dev-1","profile":"p","kind":"attributes","units":"Cel"}\n'


def test_mqtt_settings_are_checked() -> None:
    assert check_topic("lwm2m/{ep}/{kind}") is None
    assert check_topic("a/{device}") is not None
    assert check_topic("a/#") is not None
    with pytest.raises(ValueError):
        MqttSink("http://broker")
    sink = MqttSink("mqtt://user:pw@broker:1884")
    assert (sink.host, sink.port, sink.username) == ("broker", 1884, "user")

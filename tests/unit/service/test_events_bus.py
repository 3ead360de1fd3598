"""The event bus: fan-out, bounded per-subscriber queues, unsubscribe on close."""

from __future__ import annotations

import asyncio
import gc

from lwm2m_server.events_bus import EventBus


async def test_fan_out_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish("REGISTRATION", "ep", {"n": 1})
    bus.publish("UPDATED", "ep", {"n": 2})
    for sub in (a, b):
        assert [(await sub.get()).kind for _ in range(2)] == ["REGISTRATION", "UPDATED"]  # type: ignore[union-attr]


async def test_slow_subscriber_is_bounded() -> None:
    bus = EventBus(queue_size=3)
    sub = bus.subscribe()
    for n in range(10):
        bus.publish("SEND", "ep", {"n": n})
    assert len(sub) == 3 and sub.dropped == 7
    assert [(await sub.get()).data["n"] for _ in range(3)] == [7, 8, 9]  # type: ignore[union-attr]


async def test_close_ends_iteration_and_unsubscribes() -> None:
    bus = EventBus()
    events = bus.subscribe().events()
    bus.publish("AWAKE", "ep", {})
    assert (await events.__anext__()).kind == "AWAKE"
    bus.close()
    assert bus.subscribers == 0
    received = [e async for e in events]
    assert received == []


async def test_forgotten_reader_unsubscribes() -> None:
    bus = EventBus()
    events = bus.subscribe().events()
    bus.publish("AWAKE", "ep", {})
    await events.__anext__()
    await events.aclose()  # what the loop does to an abandoned async generator
    del events
    gc.collect()
    await asyncio.sleep(0)
    assert bus.subscribers == 0

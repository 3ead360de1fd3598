"""Event payloads are built only when a subscriber reads them (issue 10, hot-path hygiene): an
in-process listener that looks at kind and endpoint costs no payload; SSE readers get the whole
payload, built once for all of them."""

from __future__ import annotations

import json

from lwm2m_server.api.events import format_event
from lwm2m_server.events_bus import EventBus, LazyData
from lwm2m_server.operations import ServerEvent


class Builder:
    """A payload builder that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, object]:
        self.calls += 1
        return {"endpoint": "ep", "lifetime": 300}


def test_no_payload_is_built_for_a_listener_without_subscribers() -> None:
    bus = EventBus()
    seen: list[tuple[str, str]] = []
    bus.listen(lambda e: seen.append((e.kind, e.endpoint)))
    build = Builder()
    bus.publish("UPDATED", "ep", build)
    bus.publish("UPDATED", "ep", build)
    assert seen == [("UPDATED", "ep"), ("UPDATED", "ep")]
    assert build.calls == 0
    assert not bus.has_subscribers


async def test_subscribers_get_the_full_payload_built_once() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    assert bus.has_subscribers
    build = Builder()
    bus.publish("UPDATED", "ep", build)
    assert build.calls == 0  # not at publish: when the subscriber reads it
    got: list[ServerEvent] = []
    for sub in (a, b):
        event = await sub.get()
        assert event is not None
        got.append(event)
    frames = [format_event(e) for e in got]
    assert build.calls == 1
    for frame in frames:
        head, data = frame.decode().split("\n", 1)
        assert head == "event: UPDATED"
        assert json.loads(data.removeprefix("data: ")) == {
            "ep": "ep",
            "endpoint": "ep",
            "lifetime": 300,
        }
    assert got[0].data == {"endpoint": "ep", "lifetime": 300}


def test_a_plain_mapping_is_still_copied_at_publish() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    data = {"n": 1}
    event = bus.publish("SEND", "ep", data)
    data["n"] = 2
    assert event.data == {"n": 1} and not isinstance(event.data, LazyData)
    assert len(sub) == 1


def test_lazy_data_reads_like_a_mapping_and_releases_its_builder() -> None:
    build = Builder()
    data = LazyData(build)
    assert not data.built
    assert dict(data) == {"endpoint": "ep", "lifetime": 300}
    assert data["lifetime"] == 300 and len(data) == 2 and "endpoint" in data
    assert data.built and build.calls == 1


def test_lazy_data_of_any_kind_is_kept_as_it_is_at_publish() -> None:
    """``publish`` tells lazy data by its type (``_LAZY_TYPES``), not ``isinstance``: every
    subclass, wherever it is defined, is kept unbuilt, the very object."""

    class Counted(LazyData):
        pass

    bus = EventBus()
    build = Builder()
    for data in (LazyData(build), Counted(build)):
        event = bus.publish("UPDATED", "ep", data)
        assert event.data is data and not data.built
    assert build.calls == 0


def test_a_listener_removed_or_added_during_publish_takes_effect_at_the_next() -> None:
    bus = EventBus()
    seen: list[tuple[str, str]] = []

    def once(event: ServerEvent) -> None:
        seen.append(("once", event.kind))
        remove()  # removes itself while the bus walks its listeners
        bus.listen(lambda e: seen.append(("later", e.kind)))

    remove = bus.listen(once)
    bus.listen(lambda e: seen.append(("always", e.kind)))
    bus.publish("A", "ep", {})
    assert seen == [("once", "A"), ("always", "A")]  # the walk went on to the next
    seen.clear()
    bus.publish("B", "ep", {})
    assert seen == [("always", "B"), ("later", "B")]
    remove()  # a second removal does nothing

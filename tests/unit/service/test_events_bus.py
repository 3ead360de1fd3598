"""The event bus: fan-out, one bounded replay buffer, GAP instead of silent loss, resume after
an id, unsubscribe on close."""

from __future__ import annotations

import asyncio
import contextlib
import gc

import attrs
import pytest

from lwm2m_server.events_bus import GAP, EventBus, LazyData
from lwm2m_server.operations import ServerEvent


async def test_fan_out_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish("REGISTRATION", "ep", {"n": 1})
    bus.publish("UPDATED", "ep", {"n": 2})
    for sub in (a, b):
        assert [(await sub.get()).kind for _ in range(2)] == ["REGISTRATION", "UPDATED"]  # type: ignore[union-attr]


async def test_slow_subscriber_is_bounded_and_told_what_it_missed() -> None:
    bus = EventBus(replay_size=3, first_id=1)
    sub = bus.subscribe()
    for n in range(10):
        bus.publish("SEND", "ep", {"n": n})
    gap = await sub.get()
    assert gap is not None and gap.kind == GAP
    assert gap.data == {"missed": 7, "from": 1, "to": 7} and gap.id == 7
    assert sub.dropped == 7
    assert [(await sub.get()).data["n"] for _ in range(3)] == [7, 8, 9]  # type: ignore[union-attr]
    assert len(sub) == 0


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


# -- ids, the replay buffer and GAP (issue 13 item 5) --------------------------------------------


def _ids(events: list[ServerEvent]) -> list[int]:
    return [e.id for e in events]


def test_ids_count_up_by_one_from_first_id() -> None:
    bus = EventBus(first_id=100)
    assert bus.last_id == 99
    assert [bus.publish("AWAKE", "ep", {}).id for _ in range(3)] == [100, 101, 102]
    assert bus.last_id == 102


def test_default_ids_of_a_later_process_are_larger() -> None:
    """Ids start at the process's start time (µs): a restarted server's ids never collide with
    the ones a reader still holds from before."""
    first = EventBus()
    first.publish("AWAKE", "ep", {})
    later = EventBus()
    assert later.first_id > first.last_id
    assert later.first_id < 2**53  # still exact in a JavaScript number


def test_resume_returns_exactly_the_missed_events_within_the_buffer() -> None:
    bus = EventBus(replay_size=100, first_id=1)
    for n in range(50):
        bus.publish("UPDATED", f"ep-{n}", {"n": n})
    sub = bus.subscribe(after=30)
    got = sub.ready()
    assert _ids(got) == list(range(31, 51))
    assert [e.data["n"] for e in got] == list(range(30, 50))
    assert sub.ready() == [] and sub.dropped == 0


def test_resume_beyond_the_buffer_gets_a_gap_with_the_count() -> None:
    bus = EventBus(replay_size=10, first_id=1)
    for n in range(50):
        bus.publish("UPDATED", "ep", {"n": n})
    got = bus.subscribe(after=5).ready()
    assert got[0].kind == GAP and got[0].data == {"missed": 35, "from": 6, "to": 40}
    assert got[0].id == 40
    assert _ids(got[1:]) == list(range(41, 51))


def test_resume_from_an_id_this_process_never_issued_is_an_unknown_gap() -> None:
    bus = EventBus(replay_size=10, first_id=1000)
    for _ in range(3):
        bus.publish("UPDATED", "ep", {})
    for foreign in (5, 999_999):  # an earlier run's id, another process's id
        got = bus.subscribe(after=foreign).ready()
        assert got[0].kind == GAP and got[0].data["missed"] is None
        assert "not from this server process" in str(got[0].data["reason"])
        assert _ids(got[1:]) == [1000, 1001, 1002]
    assert bus.subscribe(after=999).ready()[0].id == 1000  # "nothing of this run yet": no gap


def test_resume_at_the_latest_id_replays_nothing() -> None:
    bus = EventBus(first_id=1)
    bus.publish("UPDATED", "ep", {})
    assert bus.subscribe(after=1).ready() == []


async def test_20000_events_with_a_slow_reader_every_event_or_a_gap() -> None:
    """The acceptance line: 20,000 Updates and a reader that reads far more slowly than they
    come: it receives every event or an explicit GAP, and the GAPs' counts are exact."""
    bus = EventBus(replay_size=1000, first_id=1)
    sub = bus.subscribe()
    received: list[int] = []
    missed = 0
    seen = 0  # the last id received or declared missed: the stream accounts for each id once

    def take(event: ServerEvent) -> None:
        nonlocal missed, seen
        if event.kind == GAP:
            first, last, count = (int(event.data[k]) for k in ("from", "to", "missed"))  # type: ignore[call-overload]
            assert first == seen + 1 and last == first + count - 1 and event.id == last
            missed += count
            seen = last
        else:
            assert event.id == seen + 1 and event.data["n"] == event.id - 1
            received.append(event.id)
            seen = event.id

    for n in range(20_000):
        bus.publish("UPDATED", f"ep-{n % 7}", {"n": n})
        if n % 3 == 0:  # the reader takes one event for every three published
            event = await sub.get()
            assert event is not None
            take(event)
    for event in sub.ready():
        take(event)
    assert missed > 0  # it really was too slow
    assert len(received) + missed == 20_000
    assert received == sorted(set(received)) and received[-1] == 20_000
    assert sub.dropped == missed


async def test_a_reader_that_keeps_up_gets_all_20000() -> None:
    bus = EventBus(replay_size=1000, first_id=1)
    sub = bus.subscribe()
    received: list[ServerEvent] = []

    async def read() -> None:
        async for event in sub:
            received.append(event)

    reader = asyncio.create_task(read())
    for n in range(20_000):
        bus.publish("UPDATED", "ep", {"n": n})
        if n % 500 == 499:
            await asyncio.sleep(0)  # the loop turns, as it does between datagrams
    bus.close()
    await asyncio.wait_for(reader, 5)
    assert [e.data["n"] for e in received] == list(range(20_000))
    assert GAP not in {e.kind for e in received}


async def test_one_reader_going_away_does_not_end_the_others_wait() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    waiting_a = asyncio.create_task(a.get())
    waiting_b = asyncio.create_task(b.get())
    await asyncio.sleep(0)
    waiting_a.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting_a
    bus.publish("AWAKE", "ep", {})
    event = await asyncio.wait_for(waiting_b, 2)
    assert event is not None and event.kind == "AWAKE"


def test_publishing_without_subscribers_keeps_the_events_for_a_resume() -> None:
    bus = EventBus(replay_size=5, first_id=1)
    for n in range(3):
        bus.publish("SEND", "ep", {"n": n})
    assert not bus.has_subscribers
    assert [e.data["n"] for e in bus.subscribe(after=0).ready()] == [0, 1, 2]


async def test_an_unknown_resume_then_an_overflow_gives_both_gaps_one_at_a_time() -> None:
    bus = EventBus(replay_size=2, first_id=10)
    sub = bus.subscribe(after=3)  # not from this process: an unknown loss
    for _ in range(5):
        bus.publish("UPDATED", "ep", {})  # and then more than the buffer before it reads
    first, second = await sub.get(), await sub.get()
    assert first is not None and first.kind == GAP and first.data["missed"] is None
    assert second is not None and second.kind == GAP
    assert second.data == {"missed": 3, "from": 10, "to": 12}
    assert [e.id for e in sub.ready(1)] == [13] and [e.id for e in sub.ready()] == [14]


def test_a_published_event_is_the_server_event_of_its_values() -> None:
    """``publish`` builds its ``ServerEvent`` by the slots (not the attrs ``__init__``): the
    same frozen value, equal and shown alike, every field set."""
    bus = EventBus(first_id=7)
    event = bus.publish("UPDATED", "ep", {"n": 1})
    expected = ServerEvent("UPDATED", "ep", {"n": 1}, 7)
    assert type(event) is ServerEvent
    assert event == expected and attrs.astuple(event) == attrs.astuple(expected)
    assert repr(event) == repr(expected)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.kind = "SEND"  # type: ignore[misc]
    listened: list[ServerEvent] = []
    bus.listen(listened.append)
    other = bus.publish("AWAKE", "ep2", {"until": 1.0})
    assert listened == [ServerEvent("AWAKE", "ep2", {"until": 1.0}, 8)] and listened[0] is other


def test_a_listener_of_some_devices_gets_their_events_and_its_kinds_only() -> None:
    """``listen(endpoints=, kinds=)`` (the firmware manager's): the events of the endpoints
    the container holds when each is published, and those of ``kinds`` for any endpoint, in
    order among the others; a listener without them gets every event."""
    bus = EventBus(first_id=1)
    watched: dict[str, object] = {"a": None}
    some: list[tuple[str, str]] = []
    every: list[tuple[str, str]] = []
    bus.listen(lambda e: some.append((e.kind, e.endpoint)), endpoints=watched, kinds={"SEND"})
    bus.listen(lambda e: every.append((e.kind, e.endpoint)))
    bus.publish("UPDATED", "a", {})
    bus.publish("UPDATED", "b", {})
    bus.publish("SEND", "b", {})
    watched["b"] = None  # read at each publish: the listener's later changes count
    del watched["a"]
    bus.publish("UPDATED", "a", {})
    bus.publish("REGISTRATION", "b", {})
    bus.publish("UPDATED", "b", {}, listeners=False)  # for subscribers only: no listener
    assert some == [("UPDATED", "a"), ("SEND", "b"), ("REGISTRATION", "b")]
    assert every == [
        ("UPDATED", "a"),
        ("UPDATED", "b"),
        ("SEND", "b"),
        ("UPDATED", "a"),
        ("REGISTRATION", "b"),
    ]


def test_unlisten_removes_that_listener_only() -> None:
    bus = EventBus()
    seen: list[str] = []

    def first(event: ServerEvent) -> None:
        seen.append("first")

    def second(event: ServerEvent) -> None:
        seen.append("second")

    remove = bus.listen(first, endpoints={"a"})
    bus.listen(second)
    bus.listen(first)
    remove()
    bus.publish("UPDATED", "a", {})
    assert seen == ["second", "first"]


def test_announce_is_publish_without_the_event_back() -> None:
    """``announce`` (the service's Register and Update events): the same ids, the same ring,
    the same listeners in the same order; a ``listen_fields`` consumer gets the fields, an
    object listener and every subscriber the equal ``ServerEvent`` (one object for all)."""
    published, announced = EventBus(first_id=5), EventBus(first_id=5)
    seen: dict[str, list[object]] = {"published": [], "announced": []}
    for name, bus in (("published", published), ("announced", announced)):
        out = seen[name]
        bus.listen_fields(lambda kind, endpoint, data, out=out: out.append((kind, endpoint, data)))
        bus.listen(lambda event, out=out: out.append(event))
    subs = [published.subscribe(), announced.subscribe()]
    data = LazyData(dict, {"n": 0})  # kept as it is by both
    assert published.publish("UPDATED", "ep", data).id == 5
    assert announced.announce("UPDATED", "ep", data) is None
    published.publish("AWAKE", "ep", {"until": 1.0})
    announced.announce("AWAKE", "ep", {"until": 1.0})
    assert seen["announced"] == seen["published"]
    assert seen["announced"] == [
        ("UPDATED", "ep", data),
        ServerEvent("UPDATED", "ep", data, 5),
        ("AWAKE", "ep", {"until": 1.0}),
        ServerEvent("AWAKE", "ep", {"until": 1.0}, 6),
    ]
    assert announced.last_id == published.last_id == 6
    read = [sub.ready() for sub in subs]
    assert read[1] == read[0] and [type(e) for e in read[1]] == [ServerEvent, ServerEvent]
    assert read[1][0] is seen["announced"][1]  # the listener's event is the one read
    late = announced.subscribe(after=4)
    assert late.ready() == read[1] and late.ready() == []


def test_an_announced_event_is_made_once_when_read() -> None:
    """With no object listener nothing but the fields is kept; the first reader makes the
    event and every later reader gets that object."""
    bus = EventBus(first_id=1)
    fields: list[tuple[str, str, object]] = []
    remove = bus.listen_fields(lambda kind, endpoint, data: fields.append((kind, endpoint, data)))
    first, second = bus.subscribe(), bus.subscribe()
    bus.announce("SEND", "ep", {"n": 1})
    remove()
    bus.announce("SEND", "ep", lambda: {"n": 2})
    assert fields == [("SEND", "ep", {"n": 1})]
    events = first.ready()
    assert [(e.kind, e.endpoint, dict(e.data), e.id) for e in events] == [
        ("SEND", "ep", {"n": 1}, 1),
        ("SEND", "ep", {"n": 2}, 2),
    ]
    assert all(a is b for a, b in zip(second.ready(), events, strict=True))


def test_an_announced_event_wrapped_round_by_a_listener_keeps_the_newer_one() -> None:
    """A listener that publishes while an announced event is handed out (its events fill a
    ring of one) does not put the older event back in the newer one's slot."""
    bus = EventBus(replay_size=1, first_id=1)
    got: list[ServerEvent] = []

    def republish(kind: str, endpoint: str, data: object) -> None:
        if kind == "UPDATED":
            bus.publish("AWAKE", "ep", {})

    bus.listen_fields(republish)
    bus.listen(got.append)
    sub = bus.subscribe()
    bus.announce("UPDATED", "ep", {})
    assert [(e.kind, e.id) for e in got] == [("AWAKE", 2), ("UPDATED", 1)]
    events = sub.ready()
    assert [(e.kind, e.id) for e in events] == [(GAP, 1), ("AWAKE", 2)]


def test_a_failing_fields_listener_is_logged_and_the_others_still_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    after: list[str] = []

    def failing(kind: str, endpoint: str, data: object) -> None:
        raise RuntimeError("boom")

    bus.listen_fields(failing)
    bus.listen_fields(lambda kind, endpoint, data: after.append(kind))
    bus.announce("UPDATED", "ep", {})
    bus.publish("AWAKE", "ep", {})
    assert after == ["UPDATED", "AWAKE"]
    assert caplog.text.count("event listener failed") == 2

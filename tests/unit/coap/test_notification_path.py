"""The usual notification (a plainly newer value of an established observation, one datagram)
takes a shortcut in the endpoint; it must deliver, acknowledge and remember exactly what the
general path does, and leave every other case (reordering, the 2^23 wrap, Block2, no Observe,
an error code) to the general path."""

from __future__ import annotations

from lwm2m_runtime.coap import (
    Block,
    Code,
    HandleState,
    Message,
    Notification,
    RequestHandle,
    Type,
    encode_uint,
    serialize,
)
from lwm2m_runtime.coap.endpoint import _Noted

from .harness import DEVICE, Net, events
from .test_observe import _notification, _observe


def _slots(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in type(obj).__slots__}


def _delivered(net: Net) -> list[Notification]:
    return [e for e in events(net.server) if isinstance(e, Notification)]


def test_the_event_and_note_built_inline_equal_the_constructors() -> None:
    net = Net()
    handle = _observe(net)
    net.inject(net.server, _notification(handle.token, 11, b"79", mid=500))
    (event,) = _delivered(net)
    assert _slots(event) == _slots(Notification(handle, event.message, False))
    assert (handle.last_seq, handle.last_time) == (11, net.now)
    note = net.server._noted_out[(event.handle.peer, 500)]
    built = _Noted(handle, event.message, note.answer, 10, 0.0)
    assert _slots(note) == _slots(built)


def test_an_older_value_is_stale_and_a_value_past_the_wrap_is_fresh() -> None:
    net = Net()
    handle = _observe(net)  # last_seq 10
    net.inject(net.server, _notification(handle.token, 9, b"old", mid=500))
    assert _delivered(net) == []
    assert net.server.counters["stale_notifications"] == 1
    handle.last_seq = (1 << 24) - 2  # the next values wrap around 2^24 (RFC 7641 §3.4)
    net.inject(net.server, _notification(handle.token, 3, b"wrapped", mid=501))
    assert [e.message.payload for e in _delivered(net)] == [b"wrapped"]
    assert handle.last_seq == 3


def test_a_value_far_ahead_is_fresh_only_after_the_freshness_horizon() -> None:
    net = Net()
    handle = _observe(net)  # last_seq 10 at time 0
    ahead = 10 + (1 << 23) + 1  # "older" by the sequence rule
    net.inject(net.server, _notification(handle.token, ahead, b"a", mid=500))
    assert _delivered(net) == []
    net.now = 200.0  # past 128 s: fresh whatever its number
    net.inject(net.server, _notification(handle.token, ahead, b"b", mid=501))
    assert [e.message.payload for e in _delivered(net)] == [b"b"]


def test_no_observe_or_an_error_code_ends_the_observation() -> None:
    net = Net()
    handle = _observe(net)
    net.inject(net.server, _notification(handle.token, None, b"last", mid=500))
    (event,) = _delivered(net)
    assert event.final and handle.state is HandleState.DONE
    net = Net()
    handle = _observe(net)
    net.inject(net.server, _notification(handle.token, 11, b"", 500, code=Code.NOT_FOUND))
    (event,) = _delivered(net)
    assert event.final and handle.state is HandleState.DONE


def test_a_notification_with_more_blocks_is_fetched_before_delivery() -> None:
    net = Net()
    handle: RequestHandle = _observe(net)
    block0 = Message(
        Type.CON,
        Code.CONTENT,
        500,
        handle.token,
        ((6, encode_uint(11)), (23, Block(0, True, 0).encode())),
        b"x" * 16,
    )
    net.server.receive_datagram(serialize(block0), DEVICE, net.now)
    assert _delivered(net) == []  # not delivered: the rest is being fetched
    assert handle._b2_first is not None

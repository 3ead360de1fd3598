"""Observe, client side (RFC 7641): registration, ordering, re-registration, both cancels,
notifications with unknown tokens (after a server restart)."""

from __future__ import annotations

import pytest

from lwm2m_runtime.coap import (
    Code,
    ExchangeStateError,
    FailureReason,
    HandleState,
    Message,
    Notification,
    Parameters,
    RequestFailed,
    RequestHandle,
    RequestReceived,
    ResponseReceived,
    Type,
    UnknownNotification,
    encode_uint,
    parse,
    serialize,
)
from lwm2m_runtime.coap.dedup import ENTRY_COST
from lwm2m_runtime.coap.observe import is_fresh

from .harness import DEVICE, Net, events

OBSERVE = Message.request(Code.GET, "/3/0/9", observe=0)


def _notification(
    token: bytes,
    seq: int | None,
    payload: bytes,
    mid: int,
    mtype: Type = Type.CON,
    code: int = Code.CONTENT,
) -> Message:
    opts = () if seq is None else ((6, encode_uint(seq)),)
    return Message(mtype, code, mid, token, opts, payload)


def _observe(net: Net) -> RequestHandle:
    handle = net.server.send_request(DEVICE, OBSERVE)
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived) and request.message.observe == 0
    net.device.respond(
        request.exchange, Message.response(Code.CONTENT, b"80", extra=[(6, encode_uint(10))])
    )
    net.flush()
    (first,) = events(net.server)
    assert isinstance(first, ResponseReceived) and first.message.payload == b"80"
    assert handle.state is HandleState.OBSERVING and handle.last_seq == 10
    return handle


def test_registration_then_con_and_non_notifications() -> None:
    net = Net()
    handle = _observe(net)
    (ack,) = net.inject(net.server, _notification(handle.token, 11, b"79", mid=500))
    assert (ack.mtype, ack.code, ack.mid) == (Type.ACK, 0, 500)
    assert net.inject(net.server, _notification(handle.token, 12, b"78", 501, Type.NON)) == []
    got = [e for e in events(net.server) if isinstance(e, Notification)]
    assert [(type(e), e.message.payload) for e in got] == [
        (Notification, b"79"),
        (Notification, b"78"),
    ]
    assert all(e.handle is handle and not e.final for e in got if isinstance(e, Notification))


def test_duplicate_con_notification_is_acked_again_but_delivered_once() -> None:
    net = Net()
    handle = _observe(net)
    first = net.inject(net.server, _notification(handle.token, 11, b"79", mid=500))
    assert net.inject(net.server, _notification(handle.token, 11, b"79", mid=500)) == first
    assert len(events(net.server)) == 1


def test_reordered_notification_is_dropped_but_acked() -> None:
    net = Net()
    handle = _observe(net)
    net.inject(net.server, _notification(handle.token, 13, b"new", mid=1))
    (ack,) = net.inject(net.server, _notification(handle.token, 12, b"old", mid=2))
    assert ack.mtype is Type.ACK
    assert [e.message.payload for e in events(net.server) if isinstance(e, Notification)] == [
        b"new"
    ]
    assert net.server.counters["stale_notifications"] == 1


def test_sequence_wraps_around_and_128_second_rule() -> None:
    net = Net()
    handle = _observe(net)
    net.inject(
        net.server, _notification(handle.token, (1 << 24) - 1, b"x", mid=9)
    )  # from 10: older
    net.inject(net.server, _notification(handle.token, (1 << 23) + 5, b"_", mid=10))
    net.inject(net.server, _notification(handle.token, (1 << 24) - 1, b"a", mid=1))
    net.inject(net.server, _notification(handle.token, 3, b"b", mid=2))  # wrapped: newer
    net.inject(net.server, _notification(handle.token, 2, b"c", mid=3))  # older: dropped
    net.now = 200.0
    net.inject(net.server, _notification(handle.token, 1, b"d", mid=4))  # 128 s later: fresh
    assert [e.message.payload for e in events(net.server) if isinstance(e, Notification)] == [
        b"_",
        b"a",
        b"b",
        b"d",
    ]


@pytest.mark.parametrize(
    ("v1", "t1", "v2", "t2", "fresh"),
    [
        (-1, 0, 0, 0, True),
        (5, 0, 6, 0, True),
        (6, 0, 5, 0, False),
        (5, 0, 5, 0, False),
        (5, 0, 5 + (1 << 23), 0, False),
        (5 + (1 << 23) + 1, 0, 5, 0, True),
        (6, 0, 5, 128.5, True),
        (6, 0, 5, 128.0, False),
    ],
)
def test_is_fresh(v1: int, t1: float, v2: int, t2: float, fresh: bool) -> None:
    assert is_fresh(v1, t1, v2, t2) is fresh


def test_error_notification_ends_the_observation() -> None:
    net = Net()
    handle = _observe(net)
    net.inject(net.server, _notification(handle.token, None, b"", mid=7, code=Code.NOT_FOUND))
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.final
    assert handle.state is HandleState.DONE
    # the token is forgotten: a later notification is the application's to accept or reject
    assert net.inject(net.server, _notification(handle.token, 20, b"x", mid=8)) == []
    assert isinstance(events(net.server)[0], UnknownNotification)


def test_refused_observe_is_a_plain_response() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, OBSERVE)
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(request.exchange, Message.response(Code.CONTENT, b"80"))  # no Observe
    net.flush()
    assert isinstance(events(net.server)[0], ResponseReceived)
    assert handle.state is HandleState.DONE


def test_reregistration_uses_the_same_token_and_answer_is_a_notification() -> None:
    net = Net()
    handle = _observe(net)
    net.server.reregister(handle)
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    assert request.message.token == handle.token and request.message.observe == 0
    net.device.respond(
        request.exchange, Message.response(Code.CONTENT, b"81", extra=[(6, encode_uint(30))])
    )
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.message.payload == b"81"
    assert handle.state is HandleState.OBSERVING and handle.last_seq == 30
    assert net.server.outstanding(DEVICE) == (0, 0)


def test_reactive_cancel_rsts_the_next_notification() -> None:
    net = Net()
    handle = _observe(net)
    assert net.server.cancel_observe(handle) is None
    (rst,) = net.inject(net.server, _notification(handle.token, 11, b"79", mid=600))
    assert (rst.mtype, rst.mid) == (Type.RST, 600)
    assert events(net.server) == []
    (rst_non,) = net.inject(net.server, _notification(handle.token, 12, b"79", 601, Type.NON))
    assert rst_non.mtype is Type.RST


def test_proactive_cancel_sends_get_observe_1_with_the_same_token() -> None:
    net = Net()
    handle = _observe(net)
    dereg = net.server.cancel_observe(handle, proactive=True)
    assert dereg is not None and handle.state is HandleState.DONE
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    assert request.message.token == handle.token and request.message.observe == 1
    assert request.message.uri_path == ["3", "0", "9"]
    net.device.respond(request.exchange, Message.response(Code.CONTENT, b"80"))
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.handle is dereg
    assert dereg.state is HandleState.DONE


def test_unknown_notification_accept_adopts_the_observation() -> None:
    """After a restart the server no longer knows the token; the application decides."""
    net = Net()
    token = b"persist1"
    (nothing,) = [net.inject(net.server, _notification(token, 40, b"a", mid=70))]
    assert nothing == []  # not answered until the application decides
    (event,) = events(net.server)
    assert isinstance(event, UnknownNotification) and event.peer == DEVICE
    assert net.inject(net.server, _notification(token, 40, b"a", mid=70)) == []  # dup: waits
    handle = net.server.accept_notification(event, OBSERVE.replace(token=token))
    (ack,) = net.sent(net.server)
    assert (ack.mtype, ack.mid) == (Type.ACK, 70)
    with pytest.raises(ExchangeStateError):
        net.server.reject_notification(event)
    net.inject(net.server, _notification(token, 41, b"b", mid=71))
    (later,) = events(net.server)
    assert isinstance(later, Notification) and later.handle is handle
    assert handle.state is HandleState.OBSERVING


def test_unknown_notification_reject_is_rst() -> None:
    net = Net()
    net.inject(net.server, _notification(b"gone", 5, b"a", mid=80))
    (event,) = events(net.server)
    assert isinstance(event, UnknownNotification)
    net.server.reject_notification(event)
    (rst,) = net.sent(net.server)
    assert (rst.mtype, rst.mid) == (Type.RST, 80)
    assert net.inject(net.server, _notification(b"gone", 5, b"a", mid=80)) == [rst]  # replayed


def test_failed_reregistration_ends_the_observation() -> None:
    net = Net()
    handle = _observe(net)
    net.server.reregister(handle)
    (request,) = net.sent(net.server)
    net.inject(net.server, Message(Type.RST, 0, request.mid))
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.reason is FailureReason.RESET
    assert handle.state is HandleState.DONE


def test_notification_does_not_consume_a_queued_reregistration() -> None:
    net = Net()
    handle = _observe(net)
    busy = net.server.send_request(DEVICE, Message.request(Code.GET, "/3/0/0"))  # holds NSTART
    (busy_request,) = net.sent(net.server)
    net.server.reregister(handle)  # queued behind it
    assert net.server.outstanding(DEVICE) == (1, 1)
    net.inject(net.server, _notification(handle.token, 11, b"79", mid=500))
    assert isinstance(events(net.server)[0], Notification)
    answer = Message(Type.ACK, Code.CONTENT, busy_request.mid, busy.token, (), b"x")
    sent = net.inject(net.server, answer)
    assert [(m.token, m.observe) for m in sent] == [(handle.token, 0)]  # re-registration goes out


def test_notification_before_the_reregistration_ack_leaves_it_pending() -> None:
    net = Net()
    handle = _observe(net)
    net.server.reregister(handle)
    (rereg,) = net.sent(net.server)
    net.inject(net.server, _notification(handle.token, 11, b"79", mid=500))
    # the piggybacked answer to the re-registration still matches
    answer = Message(Type.ACK, Code.CONTENT, rereg.mid, rereg.token, ((6, encode_uint(12)),), b"r")
    net.inject(net.server, answer)
    assert [e.message.payload for e in events(net.server) if isinstance(e, Notification)] == [
        b"79",
        b"r",
    ]
    assert net.server.get_timer() is None  # no retransmission of the answered re-registration


def test_token_reused_after_reactive_cancel_is_observed_again() -> None:
    net = Net()
    handle = _observe(net)
    net.server.cancel_observe(handle)
    again = net.server.send_request(DEVICE, OBSERVE.replace(token=handle.token))
    (request,) = net.sent(net.server)
    first = Message(Type.ACK, Code.CONTENT, request.mid, handle.token, ((6, encode_uint(1)),), b"")
    net.inject(net.server, first)
    assert again.state is HandleState.OBSERVING
    (ack,) = net.inject(net.server, _notification(handle.token, 2, b"n", mid=900))
    assert ack.mtype is Type.ACK  # not RST: the cancelled record was cleared


# -- a notification the application could not store is not acknowledged ------------------------


def test_withheld_con_notification_is_not_acked_and_its_retransmission_is_fresh() -> None:
    """The store refused the value: no ACK leaves, and the device's retransmission (same MID)
    is delivered again (not replayed from the dedup cache, not dropped as stale), then ACKed."""
    net = Net()
    handle = _observe(net)
    notification = _notification(handle.token, 11, b"79", mid=500)
    net.server.receive_datagram(serialize(notification), DEVICE, net.now)
    (event,) = events(net.server)
    assert isinstance(event, Notification)
    assert net.server.withhold_notification(event) is True
    assert net.sent(net.server) == []  # no ACK, no RST: the observation lives on
    assert handle.state is HandleState.OBSERVING
    (ack,) = net.inject(net.server, notification)  # the retransmission
    assert (ack.mtype, ack.code, ack.mid) == (Type.ACK, 0, 500)
    (again,) = events(net.server)
    assert isinstance(again, Notification) and again.message.payload == b"79"
    assert handle.last_seq == 11


def test_withheld_non_notification_repeated_is_delivered_again() -> None:
    net = Net()
    handle = _observe(net)
    notification = _notification(handle.token, 11, b"79", 501, Type.NON)
    net.server.receive_datagram(serialize(notification), DEVICE, net.now)
    (event,) = events(net.server)
    assert isinstance(event, Notification)
    assert net.server.withhold_notification(event) is True
    assert net.inject(net.server, notification) == []
    (again,) = events(net.server)
    assert isinstance(again, Notification) and again.message.payload == b"79"


def test_notification_whose_ack_was_withdrawn_by_a_failed_commit_is_fresh_again() -> None:
    """Group commit: the iteration's commit failed, so its answers are withdrawn (driver);
    the observe state goes back too, or the retransmission would be ACKed as stale and lost."""
    net = Net()
    handle = _observe(net)
    first = _notification(handle.token, 11, b"79", mid=500)
    second = _notification(handle.token, 12, b"78", mid=501)
    for message in (first, second):
        net.server.receive_datagram(serialize(message), DEVICE, net.now)
    assert len(events(net.server)) == 2
    out = net.server.datagrams_to_send(net.now)
    assert [parse(d).mid for d, _ in out] == [500, 501]
    assert net.server.withdraw_answers(out) == 2
    assert handle.last_seq == 10  # as before both
    for message in (first, second):
        (ack,) = net.inject(net.server, message)
        assert ack.mid == message.mid
    assert [e.message.payload for e in events(net.server)] == [b"79", b"78"]  # type: ignore[union-attr]


def test_withheld_unknown_notification_is_handled_again_when_retransmitted() -> None:
    """After a restart the store refused an unknown-token notification: nothing is answered
    and its retransmission is a new event (not swallowed by the dedup cache)."""
    net = Net()
    token = b"persist2"
    notification = _notification(token, 40, b"a", mid=72)
    assert net.inject(net.server, notification) == []
    (event,) = events(net.server)
    assert isinstance(event, UnknownNotification)
    assert net.server.withhold_notification(event) is True
    assert net.inject(net.server, notification) == []
    (again,) = events(net.server)
    assert isinstance(again, UnknownNotification) and again.message.mid == 72
    handle = net.server.accept_notification(again, OBSERVE.replace(token=token))
    (ack,) = net.sent(net.server)
    assert (ack.mtype, ack.mid) == (Type.ACK, 72)
    assert handle.state is HandleState.OBSERVING


def test_adopted_notification_withdrawn_by_a_failed_commit_is_fresh_again() -> None:
    net = Net()
    token = b"persist3"
    notification = _notification(token, 40, b"a", mid=73)
    net.server.receive_datagram(serialize(notification), DEVICE, net.now)
    (event,) = events(net.server)
    assert isinstance(event, UnknownNotification)
    handle = net.server.accept_notification(event, OBSERVE.replace(token=token))
    out = net.server.datagrams_to_send(net.now)
    assert net.server.withdraw_answers(out) == 1
    (ack,) = net.inject(net.server, notification)
    assert (ack.mtype, ack.mid) == (Type.ACK, 73)
    (again,) = events(net.server)
    assert isinstance(again, Notification) and again.handle is handle


def test_notifications_keep_the_dedup_bounds_and_count_their_acks() -> None:
    net = Net(server_params=Parameters(dedup_capacity=4))
    handle = _observe(net)
    for n in range(6):  # the cache fills up: the oldest entries make room
        (ack,) = net.inject(net.server, _notification(handle.token, 11 + n, b"v", mid=600 + n))
        assert (ack.mtype, ack.mid) == (Type.ACK, 600 + n)
    assert net.server.dedup_size == 4
    assert net.server._dedup.size_bytes == 4 * ENTRY_COST + 4 * 4  # four 4-byte empty ACKs
    (again,) = net.inject(net.server, _notification(handle.token, 16, b"v", mid=605))
    assert again.mid == 605  # the newest is still replayed
    assert len([e for e in events(net.server) if isinstance(e, Notification)]) == 6


def test_a_notification_reusing_an_expired_mid_is_fresh() -> None:
    net = Net()
    handle = _observe(net)
    net.inject(net.server, _notification(handle.token, 11, b"a", mid=700))
    net.now = 300.0  # past EXCHANGE_LIFETIME
    (ack,) = net.inject(net.server, _notification(handle.token, 12, b"b", mid=700))
    assert ack.mid == 700
    got = [e.message.payload for e in events(net.server) if isinstance(e, Notification)]
    assert got == [b"a", b"b"]

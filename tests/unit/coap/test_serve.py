"""``Endpoint.serve``: requests handed to a call instead of ``RequestReceived`` events (the
NoSec server's path). What leaves on the wire must be what the event path sends."""

from __future__ import annotations

from lwm2m_runtime.coap import Code, Exchange, Message, Type
from lwm2m_runtime.coap.endpoint import Peer

from .harness import DEVICE, Net, con, events

UPDATE = con(Code.POST, 0x1234, b"\x01\x02\x03\x04", path="/rd/abc", query=["lt=300"])


class Server:
    """A ``serve`` that records what it gets and answers at once (or not: ``answer=None``)."""

    def __init__(self, net: Net, answer: Message | None = None) -> None:
        self.net = net
        self.answer = answer
        self.got: list[tuple[Peer, Message, Exchange]] = []
        net.server.serve = self

    def __call__(self, peer: Peer, message: Message, exchange: Exchange) -> None:
        self.got.append((peer, message, exchange))
        if self.answer is not None:
            self.net.server.respond(exchange, self.answer)


def test_a_served_request_is_no_event_and_its_answer_is_piggybacked() -> None:
    net = Net()
    server = Server(net, Message.response(Code.CHANGED))
    (ack,) = net.inject(net.server, UPDATE)
    assert (ack.mtype, ack.code, ack.mid, ack.token) == (
        Type.ACK,
        Code.CHANGED,
        0x1234,
        UPDATE.token,
    )
    ((peer, message, exchange),) = server.got
    assert peer == DEVICE and message.uri_path == ["rd", "abc"] and exchange.mid == 0x1234
    assert events(net.server) == []
    # answered inside ``serve``: no empty ACK is ever due
    assert net.server.get_timer() is None
    net.now = 10.0
    net.server.handle_timer(net.now)
    assert net.sent(net.server) == []


def test_a_duplicate_of_a_served_request_replays_the_answer_without_a_second_call() -> None:
    net = Net()
    server = Server(net, Message.response(Code.CHANGED, b"ok"))
    first = net.inject(net.server, UPDATE)
    net.now = 100.0
    assert net.inject(net.server, UPDATE) == first
    assert len(server.got) == 1
    assert net.server.counters["duplicates"] == 1


def test_a_served_request_answered_later_gets_the_empty_ack_then_a_separate_response() -> None:
    net = Net()
    server = Server(net)  # does not answer
    assert net.inject(net.server, UPDATE) == []
    assert net.server.get_timer() is not None
    net.now = 1.0
    net.server.handle_timer(net.now)
    (empty_ack,) = net.sent(net.server)
    assert (empty_ack.mtype, empty_ack.code, empty_ack.mid) == (Type.ACK, 0, 0x1234)
    ((_, _, exchange),) = server.got
    net.server.respond(exchange, Message.response(Code.CHANGED))
    (separate,) = net.sent(net.server)
    assert (separate.mtype, separate.code, separate.token) == (
        Type.CON,
        Code.CHANGED,
        UPDATE.token,
    )


def test_a_served_non_request_is_answered_with_a_non() -> None:
    net = Net()
    Server(net, Message.response(Code.CONTENT, b"x"))
    request = Message(Type.NON, Code.GET, 0x0101, b"\x07", UPDATE.options)
    (answer,) = net.inject(net.server, request)
    assert (answer.mtype, answer.code, answer.token, answer.payload) == (
        Type.NON,
        Code.CONTENT,
        b"\x07",
        b"x",
    )
    assert net.server.get_timer() is None


def test_refusals_are_not_served_and_stay_as_before() -> None:
    net = Net()
    server = Server(net, Message.response(Code.CHANGED))
    critical = UPDATE.replace(mid=0x2000, options=((9, b"x"), *UPDATE.options))
    (bad_option,) = net.inject(net.server, critical)
    assert bad_option.code == Code.BAD_OPTION
    ping = Message(Type.CON, 0, 0x2001)
    (rst,) = net.inject(net.server, ping)
    assert rst.mtype is Type.RST
    bad_utf8 = UPDATE.replace(mid=0x2002, options=((11, b"\xff"),))
    (bad_request,) = net.inject(net.server, bad_utf8)
    assert bad_request.code == Code.BAD_REQUEST
    assert server.got == []


def _slots(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in type(obj).__slots__}


def test_the_exchange_and_message_built_inline_equal_the_constructors() -> None:
    # the endpoint and the parser build both without calling ``__init__`` (hot path): every
    # slot must be set, to what the constructor sets
    net = Net()
    got: list[tuple[dict[str, object], dict[str, object]]] = []

    def serve(peer: Peer, message: Message, exchange: Exchange) -> None:
        got.append((_slots(exchange), _slots(Exchange(peer, message))))
        server.append(message)

    server: list[Message] = []
    net.server.serve = serve
    net.inject(net.server, UPDATE)
    ((inline, constructed),) = got
    assert inline == constructed
    (message,) = server
    assert _slots(message) == _slots(
        Message(
            message.mtype,
            message.code,
            message.mid,
            message.token,
            message.options,
            message.payload,
        )
    )
    assert message == UPDATE

"""No input makes the endpoint raise: mutated answers to outstanding requests, observations,
Block1/Block2 transfers in flight, timers between them (issue 10, "Bad input")."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m_runtime.coap import (
    Block,
    Code,
    Message,
    RequestReceived,
    Type,
    UnknownNotification,
    encode_uint,
    parse,
    serialize,
)

from .harness import DEVICE, Net, events

PROFILE = settings(settings.get_profile("coap"), max_examples=80)

_codes = st.sampled_from([0, 1, 2, 0x41, 0x44, 0x45, 0x5F, 0x80, 0x84, 0x88, 0x8D, 0xA0, 0x20])
_opts = st.lists(
    st.sampled_from(
        [
            (6, encode_uint(5)),
            (6, encode_uint(1 << 23)),
            (4, b"\x01"),
            (23, Block(0, True, 6).encode()),
            (23, Block(1, False, 6).encode()),
            (23, Block(0, True, 7).encode()),
            (27, Block(0, True, 6).encode()),
            (27, Block(1, False, 2).encode()),
            (28, encode_uint(5000)),
            (60, encode_uint(10**9)),
            (11, b"3"),
            (11, b"\xff"),
            (2049, b""),
        ]
    ),
    max_size=4,
).map(lambda o: tuple(sorted(o, key=lambda x: x[0])))


@st.composite
def _datagram(draw: st.DrawFn, net: Net) -> bytes:
    """A message aimed at what the server has in flight, or garbage."""
    sent = [m for d, m in net.wire if d == "s->d"] or [Message(Type.CON, 1, 1, b"t")]
    target = draw(st.sampled_from(sent))
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=30))
    msg = Message(
        draw(st.sampled_from(list(Type))),
        draw(_codes),
        draw(st.sampled_from([target.mid, draw(st.integers(0, 0xFFFF))])),
        draw(st.sampled_from([target.token, b"", b"x"])),
        draw(_opts),
        draw(st.sampled_from([b"", b"p" * 1024, b"q" * 20])),
    )
    data = serialize(msg)
    if draw(st.booleans()):
        return data
    cut = draw(st.integers(0, len(data)))
    return data[:cut] + draw(st.binary(max_size=4))


@given(st.data())
@PROFILE
def test_mutated_answers_never_raise(data: st.DataObject) -> None:
    net = Net()
    net.drop = lambda d, to: True  # the device never sees anything: we play it
    server = net.server
    server.send_request(DEVICE, Message.request(Code.GET, "/3/0"))
    server.send_request(DEVICE, Message.request(Code.GET, "/3/0/9", observe=0))
    server.send_request(DEVICE, Message.request(Code.PUT, "/5/0/0", payload=b"f" * 3000))
    server.send_request(("203.0.113.5", 5683), Message.request(Code.GET, "/1", observe=0))
    net.flush()
    for _ in range(data.draw(st.integers(1, 25))):
        datagram = data.draw(_datagram(net))
        peer = data.draw(st.sampled_from([DEVICE, ("203.0.113.5", 5683)]))
        server.receive_datagram(datagram, peer, net.now)
        for event in events(server):
            if isinstance(event, UnknownNotification):
                if data.draw(st.booleans()):
                    server.accept_notification(event, Message.request(Code.GET, "/x", observe=0))
                else:
                    server.reject_notification(event)
            elif isinstance(event, RequestReceived):
                server.respond(event.exchange, Message.response(Code.CONTENT, b"z" * 1500))
        for out, _ in server.datagrams_to_send(net.now):
            net.wire.append(("s->d", parse(out)))
        net.now += data.draw(st.sampled_from([0.0, 0.5, 3.0, 100.0]))
        timer = server.get_timer()
        if timer is not None and timer <= net.now:
            server.handle_timer(net.now)
    net.run_until(net.now + 1000.0)
    timer = server.get_timer()
    assert timer is None or timer > net.now  # nothing overdue


@given(st.lists(st.tuples(st.binary(max_size=40), st.integers(0, 2)), max_size=30))
@PROFILE
def test_device_side_never_raises(datagrams: list[tuple[bytes, int]]) -> None:
    net = Net()
    for data, peer in datagrams:
        net.device.receive_datagram(data, ("192.0.2.1", 5683 + peer), net.now)
        for event in events(net.device):
            if isinstance(event, RequestReceived):
                net.device.respond(event.exchange, Message.response(Code.CONTENT, b"y" * 2100))
        net.device.datagrams_to_send(net.now)
        net.now += 1.0
        net.device.handle_timer(net.now)

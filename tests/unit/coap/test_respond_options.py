"""``respond``'s shortcut for a piggybacked answer with options (a Register's 2.01 with its
Location-Path) must send exactly what the general path sends, and leave to the general path
what it cannot do (a handler-sliced Block2 answer, options out of order)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m_runtime.coap import (
    Block,
    Code,
    Exchange,
    Message,
    Type,
    parse,
    piggybacked_options,
    serialize,
)
from lwm2m_runtime.coap.endpoint import Peer

from .harness import Net, con

REGISTER = con(Code.POST, 0x0042, b"\x0a\x0b\x0c\x0d", path="/rd", query=["ep=dev-1"])
LOCATION = ((8, b"rd"), (8, b"Xf3a9c2b1"))


def _serving(net: Net, answer: Message) -> list[Exchange]:
    got: list[Exchange] = []

    def serve(peer: Peer, message: Message, exchange: Exchange) -> None:
        got.append(exchange)
        net.server.respond(exchange, answer)

    net.server.serve = serve
    return got


def _expected(request: Message, answer: Message) -> bytes:
    return serialize(
        Message(Type.ACK, answer.code, request.mid, request.token, answer.options, answer.payload)
    )


def test_a_created_with_location_path_is_piggybacked_and_replayed_to_a_duplicate() -> None:
    net = Net()
    answer = Message(Type.ACK, Code.CREATED, 0, b"", LOCATION)
    got = _serving(net, answer)
    net.server.receive_datagram(serialize(REGISTER), ("198.51.100.7", 56830), net.now)
    ((data, _),) = net.server.datagrams_to_send(net.now)
    assert data == _expected(REGISTER, answer)
    assert parse(data).location_path == ["rd", "Xf3a9c2b1"]
    assert net.server.get_timer() is None  # answered: no empty ACK due
    net.now = 200.0  # within EXCHANGE_LIFETIME: the very bytes again, no second Register
    net.server.receive_datagram(serialize(REGISTER), ("198.51.100.7", 56830), net.now)
    assert net.server.datagrams_to_send(net.now) == [(data, ("198.51.100.7", 56830))]
    assert len(got) == 1


def test_long_values_large_deltas_and_a_payload_encode_as_serialize_does() -> None:
    net = Net()
    options = (
        (8, b"a-location-segment-over-12-bytes"),
        (20, b"q"),
        (2048, b""),
        (2049, b"x" * 300),
    )
    answer = Message(Type.ACK, Code.CREATED, 0, b"", options, b"diagnostic")
    _serving(net, answer)
    (sent,) = net.inject(net.server, REGISTER)
    assert serialize(sent) == _expected(REGISTER, answer)
    assert sent.options == options and sent.payload == b"diagnostic"


def test_options_out_of_order_are_sent_sorted() -> None:
    net = Net()
    answer = Message(Type.ACK, Code.CREATED, 0, b"", ((20, b"q"), (8, b"rd")))
    _serving(net, answer)
    (sent,) = net.inject(net.server, REGISTER)
    assert sent.options == ((8, b"rd"), (20, b"q"))


def test_a_handler_sliced_block2_answer_is_sent_as_given_and_a_get_not_kept() -> None:
    # a firmware download: the handler slices its blob itself; RFC 7252 §4.5 lets a duplicate
    # GET be processed again, so its answer is not kept in the deduplication cache
    net = Net()
    block = ((23, Block(3, True, 6).encode()),)
    answer = Message(Type.ACK, Code.CONTENT, 0, b"", block, b"z" * 1024)
    got = _serving(net, answer)
    get = con(Code.GET, 0x0777, b"\x05", path="/fw/t")
    (sent,) = net.inject(net.server, get)
    assert (sent.code, sent.options, sent.payload) == (Code.CONTENT, block, b"z" * 1024)
    assert net.server.dedup_size == 0
    assert net.inject(net.server, get) == [sent]
    assert len(got) == 2  # processed again, not replayed


_option = st.tuples(st.integers(0, 3000), st.binary(max_size=300))


@settings(max_examples=200, deadline=None)
@given(
    code=st.integers(64, 191),
    mid=st.integers(0, 0xFFFF),
    token=st.binary(max_size=8),
    opts=st.lists(_option, max_size=5).map(tuple),
    payload=st.binary(max_size=40),
)
def test_piggybacked_options_is_serialize_or_declines(
    code: int, mid: int, token: bytes, opts: tuple[tuple[int, bytes], ...], payload: bytes
) -> None:
    data = piggybacked_options(code, mid, token, opts, payload)
    numbers = [n for n, _ in opts]
    if numbers != sorted(numbers) or 23 in numbers:
        assert data is None
    else:
        assert data == serialize(Message(Type.ACK, code, mid, token, opts, payload))

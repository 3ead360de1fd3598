"""Server side of the endpoint: requests in, answers out (RFC 7252 §4, §5)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m_runtime.coap import (
    Code,
    Endpoint,
    ErrorKind,
    Message,
    Parameters,
    ProtocolError,
    RequestReceived,
    Type,
    parse,
    serialize,
)
from lwm2m_runtime.coap.dedup import ENTRY_COST

from .harness import DEVICE, Net, con, events

PROFILE = settings.get_profile("coap")
UPDATE = con(Code.POST, 0x1234, b"\x01\x02\x03\x04", path="/rd/abc", query=["lt=300"])


def _request(net: Net, msg: Message) -> RequestReceived:
    assert net.inject(net.server, msg) == []
    (event,) = events(net.server)
    assert isinstance(event, RequestReceived)
    return event


def test_con_request_gets_piggybacked_answer() -> None:
    net = Net()
    event = _request(net, UPDATE)
    assert event.peer == DEVICE and event.message.uri_path == ["rd", "abc"]
    assert event.message.uri_query == ["lt=300"]
    net.server.respond(event.exchange, Message.response(Code.CHANGED))
    (ack,) = net.sent(net.server)
    assert (ack.mtype, ack.code, ack.mid, ack.token) == (
        Type.ACK,
        Code.CHANGED,
        0x1234,
        UPDATE.token,
    )
    assert net.server.get_timer() is None  # nothing left to do: no empty ACK, no retransmission


def test_duplicate_con_replays_the_cached_answer_without_a_second_event() -> None:
    net = Net()
    event = _request(net, UPDATE)
    net.server.respond(event.exchange, Message.response(Code.CHANGED, b"ok"))
    first = net.sent(net.server)
    net.now = 100.0
    assert net.inject(net.server, UPDATE) == first
    assert events(net.server) == []
    assert net.server.counters["duplicates"] == 1


def test_duplicate_while_processing_is_ignored_then_gets_the_empty_ack() -> None:
    net = Net()
    _request(net, UPDATE)
    assert net.inject(net.server, UPDATE) == []  # still being processed: no event, no datagram
    assert events(net.server) == []
    net.now = 1.0
    net.server.handle_timer(net.now)
    (empty_ack,) = net.sent(net.server)
    assert (empty_ack.mtype, empty_ack.code, empty_ack.mid) == (Type.ACK, 0, 0x1234)
    assert net.inject(net.server, UPDATE) == [empty_ack]


def test_dedup_forgets_after_exchange_lifetime() -> None:
    net = Net()
    event = _request(net, UPDATE)
    net.server.respond(event.exchange, Message.response(Code.CHANGED))
    net.sent(net.server)
    net.now = 247.5
    assert isinstance(_request(net, UPDATE), RequestReceived)


def test_dedup_memory_is_bounded_oldest_first() -> None:
    # entries older than MAX_TRANSMIT_SPAN (45 s: no retransmission of theirs can still leave
    # the client) make room for new ones, oldest first
    net = Net(server_params=Parameters(dedup_capacity=10))
    for mid in range(25):
        event = _request(net, con(Code.POST, mid, path="/rd/a"))
        net.server.respond(event.exchange, Message.response(Code.CHANGED))
        net.sent(net.server)
        net.now += 5.0
    assert net.server.dedup_size == 10
    (replayed,) = net.inject(net.server, con(Code.POST, 24, path="/rd/a"))
    assert replayed.code == Code.CHANGED
    assert isinstance(_request(net, con(Code.POST, 0, path="/rd/a")), RequestReceived)
    assert net.server.limit_counters()["dedup_evicted"] == 16


OTHER = ("203.0.113.9", 5683)


def _from(net: Net, peer: tuple[str, int], msg: Message) -> list[Message]:
    net.server.receive_datagram(serialize(msg), peer, net.now)
    return [parse(d) for d, _ in net.server.datagrams_to_send(net.now)]


def test_dedup_full_of_recent_entries_refuses_the_heavy_peer_with_5_03() -> None:
    """Evicting an entry younger than MAX_TRANSMIT_SPAN could let its retransmission be
    processed twice: when a flood fills the cache, the flooding peer waits instead (5.03 with
    Max-Age, nothing remembered), and a light peer is still served."""
    net = Net(server_params=Parameters(dedup_capacity=10))
    for mid in range(10):
        event = _request(net, con(Code.POST, mid, path="/dp"))
        net.server.respond(event.exchange, Message.response(Code.CHANGED))
        net.sent(net.server)
    net.now = 10.0
    (refused,) = net.inject(net.server, con(Code.POST, 10, path="/dp"))
    assert refused.code == Code.SERVICE_UNAVAILABLE and refused.mid == 10
    assert refused.max_age == 35  # until the oldest entry is 45 s old
    assert [e.kind for e in events(net.server) if isinstance(e, ProtocolError)] == [
        ErrorKind.OVERLOAD
    ]
    assert net.server.dedup_size == 10
    # every answer of the heavy peer is still replayed, none processed twice
    for mid in range(10):
        (replayed,) = net.inject(net.server, con(Code.POST, mid, path="/dp"))
        assert replayed.code == Code.CHANGED
    assert events(net.server) == []
    # a NON of the heavy peer is dropped, not answered
    assert net.inject(net.server, con(Code.POST, 11, path="/dp").replace(mtype=Type.NON)) == []
    assert [e.kind for e in events(net.server) if isinstance(e, ProtocolError)] == [
        ErrorKind.OVERLOAD
    ]
    # a light peer is served (the oldest entry makes room)
    assert _from(net, OTHER, con(Code.POST, 1, path="/rd/b")) == []
    (served,) = events(net.server)
    assert isinstance(served, RequestReceived) and served.peer == OTHER
    assert net.server.dedup_size == 10
    counters = net.server.limit_counters()
    assert counters["dedup_full"] == 2 and counters["dedup_evicted"] == 1
    # once the oldest entries are old enough, the heavy peer is served again
    net.now = 45.0
    assert isinstance(_request(net, con(Code.POST, 10, path="/dp")), RequestReceived)


def test_dedup_is_bounded_in_bytes() -> None:
    net = Net(server_params=Parameters(dedup_max_bytes=4000))
    for mid in range(20):
        event = _request(net, con(Code.GET, mid, path="/big"))
        net.server.respond(event.exchange, Message.response(Code.CONTENT, b"x" * 500))
        net.sent(net.server)
        net.now += 50.0
    # checked when an entry is added; the answer stored after it may exceed it by one answer
    assert 0 < net.server.dedup_size <= 4000 // (ENTRY_COST + 500) + 1
    assert net.server._dedup.size_bytes <= 4000 + 520


def test_piggybacked_answers_count_in_the_byte_bound() -> None:
    net = Net()
    sent = 0
    for mid in range(5):
        event = _request(net, con(Code.POST, mid, path="/rd/a"))
        net.server.respond(event.exchange, Message.response(Code.CHANGED, b"x" * mid))
        ((data, _),) = net.server.datagrams_to_send(net.now)
        sent += len(data)
    assert net.server._dedup.size_bytes == 5 * ENTRY_COST + sent


def test_an_answer_after_its_entry_expired_is_sent_and_not_remembered() -> None:
    net = Net()
    event = _request(net, UPDATE)
    net.now = 300.0  # past EXCHANGE_LIFETIME: the next request expires the entry
    assert _from(net, OTHER, con(Code.POST, 1, path="/rd/b")) == []
    events(net.server)
    net.server.respond(event.exchange, Message.response(Code.CHANGED, b"late"))
    (late,) = net.sent(net.server)
    assert (late.code, late.mid, late.payload) == (Code.CHANGED, UPDATE.mid, b"late")
    assert net.server.dedup_size == 1 and net.server._dedup.size_bytes == ENTRY_COST
    # its retransmission is a new request, not a replay
    assert isinstance(_request(net, UPDATE), RequestReceived)


def test_slow_answer_goes_as_separate_con_response_with_retransmission() -> None:
    net = Net(server_params=Parameters(empty_ack_delay=0.5))
    event = _request(net, UPDATE)
    assert net.server.get_timer() == 0.5
    net.now = 0.5
    net.server.handle_timer(net.now)
    (empty_ack,) = net.sent(net.server)
    assert (empty_ack.mtype, empty_ack.code, empty_ack.mid) == (Type.ACK, 0, UPDATE.mid)
    net.now = 3.0
    net.server.respond(event.exchange, Message.response(Code.CHANGED))
    (response,) = net.sent(net.server)
    assert (response.mtype, response.code, response.token) == (Type.CON, Code.CHANGED, UPDATE.token)
    assert response.mid != UPDATE.mid
    # not acknowledged: retransmitted at 2.5 s (FixedRandom), then 5 s later
    assert net.server.get_timer() == 5.5
    net.now = 5.5
    net.server.handle_timer(net.now)
    assert net.sent(net.server) == [response]
    assert net.server.get_timer() == 10.5
    assert net.inject(net.server, Message(Type.ACK, 0, response.mid)) == []
    assert net.server.get_timer() is None


def test_non_request_gets_non_response() -> None:
    net = Net()
    msg = UPDATE.replace(mtype=Type.NON)
    event = _request(net, msg)
    assert net.server.get_timer() is None  # no empty ACK for a NON
    net.server.respond(event.exchange, Message.response(Code.CHANGED))
    (resp,) = net.sent(net.server)
    assert (resp.mtype, resp.code, resp.token) == (Type.NON, Code.CHANGED, msg.token)
    assert net.inject(net.server, msg) == [] and events(net.server) == []  # duplicate ignored


def test_ping_gets_rst() -> None:
    net = Net()
    (rst,) = net.inject(net.server, Message(Type.CON, 0, 0x4242))
    assert (rst.mtype, rst.code, rst.mid) == (Type.RST, 0, 0x4242)
    assert events(net.server) == []
    assert net.server.counters["ping"] == 1


def _refusal(net: Net) -> ProtocolError:
    (event,) = events(net.server)
    assert isinstance(event, ProtocolError)
    return event


def test_token_longer_than_8_bytes() -> None:
    """A CON is rejected with RST (RFC 7252 §3/§4.2); a NON is dropped; never a request event."""
    net = Net()
    bad = bytearray(serialize(UPDATE.replace(token=b"")))
    bad[0] = 0x49
    data = bytes(bad[:4]) + b"123456789" + bytes(bad[4:])
    (rst,) = net.inject(net.server, data)
    assert (rst.mtype, rst.mid) == (Type.RST, UPDATE.mid)
    assert _refusal(net).kind is ErrorKind.FORMAT_ERROR
    data_non = bytes([0x59]) + data[1:]
    assert net.inject(net.server, data_non) == []
    assert _refusal(net).kind is ErrorKind.FORMAT_ERROR


def test_format_errors_rst_for_con_silence_otherwise() -> None:
    net = Net()
    (rst,) = net.inject(net.server, b"\x40\x02\x00\x07\xff")  # marker, no payload
    assert (rst.mtype, rst.mid) == (Type.RST, 7)
    assert net.inject(net.server, b"\x50\x02\x00\x07\xff") == []  # NON
    assert net.inject(net.server, b"\x60\x02\x00\x07\xff") == []  # ACK
    assert net.inject(net.server, b"\x70\x02\x00\x07\xff") == []  # RST
    assert net.inject(net.server, b"\x80\x02\x00\x07") == []  # unknown version: silent
    assert net.inject(net.server, b"\x50\x00\x00\x08") == []  # Empty NON
    (rst,) = net.inject(net.server, b"\x40\x20\x00\x09")  # reserved class 1
    assert rst.mtype is Type.RST
    kinds = {e.kind for e in events(net.server) if isinstance(e, ProtocolError)}
    assert kinds == {ErrorKind.FORMAT_ERROR}
    assert net.server.counters["format_error"] == 7


def test_ack_carrying_a_request_is_dropped() -> None:
    net = Net()
    assert net.inject(net.server, UPDATE.replace(mtype=Type.ACK)) == []
    assert _refusal(net).kind is ErrorKind.FORMAT_ERROR


def test_unknown_critical_option_gets_4_02() -> None:
    net = Net()
    msg = UPDATE.with_option(2049, b"x")  # odd: critical, unknown
    (resp,) = net.inject(net.server, msg)
    assert (resp.mtype, resp.code, resp.mid, resp.token) == (
        Type.ACK,
        Code.BAD_OPTION,
        msg.mid,
        msg.token,
    )
    assert _refusal(net).kind is ErrorKind.BAD_OPTION
    assert net.inject(net.server, msg) == [resp]  # replayed from the dedup cache


def test_oscore_is_unknown_by_default_so_4_02() -> None:
    net = Net()
    (resp,) = net.inject(net.server, UPDATE.with_option(9, b""))
    assert resp.code == Code.BAD_OPTION


def test_unknown_elective_option_is_ignored() -> None:
    net = Net()
    event = _request(net, UPDATE.with_option(2048, b"x"))
    assert event.message.uri_path == ["rd", "abc"]


def test_known_critical_option_with_bad_length_gets_4_02() -> None:
    net = Net()
    (resp,) = net.inject(net.server, UPDATE.with_option(7, b"\x00\x01\x02"))  # Uri-Port 3 bytes
    assert resp.code == Code.BAD_OPTION


def test_invalid_utf8_gets_4_00() -> None:
    net = Net()
    msg = Message(Type.CON, Code.POST, 77, b"tk", ((11, b"rd"), (15, b"ep=\xc3\x28")))
    (resp,) = net.inject(net.server, serialize(msg))
    assert (resp.mtype, resp.code, resp.mid, resp.token) == (Type.ACK, Code.BAD_REQUEST, 77, b"tk")
    assert _refusal(net).kind is ErrorKind.BAD_UTF8
    (resp_non,) = net.inject(net.server, serialize(msg.replace(mtype=Type.NON, mid=78)))
    assert (resp_non.mtype, resp_non.code) == (Type.NON, Code.BAD_REQUEST)


def test_unknown_method_gets_4_05() -> None:
    net = Net()
    (resp,) = net.inject(net.server, con(0x08, 5, path="/x"))
    assert resp.code == Code.METHOD_NOT_ALLOWED


def test_protocol_error_events_can_be_switched_off_counters_stay() -> None:
    net = Net(server_params=Parameters(report_protocol_errors=False))
    net.inject(net.server, b"\x40\x02\x00\x07\xff")
    assert events(net.server) == []
    assert net.server.counters["format_error"] == 1


@given(st.lists(st.binary(max_size=40), max_size=20))
@PROFILE
def test_receive_datagram_never_raises(datagrams: list[bytes]) -> None:
    endpoint = Endpoint()
    for i, data in enumerate(datagrams):
        endpoint.receive_datagram(data, ("10.0.0.1", 1000 + i % 3), float(i))
        for event in iter(endpoint.next_event, None):
            if isinstance(event, RequestReceived):
                endpoint.respond(event.exchange, Message.response(Code.CONTENT, b"x" * 2000))
        for out, _ in endpoint.datagrams_to_send(float(i)):
            parse(out)
        endpoint.handle_timer(float(i))


def test_dedup_full_under_a_high_rate_spread_over_many_peers_refuses_nobody() -> None:
    """Many devices each near the average share (a busy fleet, or a benchmark) are not a
    flood from one peer: the oldest entries make room as before, nobody gets 5.03."""
    net = Net(server_params=Parameters(dedup_capacity=10))
    for i in range(30):
        peer = (f"203.0.113.{i}", 5683)
        assert _from(net, peer, con(Code.POST, 7, path="/rd/x")) == []
        (event,) = events(net.server)
        assert isinstance(event, RequestReceived)
        net.server.respond(event.exchange, Message.response(Code.CHANGED))
        net.sent(net.server)
    assert net.server.dedup_size == 10
    assert net.server.limit_counters()["dedup_full"] == 0


@given(
    code=st.sampled_from([Code.CHANGED, Code.CONTENT, Code.DELETED, Code.NOT_FOUND]),
    token=st.binary(max_size=8),
    payload=st.binary(max_size=1100),
    szx=st.integers(0, 6),
    con_request=st.booleans(),
)
@PROFILE
def test_an_answer_without_options_is_the_general_encoding_and_replays_the_same_bytes(
    code: int, token: bytes, payload: bytes, szx: int, con_request: bool
) -> None:
    """The piggybacked fast path (no options, one block) answers as the general path does:
    the ACK is ``serialize`` of the message, a larger body is sliced (Block2), a NON gets a
    NON, and the duplicate of a CON gets the very same bytes."""
    net = Net(server_params=Parameters(block_szx=szx))
    request = con(Code.GET, 0x2222, token, path="/3/0")
    if not con_request:
        request = request.replace(mtype=Type.NON)
    event = _request(net, request)
    net.server.respond(event.exchange, Message.response(code, payload))
    (data, _), *rest = net.server.datagrams_to_send(net.now)
    assert rest == []
    answer = parse(data)
    block = 16 << szx
    if con_request and len(payload) <= block:
        assert data == serialize(Message(Type.ACK, code, 0x2222, token, (), payload))
    elif con_request:
        assert (answer.mtype, answer.code, answer.mid, answer.token) == (
            Type.ACK,
            code,
            0x2222,
            token,
        )
        assert (
            answer.block2 is not None and answer.block2.more and answer.payload == payload[:block]
        )
    else:
        assert (answer.mtype, answer.code, answer.token) == (Type.NON, code, token)
    if con_request:
        net.server.receive_datagram(serialize(request), DEVICE, net.now)
        assert net.server.datagrams_to_send(net.now) == [(data, DEVICE)]

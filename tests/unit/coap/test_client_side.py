"""Client side: requests the server sends to devices (RFC 7252 §4.2, §4.7, §5.3)."""

from __future__ import annotations

from lwm2m_runtime.coap import (
    Code,
    ErrorKind,
    FailureReason,
    HandleState,
    Message,
    Parameters,
    ProtocolError,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    Type,
    serialize,
)

from .harness import DEVICE, Net, events

READ = Message.request(Code.GET, "/3/0/0")


def _answer_all(net: Net, code: int = Code.CONTENT, payload: bytes = b"v") -> list[Message]:
    """The device answers every request it got; returns the requests."""
    got = []
    for event in events(net.device):
        assert isinstance(event, RequestReceived)
        got.append(event.message)
        net.device.respond(event.exchange, Message.response(code, payload))
    return got


def test_request_and_piggybacked_response() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, READ)
    assert len(handle.token) == 8
    net.flush()
    (request,) = _answer_all(net, payload=b"Open Mobile Alliance")
    assert request.uri_path == ["3", "0", "0"] and request.token == handle.token
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.handle is handle
    assert event.message.payload == b"Open Mobile Alliance"
    assert handle.state is HandleState.DONE
    assert net.server.get_timer() is None


def test_tokens_are_random_8_bytes_and_distinct() -> None:
    net = Net()
    tokens = {net.server.send_request(DEVICE, READ).token for _ in range(20)}
    assert len(tokens) == 20 and all(len(t) == 8 for t in tokens)


def test_retransmission_schedule_then_timeout() -> None:
    """ACK_TIMEOUT 2 s x factor 1.5 -> the injected random gives 2.5 s; doubling each time; after
    MAX_RETRANSMIT (4) retransmissions the request fails at 2.5 * 31 = 77.5 s."""
    net = Net()
    sent_at: list[float] = []

    def lose(data: bytes, to: object) -> bool:
        sent_at.append(net.now)
        return True

    net.drop = lose
    handle = net.server.send_request(DEVICE, READ)
    net.run_until(200.0)
    assert sent_at == [0.0, 2.5, 7.5, 17.5, 37.5]
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.handle is handle
    assert event.reason is FailureReason.TIMEOUT
    assert net.server.counters["retransmissions"] == 4
    assert net.server.outstanding(DEVICE) == (0, 0)


def test_retransmission_parameters_are_configurable() -> None:
    net = Net(server_params=Parameters(ack_timeout=1.0, max_retransmit=2))
    sent_at: list[float] = []

    def lose(data: bytes, to: object) -> bool:
        sent_at.append(net.now)
        return True

    net.drop = lose
    net.server.send_request(DEVICE, READ)
    net.run_until(100.0)
    assert sent_at == [0.0, 1.25, 3.75]
    assert isinstance(events(net.server)[0], RequestFailed)


def test_lost_ack_is_recovered_by_retransmission_and_dedup() -> None:
    net = Net()
    lost: list[bytes] = []

    def lose_first_answer(data: bytes, to: object) -> bool:
        if to == ("192.0.2.1", 5683) and not lost:
            lost.append(data)
            return True
        return False

    net.drop = lose_first_answer
    handle = net.server.send_request(DEVICE, READ)
    net.flush()
    _answer_all(net)
    net.flush()  # the piggybacked answer is lost
    assert events(net.server) == []
    net.run_until(3.0)  # retransmission at 2.5 s; the device replays its cached answer
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.handle is handle
    assert events(net.device) == []  # the device application saw the request once


def test_nstart_one_queues_requests_per_peer_in_order() -> None:
    net = Net()
    handles = [
        net.server.send_request(DEVICE, Message.request(Code.GET, f"/3/0/{i}")) for i in range(3)
    ]
    assert [h.state for h in handles] == [
        HandleState.ACTIVE,
        HandleState.QUEUED,
        HandleState.QUEUED,
    ]
    assert net.server.outstanding(DEVICE) == (1, 2)
    order = []
    for _ in range(3):
        net.flush()
        requests = _answer_all(net)
        assert len(requests) == 1  # never two outstanding at once
        order.append(requests[0].uri_path[-1])
        net.flush()
    assert order == ["0", "1", "2"]
    assert [type(e) for e in events(net.server)] == [ResponseReceived] * 3


def test_other_peers_are_not_held_by_nstart() -> None:
    net = Net()
    net.server.send_request(DEVICE, READ)
    other = net.server.send_request(("203.0.113.9", 5683), READ)
    assert other.state is HandleState.ACTIVE


def test_queue_full_fails_the_request() -> None:
    net = Net(server_params=Parameters(request_queue_size=2))
    handles = [net.server.send_request(DEVICE, READ) for _ in range(4)]
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.handle is handles[3]
    assert event.reason is FailureReason.QUEUE_FULL


def test_rst_after_timeout_does_not_break_later_requests() -> None:
    """The aiocoap failure of issue 10: a device RSTs a request we already gave up on."""
    net = Net()
    net.drop = lambda data, to: True
    first = net.server.send_request(DEVICE, READ)
    net.run_until(100.0)
    (failed,) = events(net.server)
    assert isinstance(failed, RequestFailed) and failed.handle is first
    first_mid = net.wire[0][1].mid
    net.drop = lambda data, to: False
    assert net.inject(net.server, Message(Type.RST, 0, first_mid)) == []
    assert all(isinstance(e, ProtocolError) for e in events(net.server))
    for _ in range(3):  # and every later request works
        handle = net.server.send_request(DEVICE, READ)
        net.flush()
        _answer_all(net)
        net.flush()
        (event,) = events(net.server)
        assert isinstance(event, ResponseReceived) and event.handle is handle


def test_rst_fails_the_request_and_frees_the_slot() -> None:
    net = Net()
    first = net.server.send_request(DEVICE, READ)
    second = net.server.send_request(DEVICE, READ)
    (request,) = net.sent(net.server)
    (next_request,) = net.inject(net.server, Message(Type.RST, 0, request.mid))
    assert next_request.token == second.token  # the queued request goes out at once
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.handle is first
    assert event.reason is FailureReason.RESET
    assert second.state is HandleState.ACTIVE


def test_cancel_frees_the_slot_at_once_and_late_answer_is_rst() -> None:
    net = Net()
    first = net.server.send_request(DEVICE, READ)
    second = net.server.send_request(DEVICE, READ)
    (request,) = net.sent(net.server)
    net.server.cancel(first)
    assert second.state is HandleState.ACTIVE and net.server.outstanding(DEVICE) == (1, 0)
    net.sent(net.server)
    # the device answers the cancelled request late, as a separate CON response
    late = Message(Type.CON, Code.CONTENT, 999, request.token, (), b"late")
    (rst,) = net.inject(net.server, late)
    assert (rst.mtype, rst.mid) == (Type.RST, 999)
    assert [e.kind for e in events(net.server) if isinstance(e, ProtocolError)] == [
        ErrorKind.UNMATCHED
    ]
    net.server.cancel(first)  # idempotent


def test_separate_response_is_acknowledged_and_delivered() -> None:
    net = Net(device_params=Parameters(empty_ack_delay=0.2))
    handle = net.server.send_request(DEVICE, READ)
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.run_until(0.2)  # the device sends an empty ACK
    assert net.wire[-1][0] == "d->s" and net.wire[-1][1].code == 0
    assert handle.state is HandleState.ACTIVE and net.server.outstanding(DEVICE) == (0, 0)
    net.now = 10.0
    net.device.respond(request.exchange, Message.response(Code.CONTENT, b"slow"))
    net.flush()
    direction, ack = net.wire[-1]
    assert direction == "s->d" and (ack.mtype, ack.code) == (Type.ACK, 0)
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.message.payload == b"slow"
    assert net.device.get_timer() is None  # our ACK stopped its retransmission


def test_acknowledged_request_without_response_times_out() -> None:
    net = Net(server_params=Parameters(response_timeout=30.0))
    handle = net.server.send_request(DEVICE, READ)
    (request,) = net.sent(net.server)
    net.inject(net.server, Message(Type.ACK, 0, request.mid))
    net.run_until(31.0)
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.handle is handle
    assert event.reason is FailureReason.RESPONSE_TIMEOUT


def test_response_from_a_different_peer_is_not_matched() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, READ)
    (request,) = net.sent(net.server)
    spoof = Message(Type.CON, Code.CONTENT, 4321, request.token, (), b"evil")
    net.server.receive_datagram(serialize(spoof), ("203.0.113.66", 5683), 0.0)
    (rst,) = net.sent(net.server)
    assert (rst.mtype, rst.mid) == (Type.RST, 4321)
    assert not any(isinstance(e, ResponseReceived) for e in events(net.server))
    assert handle.state is HandleState.ACTIVE


def test_piggybacked_ack_with_wrong_token_is_ignored() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, READ)
    (request,) = net.sent(net.server)
    assert net.inject(net.server, Message(Type.ACK, Code.CONTENT, request.mid, b"nope")) == []
    assert handle.state is HandleState.ACTIVE


def test_non_request() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, READ.replace(mtype=Type.NON))
    net.flush()
    (_request,) = _answer_all(net)
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.handle is handle
    assert net.wire[0][1].mtype is Type.NON and net.wire[1][1].mtype is Type.NON


def test_cancelled_queued_request_gives_its_queue_place_back() -> None:
    net = Net(server_params=Parameters(request_queue_size=2))
    net.server.send_request(DEVICE, READ)
    queued = [net.server.send_request(DEVICE, READ) for _ in range(2)]
    for handle in queued:
        net.server.cancel(handle)
    assert net.server.outstanding(DEVICE) == (1, 0)
    more = [net.server.send_request(DEVICE, READ) for _ in range(2)]
    assert [h.state for h in more] == [HandleState.QUEUED, HandleState.QUEUED]
    assert events(net.server) == []  # no QUEUE_FULL


def test_finished_requests_do_not_pile_up_in_the_timer_heap() -> None:
    """Each acknowledged request waits up to response_timeout; once answered, its timer entry
    must not keep the request alive until then."""
    net = Net(device_params=Parameters(empty_ack_delay=0.0))
    for _ in range(3000):
        net.server.send_request(DEVICE, READ)
        net.flush()
        net.run_until(net.now)  # the device sends an empty ACK: the request waits for 247 s
        for event in events(net.device):
            assert isinstance(event, RequestReceived)
            net.device.respond(event.exchange, Message.response(Code.CONTENT))
        net.flush()
        net.now += 0.01
    assert sum(isinstance(e, ResponseReceived) for e in events(net.server)) == 3000
    assert len(net.server._heap) < 2100  # compacted (was 3000+ entries alive for 247 s)

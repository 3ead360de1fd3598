"""Block-wise transfers (RFC 7959) both ways, driven through two endpoints in memory."""

from __future__ import annotations

from lwm2m_runtime.coap import (
    Block,
    Code,
    ErrorKind,
    FailureReason,
    HandleState,
    Message,
    Notification,
    Parameters,
    ProtocolError,
    RequestFailed,
    RequestHandle,
    RequestReceived,
    ResponseReceived,
    Type,
    UnknownNotification,
    encode_uint,
    options,
    parse,
    serialize,
)

from .harness import DEVICE, Net, con, events

BODY = bytes(i % 251 for i in range(3000))


def test_large_response_is_sliced_by_the_device_and_reassembled_by_the_server() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, Message.request(Code.GET, "/3/0"))
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(request.exchange, Message.response(Code.CONTENT, BODY, content_format=11542))
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.handle is handle
    assert event.message.payload == BODY and event.message.block2 is None
    assert event.message.content_format == 11542
    assert events(net.device) == []  # blocks 1 and 2 came from the device's Block2 cache
    blocks = [m.block2 for d, m in net.wire if d == "d->s"]
    assert blocks == [Block(0, True, 6), Block(1, True, 6), Block(2, False, 6)]
    follow_ups = [m for d, m in net.wire if d == "s->d"][1::2]  # requests, not ACKs
    assert all(m.token != handle.token for m in follow_ups)
    assert handle.state is HandleState.DONE


def test_size2_on_the_first_block() -> None:
    net = Net()
    net.inject(net.device, con(Code.GET, 1, path="/3/0"))
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(request.exchange, Message.response(Code.CONTENT, BODY))
    (first,) = net.sent(net.device)
    assert first.size2 == 3000 and first.block2 == Block(0, True, 6) and len(first.payload) == 1024


def test_client_chosen_smaller_block_size_is_honoured() -> None:
    net = Net()
    msg = con(Code.GET, 1, path="/3/0").with_option(23, Block(0, False, 2).encode())
    net.inject(net.device, msg)
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived) and request.message.block2 is None
    net.device.respond(request.exchange, Message.response(Code.CONTENT, BODY[:200]))
    (first,) = net.sent(net.device)
    assert first.block2 == Block(0, True, 2) and first.payload == BODY[:64]
    # later blocks come from the cache, without the application
    later = con(Code.GET, 2, b"\x02", path="/3/0").with_option(23, Block(3, False, 2).encode())
    (last,) = net.inject(net.device, later)
    assert last.block2 == Block(3, False, 2) and last.payload == BODY[192:200]
    assert events(net.device) == []


def test_stateless_block2_without_cache_asks_the_application_and_slices() -> None:
    net = Net()
    msg = con(Code.GET, 1, path="/3/0").with_option(23, Block(2, False, 6).encode())
    net.inject(net.device, msg)
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(request.exchange, Message.response(Code.CONTENT, BODY))
    (resp,) = net.sent(net.device)
    assert resp.block2 == Block(2, False, 6) and resp.payload == BODY[2048:]


def test_block2_number_past_the_end_is_4_02() -> None:
    net = Net()
    msg = con(Code.GET, 1, path="/3/0").with_option(23, Block(9, False, 6).encode())
    net.inject(net.device, msg)
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(request.exchange, Message.response(Code.CONTENT, BODY))
    (resp,) = net.sent(net.device)
    assert resp.code == Code.BAD_OPTION


def test_block2_follow_up_error_fails_the_request() -> None:
    net = Net()
    handle = net.server.send_request(DEVICE, Message.request(Code.GET, "/3/0"))
    (request,) = net.sent(net.server)
    first = Message(
        Type.ACK,
        Code.CONTENT,
        request.mid,
        request.token,
        options(block2=Block(0, True, 6)),
        BODY[:1024],
    )
    (follow_up,) = net.inject(net.server, first)
    assert follow_up.block2 == Block(1, False, 6) and follow_up.code == Code.GET
    net.inject(net.server, Message(Type.ACK, Code.NOT_FOUND, follow_up.mid, follow_up.token))
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.reason is FailureReason.BLOCK_TRANSFER
    assert handle.state is HandleState.DONE
    # the device's error answer travels with the failure (the application reports it)
    assert event.response is not None and event.response.code == Code.NOT_FOUND


def test_block2_follow_ups_stop_at_the_body_cap() -> None:
    """A peer announcing more=1 forever does not make us assemble without bound."""
    net = Net(server_params=Parameters(max_block2_body=2048))
    handle = net.server.send_request(DEVICE, Message.request(Code.GET, "/3/0"))
    (request,) = net.sent(net.server)
    token = request.token
    for num in range(3):
        answer = Message(
            Type.ACK, Code.CONTENT, request.mid, token, options(block2=Block(num, True, 6)),
            BODY[num * 1024 : (num + 1) * 1024],
        )  # fmt: skip
        sent = net.inject(net.server, answer)
        if num < 2:
            (request,) = sent
            assert request.block2 == Block(num + 1, False, 6)
            token = request.token
    assert net.sent(net.server) == []  # block 3 is never asked
    (event,) = events(net.server)
    assert isinstance(event, RequestFailed) and event.reason is FailureReason.BLOCK_TRANSFER
    assert event.response is None and "larger than 2048" in event.detail
    assert handle.state is HandleState.DONE


def test_block2_notification_is_fetched_with_get_without_observe_and_delivered_once() -> None:
    net = Net()
    observe = Message.request(Code.GET, "/3/0", observe=0)
    handle = net.server.send_request(DEVICE, observe)
    net.flush()
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(
        request.exchange, Message.response(Code.CONTENT, b"small", extra=[(6, encode_uint(2))])
    )
    net.flush()
    assert isinstance(events(net.server)[0], ResponseReceived)
    # the device notifies a large value: first block in the notification (RFC 7959 §2.6)
    etag = b"\x07"
    first = Message(
        Type.CON,
        Code.CONTENT,
        900,
        handle.token,
        options(observe=3, etag=etag, block2=Block(0, True, 6)),
        BODY[:1024],
    )
    sent = net.inject(net.server, first)
    assert [m.mtype for m in sent] == [Type.CON]  # the ACK waits for the whole value (below)
    follow_up = sent[0]
    assert follow_up.code == Code.GET and follow_up.observe is None
    assert follow_up.uri_path == ["3", "0"] and follow_up.block2 == Block(1, False, 6)
    assert follow_up.token != handle.token
    net.inject(net.device, follow_up)
    (get,) = events(net.device)
    assert isinstance(get, RequestReceived)
    net.device.respond(get.exchange, Message.response(Code.CONTENT, BODY[:2000], extra=[(4, etag)]))
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.handle is handle
    assert event.message.payload == BODY[:2000] and event.message.observe == 3
    assert handle.state is HandleState.OBSERVING
    acks = [m.mid for d, m in net.wire if d == "s->d" and m.mtype is Type.ACK]
    assert acks == [900]  # once the value was delivered


def test_large_request_body_goes_block1_and_is_reassembled() -> None:
    net = Net()
    write = Message.request(Code.PUT, "/5/0/0", payload=BODY, content_format=42)
    handle = net.server.send_request(DEVICE, write)
    net.flush()
    (request,) = events(net.device)  # one event, for the whole body
    assert isinstance(request, RequestReceived)
    assert request.message.payload == BODY and request.message.block1 is None
    assert request.message.content_format == 42
    net.device.respond(request.exchange, Message.response(Code.CHANGED))
    net.flush()
    (event,) = events(net.server)
    assert isinstance(event, ResponseReceived) and event.handle is handle
    assert event.message.code == Code.CHANGED and event.message.block1 == Block(2, False, 6)
    continues = [m for d, m in net.wire if d == "d->s" and m.code == Code.CONTINUE]
    assert [m.block1 for m in continues] == [Block(0, True, 6), Block(1, True, 6)]
    first = next(m for d, m in net.wire if d == "s->d")
    assert first.size1 == 3000


def test_block1_sender_adopts_a_smaller_block_size_from_the_server() -> None:
    net = Net()
    net.server.send_request(DEVICE, Message.request(Code.PUT, "/5/0/0", payload=BODY))
    (first,) = net.sent(net.server)
    assert first.block1 == Block(0, True, 6)
    cont = Message(
        Type.ACK, Code.CONTINUE, first.mid, first.token, options(block1=Block(0, True, 4))
    )
    (second,) = net.inject(net.server, cont)
    assert second.block1 == Block(4, True, 4) and second.payload == BODY[1024:1280]


def _block(mid: int, num: int, more: bool, payload: bytes, size1: int | None = None) -> Message:
    msg = con(Code.POST, mid, path="/dp").with_option(27, Block(num, more, 6).encode())
    if size1 is not None:
        msg = msg.with_option(60, encode_uint(size1))
    return msg.replace(payload=payload)


def test_missing_block_is_4_08() -> None:
    net = Net()
    (cont,) = net.inject(net.server, _block(1, 0, True, BODY[:1024]))
    assert cont.code == Code.CONTINUE and cont.block1 == Block(0, True, 6)
    (resp,) = net.inject(net.server, _block(2, 2, False, BODY[2048:]))
    assert resp.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert [e.kind for e in events(net.server) if isinstance(e, ProtocolError)] == [
        ErrorKind.BAD_BLOCK
    ]
    assert net.server.block1_transfers == 0


def test_too_large_by_size1_is_4_13_before_buffering() -> None:
    net = Net(server_params=Parameters(max_body_size=2048))
    (resp,) = net.inject(net.server, _block(1, 0, True, BODY[:1024], size1=3000))
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.size1 == 2048
    assert net.server.block1_transfers == 0


def test_too_large_while_accumulating_is_4_13() -> None:
    net = Net(server_params=Parameters(max_body_size=2048))
    net.inject(net.server, _block(1, 0, True, BODY[:1024]))
    net.inject(net.server, _block(2, 1, True, BODY[1024:2048]))
    (resp,) = net.inject(net.server, _block(3, 2, False, BODY[2048:]))
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.size1 == 2048
    assert net.server.block1_transfers == 0


def test_short_intermediate_block_is_4_00() -> None:
    net = Net()
    (resp,) = net.inject(net.server, _block(1, 0, True, b"short"))
    assert resp.code == Code.BAD_REQUEST


def test_concurrent_block1_transfers_are_bounded_per_peer() -> None:
    net = Net(server_params=Parameters(max_block_transfers_per_peer=2))
    for i in range(5):
        msg = con(Code.POST, 10 + i, path=f"/dp/{i}").with_option(27, Block(0, True, 6).encode())
        net.inject(net.server, msg.replace(payload=BODY[:1024]))
    assert net.server.block1_transfers == 2
    # the newest survives: block 1 of transfer 4 continues
    msg = con(Code.POST, 20, path="/dp/4").with_option(27, Block(1, False, 6).encode())
    net.inject(net.server, msg.replace(payload=b"end"))
    (event,) = events(net.server)
    assert isinstance(event, RequestReceived) and event.message.payload == BODY[:1024] + b"end"


def test_duplicate_block_is_answered_from_dedup_not_appended_twice() -> None:
    net = Net()
    first = net.inject(net.server, _block(1, 0, True, BODY[:1024]))
    assert net.inject(net.server, _block(1, 0, True, BODY[:1024])) == first
    net.inject(net.server, _block(2, 1, False, b"tail"))
    (event,) = events(net.server)
    assert isinstance(event, RequestReceived) and event.message.payload == BODY[:1024] + b"tail"
    net.server.respond(event.exchange, Message.response(Code.CHANGED))
    (resp,) = net.sent(net.server)
    assert resp.block1 == Block(1, False, 6)


def _observing(net: Net) -> tuple[RequestHandle, bytes]:
    handle = net.server.send_request(DEVICE, Message.request(Code.GET, "/3/0", observe=0))
    (request,) = net.sent(net.server)
    first = Message(Type.ACK, Code.CONTENT, request.mid, request.token, options(observe=1), b"0")
    net.inject(net.server, first)
    assert isinstance(events(net.server)[0], ResponseReceived)
    return handle, request.token


def _big_notification(token: bytes, seq: int, mid: int) -> Message:
    opts = options(observe=seq, block2=Block(0, True, 6))
    return Message(Type.NON, Code.CONTENT, mid, token, opts, BODY[:1024])


def test_newer_notification_supersedes_an_unfinished_block2_fetch() -> None:
    net = Net()
    _, token = _observing(net)
    (fetch_old,) = net.inject(net.server, _big_notification(token, 5, 300))
    (fetch_new,) = net.inject(net.server, _big_notification(token, 6, 301))
    assert fetch_new.token != fetch_old.token
    # the answer to the abandoned fetch is not matched any more
    late = Message(Type.ACK, Code.CONTENT, fetch_old.mid, fetch_old.token, options(), b"x")
    net.inject(net.server, late)
    assert not any(isinstance(e, Notification) for e in events(net.server))
    tail = options(block2=Block(1, False, 6))
    net.inject(
        net.server, Message(Type.ACK, Code.CONTENT, fetch_new.mid, fetch_new.token, tail, b"end")
    )
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.message.observe == 6
    assert event.message.payload == BODY[:1024] + b"end"


def test_reregister_during_a_block2_fetch_forgets_the_fetch() -> None:
    net = Net()
    handle, token = _observing(net)
    (fetch,) = net.inject(net.server, _big_notification(token, 5, 300))
    net.server.reregister(handle)
    (rereg,) = net.sent(net.server)
    assert rereg.token == token and rereg.observe == 0
    late = Message(
        Type.CON, Code.CONTENT, 77, fetch.token, options(block2=Block(1, False, 6)), b"x"
    )
    (rst,) = net.inject(net.server, late)  # the fetch token is forgotten
    assert rst.mtype is Type.RST


def test_single_datagram_body_over_the_limit_is_4_13() -> None:
    net = Net(server_params=Parameters(max_body_size=100))
    (resp,) = net.inject(net.server, con(Code.POST, 1, path="/dp").replace(payload=b"x" * 101))
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.size1 == 100
    assert events(net.server)[0].__class__ is ProtocolError


def test_response_for_a_queued_block1_block_is_not_taken_as_its_answer() -> None:
    net = Net()
    other = net.server.send_request(DEVICE, Message.request(Code.GET, "/1"))
    handle = net.server.send_request(DEVICE, Message.request(Code.PUT, "/5/0/0", payload=BODY))
    (first_other,) = net.sent(net.server)
    assert handle.state is HandleState.QUEUED
    # a stray CON response with the queued request's token: not an answer to a request never sent
    stray = Message(Type.CON, Code.CHANGED, 4000, handle.token, (), b"")
    net.inject(net.server, stray)
    assert not any(isinstance(e, ResponseReceived) for e in events(net.server))
    done = Message(Type.ACK, Code.CONTENT, first_other.mid, other.token, (), b"")
    (block0,) = net.inject(net.server, done)
    assert block0.block1 == Block(0, True, 6)


def _upload_block(
    net: Net, peer: tuple[str, int], mid: int, path: str, num: int, more: bool
) -> Message:
    """Block ``num`` (1024 bytes) of an upload to ``path`` from ``peer``; the answer."""
    msg = con(Code.POST, mid, path=path).with_option(27, Block(num, more, 6).encode())
    net.server.receive_datagram(serialize(msg.replace(payload=BODY[:1024])), peer, net.now)
    (answer,) = (parse(d) for d, _ in net.server.datagrams_to_send(net.now))
    return answer


def test_8_mib_upload_without_size1_is_refused_at_the_limit_never_buffered_past_it() -> None:
    net = Net(server_params=Parameters(max_body_size=64 * 1024))
    blocks = (8 << 20) // 1024
    for num in range(blocks):
        answer = _upload_block(net, DEVICE, num, "/dp", num, num + 1 < blocks)
        assert net.server._block1.buffered_bytes <= 64 * 1024
        if answer.code != Code.CONTINUE:
            break
    assert num == 64  # the first block that would cross 64 KiB
    assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE and answer.size1 == 64 * 1024
    assert net.server.block1_transfers == 0 and net.server._block1.buffered_bytes == 0
    assert net.server.limit_counters()["too_large"] == 1


def test_8_mib_upload_with_size1_is_refused_at_the_first_block() -> None:
    net = Net()
    (resp,) = net.inject(net.server, _block(1, 0, True, BODY[:1024], size1=8 << 20))
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.size1 == 256 * 1024
    assert net.server.block1_transfers == 0


def test_new_uploads_over_the_total_are_5_03_and_uploads_in_progress_survive() -> None:
    """A flood of new transfers (other peers) must not evict an upload in progress: the new
    ones wait (5.03 + Max-Age until the least recently active transfer expires)."""
    net = Net(server_params=Parameters(max_block_transfers=3, block_transfer_lifetime=100.0))
    assert _upload_block(net, DEVICE, 1, "/dp", 0, True).code == Code.CONTINUE
    net.now = 10.0
    for i in range(2):
        peer = (f"203.0.113.{i}", 5683)
        assert _upload_block(net, peer, 1, "/dp", 0, True).code == Code.CONTINUE
    events(net.server)
    refused = _upload_block(net, ("203.0.113.99", 5683), 1, "/dp", 0, True)
    assert refused.code == Code.SERVICE_UNAVAILABLE and refused.max_age == 90
    assert [e.kind for e in events(net.server) if isinstance(e, ProtocolError)] == [
        ErrorKind.OVERLOAD
    ]
    assert net.server.limit_counters()["block1_full"] == 1
    # the first upload goes on and completes
    msg = con(Code.POST, 2, path="/dp").with_option(27, Block(1, False, 6).encode())
    net.inject(net.server, msg.replace(payload=b"end"))
    (event,) = events(net.server)
    assert isinstance(event, RequestReceived) and event.message.payload == BODY[:1024] + b"end"
    # expired transfers make room again
    net.now = 200.0
    assert _upload_block(net, ("203.0.113.99", 5683), 2, "/dp", 0, True).code == Code.CONTINUE


def test_uploads_are_bounded_in_buffered_bytes() -> None:
    net = Net(server_params=Parameters(max_block_bytes=3 * 1024))
    assert _upload_block(net, DEVICE, 1, "/dp/a", 0, True).code == Code.CONTINUE
    assert _upload_block(net, DEVICE, 2, "/dp/a", 1, True).code == Code.CONTINUE
    assert _upload_block(net, DEVICE, 3, "/dp/b", 0, True).code == Code.CONTINUE
    # the next block of either transfer would cross 3 KiB: that transfer is refused
    refused = _upload_block(net, DEVICE, 4, "/dp/a", 2, True)
    assert refused.code == Code.SERVICE_UNAVAILABLE and refused.max_age == 247
    assert net.server._block1.buffered_bytes == 1024 and net.server.block1_transfers == 1


def test_a_handler_provided_block2_answer_passes_through_unsliced_and_uncached() -> None:
    """A handler that reads one block from its own storage (the firmware download server)
    answers with Block2 already set: the endpoint sends exactly that block, does not slice the
    payload again nor keep it in its Block2 cache, so every later block reaches the handler."""
    net = Net()
    for num in (0, 1):
        msg = con(Code.GET, 1 + num, path="/fw/t").with_option(23, Block(num, False, 6).encode())
        net.inject(net.device, msg)
        (request,) = events(net.device)
        assert isinstance(request, RequestReceived)
        assert request.exchange.block2 == Block(num, False, 6)
        chunk = BODY[num * 1024 : num * 1024 + 1024]
        opts = options(block2=Block(num, True, 6), size2=3000 if num == 0 else None)
        net.device.respond(request.exchange, Message(Type.ACK, Code.CONTENT, 0, b"", opts, chunk))
        (answer,) = net.sent(net.device)
        assert answer.block2 == Block(num, True, 6) and answer.payload == chunk
        assert answer.size2 == (3000 if num == 0 else None)


def test_a_handler_may_answer_a_whole_block_larger_than_the_endpoint_would_slice() -> None:
    """Pass-through means untouched: a 1024-byte block asked for with szx 6 is not cut to the
    endpoint's own size, and the option the handler set is the one on the wire."""
    net = Net(device_params=Parameters(block_szx=4))  # it would slice 256-byte blocks
    msg = con(Code.GET, 1, path="/fw/t").with_option(23, Block(2, False, 6).encode())
    net.inject(net.device, msg)
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    opts = options(block2=Block(2, False, 6))
    answer_body = Message(Type.ACK, Code.CONTENT, 0, b"", opts, BODY[2048:])
    net.device.respond(request.exchange, answer_body)
    (answer,) = net.sent(net.device)
    assert answer.block2 == Block(2, False, 6) and answer.payload == BODY[2048:]


def test_a_handler_sliced_get_block_is_not_kept_for_deduplication() -> None:
    """RFC 7252 §4.5: a duplicate of an idempotent GET may be processed again. A download's
    blocks are not kept in the dedup cache (they would fill it, evicting the entries of
    non-idempotent requests); a retransmitted block request reaches the handler again and gets
    the same block."""
    net = Net()
    msg = con(Code.GET, 7, path="/fw/t").with_option(23, Block(3, False, 6).encode())
    chunk = BODY[:1024]
    opts = options(block2=Block(3, True, 6))
    for _ in range(2):  # the first answer was lost: the device retransmits the same MID
        net.inject(net.device, msg)
        (request,) = events(net.device)
        assert isinstance(request, RequestReceived)
        net.device.respond(request.exchange, Message(Type.ACK, Code.CONTENT, 0, b"", opts, chunk))
        (answer,) = net.sent(net.device)
        assert answer.mid == 7 and answer.payload == chunk
    assert net.device.dedup_size == 0
    # an ordinary answer is still kept and replayed without the application
    net.inject(net.device, con(Code.POST, 8, path="/dp"))
    (request,) = events(net.device)
    assert isinstance(request, RequestReceived)
    net.device.respond(request.exchange, Message.response(Code.CHANGED))
    net.sent(net.device)
    (replay,) = net.inject(net.device, con(Code.POST, 8, path="/dp"))
    assert replay.code == Code.CHANGED and events(net.device) == []


# -- a block-wise CON notification is acknowledged only once its whole value is delivered -------


def _con_big_notification(token: bytes, seq: int, mid: int) -> Message:
    return _big_notification(token, seq, mid).replace(mtype=Type.CON)


def _fetch_rest(net: Net, fetch: Message) -> list[Message]:
    """The device answers the server's Block2 GET with the last block; what the server sends
    in the same iteration (after the application handled the notification) is returned."""
    assert fetch.code == Code.GET and fetch.block2 == Block(1, False, 6)
    tail = options(block2=Block(1, False, 6))
    last = Message(Type.ACK, Code.CONTENT, fetch.mid, fetch.token, tail, b"end")
    net.server.receive_datagram(serialize(last), DEVICE, net.now)
    return []


def test_block2_con_notification_is_acked_after_the_whole_value_is_delivered() -> None:
    """The first block's ACK would tell the device its value was taken; the value is only
    assembled (and stored by the application) when the last block arrives, so the ACK waits
    until the notification event has been handled, like a one-datagram notification's."""
    net = Net()
    handle, token = _observing(net)
    sent = net.inject(net.server, _con_big_notification(token, 5, 300))
    assert [(m.mtype, m.code) for m in sent] == [(Type.CON, Code.GET)]  # the fetch, no ACK
    _fetch_rest(net, sent[0])
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.message.payload == BODY[:1024] + b"end"
    (ack,) = net.sent(net.server)
    assert (ack.mtype, ack.code, ack.mid) == (Type.ACK, 0, 300)
    assert handle.last_seq == 5


def test_withheld_block2_notification_is_not_acked_and_its_retransmission_is_fetched_again() -> (
    None
):
    """The store refused the assembled value: no ACK ever leaves for it, and the device's
    retransmission of the first block is a fresh notification (fetched and delivered again),
    not an ACK replayed from the deduplication cache nor a stale notification dropped."""
    net = Net()
    handle, token = _observing(net)
    first = _con_big_notification(token, 5, 300)
    (fetch,) = net.inject(net.server, first)
    _fetch_rest(net, fetch)
    (event,) = events(net.server)
    assert isinstance(event, Notification)
    assert net.server.withhold_notification(event) is True
    assert net.sent(net.server) == []
    assert handle.last_seq == 1  # as before the notification
    (fetch_again,) = net.inject(net.server, first)  # the device retransmits: fetched anew
    assert fetch_again.code == Code.GET and fetch_again.token != fetch.token
    _fetch_rest(net, fetch_again)
    (again,) = events(net.server)
    assert isinstance(again, Notification) and again.message.payload == BODY[:1024] + b"end"
    (ack,) = net.sent(net.server)
    assert (ack.mtype, ack.mid) == (Type.ACK, 300)


def test_block2_notification_whose_ack_was_withdrawn_by_a_failed_commit_is_fresh_again() -> None:
    """Group commit: the iteration that stored the assembled value failed to commit, so its
    answers are withdrawn; the first block's retransmission is then handled again."""
    net = Net()
    handle, token = _observing(net)
    first = _con_big_notification(token, 5, 300)
    (fetch,) = net.inject(net.server, first)
    _fetch_rest(net, fetch)
    assert isinstance(events(net.server)[0], Notification)
    out = net.server.datagrams_to_send(net.now)
    assert [(parse(d).mtype, parse(d).mid) for d, _ in out] == [(Type.ACK, 300)]
    assert net.server.withdraw_answers(out) == 1
    assert handle.last_seq == 1
    (fetch_again,) = net.inject(net.server, first)
    assert fetch_again.code == Code.GET


def test_first_block_retransmitted_while_the_rest_is_fetched_is_not_acked_nor_fetched_twice() -> (
    None
):
    net = Net()
    _, token = _observing(net)
    first = _con_big_notification(token, 5, 300)
    (fetch,) = net.inject(net.server, first)
    assert net.inject(net.server, first) == []  # a duplicate: nothing yet to replay
    _fetch_rest(net, fetch)
    assert [type(e) for e in events(net.server)] == [Notification]
    (ack,) = net.sent(net.server)
    assert ack.mid == 300
    (replayed,) = net.inject(net.server, first)  # later duplicates get the ACK replayed
    assert (replayed.mtype, replayed.mid) == (Type.ACK, 300)
    assert events(net.server) == []


def test_block2_notification_superseded_by_a_newer_one_is_acked() -> None:
    """A newer notification replaces the value being fetched (RFC 7641 §3.4: only the newest
    counts); the older one is acknowledged as taken, like a stale notification, so that the
    device does not retransmit it for nothing."""
    net = Net()
    _, token = _observing(net)
    net.inject(net.server, _con_big_notification(token, 5, 300))
    sent = net.inject(net.server, _con_big_notification(token, 6, 301))
    assert sorted((m.mtype.value, m.mid) for m in sent if m.mtype is Type.ACK) == [
        (Type.ACK.value, 300)
    ]
    (fetch_new,) = [m for m in sent if m.mtype is Type.CON]
    _fetch_rest(net, fetch_new)
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.message.observe == 6
    (ack,) = net.sent(net.server)
    assert ack.mid == 301


def test_adopted_block2_notification_is_acked_after_the_whole_value_is_delivered() -> None:
    """After a restart the first block of a CON notification names an observation the
    endpoint does not know; the application adopts it (``accept_notification``) and the ACK
    still waits for the assembled value."""
    net = Net()
    token = b"persist9"
    first = _con_big_notification(token, 40, 310)
    assert net.inject(net.server, first) == []
    (unknown,) = events(net.server)
    assert isinstance(unknown, UnknownNotification)
    handle = net.server.accept_notification(
        unknown, Message.request(Code.GET, "/3/0", observe=0).replace(token=token)
    )
    (fetch,) = net.sent(net.server)
    assert (fetch.mtype, fetch.code) == (Type.CON, Code.GET)
    _fetch_rest(net, fetch)
    (event,) = events(net.server)
    assert isinstance(event, Notification) and event.handle is handle
    assert net.server.withhold_notification(event) is True  # refused by the store: no ACK
    assert net.sent(net.server) == []
    (fetch_again,) = net.inject(net.server, first)
    _fetch_rest(net, fetch_again)
    assert isinstance(events(net.server)[0], Notification)
    (ack,) = net.sent(net.server)
    assert (ack.mtype, ack.mid) == (Type.ACK, 310)

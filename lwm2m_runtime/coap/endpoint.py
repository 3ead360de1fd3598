"""The sans-IO CoAP endpoint: one object per socket, per-peer state inside (RFC 7252/7641/7959).

Shape (aioquic's): ``receive_datagram(data, peer, now)`` feeds bytes in; ``next_event()`` hands out
what happened; ``datagrams_to_send(now)`` returns ``(bytes, peer)`` pairs to write;
``get_timer()``/``handle_timer(now)`` drive time. Nothing here reads a clock, opens a socket or
raises out of ``receive_datagram``: a refused datagram becomes a counter and a
:class:`ProtocolError` event, and the RFC's answer (RST, 4.00, 4.02, ...) is queued.

Server side: requests become :class:`RequestReceived` events, answered with :meth:`respond`
(piggybacked when fast, otherwise empty ACK after ``empty_ack_delay`` and a separate CON
response). Duplicates within EXCHANGE_LIFETIME replay the cached answer. Block1 requests are
reassembled before the application sees them; large answers are sliced with Block2.

Client side: :meth:`send_request` assigns MID and a random 8-byte token (matched with the peer),
retransmits CONs with RFC backoff, keeps NSTART per peer with a bounded FIFO queue, follows
Block2 and sends Block1, and keeps observations (RFC 7641) with reordering and both cancels.

Why the first transmission's clock starts in ``datagrams_to_send(now)``: calls like
:meth:`respond` and :meth:`send_request` need no ``now``; the retransmission timer starts when the
datagram actually leaves, as in aioquic.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import random
import struct
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable

from .blockwise import Block1Transfers, RequestKey, request_key, slice_block2
from .dedup import ENTRY_COST, FULL, DedupCache
from .errors import ExchangeStateError, InvalidOptionValueError, MessageFormatError
from .events import (
    ErrorKind,
    Event,
    FailureReason,
    Notification,
    ProtocolError,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    UnknownNotification,
)
from .exchange import Exchange, ExchangeState, HandleState, RequestHandle
from .message import (
    Block,
    Message,
    empty,
    encode_uint,
    parse,
    piggybacked,
    piggybacked_options,
    serialize,
    set_option,
)
from .numbers import METHODS, OPTION_LENGTHS, Code, OptionNumber, Type, dotted
from .observe import _HALF, is_fresh
from .params import Parameters

Peer = Hashable
Opt = OptionNumber
_new = object.__new__
Serve = Callable[[Peer, Message, Exchange], None]
"""What :attr:`Endpoint.serve` calls with each request (see there)."""

_CON, _NON, _ACK, _RST = Type.CON, Type.NON, Type.ACK, Type.RST
_BLOCK1 = int(Opt.BLOCK1)
_BLOCK2 = int(Opt.BLOCK2)
_BLOCK_OPTIONS = frozenset((_BLOCK1, _BLOCK2))
_METHODS = frozenset(int(m) for m in METHODS)
_LENGTHS = {int(k): v for k, v in OPTION_LENGTHS.items()}
_ACK_HEAD = struct.Struct("!BBH").pack
"""The 4-byte header of a piggybacked ACK from its first byte, code and MID (one C call where
``bytes((b0, code, mid >> 8, mid & 0xFF))`` was a tuple and two operations more)."""
_NO_LENGTH = range(0)
"""The lengths an unknown option may have (none: it is refused when critical, else ignored)."""
_SEEN = b""
"""Dedup value of a message whose duplicates are ignored (a NON, or a CON still in progress
that has nothing to replay yet is kept as its :class:`Exchange`)."""
_FOLLOWUP_STRIP = frozenset({Opt.OBSERVE, Opt.BLOCK1, Opt.SIZE1, Opt.BLOCK2, Opt.SIZE2})


class _Stage(enum.Enum):
    QUEUED = 0
    UNSENT = 1
    AWAIT_ACK = 2
    AWAIT_RESPONSE = 3
    DONE = 4


class _Kind(enum.Enum):
    REQUEST = 0
    """A request of a handle (or one Block1 block of it)."""
    BLOCK2 = 1
    """A GET for the next Block2 block of a response or notification."""
    REREGISTER = 2
    """An observe re-registration; its answer is treated as a notification."""
    RESPONSE = 3
    """A separate CON response of ours (server side)."""


# Enum members as module globals: ``ExchangeState.PENDING`` is a lookup on the enum class that
# costs ~0.1 µs on CPython 3.11, several times per datagram on the hot path; a global, ~0.02 µs.
_E_PENDING = ExchangeState.PENDING
_E_ACKED = ExchangeState.ACKED
_E_ANSWERED = ExchangeState.ANSWERED
_S_QUEUED = _Stage.QUEUED
_S_UNSENT = _Stage.UNSENT
_S_AWAIT_ACK = _Stage.AWAIT_ACK
_S_AWAIT_RESPONSE = _Stage.AWAIT_RESPONSE
_S_DONE = _Stage.DONE
_H_QUEUED = HandleState.QUEUED
_H_ACTIVE = HandleState.ACTIVE
_H_OBSERVING = HandleState.OBSERVING
_H_DONE = HandleState.DONE
_K_REQUEST = _Kind.REQUEST
_K_BLOCK2 = _Kind.BLOCK2
_K_REREGISTER = _Kind.REREGISTER
_K_RESPONSE = _Kind.RESPONSE


class _Wire:
    """One message we sent that waits for an ACK and/or a response."""

    __slots__ = (
        "attempts",
        "datagram",
        "deadline",
        "exchange",
        "handle",
        "holds_slot",
        "kind",
        "message",
        "mid",
        "peer",
        "stage",
        "timeout",
        "token",
    )

    def __init__(
        self,
        peer: Peer,
        message: Message,
        kind: _Kind,
        handle: RequestHandle | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        self.peer = peer
        self.message = message
        self.kind = kind
        self.handle = handle
        self.exchange = exchange
        self.token = message.token
        self.mid = -1
        self.datagram = b""
        self.stage = _S_QUEUED
        self.attempts = 0
        self.timeout = 0.0
        self.deadline = 0.0
        self.holds_slot = False


class _Noted:
    """A notification taken in (ACKed if CON) and the observe state before it, so that both can
    be taken back while the ACK has not left: the application's store refused the value, or
    the group commit of its iteration failed. The device then retransmits (RFC 7252 §4.2) and
    the retransmission must count as fresh again (RFC 7641 §3.4), or it would be ACKed and
    dropped as stale: a value acknowledged and never stored."""

    __slots__ = ("answer", "handle", "last_seq", "last_time", "message")

    def __init__(
        self,
        handle: RequestHandle,
        message: Message,
        answer: bytes,
        last_seq: int,
        last_time: float,
    ) -> None:
        self.handle = handle
        self.message = message
        self.answer = answer
        self.last_seq = last_seq
        self.last_time = last_time

    def roll_back(self) -> None:
        handle = self.handle
        handle.last_seq = self.last_seq
        handle.last_time = self.last_time


class _Peer:
    """Client-side state per peer: the Message ID counter and the NSTART slots and queue."""

    __slots__ = ("active", "last_used", "next_mid", "queue")

    def __init__(self, first_mid: int) -> None:
        self.next_mid = first_mid
        self.active = 0
        self.queue: deque[_Wire] = deque()
        self.last_used = 0.0


class Endpoint:
    """A CoAP endpoint for one socket; see the module docstring for the protocol."""

    def __init__(self, params: Parameters | None = None, *, rng: random.Random | None = None):
        self.params = params or Parameters()
        self._rng = rng or random.SystemRandom()
        self.events: deque[Event] = deque()
        """What happened, oldest first: :meth:`next_event` takes one; a driver may pop them
        from here directly (one method call less per event on the hot path)."""
        self._out: list[tuple[bytes, Peer]] = []
        self._unsent: list[_Wire] = []
        self._heap: list[tuple[float, int, _Wire]] = []
        self._seq = itertools.count()
        self._now = 0.0
        self._dedup = DedupCache(
            self.params.exchange_lifetime,
            self.params.dedup_capacity,
            self.params.dedup_max_bytes,
            self.params.max_transmit_span,
        )
        self._ack_queue: deque[Exchange] = deque()
        self._by_mid: dict[tuple[Peer, int], _Wire] = {}
        self._by_token: dict[tuple[Peer, bytes], RequestHandle] = {}
        self._peers: dict[Peer, _Peer] = {}
        self._next_sweep = 0.0
        self._block1 = Block1Transfers(
            self.params.max_body_size,
            self.params.block_transfer_lifetime,
            self.params.max_block_transfers_per_peer,
            self.params.max_block_transfers,
            self.params.max_block_bytes,
        )
        self._block2_cache: OrderedDict[tuple[Peer, RequestKey], tuple[float, Message]] = (
            OrderedDict()
        )
        self._cancelled: OrderedDict[tuple[Peer, bytes], None] = OrderedDict()
        self._allowed: dict[int, range] = {
            int(n): range(lo, hi + 1)
            for n in self.params.known_options
            for lo, hi in (_LENGTHS.get(int(n), (0, 0xFFFF)),)
        }
        """The value lengths each known option may have: a ``range`` (one ``in`` per option
        of every request, where two comparisons of a pair cost more bytecode)."""
        self._ack_delay = self.params.empty_ack_delay
        self._max_body = self.params.max_body_size
        self._block_size = self.params.block_size
        self._stale = 0
        """Heap entries that no longer count (finished or rescheduled wires)."""
        self._noted: dict[tuple[Peer, int], _Noted] = {}
        """Notifications taken in since the last :meth:`datagrams_to_send` (by peer and MID),
        with the observe state before each: what :meth:`withhold_notification` takes back."""
        self._noted_out: dict[tuple[Peer, int], _Noted] = {}
        """The same for the datagrams last handed out: what :meth:`withdraw_answers` takes
        back when the group commit they acknowledge failed."""
        self.counters: Counter[str] = Counter()
        """Refusals by :class:`ErrorKind` value, plus ``retransmissions``, ``duplicates``,
        ``stale_notifications`` — for metrics, and for logging when events are switched off."""
        self.serve: Serve | None = None
        """Where requests go instead of :class:`RequestReceived` events, when set: called as
        ``serve(peer, message, exchange)`` from inside :meth:`receive_datagram`, at the point
        where the event would be queued (deduplicated, options checked, Block1 reassembled),
        with the same three values the event carries. It may answer at once
        (:meth:`respond`: an answered CON then never enters the empty-ACK queue) or later. It
        must not raise (``receive_datagram`` never does): a driver serving requests this way
        catches what its handler raises. Why: a server answers nearly every request inside
        the call that hands it over, and the event object, its queue and the driver's event
        loop around it were several Python calls per request for nothing."""

    # ==========================================================================================
    # driving the endpoint
    # ==========================================================================================
    def receive_datagram(self, data: bytes, peer: Peer, now: float) -> None:
        """Process one datagram from ``peer``. Never raises for any input.

        A request is handled here, not in a method of its own: one Python call less for nearly
        every datagram a server receives (responses, notifications and empty messages go to
        ``_on_response`` and ``_on_empty``)."""
        self._now = now
        bad_utf8 = ""
        try:
            msg = parse(data)
        except MessageFormatError as exc:
            if exc.mtype is _CON and not exc.silent and exc.mid is not None:
                self._out.append((empty(_RST, exc.mid), peer))
            self._refuse(peer, ErrorKind.FORMAT_ERROR, exc.reason)
            return
        except InvalidOptionValueError as exc:
            msg = exc.message
            if not (1 <= msg.code <= 31 and msg.mtype <= _NON):
                if msg.mtype is _CON:
                    self._out.append((empty(_RST, msg.mid), peer))
                self._refuse(peer, ErrorKind.FORMAT_ERROR, exc.reason)
                return
            bad_utf8 = exc.reason  # a request: deduplicated, then answered 4.00 below
        code = msg.code
        if not 1 <= code <= 31:
            if 64 <= code <= 191:
                self._on_response(msg, peer, now)
            elif code == 0:
                self._on_empty(msg, peer, now)
            else:
                # reserved classes 1, 6 and 7 (RFC 7252 §4.2/§4.3)
                if msg.mtype is _CON:
                    self._out.append((empty(_RST, msg.mid), peer))
                self._refuse(peer, ErrorKind.FORMAT_ERROR, f"reserved code {dotted(code)}")
            return
        # -- a request ---------------------------------------------------------------------------
        mtype = msg.mtype
        if mtype is _ACK or mtype is _RST:
            self._refuse(peer, ErrorKind.FORMAT_ERROR, f"{mtype.name} carrying a request")
            return
        # ``Exchange(peer, msg)`` with its ``__init__`` written out (one Python call less per
        # request; tests/unit/coap/test_serve.py holds every slot equal to the constructor's)
        exchange = _new(Exchange)
        exchange.peer = peer
        exchange.request = msg
        exchange.mtype = mtype
        exchange.mid = mid = msg.mid
        exchange.token = msg.token
        exchange.state = _E_PENDING
        exchange.ack_deadline = 0.0
        exchange.block1 = None
        exchange.block2 = None
        exchange.request_key = None
        exchange.is_notification = False
        # ``prior = self._dedup.setdefault((peer, mid), exchange, now)`` written out for its
        # usual case, a new (peer, MID) with nothing due to expire and room left: one Python
        # call and a second lookup less per request. Any other case (a duplicate, an expired
        # entry of this key, expiry due, a full cache) takes ``setdefault`` itself.
        dedup = self._dedup
        key = (peer, mid)
        entries = dedup._entries
        order = dedup._order
        if (
            key not in entries
            and (not order or order[0][0] > now)
            and len(entries) < dedup.capacity
            and len(entries) * ENTRY_COST + dedup._answer_bytes < dedup.max_bytes
        ):
            expires = now + dedup.lifetime
            entries[key] = (expires, exchange)
            order.append((expires, key))
            per_peer = dedup._per_peer
            per_peer[peer] = per_peer.get(peer, 0) + 1  # an Exchange: no answer bytes yet
            prior = None
        else:
            prior = dedup.setdefault(key, exchange, now)
        if prior is not None:
            if prior is FULL:
                self._overloaded(msg, peer, "dedup_full", self._dedup.retry_after(now))
                return
            self.counters["duplicates"] += 1
            if mtype is _CON and prior.__class__ is bytes and prior:
                self._out.append((prior, peer))
            return
        if bad_utf8:
            self._reply(msg, peer, Code.BAD_REQUEST)
            self._refuse(peer, ErrorKind.BAD_UTF8, bad_utf8)
            return
        if code not in _METHODS:
            self._reply(msg, peer, Code.METHOD_NOT_ALLOWED)
            self._refuse(peer, ErrorKind.METHOD_NOT_ALLOWED, f"method {dotted(code)}")
            return
        has_block = False
        allowed = self._allowed
        for number, value in msg.options:
            if len(value) not in allowed.get(number, _NO_LENGTH):  # unknown, or a bad length
                if number & 1:
                    self._reply(msg, peer, Code.BAD_OPTION)
                    self._refuse(peer, ErrorKind.BAD_OPTION, f"critical option {number}")
                    return
            elif number in _BLOCK_OPTIONS:
                has_block = True
        if has_block:
            delivered = self._request_blocks(exchange, msg, peer, now)
            if delivered is None:
                return
            exchange.request = msg = delivered
        elif len(msg.payload) > self._max_body:
            size1 = ((int(Opt.SIZE1), encode_uint(self._max_body)),)
            self.counters["too_large"] += 1
            self._reply(msg, peer, Code.REQUEST_ENTITY_TOO_LARGE, size1)
            self._refuse(peer, ErrorKind.BAD_BLOCK, f"body over {self._max_body} bytes")
            return
        serve = self.serve
        if serve is not None:
            serve(peer, msg, exchange)
            if mtype is _CON and exchange.state is _E_PENDING:  # not answered at once
                exchange.ack_deadline = now + self._ack_delay
                self._ack_queue.append(exchange)
            return
        if mtype is _CON:
            exchange.ack_deadline = now + self._ack_delay
            self._ack_queue.append(exchange)
        self.events.append(RequestReceived(peer, msg, exchange))

    def next_event(self) -> Event | None:
        return self.events.popleft() if self.events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Peer]]:
        """Everything to write now; starts the retransmission clock of new CON messages."""
        self._now = now
        if self._unsent:
            params = self.params
            for wire in self._unsent:
                if wire.stage is not _S_UNSENT:
                    continue
                self._out.append((wire.datagram, wire.peer))
                if wire.message.mtype is _CON:
                    wire.stage = _S_AWAIT_ACK
                    wire.timeout = self._rng.uniform(
                        params.ack_timeout, params.ack_timeout * params.ack_random_factor
                    )
                    self._schedule(wire, now + wire.timeout)
                else:
                    wire.stage = _S_AWAIT_RESPONSE
                    self._schedule(wire, now + params.response_timeout)
            self._unsent.clear()
        if self._noted or self._noted_out:
            self._noted_out = self._noted
            self._noted = {}
        out = self._out
        self._out = []
        return out

    def withdraw_answers(self, datagrams: list[tuple[bytes, Peer]]) -> int:
        """``datagrams`` (from :meth:`datagrams_to_send`) will not be sent: forget the answers
        among them (responses and empty ACKs) in the deduplication cache, so that the peer's
        retransmission is handled again rather than replayed an answer it never got. Group
        commit needs this: a reply whose write failed to commit must not come back from the
        cache as a success. Returns how many entries were forgotten."""
        forgotten = 0
        noted = self._noted_out
        taken_back: list[_Noted] = []
        for data, peer in datagrams:
            if len(data) >= 4 and not 1 <= data[1] <= 31 and (data[0] >> 4) & 3 != 3:
                mid = (data[2] << 8) | data[3]
                forgotten += self._dedup.discard((peer, mid), data)
                if noted:
                    note = noted.pop((peer, mid), None)
                    if note is not None and note.answer is data:
                        taken_back.append(note)
        # newest first: two notifications of one observation end on the state before both
        for note in reversed(taken_back):
            note.roll_back()
        return forgotten

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: nothing pending)."""
        heap = self._heap
        while heap and (heap[0][2].deadline != heap[0][0] or heap[0][2].stage is _S_DONE):
            heapq.heappop(heap)
            self._stale = max(0, self._stale - 1)
        acks = self._ack_queue
        while acks and acks[0].state is not _E_PENDING:
            acks.popleft()
        timer = heap[0][0] if heap else None
        if acks and (timer is None or acks[0].ack_deadline < timer):
            timer = acks[0].ack_deadline
        return timer

    def handle_timer(self, now: float) -> None:
        self._now = now
        acks = self._ack_queue
        while acks and acks[0].ack_deadline <= now:
            exchange = acks.popleft()
            if exchange.state is _E_PENDING:
                exchange.state = _E_ACKED
                ack = empty(_ACK, exchange.mid)
                self._out.append((ack, exchange.peer))
                self._dedup.update((exchange.peer, exchange.mid), ack)
        heap = self._heap
        params = self.params
        while heap and heap[0][0] <= now:
            deadline, _, wire = heapq.heappop(heap)
            if wire.deadline != deadline or wire.stage is _S_DONE:
                self._stale = max(0, self._stale - 1)
                continue
            wire.deadline = 0.0  # its heap entry is gone: nothing stale left behind
            if wire.stage is _S_AWAIT_ACK:
                if wire.attempts < params.max_retransmit:
                    wire.attempts += 1
                    wire.timeout *= 2
                    self.counters["retransmissions"] += 1
                    self._out.append((wire.datagram, wire.peer))
                    self._schedule(wire, now + wire.timeout)
                else:
                    self._fail_wire(wire, FailureReason.TIMEOUT, "no ACK after retransmissions")
            elif wire.stage is _S_AWAIT_RESPONSE:
                self._fail_wire(wire, FailureReason.RESPONSE_TIMEOUT, "no response")
        self._housekeeping(now)

    # ==========================================================================================
    # server side: answering requests
    # ==========================================================================================
    def respond(self, exchange: Exchange, response: Message) -> None:
        """Answer a :class:`RequestReceived`. Only ``code``, ``options`` and ``payload`` of
        ``response`` are used; type, MID and token follow from the exchange's state."""
        if exchange.state is _E_ANSWERED or exchange.is_notification:
            raise ExchangeStateError(f"{exchange!r} cannot be answered")
        peer = exchange.peer
        code = response.code
        opts = response.options
        payload = response.payload
        if (
            exchange.state is _E_PENDING
            and exchange.mtype is _CON
            and exchange.block1 is None
            and exchange.block2 is None
            and len(payload) <= self._block_size
        ):
            # the usual answers (2.04 to an Update, 2.01 with Location-Path to a Register):
            # piggybacked, one block, nothing to slice; what the general path below does in
            # that case, without its tests, and with ``piggybacked`` written out for an
            # answer without options (one call less per request)
            mid = exchange.mid
            token = exchange.token
            if not opts:
                tkl = len(token)
                if tkl > 8:
                    raise ValueError("token longer than 8 bytes")
                head = _ACK_HEAD(0x60 | tkl, code, mid)
                data = b"".join((head, token, b"\xff", payload)) if payload else head + token
            else:
                # None: Block2 among the options (the handler sliced its answer) or options
                # out of order: the general path below
                answer = piggybacked_options(code, mid, token, opts, payload)
                if answer is None:
                    self._respond(exchange, response)
                    return
                data = answer
            exchange.state = _E_ANSWERED
            self._out.append((data, peer))
            # ``self._dedup.update((peer, mid), data)`` written out for its usual case (the
            # entry still holds this exchange, whose value is no ``bytes``): one Python call
            # less per request; anything else (evicted, replaced) takes ``update`` as before
            dedup = self._dedup
            entries = dedup._entries
            key = (peer, mid)
            entry = entries.get(key)
            if entry is not None and entry[1] is exchange:
                entries[key] = (entry[0], data)
                dedup._answer_bytes += len(data)
            else:
                dedup.update(key, data)
            return
        self._respond(exchange, response)

    def _respond(self, exchange: Exchange, response: Message) -> None:
        """:meth:`respond`'s general path: Block1 echo, Block2 slicing and caching, an empty
        ACK sent already (a separate response), a NON."""
        peer = exchange.peer
        code = response.code
        opts = response.options
        payload = response.payload
        if exchange.block1 is not None:
            opts = set_option(opts, _BLOCK1, exchange.block1.encode())
        b2 = exchange.block2
        szx = self.params.block_szx if b2 is None else min(self.params.block_szx, b2.szx)
        sliced_by_handler = bool(opts) and any(number == _BLOCK2 for number, _ in opts)
        if sliced_by_handler:
            # the handler sliced the body itself (a firmware download reads one block from its
            # blob per request): sent as given, never cached nor sliced again
            pass
        elif len(payload) > (16 << szx) or (b2 is not None and b2.num):
            full = Message(_ACK, code, 0, b"", opts, payload)
            if len(payload) > (16 << szx):
                if exchange.request_key is None:
                    exchange.request_key = request_key(exchange.request)
                self._cache_block2(peer, exchange.request_key, full)
            sliced = slice_block2(full, 0 if b2 is None else b2.num, szx)
            if sliced is None:
                code, opts, payload = Code.BAD_OPTION, (), b""
            else:
                opts, payload = sliced.options, sliced.payload
        state = exchange.state
        exchange.state = _E_ANSWERED
        if exchange.mtype is _CON and state is _E_PENDING:
            if opts:
                data = serialize(Message(_ACK, code, exchange.mid, exchange.token, opts, payload))
            else:
                data = piggybacked(code, exchange.mid, exchange.token, payload)
            self._out.append((data, peer))
            if sliced_by_handler and exchange.request.code == Code.GET:
                # RFC 7252 §4.5 lets a server process a duplicate idempotent request again
                # instead of keeping its answer: a download's blocks (1 KiB each, a thousand
                # per MiB per device) would otherwise fill the dedup cache and evict the
                # entries of Registers and Sends, whose duplicates must not run twice
                self._dedup.discard((peer, exchange.mid), exchange)
            else:
                self._dedup.update((peer, exchange.mid), data)
        elif exchange.mtype is _NON:
            mid = self._next_mid(peer)
            data = serialize(Message(_NON, code, mid, exchange.token, opts, payload))
            self._out.append((data, peer))
        else:
            wire = _Wire(
                peer,
                Message(_CON, code, 0, exchange.token, opts, payload),
                _K_RESPONSE,
                exchange=exchange,
            )
            self._transmit(wire)

    def accept_notification(
        self, event: UnknownNotification, request: Message | None = None
    ) -> RequestHandle:
        """ACK an unknown notification and adopt its observation: later notifications with the
        token become :class:`Notification` events of the returned handle. Give the original
        observe ``request`` (path options) to allow Block2 follow-up, re-registration and
        proactive cancel."""
        exchange = self._decide(event)
        peer, message = exchange.peer, exchange.request
        ack = _SEEN
        if exchange.mtype is _CON:
            ack = empty(_ACK, exchange.mid)
            self._out.append((ack, peer))
            self._dedup.update((peer, exchange.mid), ack)
        base = request or Message(_CON, Code.GET, 0, message.token, ((int(Opt.OBSERVE), b""),))
        handle = RequestHandle(peer, base.replace(token=message.token), message.token)
        handle.state = _H_OBSERVING
        handle.last_seq = message.observe or 0
        handle.last_time = self._now
        self._by_token[(peer, message.token)] = handle
        if exchange.mtype is _CON:  # its retransmission must be fresh again if withdrawn
            self._noted[(peer, exchange.mid)] = _Noted(handle, message, ack, -1, 0.0)
        b2 = message.block2
        if request is not None and b2 is not None and b2.more:
            self._start_block2(handle, message, "notification")
        return handle

    def reject_notification(self, event: UnknownNotification) -> None:
        """RST an unknown notification: the device removes the observation (RFC 7641 §3.6)."""
        exchange = self._decide(event)
        rst = empty(_RST, exchange.mid)
        self._out.append((rst, exchange.peer))
        self._dedup.update((exchange.peer, exchange.mid), rst)

    def withhold_notification(self, event: Notification | UnknownNotification) -> bool:
        """Leave a notification unanswered: the application could not keep it (its store is
        unavailable), so it must not be acknowledged — the device retransmits a CON (RFC 7252
        §4.2) and the retransmission is handled again, not replayed from the deduplication
        cache nor dropped as stale. An RST would end the observation (RFC 7641 §3.6), an ACK
        would claim a value that is not stored: silence is the only answer that keeps both.

        Call it from the event handler, before the iteration's datagrams are taken. False when
        there is nothing to take back: the notification was assembled block-wise or answered
        our re-registration (its first block, or our request, was acknowledged already), or a
        NON whose repetition is handled again anyway (True)."""
        if isinstance(event, UnknownNotification):
            exchange = self._decide(event)
            return self._dedup.discard((exchange.peer, exchange.mid), exchange)
        message = event.message
        key = (event.handle.peer, message.mid)
        note = self._noted.get(key)
        if note is None or note.message is not message:
            return False
        del self._noted[key]
        answer = note.answer
        if answer and not self._take_back(answer):
            return False  # already handed out: too late to take back
        self._dedup.discard(key, answer)
        note.roll_back()
        return True

    def _take_back(self, answer: bytes) -> bool:
        """Remove ``answer`` (this very object) from the datagrams not handed out yet; False
        when it is not among them any more."""
        out = self._out
        for i in range(len(out) - 1, -1, -1):
            if out[i][0] is answer:
                del out[i]
                return True
        return False

    def _decide(self, event: UnknownNotification) -> Exchange:
        exchange = event.exchange
        if exchange.state is _E_ANSWERED:
            raise ExchangeStateError("this notification was already accepted or rejected")
        exchange.state = _E_ANSWERED
        return exchange

    # ==========================================================================================
    # client side: requests to peers
    # ==========================================================================================
    def send_request(self, peer: Peer, message: Message) -> RequestHandle:
        """Send ``message`` (a CON or NON request) to ``peer``. A random 8-byte token is assigned
        unless the message has one; a body larger than one block goes out with Block1."""
        token = message.token or self._new_token(peer)
        if (peer, token) in self._by_token:
            raise ExchangeStateError(f"token {token.hex()} is in use for {peer!r}")
        request = message.replace(token=token) if token is not message.token else message
        handle = RequestHandle(peer, request, token)
        self._by_token[(peer, token)] = handle
        if self._cancelled:
            self._cancelled.pop((peer, token), None)  # the token is in use again
        if len(request.payload) > self.params.block_size and request.opt(_BLOCK1) is None:
            handle._body = request.payload
            handle._body_szx = self.params.block_szx
            first = self._block1_message(handle, 0)
        else:
            first = request
        self._start_wire(handle, first, _K_REQUEST)
        return handle

    def cancel(self, handle: RequestHandle) -> None:
        """Forget a request or observation now: its NSTART slot is free at once, and a late
        answer is treated as unknown (RST for a CON response)."""
        if handle.state is _H_DONE:
            return
        handle.state = _H_DONE
        self._drop_wire(handle)
        self._untrack(handle)

    def cancel_observe(
        self, handle: RequestHandle, *, proactive: bool = False
    ) -> RequestHandle | None:
        """End an observation (RFC 7641 §3.6). Reactive: forget it and RST its next
        notification. Proactive: send GET with Observe=1 and the same token; the returned handle
        gets the :class:`ResponseReceived` (or :class:`RequestFailed`)."""
        peer, token = handle.peer, handle.token
        self.cancel(handle)
        if not proactive:
            cancelled = self._cancelled
            cancelled[(peer, token)] = None
            while len(cancelled) > self.params.cancelled_token_capacity:
                cancelled.popitem(last=False)
            return None
        request = handle.request.replace(
            mtype=_CON, options=set_option(handle.request.options, Opt.OBSERVE, encode_uint(1))
        )
        dereg = RequestHandle(peer, request, token)
        dereg._deregister = True
        self._by_token[(peer, token)] = dereg
        self._start_wire(dereg, request, _K_REQUEST)
        return dereg

    def reregister(self, handle: RequestHandle) -> None:
        """Re-register an observation (RFC 7641 §3.3.1): the same GET with the same token; the
        answer arrives as a :class:`Notification`."""
        if handle.state is not _H_OBSERVING:
            raise ExchangeStateError(f"{handle!r} is not an observation")
        self._abandon_block2(handle)
        self._drop_wire(handle)
        request = handle.request.replace(
            options=set_option(handle.request.options, Opt.OBSERVE, b"")
        )
        self._start_wire(handle, request, _K_REREGISTER)

    # ==========================================================================================
    # incoming requests
    # ==========================================================================================
    def _request_blocks(
        self, exchange: Exchange, msg: Message, peer: Peer, now: float
    ) -> Message | None:
        """Block1 reassembly and Block2 from the cache; the request to deliver, or None when it
        was answered here (2.31, a cached block, or an error)."""
        b2 = msg.block2
        if b2 is not None:
            if b2.szx == 7:
                b2 = Block(b2.num, b2.more, 6)
            exchange.block2 = b2
            exchange.request_key = request_key(msg)
            if b2.num:
                cached = self._block2_cache.get((peer, exchange.request_key))
                if cached is not None and cached[0] > now:
                    sliced = slice_block2(cached[1], b2.num, min(b2.szx, self.params.block_szx))
                    if sliced is None:
                        self._reply(msg, peer, Code.BAD_OPTION)
                    else:
                        self._reply(msg, peer, sliced.code, sliced.options, sliced.payload)
                    return None
        b1 = msg.block1
        if b1 is not None:
            outcome = self._block1.receive(peer, msg, b1, now)
            if outcome.code == Code.CONTINUE:
                echo = Block(b1.num, True, b1.szx).encode()
                self._reply(msg, peer, Code.CONTINUE, ((_BLOCK1, echo),))
                return None
            if outcome.code != Code.EMPTY:
                opts: tuple[tuple[int, bytes], ...] = ((_BLOCK1, b1.encode()),)
                if outcome.max_age is not None:
                    opts = ((int(Opt.MAX_AGE), encode_uint(outcome.max_age)), *opts)
                    self.counters["block1_full"] += 1
                    self._reply(msg, peer, outcome.code, opts)
                    self._refuse(peer, ErrorKind.OVERLOAD, outcome.detail)
                    return None
                if outcome.size1 is not None:
                    opts += ((int(Opt.SIZE1), encode_uint(outcome.size1)),)
                    self.counters["too_large"] += 1
                self._reply(msg, peer, outcome.code, opts)
                self._refuse(peer, ErrorKind.BAD_BLOCK, f"{dotted(outcome.code)} {outcome.detail}")
                return None
            exchange.block1 = Block(b1.num, False, b1.szx)
            msg = msg.replace(payload=outcome.body)
        if exchange.request_key is None:
            exchange.request_key = request_key(msg)
        return msg.without_options(_BLOCK1, _BLOCK2, Opt.SIZE1)

    def _overloaded(self, msg: Message, peer: Peer, counter: str, max_age: int) -> None:
        """A limit refuses ``msg`` before any work: a CON gets 5.03 with Max-Age (RFC 7252
        §5.9.3.4), a NON is dropped. Nothing is remembered for it (it did nothing, so a
        retransmission is refused or served again), which is the point when memory is full."""
        self.counters[counter] += 1
        if msg.mtype is _CON:
            opts = ((int(Opt.MAX_AGE), encode_uint(max_age)),)
            data = serialize(Message(_ACK, Code.SERVICE_UNAVAILABLE, msg.mid, msg.token, opts))
            self._out.append((data, peer))
        self._refuse(peer, ErrorKind.OVERLOAD, f"{counter.replace('_', ' ')}: retry in {max_age} s")

    def _reply(
        self,
        msg: Message,
        peer: Peer,
        code: int,
        opts: tuple[tuple[int, bytes], ...] = (),
        payload: bytes = b"",
    ) -> None:
        """Answer a request on the endpoint's own behalf (errors, 2.31, cached blocks); its
        dedup entry exists already and gets the answer to replay."""
        if msg.mtype is _CON:
            data = serialize(Message(_ACK, code, msg.mid, msg.token, opts, payload))
            self._dedup.update((peer, msg.mid), data)
        else:
            mid = self._next_mid(peer)
            data = serialize(Message(_NON, code, mid, msg.token, opts, payload))
            self._dedup.update((peer, msg.mid), _SEEN)
        self._out.append((data, peer))

    def _cache_block2(self, peer: Peer, key: object, full: Message) -> None:
        if key is None:
            return
        cache = self._block2_cache
        cache[(peer, key)] = (self._now + self.params.exchange_lifetime, full)  # type: ignore[index]
        cache.move_to_end((peer, key))  # type: ignore[arg-type]
        while len(cache) > self.params.block2_cache_capacity:
            cache.popitem(last=False)

    # ==========================================================================================
    # incoming responses, notifications and empty messages
    # ==========================================================================================
    def _on_empty(self, msg: Message, peer: Peer, now: float) -> None:
        mtype = msg.mtype
        if mtype is _CON:  # CoAP ping (RFC 7252 §4.3)
            self._out.append((empty(_RST, msg.mid), peer))
            self.counters[ErrorKind.PING.value] += 1
            return
        if mtype is _NON:
            self._refuse(peer, ErrorKind.FORMAT_ERROR, "Empty NON message")
            return
        wire = self._by_mid.get((peer, msg.mid))
        if wire is None:
            self._refuse(peer, ErrorKind.UNMATCHED, f"{mtype.name} for unknown MID {msg.mid}")
            return
        if mtype is _ACK:
            self._wire_acked(wire, now)
        elif wire.handle is None:
            self._finish_wire(wire)  # our separate response was rejected
        else:
            self._fail_wire(wire, FailureReason.RESET, "peer answered RST")

    def _on_response(self, msg: Message, peer: Peer, now: float) -> None:
        mtype = msg.mtype
        if mtype is _RST:
            self._refuse(peer, ErrorKind.FORMAT_ERROR, "RST with a code")
            return
        if mtype is _ACK:
            wire = self._by_mid.get((peer, msg.mid))
            if wire is None or wire.handle is None or wire.token != msg.token:
                self._refuse(peer, ErrorKind.UNMATCHED, f"ACK for unknown MID {msg.mid}")
                return
            self._wire_response(wire, msg, now)
            return
        mid = msg.mid
        key = (peer, mid)
        dedup = self._dedup
        entries = dedup._entries
        entry = entries.get(key)  # ``self._dedup.get(key, now)``, inline
        if entry is not None and entry[0] > now:
            prior = entry[1]
            self.counters["duplicates"] += 1
            if mtype is _CON and prior.__class__ is bytes and prior:
                self._out.append((prior, peer))
            return
        handle = self._by_token.get((peer, msg.token))
        if handle is None:
            self._on_unmatched(msg, peer, now)
            return
        if mtype is _CON:
            ack = _ACK_HEAD(0x60, 0, mid)  # ``empty(_ACK, mid)``, inline
            self._out.append((ack, peer))
        else:
            ack = _SEEN
        # ``dedup.add(key, ack, now)`` written out for its usual case (a notification's new
        # MID, nothing due to expire, room for it and its ACK): two Python calls less per
        # notification; anything else takes ``add``, which expires and evicts
        order = dedup._order
        size = len(entries) + 1
        if (
            entry is None
            and (not order or order[0][0] > now)
            and size <= dedup.capacity
            and size * ENTRY_COST + dedup._answer_bytes + len(ack) <= dedup.max_bytes
        ):
            expires = now + dedup.lifetime
            entries[key] = (expires, ack)
            order.append((expires, key))
            dedup._answer_bytes += len(ack)
            per_peer = dedup._per_peer
            per_peer[peer] = per_peer.get(peer, 0) + 1
        else:
            dedup.add(key, ack, now)
        # ``_Noted(handle, msg, ack, handle.last_seq, handle.last_time)`` with its ``__init__``
        # written out: one Python call less per notification (a test holds the slots equal)
        note = _new(_Noted)
        note.handle = handle
        note.message = msg
        note.answer = ack
        note.last_seq = last_seq = handle.last_seq
        note.last_time = handle.last_time
        self._noted[key] = note
        pending = handle._wire
        if (
            pending is None
            and handle.state is _H_OBSERVING
            and msg.token == handle.token
            and 64 <= msg.code < 96
            and handle._b2_body is None
            and handle._b2_first is None
            and handle._b2_held is None
            and not handle._b2_token
        ):
            # the usual notification: an established observation with nothing of ours on the
            # wire and no block-wise value in progress. What ``_on_notification`` does when the
            # value is plainly newer (RFC 7641 §3.4's first rule) and fits in one datagram,
            # with the Observe and Block2 options read in one pass (the options come sorted
            # from ``parse``: Observe 6 before Block2 23) instead of two property calls, and
            # the event built without its ``__init__``; anything else (no Observe, Block2,
            # not plainly newer: the reordering rules) takes ``_on_notification`` unchanged
            seq = -1
            for number, value in msg.options:
                if number == 6:
                    if seq < 0:
                        seq = int.from_bytes(value, "big")
                elif number >= 23:
                    if number == 23:
                        seq = -1  # Block2: the general path
                    break
            if last_seq < seq and seq - last_seq < _HALF:
                handle.last_seq = seq
                handle.last_time = now
                event = _new(Notification)
                event.handle = handle
                event.message = msg
                event.final = False
                self.events.append(event)
                return
            self._on_notification(handle, msg, now)
            return
        current = pending if isinstance(pending, _Wire) and pending.stage is not _S_DONE else None
        if (
            handle.state is _H_OBSERVING
            and msg.token == handle.token
            and (current is None or current.token != msg.token or current.kind is _K_REREGISTER)
        ):
            if (
                current is not None
                and current.kind is _K_REREGISTER
                and current.stage is _S_AWAIT_RESPONSE
            ):
                # acknowledged re-registration: this is its separate response (RFC 7641 §3.3.1);
                # one still queued or unacknowledged stays on its way
                self._finish_wire(current)
            self._on_notification(handle, msg, now)
        elif (
            current is not None
            and current.token == msg.token
            and current.stage is not _S_QUEUED  # never sent: this cannot answer it
        ):
            self._wire_response(current, msg, now)
        else:
            self._refuse(peer, ErrorKind.UNMATCHED, "late response")

    def _on_unmatched(self, msg: Message, peer: Peer, now: float) -> None:
        key = (peer, msg.mid)
        if (peer, msg.token) in self._cancelled:
            # reactive cancel (RFC 7641 §3.6): RST the notification, CON or NON
            rst = empty(_RST, msg.mid)
            self._out.append((rst, peer))
            self._dedup.add(key, rst, now)
            return
        if msg.observe is None:
            if msg.mtype is _CON:
                rst = empty(_RST, msg.mid)
                self._out.append((rst, peer))
                self._dedup.add(key, rst, now)
            else:
                self._dedup.add(key, _SEEN, now)
            detail = f"response with unknown token {msg.token.hex()}"
            self._refuse(peer, ErrorKind.UNMATCHED, detail)
            return
        exchange = Exchange(peer, msg)
        exchange.is_notification = True
        self._dedup.add(key, exchange, now)
        self.events.append(UnknownNotification(peer, msg, exchange))

    def _on_notification(self, handle: RequestHandle, msg: Message, now: float) -> None:
        seq = msg.observe
        if seq is None or not 64 <= msg.code < 96:
            self._abandon_block2(handle)
            self._deliver(handle, msg, "notification")
            return
        if not is_fresh(handle.last_seq, handle.last_time, seq, now, self.params.observe_freshness):
            self.counters["stale_notifications"] += 1
            return
        handle.last_seq = seq
        handle.last_time = now
        if (
            handle._b2_held is not None
            or handle._b2_token
            or handle._b2_body is not None
            or handle._b2_first is not None
        ):
            self._abandon_block2(handle)  # a block-wise value in progress is superseded
        b2 = msg.block2
        if b2 is not None and b2.more:
            self._start_block2(handle, msg, "notification")
        else:
            # what ``_deliver`` does with a fresh 2.xx carrying Observe (not final), inline
            self.events.append(Notification(handle, msg, False))

    def _wire_response(self, wire: _Wire, msg: Message, now: float) -> None:
        """``msg`` answers ``wire`` (piggybacked or separate)."""
        handle = wire.handle
        assert handle is not None
        self._finish_wire(wire)
        kind = wire.kind
        if kind is _K_BLOCK2:
            self._on_block2(handle, msg)
        elif kind is _K_REREGISTER:
            self._on_notification(handle, msg, now)
        else:
            b1 = msg.block1
            if handle._body and msg.code == Code.CONTINUE and b1 is not None:
                szx = min(handle._body_szx, b1.szx)
                handle._body_szx = szx
                if handle._body_offset < len(handle._body):
                    num = handle._body_offset // (16 << szx)
                    self._start_wire(handle, self._block1_message(handle, num), _K_REQUEST, True)
                    return
            b2 = msg.block2
            if b2 is not None and b2.more and 64 <= msg.code < 96:
                self._start_block2(handle, msg, "response")
            else:
                self._deliver(handle, msg, "response")

    def _deliver(self, handle: RequestHandle, msg: Message, kind: str) -> None:
        if kind == "response":
            if (
                handle.request.observe == 0
                and msg.observe is not None
                and 64 <= msg.code < 96
                and not handle._deregister
            ):
                handle.state = _H_OBSERVING
                handle.last_seq = msg.observe
                handle.last_time = self._now
            else:
                handle.state = _H_DONE
                self._untrack(handle)
            self.events.append(ResponseReceived(handle, msg))
        else:
            final = msg.observe is None or not 64 <= msg.code < 96
            if final:
                handle.state = _H_DONE
                self._drop_wire(handle)
                self._untrack(handle)
            self.events.append(Notification(handle, msg, final))

    # -- Block2 following (client side) -----------------------------------------------------
    def _start_block2(self, handle: RequestHandle, first: Message, kind: str) -> None:
        if kind == "notification":
            self._hold_first_block_ack(handle, first)
        handle._b2_body = bytearray(first.payload)
        handle._b2_first = first
        handle._b2_etag = first.etag
        handle._b2_kind = kind
        b2 = first.block2
        assert b2 is not None
        self._send_block2(handle, len(first.payload) // b2.size, b2.szx)

    def _send_block2(self, handle: RequestHandle, num: int, szx: int) -> None:
        request = handle.request
        code = Code.GET if handle._b2_kind == "notification" else request.code
        opts = tuple(o for o in request.options if o[0] not in _FOLLOWUP_STRIP)
        opts = set_option(opts, _BLOCK2, Block(num, False, szx).encode())
        token = self._new_token(handle.peer)
        handle._b2_token = token
        self._by_token[(handle.peer, token)] = handle
        payload = request.payload if code == Code.FETCH else b""
        self._start_wire(handle, Message(_CON, code, 0, token, opts, payload), _K_BLOCK2, True)

    def _on_block2(self, handle: RequestHandle, msg: Message) -> None:
        body = handle._b2_body
        first = handle._b2_first
        if body is None or first is None:
            return
        b2 = msg.block2
        problem = ""
        refused = not 64 <= msg.code < 96
        if refused:
            problem = f"block answered {dotted(msg.code)}"
        elif b2 is None or b2.offset != len(body):
            problem = "unexpected block number"
        elif msg.etag != handle._b2_etag:
            problem = "ETag changed during the transfer"
        elif len(body) + len(msg.payload) > self.params.max_block2_body:
            problem = f"body larger than {self.params.max_block2_body} bytes"
        if problem:
            self._abandon_block2(handle)
            if handle._b2_kind == "notification" and handle.state is _H_OBSERVING:
                self._refuse(handle.peer, ErrorKind.UNMATCHED, f"notification dropped: {problem}")
            else:
                self._fail_handle(handle, FailureReason.BLOCK_TRANSFER, problem,
                                  msg if refused else None)  # fmt: skip
            return
        assert b2 is not None
        body += msg.payload
        if b2.more:
            self._send_block2(handle, len(body) // b2.size, b2.szx)
            return
        kind = handle._b2_kind
        full = first.replace(
            payload=bytes(body), options=tuple(o for o in first.options if o[0] not in (23, 28))
        )
        held = handle._b2_held
        handle._b2_held = None
        self._abandon_block2(handle)
        if held is not None:
            self._release_first_block_ack(handle, held, full)
        self._deliver(handle, full, kind)

    def _hold_first_block_ack(self, handle: RequestHandle, first: Message) -> None:
        """Take back the ACK just queued for a CON notification's first block: the value is
        whole (and stored by the application) only once the last block is in, and the ACK
        tells the device its value was taken, so it leaves with the assembled notification
        (``_release_first_block_ack``), after the group commit that stores it, like a
        one-datagram notification's. Meanwhile retransmissions of the first block are
        ignored (the deduplication entry holds no answer to replay)."""
        key = (handle.peer, first.mid)
        note = self._noted.get(key)
        if note is None or note.message is not first or not note.answer:
            return  # a NON, or an answer to our re-registration: nothing to hold
        answer = note.answer
        if not self._take_back(answer):
            return  # already handed out
        del self._noted[key]
        self._dedup.update(key, _SEEN)
        handle._b2_held = (first.mid, answer, note.last_seq, note.last_time)

    def _release_first_block_ack(
        self, handle: RequestHandle, held: tuple[int, bytes, int, float], full: Message | None
    ) -> None:
        """Send the held first-block ACK; with the assembled notification ``full`` it is noted
        like any notification's ACK, so that withholding it (the store refused the value) or
        withdrawing it (a failed commit) makes the device's retransmission fresh again."""
        mid, answer, last_seq, last_time = held
        key = (handle.peer, mid)
        self._out.append((answer, handle.peer))
        self._dedup.update(key, answer)
        if full is not None:
            self._noted[key] = _Noted(handle, full, answer, last_seq, last_time)

    def _abandon_block2(self, handle: RequestHandle) -> None:
        held = handle._b2_held
        if held is not None:
            # superseded by a newer notification, the fetch failed, or the observation ended:
            # this value will not be delivered, so it is acknowledged as a stale one is
            handle._b2_held = None
            self._release_first_block_ack(handle, held, None)
        if handle._b2_token:
            self._by_token.pop((handle.peer, handle._b2_token), None)
            wire = handle._wire
            if isinstance(wire, _Wire) and wire.kind is _K_BLOCK2:
                self._drop_wire(handle)
        handle._b2_body = None
        handle._b2_first = None
        handle._b2_token = b""

    # -- Block1 sending (client side) -------------------------------------------------------
    def _block1_message(self, handle: RequestHandle, num: int) -> Message:
        szx = handle._body_szx
        size = 16 << szx
        body = handle._body
        start = num * size
        end = start + size
        handle._body_offset = min(end, len(body))
        opts = set_option(
            handle.request.options, _BLOCK1, Block(num, end < len(body), szx).encode()
        )
        if num == 0:
            opts = set_option(opts, Opt.SIZE1, encode_uint(len(body)))
        return handle.request.replace(options=opts, payload=body[start:end])

    # ==========================================================================================
    # wires: MID, NSTART, retransmission
    # ==========================================================================================
    def _start_wire(
        self, handle: RequestHandle, message: Message, kind: _Kind, front: bool = False
    ) -> None:
        peer = handle.peer
        wire = _Wire(peer, message, kind, handle=handle)
        handle._wire = wire
        if message.mtype is _NON:
            self._transmit(wire)
            return
        state = self._peer(peer)
        if state.active < self.params.nstart:
            state.active += 1
            wire.holds_slot = True
            self._transmit(wire)
        elif front:
            state.queue.appendleft(wire)
        elif len(state.queue) >= self.params.request_queue_size:
            wire.stage = _S_DONE
            self._fail_handle(handle, FailureReason.QUEUE_FULL, "NSTART queue full")
        else:
            state.queue.append(wire)

    def _transmit(self, wire: _Wire) -> None:
        handle = wire.handle
        if handle is not None and handle.state is _H_QUEUED:
            handle.state = _H_ACTIVE
        mid = self._next_mid(wire.peer)
        wire.mid = mid
        wire.datagram = serialize(wire.message.replace(mid=mid))
        wire.stage = _S_UNSENT
        self._by_mid[(wire.peer, mid)] = wire
        self._unsent.append(wire)

    def _schedule(self, wire: _Wire, deadline: float) -> None:
        if wire.deadline:
            self._stale += 1  # the entry of the previous deadline no longer counts
        wire.deadline = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._seq), wire))
        if self._stale > 1024 and self._stale * 2 > len(heap):
            # finished wires would otherwise stay referenced until their old deadline
            # (up to response_timeout): rebuild the heap without them
            heap[:] = [e for e in heap if e[2].deadline == e[0] and e[2].stage is not _S_DONE]
            heapq.heapify(heap)
            self._stale = 0

    def _wire_acked(self, wire: _Wire, now: float) -> None:
        """An empty ACK: the CON arrived; a request now waits for its separate response."""
        if wire.stage is not _S_AWAIT_ACK:
            return
        if self._by_mid.get((wire.peer, wire.mid)) is wire:
            del self._by_mid[(wire.peer, wire.mid)]
        self._release(wire)
        if wire.handle is None:
            wire.stage = _S_DONE
            return
        wire.stage = _S_AWAIT_RESPONSE
        self._schedule(wire, now + self.params.response_timeout)

    def _finish_wire(self, wire: _Wire) -> None:
        stage = wire.stage
        if stage is _S_DONE:
            return
        wire.stage = _S_DONE
        if stage is _S_QUEUED:
            state = self._peers.get(wire.peer)
            if state is not None and wire in state.queue:
                state.queue.remove(wire)  # a cancelled request must not hold a queue place
        elif wire.deadline:
            self._stale += 1
        if self._by_mid.get((wire.peer, wire.mid)) is wire:
            del self._by_mid[(wire.peer, wire.mid)]
        self._release(wire)
        handle = wire.handle
        if handle is not None:
            if wire.kind is _K_BLOCK2 and self._by_token.get((wire.peer, wire.token)) is handle:
                del self._by_token[(wire.peer, wire.token)]
            if handle._wire is wire:
                handle._wire = None

    def _fail_wire(self, wire: _Wire, reason: FailureReason, detail: str) -> None:
        handle = wire.handle
        self._finish_wire(wire)
        if handle is None:
            return  # our separate response was never acknowledged
        if wire.kind is _K_BLOCK2 and handle.state is _H_OBSERVING:
            self._abandon_block2(handle)  # one notification lost; the observation goes on
            return
        self._fail_handle(handle, reason, detail)

    def _fail_handle(
        self,
        handle: RequestHandle,
        reason: FailureReason,
        detail: str,
        response: Message | None = None,
    ) -> None:
        if handle.state is _H_DONE:
            return
        handle.state = _H_DONE
        self._drop_wire(handle)
        self._untrack(handle)
        self.events.append(RequestFailed(handle, reason, detail, response))

    def _drop_wire(self, handle: RequestHandle) -> None:
        wire = handle._wire
        if isinstance(wire, _Wire):
            self._finish_wire(wire)  # a queued wire is skipped when dequeued (stage DONE)
            if self._by_token.get((wire.peer, wire.token)) is handle and wire.kind is _K_BLOCK2:
                del self._by_token[(wire.peer, wire.token)]
        handle._wire = None

    def _untrack(self, handle: RequestHandle) -> None:
        peer = handle.peer
        held = handle._b2_held
        if held is not None:  # cancelled while a block-wise notification was being fetched
            handle._b2_held = None
            self._release_first_block_ack(handle, held, None)
        if self._by_token.get((peer, handle.token)) is handle:
            del self._by_token[(peer, handle.token)]
        if handle._b2_token and self._by_token.get((peer, handle._b2_token)) is handle:
            del self._by_token[(peer, handle._b2_token)]

    def _release(self, wire: _Wire) -> None:
        if not wire.holds_slot:
            return
        wire.holds_slot = False
        state = self._peers.get(wire.peer)
        if state is None:
            return
        state.active -= 1
        queue = state.queue
        while queue and state.active < self.params.nstart:
            nxt = queue.popleft()
            if nxt.stage is not _S_QUEUED:
                continue
            state.active += 1
            nxt.holds_slot = True
            self._transmit(nxt)

    def _peer(self, peer: Peer) -> _Peer:
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(self._rng.randrange(0x10000))
        return state

    def _next_mid(self, peer: Peer) -> int:
        """Per-peer Message IDs (RFC 7252 §4.4); a peer's counter lives at least
        EXCHANGE_LIFETIME after its last use, so a MID is never reused within that time."""
        state = self._peer(peer)
        mid = state.next_mid
        state.next_mid = (mid + 1) & 0xFFFF
        state.last_used = self._now
        return mid

    def _new_token(self, peer: Peer) -> bytes:
        while True:
            token = self._rng.getrandbits(64).to_bytes(8, "big")
            if (peer, token) not in self._by_token:
                return token

    # ==========================================================================================
    # bookkeeping
    # ==========================================================================================
    def _refuse(self, peer: Peer, kind: ErrorKind, detail: str) -> None:
        self.counters[kind.value] += 1
        if self.params.report_protocol_errors:
            self.events.append(ProtocolError(peer, kind, detail))

    def _housekeeping(self, now: float) -> None:
        self._dedup.expire(now)
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        lifetime = self.params.exchange_lifetime
        idle = [
            peer
            for peer, state in self._peers.items()
            if not state.active and not state.queue and state.last_used + lifetime <= now
        ]
        for peer in idle:
            del self._peers[peer]
        cache = self._block2_cache
        while cache and next(iter(cache.values()))[0] <= now:
            cache.popitem(last=False)

    # -- introspection (tests, metrics) ------------------------------------------------------
    @property
    def dedup_size(self) -> int:
        return len(self._dedup)

    @property
    def block1_transfers(self) -> int:
        return len(self._block1)

    def limit_counters(self) -> dict[str, int]:
        """What the endpoint's limits refused or evicted so far (for ``/api/health``):
        ``dedup_full`` requests refused with 5.03 because the deduplication cache was full of
        recent entries, ``dedup_evicted`` entries forgotten to make room, ``block1_full``
        blocks refused with 5.03 (too many uploads or bytes in progress), ``block1_evicted``
        uploads replaced by a newer one of the same peer, ``too_large`` bodies refused with
        4.13."""
        return {
            "dedup_full": self.counters["dedup_full"],
            "dedup_evicted": self._dedup.evicted,
            "block1_full": self.counters["block1_full"],
            "block1_evicted": self._block1.evicted,
            "too_large": self.counters["too_large"],
        }

    def outstanding(self, peer: Peer) -> tuple[int, int]:
        """(CON requests holding an NSTART slot, requests queued) for ``peer``."""
        state = self._peers.get(peer)
        if state is None:
            return (0, 0)
        return (state.active, sum(1 for w in state.queue if w.stage is _S_QUEUED))

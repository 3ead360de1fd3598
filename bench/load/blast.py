"""The CON notification blast from pre-built datagrams: the generator's cheap path.

Why: through ``SimClient.notification`` and ``run_window`` the generator spends ~41-48 µs of its
own CPU per CON notification (a ``Message``, its serialization, a future, a timer, a task
switch, the ACK's parse), about as much as the server spends storing it; near the issue's
target (15k notifications/s on a 2-core box) the generator, not the server, would be measured.

Here the observations are set up as before (the server's GET+Observe answered by ``SimClient``),
then one *template* per observation is built once: the 2.05 CON notification with its token,
an Observe option of exactly three bytes and the Content-Format, and one copy per payload the
values cycle through. Per notification only the Message ID (2 bytes) and the Observe number
(3 bytes) are patched in place (``struct.pack_into``) and the bytearray is sent on the
observation's own non-blocking socket. ACKs are read with ``recv_into`` into one preallocated
buffer and matched by ``(slot, MID)`` in a dict; nothing is parsed beyond the 4-byte header.
Everything runs synchronously (the asyncio loop is blocked for the blast, so it does not race
us for the sockets' datagrams), in a tight ``epoll`` loop with a bounded in-flight window.

The Observe number is kept in 0x10000..0xFFFFFF so that three bytes is also its minimal
encoding (RFC 7252 §3.2); jumping there from a small number is "newer" in RFC 7641 §3.4's
sense (a forward distance below 2^23). Message IDs keep each socket's own counter, as the
asyncio path does: the server deduplicates by (peer, MID) for EXCHANGE_LIFETIME, so a MID
reused on a peer within that time would be answered from the cache and never stored.

Unanswered notifications are retransmitted unchanged (same MID, same Observe number, same
payload) with doubling timeouts from 2 s, then counted as failed, like the asyncio path.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lwm2m_runtime.coap import Code, Message, Type, encode_uint, serialize

from . import generator as g

GENERATOR_NAME = "bench.load.blast (Python, pre-built datagrams)"
"""What the JSON lines say produced the notification figures on this path."""

OBSERVE_MIN = 0x10000
OBSERVE_MAX = 0xFFFFFF
_ACK, _RST, _CON = int(Type.ACK), int(Type.RST), int(Type.CON)
_MID = struct.Struct(">H")


def _template(token: bytes, fmt: int, payload: bytes) -> tuple[bytearray, int]:
    """One notification datagram with a three-byte Observe, and the offset of that value."""
    opts = ((g.OBSERVE, b"\x01\x00\x00"), (g.CONTENT_FORMAT, encode_uint(fmt)))
    data = bytearray(serialize(Message(Type.CON, Code.CONTENT, 0, token, opts, payload)))
    # header (4) + token, then the Observe option's header byte (delta 6, length 3)
    offset = 4 + len(token)
    if data[offset] != 0x63 or data[offset + 1 : offset + 4] != b"\x01\x00\x00":
        raise AssertionError("unexpected notification layout")
    return data, offset + 1


@dataclass(slots=True)
class Slot:
    """One observation: its client, its socket and its pre-built datagrams."""

    client: g.SimClient
    sock: socket.socket
    variants: list[bytearray]
    observe_at: int
    mid: int
    seq: int


@dataclass(slots=True)
class BlastResult:
    """What one blast achieved; ``acked`` are the notifications the target answered."""

    sent: int = 0
    polls: int = 0
    acked: int = 0
    failed: int = 0
    retransmissions: int = 0
    unexpected: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0


def _patch(slot: Slot, mid: int, seq: int) -> bytearray:
    data = slot.variants[seq % len(slot.variants)]
    _MID.pack_into(data, 2, mid)
    at = slot.observe_at
    data[at] = seq >> 16
    _MID.pack_into(data, at + 1, seq & 0xFFFF)
    return data


def _slots(clients: Sequence[g.SimClient]) -> list[Slot]:
    slots = []
    for client in clients:
        transport = client.sock.transport
        if transport is None or client.observe_token is None:
            continue
        fd = transport.get_extra_info("socket").fileno()
        # a dup of the asyncio socket (same file, same port, already non-blocking)
        sock = socket.socket(fileno=socket.dup(fd))
        sock.setblocking(False)
        fmt = client.observe_format
        variants = []
        observe_at = 0
        for payload in g.NOTIFY_PAYLOADS[fmt]:
            data, observe_at = _template(client.observe_token, fmt, payload)
            variants.append(data)
        seq = max(client.observe_seq, OBSERVE_MIN - 1)
        slots.append(Slot(client, sock, variants, observe_at, client.sock._mid, seq))
    return slots


def blast(
    clients: Sequence[g.SimClient],
    count: int,
    window: int,
    seconds: float,
    *,
    echo: bool,
    timeout: float = 2.0,
    attempts: int = 4,
) -> BlastResult:
    """Send ``count`` CON notifications round-robin over the observed ``clients``, at most
    ``window`` unacknowledged and at most one per observation (CoAP's NSTART=1: a client whose
    last notification is unanswered is skipped), stopping at ``seconds``; blocks the calling
    thread (and its event loop) until every notification sent is answered or abandoned.

    Against the echo (``echo=True``) the answer is the datagram itself (a CON with our MID);
    against the server it is an empty ACK, sent once the notification is stored. An RST
    counts as failed. The clients' Observe numbers, MID counters and notification counts are
    written back, so later phases continue where the blast stopped."""
    result = BlastResult()
    slots = _slots(clients)
    if not slots or count <= 0:
        return result
    cpu0, start = time.process_time(), time.perf_counter()
    poller = select.epoll()
    by_fd: dict[int, int] = {}
    for index, slot in enumerate(slots):
        by_fd[slot.sock.fileno()] = index
        poller.register(slot.sock.fileno(), select.EPOLLIN)
    n = len(slots)
    window = max(1, min(window, n))
    # per slot: the MID in flight (-1: none); what retransmission needs lives in ``Flight``
    inflight = [-1] * n
    flights: dict[int, Flight] = {}
    sent_per_slot = [0] * n
    buf = bytearray(2048)
    answer = _CON if echo else _ACK
    socks = [slot.sock for slot in slots]
    variants = [slot.variants for slot in slots]
    nvariants = len(slots[0].variants)
    observe_at = [slot.observe_at for slot in slots]
    mids = [slot.mid for slot in slots]
    seqs = [slot.seq for slot in slots]
    pack_mid = _MID.pack_into
    poll = poller.poll
    deadline = time.monotonic() + seconds
    next_check = time.monotonic() + timeout / 4
    issued = in_flight = cursor = 0
    acked = failed = unexpected = retrans = polls = 0
    sending = True
    try:
        while True:
            if sending:
                tried = 0
                while in_flight < window and issued < count and tried < n:
                    index = cursor
                    cursor = cursor + 1 if cursor + 1 < n else 0
                    if inflight[index] >= 0:
                        tried += 1  # NSTART=1: this one waits for its ACK
                        continue
                    tried = 0
                    mid = (mids[index] + 1) & 0xFFFF
                    seq = seqs[index] + 1
                    if seq > OBSERVE_MAX:
                        seq = OBSERVE_MIN
                    mids[index] = mid
                    seqs[index] = seq
                    data = variants[index][seq % nvariants]
                    pack_mid(data, 2, mid)
                    at = observe_at[index]
                    data[at] = seq >> 16
                    pack_mid(data, at + 1, seq & 0xFFFF)
                    socks[index].send(data)
                    inflight[index] = mid
                    in_flight += 1
                    issued += 1
                    sent_per_slot[index] += 1
                if issued >= count:
                    sending = False
            if not in_flight:
                break
            polls += 1
            for fd, _event in poll(0.05):
                index = by_fd[fd]
                try:
                    size = socks[index].recv_into(buf)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                if size < 4 or inflight[index] != (buf[2] << 8 | buf[3]):
                    unexpected += 1  # a late duplicate ACK, or a request from the server
                    continue
                mtype = (buf[0] >> 4) & 3
                if mtype == answer and (echo or buf[1] == 0):
                    acked += 1
                elif mtype in (_RST, _ACK):
                    failed += 1
                else:
                    unexpected += 1
                    continue
                inflight[index] = -1
                in_flight -= 1
            now = time.monotonic()
            if sending and now >= deadline:
                sending = False
            if now >= next_check:
                next_check = now + timeout / 4
                for slot, mid, seq in zip(slots, mids, seqs, strict=True):
                    slot.mid, slot.seq = mid, seq
                abandoned, resent = _retransmit(
                    slots, inflight, flights, now, timeout=timeout, attempts=attempts
                )
                failed += abandoned
                in_flight -= abandoned
                retrans += resent
    finally:
        poller.close()
        for index, slot in enumerate(slots):
            slot.client.sock._mid = mids[index]
            slot.client.observe_seq = seqs[index]
            slot.client.notifications += sent_per_slot[index]
            slot.sock.close()
    result.sent = issued
    result.acked, result.failed, result.unexpected = acked, failed, unexpected
    result.retransmissions, result.polls = retrans, polls
    result.elapsed = time.perf_counter() - start
    result.cpu = time.process_time() - cpu0
    return result


@dataclass(slots=True)
class Flight:
    """A notification seen unanswered at a check: when to resend it, how often still."""

    mid: int
    due: float
    timeout: float
    attempts_left: int


def _retransmit(
    slots: list[Slot],
    inflight: list[int],
    flights: dict[int, Flight],
    now: float,
    *,
    timeout: float,
    attempts: int,
) -> tuple[int, int]:
    """Runs a few times per timeout, not per datagram: a notification in flight gets its
    first deadline when a check first sees it; overdue ones are resent unchanged (the slot's
    latest MID and Observe number, since a slot has one in flight), those out of attempts are
    abandoned. Returns (abandoned, resent)."""
    abandoned = resent = 0
    for index, mid in enumerate(inflight):
        if mid < 0:
            continue
        flight = flights.get(index)
        if flight is None or flight.mid != mid:
            flights[index] = Flight(mid, now + timeout, timeout, attempts - 1)
            continue
        if now < flight.due:
            continue
        if flight.attempts_left <= 0:
            del flights[index]
            inflight[index] = -1
            abandoned += 1
            continue
        flight.attempts_left -= 1
        flight.timeout *= 2
        flight.due = now + flight.timeout
        slot = slots[index]
        slot.sock.send(_patch(slot, slot.mid, slot.seq))
        resent += 1
    return abandoned, resent

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
    ``window`` unacknowledged, stopping at ``seconds``; blocks the calling thread (and its
    event loop) until every notification sent is answered or abandoned.

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
    # key (slot << 16 | mid) -> [slot, seq, deadline, timeout, attempts left]
    pending: dict[int, list[float]] = {}
    buf = bytearray(2048)
    answer = _CON if echo else _ACK
    deadline = time.monotonic() + seconds
    next_check = time.monotonic() + timeout / 4
    issued = 0
    acked = failed = unexpected = retrans = 0
    sending = True
    poll = poller.poll
    pending_pop = pending.pop
    try:
        while True:
            if sending:
                while len(pending) < window and issued < count:
                    index = issued % n
                    slot = slots[index]
                    mid = (slot.mid + 1) & 0xFFFF
                    seq = slot.seq + 1
                    if seq > OBSERVE_MAX:
                        seq = OBSERVE_MIN
                    slot.mid, slot.seq = mid, seq
                    slot.sock.send(_patch(slot, mid, seq))
                    issued += 1
                    pending[index << 16 | mid] = [index, seq, 0.0, timeout, attempts - 1]
                if issued >= count:
                    sending = False
            if not pending:
                break
            for fd, _event in poll(0.05):
                index = by_fd[fd]
                try:
                    size = slots[index].sock.recv_into(buf)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
                if size < 4:
                    unexpected += 1
                    continue
                mtype = (buf[0] >> 4) & 3
                entry = pending_pop(index << 16 | (buf[2] << 8 | buf[3]), None)
                if entry is None:
                    unexpected += 1  # a late duplicate ACK, or a request from the server
                    continue
                if mtype == answer and (echo or buf[1] == 0):
                    acked += 1
                elif mtype in (_RST, _ACK):
                    failed += 1
                else:
                    unexpected += 1
                    pending[index << 16 | (buf[2] << 8 | buf[3])] = entry
            now = time.monotonic()
            if sending and now >= deadline:
                sending = False
            if now >= next_check:
                next_check = now + timeout / 4
                retrans, failed = _retransmit(slots, pending, now, retrans, failed)
    finally:
        poller.close()
        for slot in slots:
            slot.client.sock._mid = slot.mid
            slot.client.observe_seq = slot.seq
            slot.sock.close()
    for index in range(min(issued, n)):
        slots[index].client.notifications += issued // n + (1 if index < issued % n else 0)
    result.sent = issued
    result.acked, result.failed, result.unexpected = acked, failed, unexpected
    result.retransmissions = retrans
    result.elapsed = time.perf_counter() - start
    result.cpu = time.process_time() - cpu0
    return result


def _retransmit(
    slots: list[Slot], pending: dict[int, list[float]], now: float, retrans: int, failed: int
) -> tuple[int, int]:
    """Stamp new entries with their first deadline, resend the overdue ones unchanged, give
    up on those out of attempts. Runs a few times per timeout, not per datagram."""
    for key, entry in list(pending.items()):
        if entry[2] == 0.0:
            entry[2] = now + entry[3]
            continue
        if now < entry[2]:
            continue
        if entry[4] <= 0:
            del pending[key]
            failed += 1
            continue
        entry[4] -= 1
        entry[3] *= 2
        entry[2] = now + entry[3]
        slot = slots[int(entry[0])]
        slot.sock.send(_patch(slot, key & 0xFFFF, int(entry[1])))
        retrans += 1
    return retrans, failed

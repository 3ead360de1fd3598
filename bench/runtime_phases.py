"""Instructions per message of the runtime alone, one phase at a time, for callgrind.

Why: ``bench/runtime_path.py`` times both phases in one process; callgrind needs one phase per
run and a fixed count, so that (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one message. Feeds N
messages of one phase (``update``: CON POST /rd/<id> answered 2.04; ``register``: CON POST
/rd?ep=... with a link-format payload answered 2.01 with Location-Path; ``notification``: CON
2.05 with Observe, answered by the empty ACK) through ``CoapServer``'s NoSec listener with a
stand-in site and no store; every batch's answers are checked.

Usage: ``valgrind --tool=callgrind python bench/runtime_phases.py PHASE N`` for N = 1280 and
6400 (docs/performance.md, "Session 12: runtime speed on the three hot paths").
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.hot_path import Capture
from bench.runtime_path import (
    BATCH,
    CONTENT_FORMAT,
    OBSERVE,
    URI_PATH,
    captured_server,
    check,
    observe_all,
    peer_of,
)
from lwm2m_runtime.coap import Code, Message, Type, encode_uint, serialize
from lwm2m_runtime.server import IncomingRequest, run

LOC_RD = (8, b"rd")


def site(request: IncomingRequest) -> Message:
    message = request.message
    path, query, _ct = message.path_query_format()
    _ = (request.address, request.identity, message.payload)
    if len(path) == 2:
        return Message.response(Code.CHANGED)
    return Message(Type.ACK, Code.CREATED, 0, b"", (LOC_RD, (8, b"r" + query[0][3:].encode())), b"")


async def measure(phase: str, n: int, clients: int = 1000) -> None:
    async with captured_server(site, clients * 4 + n * 2 + 1000) as (udp, capture):
        await feed(udp, capture, phase, n, clients)


async def feed(udp: Any, capture: Capture, phase: str, n: int, clients: int) -> None:
    """Observe every client, then ``n`` messages of ``phase`` in batches, each batch's answers
    checked."""
    peers = [peer_of(i) for i in range(clients)]
    mids = [0] * clients
    tokens = await observe_all(udp, capture, peers)
    seqs = [1] * clients
    payload = bytes.fromhex("81a3216d2f333330332f302f35373030220002fb4036800000000000")
    reg_payload = (
        b"</1/0>,</3/0>,</3303/0>,</3303/1>,</3303/2>,</3303/3>,</3303/4>,"
        b"</3303/5>,</3303/6>,</3303/7>,</3303/8>,</3303/9>,</5/0>"
    )
    counter = [0]

    def update(i):
        mids[i] = mid = (mids[i] + 1) & 0xFFFF
        opts = ((URI_PATH, b"rd"), (URI_PATH, b"r%07d" % i))
        return serialize(Message(Type.CON, Code.POST, mid, mid.to_bytes(2, "big"), opts))

    def register(i):
        mids[i] = mid = (mids[i] + 1) & 0xFFFF
        counter[0] += 1
        opts = (
            (URI_PATH, b"rd"),
            (CONTENT_FORMAT, b"\x28"),
            (15, b"ep=e%07d" % counter[0]),
            (15, b"lt=300"),
            (15, b"lwm2m=1.1"),
            (15, b"b=U"),
        )
        return serialize(
            Message(Type.CON, Code.POST, mid, mid.to_bytes(4, "big"), opts, reg_payload)
        )

    def notification(i):
        mids[i] = mid = (mids[i] + 1) & 0xFFFF
        seqs[i] = seq = seqs[i] + 1
        opts = ((OBSERVE, encode_uint(seq)), (CONTENT_FORMAT, encode_uint(112)))
        return serialize(Message(Type.CON, Code.CONTENT, mid, tokens[i], opts, payload))

    make, expect = {
        "update": (update, Code.CHANGED),
        "register": (register, Code.CREATED),
        "notification": (notification, Code.EMPTY),
    }[phase]
    cursor = 0
    for _ in range(n // BATCH):
        batch = []
        for _ in range(BATCH):
            i = cursor % clients
            cursor += 1
            batch.append((make(i), peers[i]))
        receive = udp.datagram_received
        for data, peer in batch:
            receive(data, peer)
        await asyncio.sleep(0)
        check(phase, batch, capture.sent, expect)
        capture.sent.clear()


run(measure(sys.argv[1], int(sys.argv[2])))

"""CPU per message of the runtime alone: the UDP endpoint, the driver and the CoAP server facade.

Why a bench of its own: ``bench/hot_path.py`` measures the whole LwM2M server (store, events,
registrations), where the runtime's ~20-25 µs per message hide in the noise of the rest. Here the
same datagrams go through the same code from ``UdpEndpoint.datagram_received`` to
``transport.sendto`` (parse, deduplication, exchange, the event, ``CoapServer``'s request
object, the reply's serialization, the driver's flush with a group commit that commits nothing),
and the application is a stand-in that reads what the LwM2M server's site reads of a request
(path, query, Content-Format, payload, the peer's address and identity) or of a notification
(token, Observe, Content-Format, payload, the peer's address), and answers 2.04 / lets the ACK
go. One JSON line per figure: best round's µs of process CPU per message.

Usage: ``python bench/runtime_path.py [--clients 10000,100000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hot_path import Capture
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import (
    Code,
    Event,
    Message,
    Notification,
    Parameters,
    Type,
    encode_uint,
    parse,
    serialize,
)
from lwm2m_runtime.server import CoapServer, IncomingRequest, run

BATCH = 64
OBSERVE = 6
CONTENT_FORMAT = 12
URI_PATH = 11


class Commit:
    """A group commit with nothing to make durable (the store's part is not measured here)."""

    def commit(self) -> bool:
        return True


def site(request: IncomingRequest) -> Message:
    """What ``lwm2m_server.coap.site`` reads of an Update, answered as it answers."""
    message = request.message
    path = message.uri_path
    address = Address(*request.address)
    identity = request.identity
    if len(path) != 2 or not identity or not address.host:
        raise AssertionError(path)
    _ = (message.content_format, message.uri_query, message.payload)
    return Message.response(Code.CHANGED)


class Observer:
    """What the LwM2M server reads of a notification (``service._on_coap_event``, uplink)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notification):
            message = event.message
            source = IncomingRequest(message, event.handle.peer)
            address = Address(*source.address)
            _ = (message.token, message.code, message.observe, message.content_format)
            if address.host and message.payload:
                self.count += 1


class Failed(RuntimeError):
    """The runtime did not answer as it must (the figure would be wrong)."""


def check(
    phase: str, batch: list[tuple[bytes, tuple[str, int]]], sent: list[tuple[bytes, Any]], code: int
) -> None:
    """Every datagram of ``batch`` got exactly one ACK of ``code``, to its peer and MID."""
    expected = {(peer, (data[2] << 8) | data[3]) for data, peer in batch}
    answered = {(peer, (data[2] << 8) | data[3]) for data, peer in sent if data[1] == code}
    if len(sent) != len(batch) or answered != expected or any(d[0] >> 4 != 6 for d, _ in sent):
        raise Failed(f"{phase}: {len(sent)} answers to {len(batch)} messages, first {sent[:1]}")


def peer_of(index: int) -> tuple[str, int]:
    n = index + 1
    return f"127.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}", 56830


@contextlib.asynccontextmanager
async def captured_server(
    handler: Callable[[IncomingRequest], Message], entries: int
) -> AsyncIterator[tuple[Any, Capture]]:
    """A started ``CoapServer`` (``handler``, an ``Observer``, a committer that commits
    nothing, a dedup cache of ``entries``) whose UDP endpoint sends into a ``Capture`` and
    reads no socket; yields the endpoint and the capture, then restores and stops it. Shared
    with ``bench/runtime_phases.py``."""
    server = CoapServer(
        handler,
        params=Parameters(dedup_capacity=entries, dedup_max_bytes=entries * 1024),
        on_event=Observer(),
        committer=Commit(),
    )
    await server.start(host="127.0.0.1", port=0)
    udp = server.udp
    assert udp is not None
    real = udp.transport
    capture = Capture()
    udp.transport = capture  # type: ignore[assignment]
    dup, udp._sock = udp._sock, None  # no backlog reads: there is no socket traffic
    try:
        yield udp, capture
    finally:
        udp.transport = real
        udp._sock = dup
        await server.stop()


async def observe_all(udp: Any, capture: Capture, peers: list[tuple[str, int]]) -> list[bytes]:
    """Every peer observed (the server's GET Observe, the device's piggybacked 2.05), in
    batches; the tokens, one per peer in order."""
    tokens: list[bytes] = []
    for start in range(0, len(peers), BATCH):
        for peer in peers[start : start + BATCH]:
            udp.send_request(peer, Message.request(Code.GET, "/3303/0/5700", observe=0))
        await asyncio.sleep(0)
        for data, peer in capture.sent:
            sent = parse(data)
            tokens.append(sent.token)
            opts = ((OBSERVE, encode_uint(1)), (CONTENT_FORMAT, encode_uint(112)))
            answer = Message(Type.ACK, Code.CONTENT, sent.mid, sent.token, opts, b"\x81\xa2")
            udp.datagram_received(serialize(answer), peer)
        capture.sent.clear()
        await asyncio.sleep(0)
        capture.sent.clear()
    return tokens


async def measure(clients: int, rounds: int, per_round: int) -> dict[str, float]:
    entries = clients * 2 + rounds * per_round * 2 + 1000
    peers = [peer_of(i) for i in range(clients)]
    mids = [0] * clients
    async with captured_server(site, entries) as (udp, capture):
        tokens = await observe_all(udp, capture, peers)
        result: dict[str, float] = {}

        def update(i: int) -> bytes:
            mids[i] = mid = (mids[i] + 1) & 0xFFFF
            opts = ((URI_PATH, b"rd"), (URI_PATH, b"r%07d" % i))
            return serialize(Message(Type.CON, Code.POST, mid, mid.to_bytes(2, "big"), opts))

        seqs = [1] * clients
        payload = bytes.fromhex("81a3216d2f333330332f302f35373030220002fb4036800000000000")

        def notification(i: int) -> bytes:
            mids[i] = mid = (mids[i] + 1) & 0xFFFF
            seqs[i] = seq = seqs[i] + 1
            opts = ((OBSERVE, encode_uint(seq)), (CONTENT_FORMAT, encode_uint(112)))
            return serialize(Message(Type.CON, Code.CONTENT, mid, tokens[i], opts, payload))

        for phase, make, expect in (
            ("update", update, Code.CHANGED),
            ("notification", notification, Code.EMPTY),
        ):
            best = float("inf")
            cursor = 0
            for _ in range(rounds):
                cpu = 0.0
                for _ in range(per_round // BATCH):
                    batch = []
                    for _ in range(BATCH):
                        i = cursor % clients
                        cursor += 1
                        batch.append((make(i), peers[i]))
                    receive = udp.datagram_received
                    start = time.process_time()
                    for data, peer in batch:
                        receive(data, peer)
                    await asyncio.sleep(0)
                    cpu += time.process_time() - start
                    check(phase, batch, capture.sent, expect)
                    capture.sent.clear()
                best = min(best, cpu / (per_round // BATCH * BATCH))
            result[phase] = best * 1e6
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20000)
    args = parser.parse_args(argv)
    for clients in (int(c) for c in args.clients.split(",")):
        figures = run(measure(clients, args.rounds, args.per_round))
        for phase, value in figures.items():
            line = {"bench": "runtime_path", "figure": f"{phase}_cpu_us", "clients": clients}
            line["value"] = round(value, 2)
            print(json.dumps(line), flush=True)
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed of our sans-IO CoAP layer (``lwm2m_runtime.coap``), one JSON line per figure.

Figures (µs of process CPU time per operation, best of several runs — CPU time rather than wall
time so that a shared, oversubscribed machine does not count the time we were descheduled):

* ``parse_update``: ``parse()`` of a typical LwM2M Update, ``POST /rd/abc?lt=300`` with a 4-byte
  token (target ≤ 5 µs on the 2-core dev machine);
* ``serialize_ack``: the piggybacked ``2.04 Changed`` answer;
* ``endpoint_update``: one Update through a server endpoint — ``receive_datagram``,
  ``next_event``, ``respond``, ``datagrams_to_send`` — over 10,000 peers (dedup cache filling);
* ``endpoint_update_full``: the same with the deduplication cache at capacity (each Update also
  evicts the oldest entry, as at 100k devices with the default 100k entries);
* ``endpoint_request``: one server-originated CON request — ``send_request``,
  ``datagrams_to_send``, the device's piggybacked ACK in, ``next_event``;
* ``dedup_entry_bytes``: memory per remembered (peer, MID) with its cached answer.

Each line carries a ``ceiling`` measured in the same run on the same bytes: the cheapest thing
that still touches the datagram (``struct.unpack_from`` of the header plus ``bytes.split`` at the
payload marker), so that figures from different machines compare by ``ratio``.

Usage: ``python bench/coap_layer.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lwm2m_runtime.coap import (
    Code,
    Endpoint,
    Message,
    Parameters,
    RequestReceived,
    Type,
    parse,
    serialize,
)

UPDATE = serialize(
    Message.request(Code.POST, "/rd/abc", query=["lt=300"], token=b"\x01\x02\x03\x04").replace(
        mid=0x1234
    )
)
CHANGED = Message(Type.ACK, Code.CHANGED, 0x1234, b"\x01\x02\x03\x04")
_HEADER = struct.Struct("!BBH")


def best_us(operation: Callable[[], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            operation()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def ceiling() -> object:
    _HEADER.unpack_from(UPDATE)
    return UPDATE.split(b"\xff", 1)


def emit(figure: str, value: float, unit: str, ceiling_us: float | None, note: str) -> None:
    line: dict[str, object] = {"bench": "coap_layer", "figure": figure, "value": round(value, 3)}
    line["unit"] = unit
    if ceiling_us is not None:
        line["ceiling_us"] = round(ceiling_us, 3)
        line["ratio"] = round(value / ceiling_us, 2)
    line["note"] = note
    print(json.dumps(line), flush=True)


def endpoint_updates(count: int, peers: int, capacity: int = 0) -> float:
    """µs per Update through a server endpoint (distinct peers, increasing MIDs); with a
    ``capacity`` below ``count`` the deduplication cache fills and every later Update evicts
    the oldest entry (a server at 100k devices with the default 100k entries)."""
    endpoint = Endpoint(Parameters(dedup_capacity=capacity or max(count, 1)))
    datagrams = []
    for i in range(count):
        mid = i // peers
        data = bytearray(UPDATE)
        data[2:4] = mid.to_bytes(2, "big")
        datagrams.append((bytes(data), (f"10.0.{i % peers // 250}.{i % 250}", 5683 + i % 7)))
    response = Message.response(Code.CHANGED)
    start = time.process_time()
    now = 0.0
    for data, peer in datagrams:
        endpoint.receive_datagram(data, peer, now)
        event = endpoint.next_event()
        assert isinstance(event, RequestReceived)
        endpoint.respond(event.exchange, response)
        endpoint.datagrams_to_send(now)
        now += 0.00005
    return (time.process_time() - start) / count * 1e6


def endpoint_requests(count: int) -> float:
    """µs per server-originated request answered by a piggybacked ACK (device side not timed)."""
    server = Endpoint()
    peer = ("10.1.0.1", 5683)
    request = Message.request(Code.GET, "/3/0/9")
    elapsed = 0.0
    for i in range(count):
        start = time.process_time()
        server.send_request(peer, request)
        ((data, _),) = server.datagrams_to_send(float(i))
        elapsed += time.process_time() - start
        sent = parse(data)
        ack = serialize(Message(Type.ACK, Code.CONTENT, sent.mid, sent.token, (), b"80"))
        start = time.process_time()
        server.receive_datagram(ack, peer, float(i))
        server.next_event()
        elapsed += time.process_time() - start
    return elapsed / count * 1e6


def dedup_entry_bytes(count: int) -> float:
    endpoint = Endpoint(Parameters(dedup_capacity=count))
    response = Message.response(Code.CHANGED)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        data = bytearray(UPDATE)
        data[2:4] = (i & 0xFFFF).to_bytes(2, "big")
        endpoint.receive_datagram(bytes(data), ("10.2.0.1", 1000 + i // 0x10000), 0.0)
        event = endpoint.next_event()
        assert isinstance(event, RequestReceived)
        endpoint.respond(event.exchange, response)
        endpoint.datagrams_to_send(0.0)
    endpoint.handle_timer(5.0)  # the empty-ACK queue drains
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (few iterations)")
    args = parser.parse_args()
    number, repeat = (2_000, 3) if args.quick else (50_000, 7)
    top = best_us(ceiling, number, repeat)
    emit(
        "parse_update",
        best_us(lambda: parse(UPDATE), number, repeat),
        "us",
        top,
        "POST /rd/abc?lt=300, 4-byte token; target <= 5 us",
    )
    emit(
        "serialize_ack",
        best_us(lambda: serialize(CHANGED), number, repeat),
        "us",
        top,
        "piggybacked 2.04",
    )
    updates = 5_000 if args.quick else 100_000
    per_update = min(endpoint_updates(updates, 10_000) for _ in range(2 if args.quick else 3))
    emit(
        "endpoint_update",
        per_update,
        "us",
        top,
        f"receive+event+respond+send, {updates} Updates over 10k peers",
    )
    emit("endpoint_update_rate", 1e6 / per_update, "per_s", None, "one core, endpoint only")
    full = updates // 10
    per_update = min(endpoint_updates(updates, 10_000, full) for _ in range(2 if args.quick else 3))
    emit(
        "endpoint_update_full",
        per_update,
        "us",
        top,
        f"the same with a {full}-entry dedup cache: 90 % of the Updates evict the oldest entry",
    )
    requests = 2_000 if args.quick else 30_000
    emit(
        "endpoint_request",
        endpoint_requests(requests),
        "us",
        top,
        "send_request+send+ACK in+event, NSTART 1, one peer",
    )
    emit(
        "dedup_entry_bytes",
        dedup_entry_bytes(2_000 if args.quick else 50_000),
        "bytes",
        None,
        "per remembered (peer, MID) incl. cached ACK (tracemalloc)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

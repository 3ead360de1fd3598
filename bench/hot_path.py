"""The LwM2M server's CPU per message, measured in process: Register, Update, notification.

Why in process: on the shared 2-core machine a socket benchmark (``bench/server_load.py``) moves
by ±30 % with the other jobs, because the server is descheduled while the generator runs and
every send wakes another process. Here one process holds a started :class:`Lwm2mServer` (temp
data dir, sqlite, defaults, no HTTP API) and feeds real CoAP datagrams straight into its NoSec
UDP endpoint (``UdpEndpoint.datagram_received``, the asyncio protocol callback the socket would
call), a batch of ``--batch`` datagrams per loop iteration as a busy socket delivers them, then
lets the loop run one turn (the driver's flush: group commit, then the replies). The replies go
to a stand-in transport that keeps them (each is checked: 2.01 with a Location-Path, 2.04, an
empty ACK), so the hot loop has **no system calls**: what is measured is the server's Python
(CoAP layer, core, store, sqlite commit, events), not the kernel or the scheduler. The kernel's
part is known apart: a C UDP echo spends 4 to 5 µs of CPU per datagram on this machine
(``server_load.py``'s ceiling), i.e. one ``recvfrom`` plus one ``sendto``; add that to compare
with the socket benchmarks.

CPU is ``time.process_time`` around the feeding and the loop turn only (building the datagrams
and checking the replies are outside), over ``--rounds`` rounds per figure; the figure is the
**best round's mean** (timeit's rule: a round slowed by another process's cache pressure is
not the server's cost) and the mean over all rounds beside it. A round is large (thousands of
messages) so it includes its share of periodic costs (the collector, WAL checkpoints).

Sizes: one server grows through ``--clients`` (1k, 10k, 100k by default). At each size N:

* ``register_cpu_us``: Registers of fresh endpoints (the loadgen's 133-byte object list) from
  the previous size to N, each from its own address (127.x.y.z:5683);
* ``update_cpu_us``: ``--updates`` bare Updates (``POST /rd/{id}``) round-robin over the N
  (``--update-stride K``: over every K-th of them, as ``lwm2m-loadgen -U COUNT`` with COUNT < N
  does: at 100k clients its ``-U 20000`` updates every 5th, which costs more per Update than
  consecutive clients at any size: docs/performance.md, "Session 7: Updates at 100k");
* ``notification_cpu_us``: ``--notifications`` CON notifications (SenML CBOR, one value) from the
  first ``--observed`` clients, observed on /3303/0/5700 through the server's ``observe``;
  ``--like-blast`` observes a tenth of N at most, as ``server_load.py`` does (1k: 100), with
  its three-byte Observe numbers. The history matters more than either: each stored point
  dirties its series' newest index page once every series has a page of history, so the CPU
  per notification grows with the rows stored (``rounds_us``); ``server_load.py`` stores ~100k
  per size (``--notifications 100000 --rounds 10`` here, docs/performance.md, "Session 8");
* ``rss_per_client_bytes``: VmRSS growth over the Register phase per client registered (the
  harness's own objects for the simulated clients are made before the first reading; what it
  keeps per client from the replies, the Location-Path, ~100 bytes, is still counted).

``--addresses K`` spreads the clients over K shared source addresses (client ``i`` sends from
``127.0.0.1:(20000 + i % K)``, one Message ID counter per address), as the C load generator's
``-s K`` sockets do (128 by default: at 100k clients ~780 registrations per address): the same
workload as over sockets without the kernel, to tell what address sharing costs from what the
socket path costs. Notifications are not measured then (the harness finds an observed client
by its address).

The deduplication cache is sized to hold every message of the run (``dedup_entries``): with
the default 100k entries, 100k Registers within MAX_TRANSMIT_SPAN fill it with recent entries and
a device that then sends more than twice the average share gets 5.03 (by design, against floods;
see ``lwm2m_runtime/coap/dedup.py``); the harness would stop on that answer.

The server runs as ``lwm2m-server`` runs it: :func:`lwm2m_runtime.server.run` (uvloop when
installed, the collector's thresholds and ``gc.freeze``). One JSON line per figure.

Usage: ``python bench/hot_path.py [--quick] [--clients 1000,10000,100000] [--profile out.prof
--profile-phase update]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load.generator import (
    CONTENT_FORMAT,
    NOTIFY_PAYLOADS,
    OBSERVE,
    SENML_CBOR,
    URI_PATH,
    registration_request,
)
from bench.server_load import run_as_main
from keystore.store.engines import StoreSettings
from lwm2m_runtime.coap import Code, Message, Type, encode_uint, parse, serialize
from lwm2m_runtime.server import run as run_server
from lwm2m_runtime.udp import UdpEndpoint
from lwm2m_server.config import LimitsSettings, ServerConfig
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

BENCH = "hot_path"
PORT = 5683
SHARED_BASE_PORT = 20000
TEMPERATURE = LwM2mPath.parse("/3303/0/5700")
CREATED, CHANGED, EMPTY = int(Code.CREATED), int(Code.CHANGED), 0
RD = b"rd"
"""The first Location-Path segment, shared by every client (harness memory, not the server's)."""


@dataclass
class Config:
    clients: list[int] = field(default_factory=lambda: [1000, 10_000, 100_000])
    updates: int = 30_000
    notifications: int = 10_000
    observed: int = 1000
    rounds: int = 5
    batch: int = 64
    update_stride: int = 1
    """Updates go to every stride-th client (the C generator's ``-U 20000`` at 100k: 5)."""
    warmup: int = 2000
    addresses: int = 0
    """Shared source addresses (0: every client its own)."""
    profile: Path | None = None
    profile_phase: str = "update"
    like_blast: bool = False
    """Notifications shaped as ``server_load.py``'s blast: a tenth of the clients observed
    (at most ``observed``), three-byte Observe numbers (``--like-blast``)."""
    redis_url: str | None = None
    """``store: {engine: redis, url: ...}`` instead of sqlite (the server's CPU only: Redis's
    own is not counted, it is another process)."""


QUICK = Config(clients=[1000], updates=6000, notifications=2000, observed=200, rounds=3)


# -- the stand-in transport ------------------------------------------------------------------


class Capture:
    """What ``UdpEndpoint`` calls on its transport, keeping the datagrams instead of sending."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def take(self) -> list[tuple[bytes, Any]]:
        sent, self.sent = self.sent, []
        return sent


# -- the simulated fleet ---------------------------------------------------------------------


@dataclass(slots=True)
class Mids:
    """The Message ID counter of one source address (shared by the clients sending from it)."""

    last: int = 0


@dataclass(slots=True)
class Client:
    endpoint: str
    peer: tuple[str, int]
    mid: int = 0
    location: tuple[bytes, ...] = ()
    token: bytes = b""
    seq: int = 0
    mids: Mids | None = None
    """The address's counter when the address is shared (else the client's own ``mid``)."""

    def next_mid(self) -> int:
        mids = self.mids
        if mids is None:
            self.mid = (self.mid + 1) & 0xFFFF
        else:
            mids.last = (mids.last + 1) & 0xFFFF
            self.mid = mids.last
        return self.mid


def peer_of(index: int, addresses: int = 0) -> tuple[str, int]:
    """Client ``index``'s address: its own 127.x.y.z (one host per client, as a real fleet),
    or with ``addresses`` one of that many ports of 127.0.0.1 (the C generator's sockets)."""
    if addresses:
        return "127.0.0.1", SHARED_BASE_PORT + index % addresses
    n = index + 1
    return f"127.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}", PORT


def update_datagram(client: Client) -> bytes:
    mid = client.next_mid()
    opts = tuple((URI_PATH, segment) for segment in client.location)
    return serialize(Message(Type.CON, Code.POST, mid, mid.to_bytes(2, "big"), opts))


BLAST_OBSERVE_MIN = 0x10000
"""``bench/load/blast.py``'s Observe numbers: 0x10000..0xFFFFFF, always three bytes."""


def notification_datagram(client: Client) -> bytes:
    client.seq = (client.seq + 1) & 0xFFFFFF
    payloads = NOTIFY_PAYLOADS[SENML_CBOR]
    opts = ((OBSERVE, encode_uint(client.seq)), (CONTENT_FORMAT, encode_uint(SENML_CBOR)))
    payload = payloads[client.seq % len(payloads)]
    return serialize(
        Message(Type.CON, Code.CONTENT, client.next_mid(), client.token, opts, payload)
    )


# -- measuring -------------------------------------------------------------------------------


class Failed(RuntimeError):
    """The server did not answer as a correct server answers (the figure would be wrong)."""


@dataclass
class Rounds:
    """CPU seconds and message counts per round."""

    cpu: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)

    def best_us(self) -> float:
        return min(c / m for c, m in zip(self.cpu, self.messages, strict=True)) * 1e6

    def mean_us(self) -> float:
        return sum(self.cpu) / sum(self.messages) * 1e6


class Bench:
    def __init__(self, cfg: Config, server: Lwm2mServer) -> None:
        self.cfg = cfg
        self.server = server
        udp = server.coap.udp
        assert udp is not None
        self.udp: UdpEndpoint = udp
        self.capture = Capture()
        self.clients: list[Client] = []
        self.by_peer: dict[tuple[str, int], Client] = {}
        self.mids: dict[tuple[str, int], Mids] = {}
        self.registered = 0
        """Clients registered so far (the first ones of ``clients``)."""
        self.observed = 0
        self.profiler: cProfile.Profile | None = None

    async def feed(
        self, datagrams: Sequence[tuple[bytes, tuple[str, int]]], phase: str
    ) -> tuple[float, list[tuple[bytes, Any]]]:
        """Feed one batch, let the loop turn once (the flush), return (CPU s, replies)."""
        receive = self.udp.datagram_received
        profiler = self.profiler if phase == self.cfg.profile_phase else None
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        for data, peer in datagrams:
            receive(data, peer)
        await asyncio.sleep(0)
        cpu = time.process_time() - start
        if profiler is not None:
            profiler.disable()
        return cpu, self.capture.take()

    async def run_phase(
        self,
        phase: str,
        make: Callable[[Client], bytes],
        clients: Iterator[Client],
        count: int,
        expect: int,
        rounds: int,
        check: Callable[[Client, Message], None] | None = None,
    ) -> Rounds:
        """``count`` messages in ``rounds`` rounds of batches; every answer must be an ACK of
        code ``expect`` to the client's message (a piggybacked response, or an empty ACK)."""
        result = Rounds()
        per_round = [count // rounds + (1 if i < count % rounds else 0) for i in range(rounds)]
        for size in per_round:
            cpu = 0.0
            left = size
            while left:
                batch = [next(clients) for _ in range(min(self.cfg.batch, left))]
                left -= len(batch)
                datagrams = []
                expected: dict[tuple[tuple[str, int], int], Client] = {}
                for client in batch:
                    datagrams.append((make(client), client.peer))
                    expected[client.peer, client.mid] = client
                spent, sent = await self.feed(datagrams, phase)
                cpu += spent
                self._check(phase, expected, sent, expect, check)
            result.cpu.append(cpu)
            result.messages.append(size)
        return result

    def _check(
        self,
        phase: str,
        expected: dict[tuple[tuple[str, int], int], Client],
        sent: list[tuple[bytes, Any]],
        expect: int,
        check: Callable[[Client, Message], None] | None,
    ) -> None:
        """Every message of the batch (``expected``: by peer and MID) got exactly one ACK."""
        count = len(expected)
        answered = 0
        for data, peer in sent:
            message = parse(data)
            if message.mtype is not Type.ACK:
                continue  # the server's own requests (a profile's reads): nobody answers them
            client = expected.pop((peer, message.mid), None)
            if client is None:
                raise Failed(f"{phase}: an answer to nobody's message: {message!r}")
            if message.code != expect:
                raise Failed(f"{phase}: {client.endpoint} got {message!r}, expected {expect}")
            if check is not None:
                check(client, message)
            answered += 1
        if answered != count:
            raise Failed(f"{phase}: {answered} answers to {count} messages")

    # -- phases ----------------------------------------------------------------------------
    def prepare(self, total: int) -> None:
        """Create the simulated clients up to ``total`` (before the RSS reading: they are the
        harness's memory, not the server's)."""
        addresses = self.cfg.addresses
        for index in range(len(self.clients), total):
            peer = peer_of(index, addresses)
            mids = self.mids.setdefault(peer, Mids()) if addresses else None
            client = Client(f"hp-{index:07d}", peer, mids=mids)
            self.clients.append(client)
            self.by_peer[client.peer] = client

    async def grow(self, total: int) -> Rounds:
        first = self.registered
        self.prepare(total)

        def register(client: Client) -> bytes:
            mid = client.next_mid()
            return registration_request(client.endpoint, mid, mid.to_bytes(2, "big"), 86400)

        def located(client: Client, message: Message) -> None:
            client.location = tuple(RD if s == "rd" else s.encode() for s in message.location_path)

        fresh = itertools.islice(self.clients, first, total)
        rounds = await self.run_phase(
            "register", register, fresh, total - first, CREATED, self.cfg.rounds, located
        )
        self.registered = total
        return rounds

    async def updates(self, count: int, rounds: int) -> Rounds:
        # every stride-th client, as lwm2m-loadgen's ``-U COUNT`` with COUNT < N does
        cycle = itertools.cycle(self.clients[: self.registered : self.cfg.update_stride])
        return await self.run_phase("update", update_datagram, cycle, count, CHANGED, rounds)

    async def observe(self, count: int) -> None:
        """Observe clients ``observed..count`` through the server, answering its requests."""
        server = self.server
        while self.observed < count:
            chunk = self.clients[self.observed : min(count, self.observed + self.cfg.batch)]
            tasks = [asyncio.ensure_future(server.observe(c.endpoint, TEMPERATURE)) for c in chunk]
            waiting = {c.peer for c in chunk}
            for _ in range(1000):
                await asyncio.sleep(0)
                for data, peer in self.capture.take():
                    message = parse(data)
                    client = self.by_peer.get(peer)
                    if client is None or message.mtype is not Type.CON or message.observe != 0:
                        continue
                    client.token = message.token
                    client.seq = BLAST_OBSERVE_MIN if self.cfg.like_blast else 1
                    opts = ((OBSERVE, encode_uint(1)), (CONTENT_FORMAT, encode_uint(SENML_CBOR)))
                    answer = Message(
                        Type.ACK, Code.CONTENT, message.mid, message.token, opts,
                        NOTIFY_PAYLOADS[SENML_CBOR][1],
                    )  # fmt: skip
                    self.udp.datagram_received(serialize(answer), client.peer)
                    waiting.discard(client.peer)
                if not waiting and all(t.done() for t in tasks):
                    break
            for task in tasks:
                response = await asyncio.wait_for(task, 10.0)
                if response.code != int(Code.CONTENT):
                    raise Failed(f"observe answered {response.code}")
            self.observed += len(chunk)
            self.capture.take()

    async def notifications(self, count: int) -> Rounds:
        cycle = itertools.cycle(self.clients[: self.observed])
        return await self.run_phase(
            "notification", notification_datagram, cycle, count, EMPTY, self.cfg.rounds
        )


def dedup_entries(cfg: Config) -> int:
    """Room for every message of the run (they are all younger than EXCHANGE_LIFETIME)."""
    per_size = cfg.updates + cfg.warmup + cfg.notifications + cfg.observed
    return max(cfg.clients) + len(cfg.clients) * per_size + 1000


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def emit(line: dict[str, object]) -> None:
    print(json.dumps({"bench": BENCH, **line}), flush=True)


def cpu_line(figure: str, clients: int, rounds: Rounds, **extra: object) -> None:
    emit(
        {
            "figure": figure,
            "clients": clients,
            "value": round(rounds.best_us(), 1),
            "unit": "cpu_us",
            "mean_us": round(rounds.mean_us(), 1),
            "rounds_us": [
                round(c / m * 1e6, 1) for c, m in zip(rounds.cpu, rounds.messages, strict=True)
            ],
            "messages": sum(rounds.messages),
            **extra,
        }
    )


async def measure(cfg: Config) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hot-path-") as tmp:
        config = ServerConfig(
            host="127.0.0.1",
            coap_port=0,
            data_dir=Path(tmp),
            security_modes=("nosec",),
            log_level="WARNING",
            # every message of the run stays in the deduplication cache (they are all younger
            # than EXCHANGE_LIFETIME): at the default 100k entries, 100k Registers in a few
            # seconds fill it with recent entries, and the devices that sent more than twice the
            # average then get 5.03 (lwm2m_runtime/coap/dedup.py); not what is measured here
            limits=attrs.evolve(
                LimitsSettings(),
                register_rate=0,
                dedup_entries=dedup_entries(cfg),
                dedup_bytes=dedup_entries(cfg) * 1024,
            ),
        )
        if cfg.redis_url is not None:
            config = attrs.evolve(config, store=StoreSettings("redis", cfg.redis_url, "hot"))
        server = Lwm2mServer(config)
        await server.start()
        udp = server.coap.udp
        assert udp is not None
        real = udp.transport
        bench = Bench(cfg, server)
        udp.transport = bench.capture  # type: ignore[assignment]
        if cfg.profile is not None:
            bench.profiler = cProfile.Profile()
        try:
            emit(
                {
                    "figure": "setup",
                    "python": platform.python_version(),
                    "loop": type(asyncio.get_running_loop()).__module__,
                    "batch": cfg.batch,
                    "addresses": cfg.addresses,
                    "update_stride": cfg.update_stride,
                    "load_avg": [round(x, 2) for x in os.getloadavg()],
                }
            )
            for total in sorted(cfg.clients):
                before = bench.registered
                bench.prepare(total)
                rss = rss_bytes()
                registered = await bench.grow(total)
                grown = total - before
                cpu_line("register_cpu_us", total, registered, registered_from=before)
                emit(
                    {
                        "figure": "rss_per_client_bytes",
                        "clients": total,
                        "value": round((rss_bytes() - rss) / max(1, grown)),
                        "registered_from": before,
                    }
                )
                await bench.updates(min(cfg.warmup, cfg.updates), 1)
                cpu_line("update_cpu_us", total, await bench.updates(cfg.updates, cfg.rounds))
                if cfg.notifications and cfg.observed and not cfg.addresses:
                    # like server_load.py: at most a tenth of N observed (1k: 100)
                    share = max(1, total // 10) if cfg.like_blast else total
                    await bench.observe(max(bench.observed, min(cfg.observed, share)))
                    cpu_line(
                        "notification_cpu_us",
                        total,
                        await bench.notifications(cfg.notifications),
                        observed=bench.observed,
                    )
            emit({"figure": "end", "load_avg": [round(x, 2) for x in os.getloadavg()]})
        finally:
            udp.transport = real
            await server.stop()
            if bench.profiler is not None and cfg.profile is not None:
                bench.profiler.dump_stats(str(cfg.profile))


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k clients, a few seconds")
    parser.add_argument("--clients", help="comma-separated sizes (default 1000,10000,100000)")
    parser.add_argument("--updates", type=int, help="Updates measured per size (30000)")
    parser.add_argument("--notifications", type=int, help="notifications per size (10000)")
    parser.add_argument("--observed", type=int, help="clients observed (1000)")
    parser.add_argument("--rounds", type=int, help="rounds per figure (5)")
    parser.add_argument("--batch", type=int, help="datagrams per loop iteration (64)")
    parser.add_argument(
        "--addresses",
        type=int,
        help="shared source addresses (0: one each)",
    )
    parser.add_argument(
        "--update-stride", type=int, help="Update every K-th client (1; lwm2m-loadgen -U: N/U)"
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of one phase here")
    parser.add_argument(
        "--profile-phase", choices=("register", "update", "notification"), default="update"
    )
    parser.add_argument("--redis-url", help="run the server on this Redis (an empty one)")
    parser.add_argument(
        "--like-blast",
        action="store_true",
        help="notifications as server_load.py's blast: N/10 observed (at most --observed), "
        "three-byte Observe numbers; add --notifications 100000 --rounds 10 for its history",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    cfg = replace(
        cfg,
        profile=args.profile,
        profile_phase=args.profile_phase,
        redis_url=args.redis_url,
        like_blast=args.like_blast,
    )
    if args.clients:
        cfg = replace(cfg, clients=[int(c) for c in args.clients.split(",")])
    names = ("updates", "notifications", "observed", "rounds", "batch", "addresses")
    names += ("update_stride",)
    for name in names:
        value = getattr(args, name)
        if value is not None:
            cfg = replace(cfg, **{name: value})
    if cfg.update_stride < 1:
        parser.error("--update-stride is at least 1")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return run_as_main(BENCH, lambda: run_server(measure(cfg)))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

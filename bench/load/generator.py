"""Many simulated LwM2M clients in one process, over asyncio UDP, with our sans-IO CoAP codec.

Layout: every simulated client is a ``SimClient`` living on a ``ClientSocket`` (one UDP socket,
one source port). Up to ``pool`` clients each get a socket of their own, as real devices do: the
server tells clients apart by endpoint name, but sends its requests (Read, Observe) to the
address a client registered from, so a client that must answer the server needs its own port.
Beyond the pool (the RSS runs with 100k clients: loopback has ~28k ephemeral ports and the
process 20k file descriptors), clients share sockets round-robin; they can register and update
but only the socket's first client (its ``owner``) answers server requests.

Traffic is driven by ``run_window``: ``window`` workers each pick the next job, so at most
``window`` exchanges are in flight whatever the client count (CoAP's NSTART=1 per client is kept
because ``window`` never exceeds the client count). Every phase is bounded by a count and a
duration. Lost datagrams are retransmitted (same Message ID, so the server's deduplication
answers them) up to ``attempts`` times with doubling timeouts, then counted as failures.

Everything here targets either the LwM2M server or the echo server (``echo=True``): the same
bytes go out, and for the echo the reply is the request itself, matched by Message ID. That is
what makes the echo figures a fair ceiling for the server figures.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import cbor2

from lwm2m_runtime.coap import (
    CoapError,
    Code,
    Message,
    OptionNumber,
    Type,
    encode_uint,
    options,
    parse,
    serialize,
)
from lwm2m_runtime.coap.message import empty

LOOPBACK = "127.0.0.1"
GENERATOR_NAME = "bench.load (Python, asyncio, SimClient messages)"
"""What the JSON lines say produced a figure driven through ``run_window``."""
# plain ints for the option tuples the hot path writes out (see ``SimClient.update_request``)
URI_PATH, OBSERVE, CONTENT_FORMAT = (
    int(OptionNumber.URI_PATH),
    int(OptionNumber.OBSERVE),
    int(OptionNumber.CONTENT_FORMAT),
)
SENML_CBOR = 112
TEXT = 0
LINK_FORMAT = 40
SEPARATE_TIMEOUT = 30.0

REGISTRATION_LINKS = (
    b'</>;rt="oma.lwm2m";ct="0 112 11542",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,'
    b"</4/0>,</5/0>,</6/0>,</3303/0>,</3303/1>"
)
"""A typical small device: Server, Device, Connectivity Monitoring, Firmware Update, Location
and two temperature sensors, announcing SenML CBOR so the server reads and observes in it."""

TEMPERATURE_PATH = ("3303", "0", "5700")
MANUFACTURER_PATH = ("3", "0", "0")
MANUFACTURER = "pylwm2m bench devices"


def senml_cbor(base_name: str, name: str, value: float | str) -> bytes:
    """One SenML CBOR record (RFC 8428 labels: bn=-2, n=0, v=2, vs=3)."""
    label = 3 if isinstance(value, str) else 2
    return bytes(cbor2.dumps([{-2: base_name, 0: name, label: value}]))


TEMPERATURES = [round(18.0 + 0.25 * i, 2) for i in range(32)]
"""Notification values cycle through these, so consecutive telemetry rows differ."""

NOTIFY_PAYLOADS: dict[int, list[bytes]] = {
    SENML_CBOR: [senml_cbor("/3303/0/", "5700", t) for t in TEMPERATURES],
    TEXT: [str(t).encode() for t in TEMPERATURES],
}
READ_PAYLOADS: dict[int, bytes] = {
    SENML_CBOR: senml_cbor("/3/0/", "0", MANUFACTURER),
    TEXT: MANUFACTURER.encode(),
}


@dataclass(slots=True)
class Stats:
    """Counters across a whole run; ``failures`` are exchanges abandoned after retries."""

    sent: int = 0
    received: int = 0
    retransmissions: int = 0
    failures: int = 0
    malformed: int = 0
    server_requests: int = 0
    unexpected: int = 0


@dataclass(slots=True, eq=False)
class Pending:
    """One exchange waiting for its ACK / response (or its echo)."""

    future: asyncio.Future[Message | None]
    data: bytes
    mid: int
    token: bytes
    wants_response: bool
    attempts_left: int
    timeout: float
    timer: asyncio.TimerHandle | None = None


class ClientSocket(asyncio.DatagramProtocol):
    """One connected UDP socket (one source port) and the exchanges in flight on it."""

    def __init__(self, echo: bool, stats: Stats) -> None:
        self.echo = echo
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None
        self.by_mid: dict[int, Pending] = {}
        self.by_token: dict[bytes, Pending] = {}
        self.owner: SimClient | None = None
        self._mid = random.randrange(0x10000)
        self._token = itertools.count(random.randrange(1 << 30))
        self.loop = asyncio.get_running_loop()

    # -- identifiers -------------------------------------------------------------------------
    def next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def next_token(self) -> bytes:
        return (next(self._token) & 0xFFFFFFFF).to_bytes(4, "big")

    # -- asyncio protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the target restarts; the exchange times out and counts
        pass

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)
        self.stats.sent += 1

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.stats.received += 1
        try:
            msg = parse(data)
        except CoapError:  # a format error, or a string option that is not UTF-8
            self.stats.malformed += 1
            return
        if self.echo:
            # the echo of our own message: same Message ID (NON echoes have no waiter)
            pending = self.by_mid.get(msg.mid)
            if pending is not None:
                self._finish(pending, msg)
            return
        mtype = msg.mtype
        if mtype == Type.ACK or mtype == Type.RST:
            pending = self.by_mid.get(msg.mid)
            if pending is None:
                return  # late duplicate ACK
            if mtype == Type.ACK and msg.code == Code.EMPTY and pending.wants_response:
                # a separate response follows, matched by token: stop retransmitting and
                # give it one long timeout
                del self.by_mid[msg.mid]
                pending.attempts_left = 0
                if pending.timer is not None:
                    pending.timer.cancel()
                pending.timer = self.loop.call_later(SEPARATE_TIMEOUT, self._retransmit, pending)
                return
            self._finish(pending, msg)
            return
        if msg.is_response:
            pending = self.by_token.get(msg.token)
            if mtype == Type.CON:
                self.send(empty(Type.ACK, msg.mid))
            if pending is not None:
                self._finish(pending, msg)
            else:
                self.stats.unexpected += 1
            return
        if msg.is_request:
            self.stats.server_requests += 1
            if self.owner is None:
                self.send(empty(Type.RST, msg.mid))
                return
            self.send(self.owner.answer(msg, self.next_mid))
            return
        if mtype == Type.CON:  # CoAP ping
            self.send(empty(Type.RST, msg.mid))

    # -- exchanges ---------------------------------------------------------------------------
    def exchange(
        self,
        data: bytes,
        mid: int,
        token: bytes = b"",
        *,
        wants_response: bool,
        timeout: float = 2.0,
        attempts: int = 4,
    ) -> asyncio.Future[Message | None]:
        """Send a CON (``data`` encoded with ``mid``/``token``) and retransmit it until its
        ACK (``wants_response=False``) or its response arrives; resolves to ``None`` once
        ``attempts`` transmissions went unanswered."""
        future: asyncio.Future[Message | None] = self.loop.create_future()
        pending = Pending(future, data, mid, token, wants_response, attempts - 1, timeout)
        self.by_mid[mid] = pending
        if wants_response and not self.echo:
            self.by_token[token] = pending
        self.send(data)
        pending.timer = self.loop.call_later(timeout, self._retransmit, pending)
        return future

    def _retransmit(self, pending: Pending) -> None:
        if pending.future.done():
            return
        if pending.attempts_left <= 0:
            self.stats.failures += 1
            self._finish(pending, None)
            return
        pending.attempts_left -= 1
        pending.timeout *= 2
        self.stats.retransmissions += 1
        self.send(pending.data)
        pending.timer = self.loop.call_later(pending.timeout, self._retransmit, pending)

    def _finish(self, pending: Pending, msg: Message | None) -> None:
        if self.by_mid.get(pending.mid) is pending:
            del self.by_mid[pending.mid]
        if pending.wants_response and self.by_token.get(pending.token) is pending:
            del self.by_token[pending.token]
        if pending.timer is not None:
            pending.timer.cancel()
        if not pending.future.done():
            pending.future.set_result(msg)

    def close(self) -> None:
        for pending in list(self.by_mid.values()) + list(self.by_token.values()):
            self._finish(pending, None)
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True, eq=False)
class SimClient:
    """One simulated device: its endpoint name, registration, and observation state."""

    index: int
    endpoint: str
    sock: ClientSocket
    location: str | None = None
    observe_token: bytes | None = None
    observe_format: int = SENML_CBOR
    observe_seq: int = 0
    notifications: int = 0
    sends: int = 0

    # -- answering the server (Read, Observe) ---------------------------------------------
    def answer(self, msg: Message, next_mid: Callable[[], int]) -> bytes:
        """The reply to a server request: piggybacked in the ACK of a CON, else a NON."""
        if msg.mtype == Type.CON:
            mtype, mid = Type.ACK, msg.mid
        else:
            mtype, mid = Type.NON, next_mid()
        path = tuple(msg.uri_path)
        accept = msg.accept
        fmt = SENML_CBOR if accept is None else accept
        if msg.code != Code.GET or path not in (TEMPERATURE_PATH, MANUFACTURER_PATH):
            return serialize(Message(mtype, Code.NOT_FOUND, mid, msg.token))
        if fmt not in NOTIFY_PAYLOADS:
            return serialize(Message(mtype, Code.NOT_ACCEPTABLE, mid, msg.token))
        observe = msg.observe
        seq = None
        if path == TEMPERATURE_PATH:
            payload = NOTIFY_PAYLOADS[fmt][self.observe_seq % len(TEMPERATURES)]
            if observe == 0:
                self.observe_token = msg.token
                self.observe_format = fmt
                self.observe_seq += 1
                seq = self.observe_seq
            elif observe == 1 and msg.token == self.observe_token:
                self.observe_token = None
        else:
            payload = READ_PAYLOADS[fmt]
        opts = options(content_format=fmt, observe=seq)
        return serialize(Message(mtype, Code.CONTENT, mid, msg.token, opts, payload))

    # -- requests to the server ---------------------------------------------------------------
    def registration_request(self, mid: int, token: bytes, lifetime: int) -> bytes:
        return registration_request(self.endpoint, mid, token, lifetime)

    def update_request(self, mid: int, token: bytes) -> bytes:
        location = self.location or "rd/00000000"
        # option tuples written out rather than through ``options()``: this and
        # ``notification`` run once per measured exchange, and the builder doubles their cost
        # (1.8 µs instead of 4.5 µs; the codec this replaced took 2.2 µs)
        opts = tuple((URI_PATH, s.encode()) for s in location.split("/") if s)
        return serialize(Message(Type.CON, Code.POST, mid, token, opts))

    def notification(self, mtype: Type, mid: int) -> bytes:
        """The next notification of the observed temperature (Observe sequence + 1)."""
        self.observe_seq = (self.observe_seq + 1) & 0xFFFFFF
        self.notifications += 1
        payload = NOTIFY_PAYLOADS[self.observe_format][self.observe_seq % len(TEMPERATURES)]
        token = self.observe_token or b"\x00\x00\x00\x00\x00\x00\x00\x00"
        opts = (
            (OBSERVE, encode_uint(self.observe_seq)),
            (CONTENT_FORMAT, encode_uint(self.observe_format)),
        )
        return serialize(Message(mtype, Code.CONTENT, mid, token, opts, payload))

    def send_request(self, mid: int, token: bytes) -> bytes:
        """A Send (``POST /dp``, LwM2M 1.1+) of the next temperature in SenML CBOR: the
        server attributes it to the registration of this socket's address and stores it."""
        self.sends += 1
        payload = NOTIFY_PAYLOADS[SENML_CBOR][self.sends % len(TEMPERATURES)]
        opts = ((URI_PATH, b"dp"), (CONTENT_FORMAT, encode_uint(SENML_CBOR)))
        return serialize(Message(Type.CON, Code.POST, mid, token, opts, payload))


def registration_request(endpoint: str, mid: int, token: bytes, lifetime: int) -> bytes:
    """Register (POST /rd?ep=&lt=&lwm2m=1.1&b=U, link format) as a CON."""
    opts = options(
        uri_path=["rd"],
        uri_query=[f"ep={endpoint}", f"lt={lifetime}", "lwm2m=1.1", "b=U"],
        content_format=LINK_FORMAT,
    )
    return serialize(Message(Type.CON, Code.POST, mid, token, opts, REGISTRATION_LINKS))


def read_request_like_server(mid: int) -> bytes:
    """The datagram the server sends for an API Read of /3/0/0 (8-byte token, Accept), used
    as the echo ceiling for the read round trip."""
    opts = options(uri_path=MANUFACTURER_PATH, accept=SENML_CBOR)
    return serialize(Message(Type.CON, Code.GET, mid, os.urandom(8), opts))


# -- the fleet ---------------------------------------------------------------------------------


class Fleet:
    """The simulated clients and their sockets, all aimed at one target address."""

    def __init__(self, target: tuple[str, int], *, echo: bool, prefix: str = "bench") -> None:
        if target[0] not in (LOOPBACK, "localhost", "::1"):
            raise ValueError("the load generator only targets the loopback interface")
        self.target = target
        self.echo = echo
        self.prefix = prefix
        self.stats = Stats()
        self.sockets: list[ClientSocket] = []
        self.clients: list[SimClient] = []
        self.pool = 0

    async def grow(self, count: int, *, pool: int) -> None:
        """Add clients up to ``count`` in total; sockets are opened up to ``pool`` (each of
        the first ``pool`` clients owns one), later clients share them round-robin."""
        loop = asyncio.get_running_loop()
        self.pool = max(self.pool, pool)
        while len(self.clients) < count:
            index = len(self.clients)
            if len(self.sockets) < self.pool:
                _, sock = await loop.create_datagram_endpoint(
                    lambda: ClientSocket(self.echo, self.stats),
                    local_addr=(LOOPBACK, 0),
                    remote_addr=self.target,
                )
                self.sockets.append(sock)
            else:
                sock = self.sockets[index % len(self.sockets)]
            client = SimClient(index, f"{self.prefix}-{index:06d}", sock)
            if sock.owner is None:
                sock.owner = client
            self.clients.append(client)

    def owners(self) -> list[SimClient]:
        """Clients that own their socket: the only ones the server can reach."""
        return [s.owner for s in self.sockets if s.owner is not None]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


# -- driving traffic ---------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """What one phase achieved: ``units`` done (exchanges, or notifications), ``failed``."""

    units: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.units / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies, nearest rank; NaN when none."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
        return ordered[rank]


Job = Callable[[int], Awaitable[tuple[int, int]]]


async def run_window(job: Job, count: int, window: int, seconds: float) -> Run:
    """Run ``job(0..count-1)`` with at most ``window`` in flight, stopping early at
    ``seconds``; each job returns (units done, units failed)."""
    loop = asyncio.get_running_loop()
    result = Run()
    counter = itertools.count()
    deadline = loop.time() + seconds

    async def worker() -> None:
        while loop.time() < deadline:
            i = next(counter)
            if i >= count:
                return
            ok, failed = await job(i)
            result.units += ok
            result.failed += failed

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(window, count)))))
    result.elapsed = time.perf_counter() - start
    return result


def _ok(msg: Message | None, *codes: int) -> tuple[int, int]:
    if msg is None:
        return 0, 1
    if msg.mtype == Type.RST or (codes and msg.code not in codes):
        return 0, 1
    return 1, 0


async def register(client: SimClient, lifetime: int = 86400) -> tuple[int, int]:
    sock = client.sock
    mid, token = sock.next_mid(), sock.next_token()
    data = client.registration_request(mid, token, lifetime)
    msg = await sock.exchange(data, mid, token, wants_response=True)
    if sock.echo:
        client.location = f"rd/{client.index:08x}"
        return _ok(msg)
    if msg is not None and msg.code == Code.CREATED:
        client.location = "/".join(msg.location_path)
    return _ok(msg, Code.CREATED)


async def update(client: SimClient) -> tuple[int, int]:
    sock = client.sock
    mid, token = sock.next_mid(), sock.next_token()
    msg = await sock.exchange(client.update_request(mid, token), mid, token, wants_response=True)
    return _ok(msg) if sock.echo else _ok(msg, Code.CHANGED)


async def send(client: SimClient) -> tuple[int, int]:
    """One CON Send; the server answers 2.04 once the values are stored."""
    sock = client.sock
    mid, token = sock.next_mid(), sock.next_token()
    msg = await sock.exchange(client.send_request(mid, token), mid, token, wants_response=True)
    return _ok(msg) if sock.echo else _ok(msg, Code.CHANGED)


async def notify_con(client: SimClient) -> tuple[int, int]:
    """One confirmable notification; the server ACKs it once stored."""
    sock = client.sock
    mid = sock.next_mid()
    data = client.notification(Type.CON, mid)
    return _ok(await sock.exchange(data, mid, wants_response=False))


async def notify_non(client: SimClient, batch: int) -> tuple[int, int]:
    """``batch`` NON notifications then one CON as a barrier: the server reads one socket in
    order, so the CON's ACK means the NONs before it were handled too. This keeps the NON
    phase closed-loop (bounded in flight) without needing replies to NONs."""
    sock = client.sock
    for _ in range(batch):
        sock.send(client.notification(Type.NON, sock.next_mid()))
    ok, failed = await notify_con(client)
    return batch + ok, failed


async def echo_read(client: SimClient) -> tuple[int, int]:
    sock = client.sock
    mid = sock.next_mid()
    return _ok(await sock.exchange(read_request_like_server(mid), mid, wants_response=False))


Action = Callable[[SimClient], Awaitable[tuple[int, int]]]


def cycling(clients: Sequence[SimClient], action: Action) -> Job:
    """A job that applies ``action`` to the clients in turn."""

    def job(i: int) -> Awaitable[tuple[int, int]]:
        return action(clients[i % len(clients)])

    return job


def timed(job: Job, run: Run) -> Job:
    """``job`` recording its latency into ``run.latencies`` (successful calls only)."""

    async def wrapper(i: int) -> tuple[int, int]:
        start = time.perf_counter()
        ok, failed = await job(i)
        if ok:
            run.latencies.append(time.perf_counter() - start)
        return ok, failed

    return wrapper


# -- the HTTP side -----------------------------------------------------------------------------


API_TOKEN = "bench-admin-token-not-a-secret-0123456789"
"""The admin API token benchmark servers are started with (``server_env``): a configured token
is a dict lookup per request, as cheap as an open API, so the figures are those of the real,
authenticated server."""
API_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


def server_env() -> dict[str, str]:
    """What a benchmark adds to the environment of ``python -m lwm2m_server``."""
    return {"LWM2M_SERVER_API_AUTH_ADMIN_TOKEN": API_TOKEN}


class HttpApi:
    """The few server API calls the benchmark needs (aiohttp: not part of the CoAP hot path)."""

    def __init__(self, base_url: str, *, concurrency: int = 64) -> None:
        import aiohttp

        self.base_url = base_url.rstrip("/")
        self._aiohttp = aiohttp
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=30),
            headers=API_HEADERS,
        )

    async def close(self) -> None:
        await self.session.close()

    async def _call(self, method: str, path: str) -> bool:
        """True when HTTP 200 and the device's answer was a success."""
        try:
            async with self.session.request(method, self.base_url + path) as resp:
                if resp.status != 200:
                    await resp.read()
                    return False
                body = await resp.json()
        except (self._aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return bool(body.get("success", True)) if isinstance(body, dict) else True

    async def observe(self, endpoint: str, path: Sequence[str]) -> bool:
        return await self._call("POST", f"/api/clients/{endpoint}/{'/'.join(path)}/observe")

    async def read(self, endpoint: str, path: Sequence[str]) -> bool:
        return await self._call("GET", f"/api/clients/{endpoint}/{'/'.join(path)}?timeout=10")

    async def health(self) -> bool:
        try:
            async with self.session.get(self.base_url + "/api/health") as resp:
                await resp.read()
                return resp.status == 200
        except (self._aiohttp.ClientError, TimeoutError, OSError):
            return False


# -- what the server process holds -------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


_CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all threads) from /proc/PID/stat.

    Why: the development box is shared, so wall-clock rates move with other people's load;
    CPU time per operation is what the server itself spends and moves much less."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICK


def telemetry_rows(database: Path) -> int:
    """Rows in the server's telemetry table, read through a separate read-only connection
    (WAL: it sees every committed write, and does not block the server)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        return int(row[0])
    finally:
        conn.close()

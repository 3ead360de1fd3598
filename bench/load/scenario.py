"""Server load benchmark: the LwM2M server against a UDP echo ceiling, one JSON line each.

Both targets are driven by the same generator, with the same datagrams.

Two runs, each against a fresh server (subprocess, free ports, temporary data dir) and a fresh
echo server (subprocess):

* **throughput**: ``clients`` clients, each on its own socket, register; then Updates;
  ``observed`` of them are observed on /3303/0/5700 through the HTTP API and push CON
  notifications, then NON notifications (``non_batch`` NONs + one CON barrier per exchange);
  then CON Sends (``POST /dp``, SenML CBOR) from the clients that own a socket; then API Reads
  of /3/0/0 answered by the simulated clients. Notifications and Sends count as *persisted* by
  the telemetry table's row count (sqlite, read-only connection) after each phase.
* **rss**: register clients up to each of ``rss_at`` (sharing sockets beyond ``pool``) and read
  the server's VmRSS after each step; per client = (RSS - RSS at start) / clients. The echo
  server runs with ``--remember`` (it keeps every datagram) as the floor.

Figures: ``{"bench":"server","figure":...,"value":...,"ceiling":...,"ratio":...,...}``.
``ratio`` is always "fraction of the ceiling reached": value/ceiling for rates, ceiling/value
for latencies and bytes per client (lower is better there), so 1.0 means "as good as a server
that does nothing" and small numbers mean the LwM2M server is the bottleneck.

Usage: ``python -m bench.load [--quick] [--clients N] [--rss-at 10000,100000] ...`` from the
repository root (``--help`` lists every bound). Stops by itself: every phase has a count and a
duration limit, subprocesses are terminated at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import blast as b
from . import generator as g

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Config:
    """Every bound of a run. Defaults are the full run (< 15 min on 2 cores)."""

    clients: int = 5_000
    pool: int = 8_000
    window: int = 64
    observed: int = 1_000
    phase_seconds: float = 10.0
    register_seconds: float = 120.0
    updates: int = 100_000
    notifications: int = 200_000
    non_batch: int = 4
    reads: int = 3_000
    read_concurrency: int = 16
    observe_concurrency: int = 32
    rss_at: list[int] = field(default_factory=lambda: [10_000, 100_000])
    rss_seconds: float = 480.0
    rss_pool: int = 16_000
    payload: str = "senml-cbor"
    notify_path: str = "blast"
    """How the CON notification phase is driven: ``blast`` (pre-built datagrams, ``blast.py``)
    or ``asyncio`` (``SimClient.notification`` through ``run_window``, the old path)."""
    server_args: list[str] = field(default_factory=list)
    startup_timeout: float = 60.0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            clients=200,
            observed=50,
            phase_seconds=1.5,
            register_seconds=20.0,
            updates=5_000,
            notifications=10_000,
            reads=300,
            rss_at=[1_000],
            rss_seconds=60.0,
        )

    @property
    def content_format(self) -> int:
        return g.TEXT if self.payload == "text" else g.SENML_CBOR


# -- subprocesses ------------------------------------------------------------------------------


def free_port(kind: int) -> int:
    """A port the kernel just handed out on 127.0.0.1 (``SOCK_DGRAM`` or ``SOCK_STREAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((g.LOOPBACK, 0))
        return int(s.getsockname()[1])


class ServerUnavailable(RuntimeError):
    """The LwM2M server cannot be started here (not built yet, or it failed at start)."""


@dataclass
class Process:
    """A benchmark subprocess: the LwM2M server or the echo server."""

    popen: subprocess.Popen[bytes]
    coap_port: int
    http_port: int | None = None
    data_dir: Path | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def database(self) -> Path:
        """The server's sqlite file: the one ``*.db``/``*.sqlite*`` in its data dir."""
        assert self.data_dir is not None
        candidates = sorted(
            p
            for p in self.data_dir.rglob("*")
            if p.suffix in (".db", ".sqlite", ".sqlite3") and p.is_file()
        )
        if not candidates:
            raise RuntimeError(f"no sqlite database in {self.data_dir}")
        return candidates[0]

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(g.server_env())
    return env


async def start_server(data_dir: Path, log: IO[bytes], cfg: Config) -> Process:
    """``python -m lwm2m_server`` on free ports; ready when ``/api/health`` answers."""
    if not (REPO / "lwm2m_server" / "__main__.py").exists():
        raise ServerUnavailable("lwm2m_server has no __main__ yet (python -m lwm2m_server)")
    coap_port, http_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    # every port given (CoAPs too): other test runs on the same box must not collide with us
    command = [
        sys.executable, "-m", "lwm2m_server",
        "--host", g.LOOPBACK, "--coap-port", str(coap_port),
        "--coaps-port", str(free_port(socket.SOCK_DGRAM)),
        "--http-host", g.LOOPBACK, "--http-port", str(http_port),
        "--data-dir", str(data_dir),
        *cfg.server_args,
    ]  # fmt: skip
    popen = subprocess.Popen(
        command,
        cwd=data_dir,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc = Process(popen, coap_port, http_port, data_dir, Path(log.name))
    api = g.HttpApi(f"http://{g.LOOPBACK}:{http_port}")
    try:
        deadline = time.monotonic() + cfg.startup_timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise ServerUnavailable(
                    f"server exited with {popen.returncode} at start:\n{proc.log_tail()}"
                )
            if await api.health():
                return proc
            await asyncio.sleep(0.2)
        proc.stop()
        raise ServerUnavailable(f"server not healthy after {cfg.startup_timeout} s")
    finally:
        await api.close()


async def start_echo(remember: bool) -> Process:
    command = [
        sys.executable,
        str(REPO / "bench" / "load" / "echo.py"),
        "--port",
        "0",
        "--max-seconds",
        "3600",
    ]
    if remember:
        command.append("--remember")
    popen = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert popen.stdout is not None
    line = await asyncio.to_thread(popen.stdout.readline)
    if not line.startswith(b"READY "):
        popen.kill()
        raise RuntimeError(f"echo server did not start: {line!r}")
    return Process(popen, int(line.split()[1]))


# -- figures -----------------------------------------------------------------------------------


def _round(value: float) -> float | None:
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, 3) if abs(value) < 100 else round(value, 1)


def figure(
    name: str, value: float, ceiling: float, extra: dict[str, object], *, lower: bool = False
) -> dict[str, object]:
    """One JSON line. ``ratio`` is the fraction of the ceiling's performance reached:
    value/ceiling, or ceiling/value when ``lower`` is better (latency, bytes)."""
    if lower:
        ratio = ceiling / value if value > 0 else math.nan
    else:
        ratio = value / ceiling if ceiling > 0 else math.nan
    line: dict[str, object] = {
        "bench": "server",
        "figure": name,
        "value": _round(value),
        "ceiling": _round(ceiling),
        "ratio": None if math.isnan(ratio) else round(ratio, 4),
    }
    line.update(extra)
    return line


def emit(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


# -- the throughput run ------------------------------------------------------------------------


@dataclass
class Measured:
    """One target's results in the throughput run."""

    registrations: g.Run = field(default_factory=g.Run)
    updates: g.Run = field(default_factory=g.Run)
    observed: int = 0
    observe_seconds: float = 0.0
    con: g.Run = field(default_factory=g.Run)
    con_sent: int = 0
    con_persisted: int | None = None
    con_generator: str = g.GENERATOR_NAME
    non: g.Run = field(default_factory=g.Run)
    non_sent: int = 0
    non_persisted: int | None = None
    sends: g.Run = field(default_factory=g.Run)
    sends_persisted: int | None = None
    reads: g.Run = field(default_factory=g.Run)
    stats: g.Stats = field(default_factory=g.Stats)
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per phase: CPU seconds of the target process and of the generator process."""


class Driver:
    """The throughput phases against one target (the echo, or the server with its API); the
    orchestrator runs each phase on the echo and then on the server, back to back, so both
    see the same machine load (the development box is shared)."""

    def __init__(self, cfg: Config, target: Process, *, echo: bool) -> None:
        self.cfg = cfg
        self.target = target
        self.echo = echo
        self.result = Measured()
        self.fleet = g.Fleet((g.LOOPBACK, target.coap_port), echo=echo)
        self.result.stats = self.fleet.stats
        self.api = None if echo else g.HttpApi(f"http://{g.LOOPBACK}:{target.http_port}")
        self.registered: list[g.SimClient] = []
        self.observed: list[g.SimClient] = []

    async def close(self) -> None:
        self.fleet.close()
        if self.api is not None:
            await self.api.close()

    async def run_phase(self, phase: str) -> None:
        """Run one phase, recording the CPU time the target and the generator spent."""
        target, generator = g.cpu_seconds(self.target.pid), time.process_time()
        await getattr(self, phase)()
        self.result.cpu[phase] = (
            g.cpu_seconds(self.target.pid) - target,
            time.process_time() - generator,
        )

    async def prepare(self) -> None:
        await self.fleet.grow(self.cfg.clients, pool=self.cfg.pool)

    def _rows(self) -> int | None:
        return None if self.echo else g.telemetry_rows(self.target.database)

    async def registrations(self) -> None:
        cfg, clients = self.cfg, self.fleet.clients
        self.result.registrations = await g.run_window(
            g.cycling(clients, g.register), len(clients), cfg.window, cfg.register_seconds
        )
        self.registered = [c for c in self.fleet.owners() if c.location is not None]

    async def updates(self) -> None:
        if self.registered:
            cfg = self.cfg
            self.result.updates = await g.run_window(
                g.cycling(self.registered, g.update), cfg.updates, cfg.window, cfg.phase_seconds
            )

    async def observe(self) -> None:
        """Have the server observe the temperature of ``observed`` clients (through the API,
        so the server's Observe path is the real one); for the echo every candidate counts as
        observed, with a token of the server's size."""
        cfg, result = self.cfg, self.result
        candidates = self.registered[: cfg.observed]
        start = time.perf_counter()
        for client in candidates:
            client.observe_format = cfg.content_format
        api = self.api
        if api is None:
            for client in candidates:
                client.observe_token = os.urandom(8)
        else:

            async def one(i: int) -> tuple[int, int]:
                ok = await api.observe(candidates[i].endpoint, g.TEMPERATURE_PATH)
                return (1, 0) if ok else (0, 1)

            await g.run_window(one, len(candidates), cfg.observe_concurrency, cfg.register_seconds)
        self.observed = [c for c in candidates if c.observe_token is not None]
        result.observed = len(self.observed)
        result.observe_seconds = time.perf_counter() - start

    def _sent(self) -> int:
        return sum(c.notifications for c in self.observed)

    async def notifications_con(self) -> None:
        if not self.observed:
            return
        cfg, result = self.cfg, self.result
        rows, sent = self._rows(), self._sent()
        window = min(cfg.window, len(self.observed))
        if cfg.notify_path == "blast":
            # synchronous: the event loop is blocked for the blast, so it cannot read the ACKs
            done = b.blast(
                self.observed, cfg.notifications, window, cfg.phase_seconds, echo=self.echo
            )
            result.con = g.Run(units=done.acked, failed=done.failed, elapsed=done.elapsed)
            result.con_generator = b.GENERATOR_NAME
        else:
            result.con = await g.run_window(
                g.cycling(self.observed, g.notify_con), cfg.notifications, window, cfg.phase_seconds
            )
            result.con_generator = g.GENERATOR_NAME
        result.con_sent = self._sent() - sent
        if rows is not None:
            result.con_persisted = g.telemetry_rows(self.target.database) - rows

    async def notifications_non(self) -> None:
        if not self.observed:
            return
        cfg, result = self.cfg, self.result
        rows, sent = self._rows(), self._sent()
        batch = cfg.non_batch

        async def non(client: g.SimClient) -> tuple[int, int]:
            return await g.notify_non(client, batch)

        # ``window`` bounds datagrams in flight, as in the other phases: each exchange is
        # batch + 1 datagrams
        window = max(1, min(cfg.window // (batch + 1), len(self.observed)))
        result.non = await g.run_window(
            g.cycling(self.observed, non),
            max(1, cfg.notifications // (batch + 1)),
            window,
            cfg.phase_seconds,
        )
        result.non_sent = self._sent() - sent
        if rows is not None:
            result.non_persisted = g.telemetry_rows(self.target.database) - rows

    async def sends(self) -> None:
        """CON Sends (``POST /dp``) from the clients that own their socket (a Send is
        attributed by its source address; several NoSec endpoints on one address are refused
        4.03 as ambiguous), as many as notifications in the CON phase."""
        clients = [c for c in self.fleet.owners() if c.location is not None]
        if not clients:
            return
        cfg, result = self.cfg, self.result
        rows = self._rows()
        result.sends = await g.run_window(
            g.cycling(clients, g.send),
            cfg.notifications,
            min(cfg.window, len(clients)),
            cfg.phase_seconds,
        )
        if rows is not None:
            result.sends_persisted = g.telemetry_rows(self.target.database) - rows

    async def reads(self) -> None:
        """API Reads of /3/0/0 (the server sends a GET, the client answers); for the echo the
        same GET datagram bounced back, at the same concurrency."""
        clients = self.observed or self.registered
        if not clients:
            return
        cfg, api = self.cfg, self.api
        run = g.Run()
        if api is None:
            job = g.cycling(clients, g.echo_read)
        else:

            async def read(client: g.SimClient) -> tuple[int, int]:
                ok = await api.read(client.endpoint, g.MANUFACTURER_PATH)
                return (1, 0) if ok else (0, 1)

            job = g.cycling(clients, read)
        measured = await g.run_window(
            g.timed(job, run),
            cfg.reads,
            min(cfg.read_concurrency, len(clients)),
            cfg.phase_seconds,
        )
        measured.latencies = run.latencies
        self.result.reads = measured


PHASES = (
    "prepare",
    "registrations",
    "updates",
    "observe",
    "notifications_con",
    "notifications_non",
    "sends",
    "reads",
)


async def throughput(cfg: Config, server: Process, echo: Process) -> tuple[Measured, Measured]:
    """Every phase on the echo, then on the server; returns (server, echo) results."""
    drivers = [Driver(cfg, echo, echo=True), Driver(cfg, server, echo=False)]
    try:
        for phase in PHASES:
            for driver in drivers:
                await driver.run_phase(phase)
        return drivers[1].result, drivers[0].result
    finally:
        for driver in drivers:
            await driver.close()


def cpu_fields(
    server: Measured, echo: Measured, phase: str, units: int, echo_units: int
) -> dict[str, object]:
    """CPU µs per operation: of the server, of the echo (the ceiling), and of the generator
    while it drove the server. Unlike rates, these barely move with the machine's load."""
    fields: dict[str, object] = {}
    if phase in server.cpu and units > 0:
        target, generator = server.cpu[phase]
        fields["cpu_us_per_op"] = round(target / units * 1e6, 1)
        fields["generator_cpu_us_per_op"] = round(generator / units * 1e6, 1)
    if phase in echo.cpu and echo_units > 0:
        fields["ceiling_cpu_us_per_op"] = round(echo.cpu[phase][0] / echo_units * 1e6, 1)
    return fields


def throughput_figures(
    cfg: Config, server: Measured, echo: Measured
) -> Iterator[dict[str, object]]:
    common: dict[str, object] = {"clients": cfg.clients, "window": cfg.window}
    for name, phase, srv, ceil in (
        ("registrations_per_s", "registrations", server.registrations, echo.registrations),
        ("updates_per_s", "updates", server.updates, echo.updates),
    ):
        cpu = cpu_fields(server, echo, phase, srv.units, ceil.units)
        yield figure(
            name, srv.rate, ceil.rate, {**common, "done": srv.units, "failed": srv.failed, **cpu}
        )
    for kind, run, sent, persisted, ceiling in (
        ("con", server.con, server.con_sent, server.con_persisted, echo.con),
        ("non", server.non, server.non_sent, server.non_persisted, echo.non),
    ):
        stored = persisted if persisted is not None else run.units
        value = stored / run.elapsed if run.elapsed > 0 else 0.0
        extra: dict[str, object] = {
            **common,
            "observed": server.observed,
            "payload": cfg.payload,
            "sent": sent,
            "persisted": persisted,
            "failed": run.failed,
            "generator": server.con_generator if kind == "con" else g.GENERATOR_NAME,
        }
        if kind == "non":
            extra["non_batch"] = cfg.non_batch
        extra.update(cpu_fields(server, echo, f"notifications_{kind}", stored, ceiling.units))
        yield figure(f"notifications_{kind}_per_s", value, ceiling.rate, extra)
    stored = server.sends_persisted if server.sends_persisted is not None else server.sends.units
    yield figure(
        "sends_persisted_per_s",
        stored / server.sends.elapsed if server.sends.elapsed > 0 else 0.0,
        echo.sends.rate,
        {
            **common,
            "payload": "senml-cbor",
            "done": server.sends.units,
            "persisted": server.sends_persisted,
            "failed": server.sends.failed,
            **cpu_fields(server, echo, "sends", stored, echo.sends.units),
        },
    )
    reads: dict[str, object] = {"clients": server.observed, "concurrency": cfg.read_concurrency}
    yield figure(
        "reads_per_s",
        server.reads.rate,
        echo.reads.rate,
        {
            **reads,
            "done": server.reads.units,
            "failed": server.reads.failed,
            **cpu_fields(server, echo, "reads", server.reads.units, echo.reads.units),
        },
    )
    for name, q in (("read_p50_ms", 0.5), ("read_p99_ms", 0.99)):
        srv_ms, ceil_ms = server.reads.percentile(q) * 1000, echo.reads.percentile(q) * 1000
        yield figure(name, srv_ms, ceil_ms, reads, lower=True)
    yield {
        "bench": "server",
        "figure": "generator_stats",
        "server": dataclasses.asdict(server.stats),
        "echo": dataclasses.asdict(echo.stats),
        "observe_setup_s": round(server.observe_seconds, 3),
    }


# -- the RSS run -------------------------------------------------------------------------------


@dataclass
class RssPoint:
    clients: int
    registered: int
    rss_delta: int
    registrations: g.Run
    cpu_s: float = 0.0


async def rss_steps(cfg: Config, target: Process, *, echo: bool) -> list[RssPoint]:
    """Register up to each of ``cfg.rss_at`` clients, reading VmRSS after each step."""
    fleet = g.Fleet((g.LOOPBACK, target.coap_port), echo=echo, prefix="rss")
    points: list[RssPoint] = []
    deadline = time.monotonic() + cfg.rss_seconds
    try:
        await asyncio.sleep(0.5)
        base = g.rss_bytes(target.pid)
        done = 0
        for goal in sorted(cfg.rss_at):
            await fleet.grow(goal, pool=cfg.rss_pool)
            batch = fleet.clients[done:goal]
            cpu = g.cpu_seconds(target.pid)
            run = await g.run_window(
                g.cycling(batch, g.register),
                len(batch),
                cfg.window,
                max(1.0, deadline - time.monotonic()),
            )
            done = goal
            await asyncio.sleep(0.5)  # let the target drain what is still in flight
            registered = sum(1 for c in fleet.clients if c.location is not None)
            rss = g.rss_bytes(target.pid) - base
            cpu = g.cpu_seconds(target.pid) - cpu
            points.append(RssPoint(goal, registered, rss, run, cpu))
            if time.monotonic() >= deadline:
                break
        return points
    finally:
        fleet.close()


def rss_figures(
    cfg: Config, server: list[RssPoint], echo: list[RssPoint]
) -> Iterator[dict[str, object]]:
    floors = {p.clients: p for p in echo}
    for point in server:
        floor = floors.get(point.clients)
        per_client = point.rss_delta / max(1, point.registered)
        floor_per_client = floor.rss_delta / max(1, floor.registered) if floor else math.nan
        extra: dict[str, object] = {
            "clients": point.clients,
            "registered": point.registered,
            "rss_delta_mib": round(point.rss_delta / 2**20, 1),
            "sockets": min(point.clients, cfg.rss_pool),
        }
        yield figure("rss_per_client_bytes", per_client, floor_per_client, extra, lower=True)
        reg = point.registrations
        yield figure(
            "registrations_per_s",
            reg.rate,
            floor.registrations.rate if floor else math.nan,
            {
                "clients": point.clients,
                "window": cfg.window,
                "done": reg.units,
                "failed": reg.failed,
                "run": "rss",
                "cpu_us_per_op": round(point.cpu_s / max(1, reg.units) * 1e6, 1),
            },
        )


# -- orchestration -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def server_and_echo(
    cfg: Config, workdir: Path, name: str, *, remember: bool = False
) -> AsyncIterator[tuple[Process, Process]]:
    data_dir = workdir / name
    data_dir.mkdir()
    log = (workdir / f"{name}.log").open("wb")
    echo = await start_echo(remember)
    server: Process | None = None
    try:
        server = await start_server(data_dir, log, cfg)
        yield server, echo
    finally:
        echo.stop()
        if server is not None:
            crashed = server.popen.poll()
            server.stop()
            if crashed is not None:
                raise RuntimeError(
                    f"the server died during the run ({crashed}):\n{server.log_tail()}"
                )
        log.close()


async def run(
    cfg: Config, *, with_throughput: bool = True, with_rss: bool = True
) -> list[dict[str, object]]:
    """Both runs; returns (and prints) the figures."""
    lines: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="pylwm2m-bench-") as tmp:
        workdir = Path(tmp)
        if with_throughput:
            async with server_and_echo(cfg, workdir, "throughput") as (server, echo):
                server_result, echo_result = await throughput(cfg, server, echo)
            for line in throughput_figures(cfg, server_result, echo_result):
                emit(line)
                lines.append(line)
        if with_rss and cfg.rss_at:
            async with server_and_echo(cfg, workdir, "rss", remember=True) as (server, echo):
                echo_points = await rss_steps(cfg, echo, echo=True)
                server_points = await rss_steps(cfg, server, echo=False)
            for line in rss_figures(cfg, server_points, echo_points):
                emit(line)
                lines.append(line)
    return lines


_INT_OPTIONS = (
    "clients", "pool", "rss_pool", "window", "observed", "updates", "notifications",
    "non_batch", "reads", "read_concurrency",
)  # fmt: skip
_FLOAT_OPTIONS = ("phase_seconds", "register_seconds", "rss_seconds")


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small and short (about 30 s)")
    defaults = Config()
    for names, kind in ((_INT_OPTIONS, int), (_FLOAT_OPTIONS, float)):
        for name in names:
            parser.add_argument(
                "--" + name.replace("_", "-"),
                type=kind,
                default=None,
                help=f"default {getattr(defaults, name)}",
            )
    parser.add_argument(
        "--rss-at",
        default=None,
        help="comma-separated client counts for RSS (default 10000,100000; empty: skip)",
    )
    parser.add_argument("--payload", choices=["senml-cbor", "text"], default=None)
    parser.add_argument(
        "--notify-path",
        choices=["blast", "asyncio"],
        default=None,
        help="CON notification phase: pre-built datagrams (default) or SimClient objects",
    )
    parser.add_argument("--only", choices=["throughput", "rss"], default=None)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for the server command line (repeatable), e.g. "
        "--server-arg=--log-level=WARNING",
    )
    args = parser.parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    for name in (*_INT_OPTIONS, *_FLOAT_OPTIONS, "payload", "notify_path"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if args.rss_at is not None:
        cfg.rss_at = [int(x) for x in args.rss_at.split(",") if x.strip()]
    cfg.server_args = list(args.server_arg)
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    try:
        asyncio.run(
            run(cfg, with_throughput=args.only != "rss", with_rss=args.only != "throughput")
        )
    except ServerUnavailable as exc:
        emit({"bench": "server", "skipped": str(exc)})
    return 0

"""DTLS under a spoofed ClientHello flood (issue 11, item 6): legitimate PSK handshakes/s
unloaded, then while a separate process floods the same CoAPs port with cookie-less
ClientHellos, and the ratio of the two (target ≥ 0.5) — in one run, on one machine.

Usage: ``python bench/dtls_flood.py [--quick] [--seconds T] [--rate R] [--concurrency C]
[--hello-rate N] [--loop uvloop|asyncio]``; one JSON object per line on stdout
(``"bench": "dtls_flood"``)::

    {"bench": "dtls_flood", "figure": "handshakes_per_s_unloaded", "value": 230.1, ...}
    {"bench": "dtls_flood", "figure": "handshakes_per_s_flooded", "value": 180.4, ...}
    {"bench": "dtls_flood", "figure": "flood_ratio", "value": 0.78, "target": 0.5, ...}

Why this shape:

* The server is a subprocess (``--serve``) running the runtime's ``CoapServer`` over
  ``keystore.coaps`` on uvloop, as ``lwm2m-server`` does, with its DTLS configuration built
  the same way (``Resolver`` over a sqlite keystore, the stored server identity); its endpoint
  counters (HelloVerifyRequests sent, ClientHellos dropped over ``hello_rate``) are read
  over stdin after each phase, so the figures say what the server did with the flood.
* The flood is another subprocess (``--flood``): ``--rate`` ClientHellos/s (10k by default),
  each a real ClientHello of our engine with its random varied, sent round-robin from
  ``--flood-sockets`` sockets bound to 127.0.0.2 to 127.0.0.N with random ports (spoofing is not
  needed on loopback: every source is as new to the server as a spoofed one). It never reads
  the HelloVerifyRequests (tiny receive buffers), as a spoofer would never see them. It is
  paced in 1 ms slices and reports what it really sent.
* The legitimate clients are our own ``DtlsEngine`` on asyncio sockets (``bench.dtls.Peer``,
  the cheapest client we have to drive many handshakes), ``--concurrency`` at a time, each
  handshake from a fresh socket (a new peer: HelloVerifyRequest round trip included), each
  bounded by ``--handshake-timeout``; a timed-out one counts as failed, not as done.
* Unloaded and flooded phases run back to back in the same run, with the same clients and
  server process, so the ratio compares like with like on a shared 2-core machine.

Loopback only; the children are stopped at the end (SIGTERM on Ctrl-C: ``run_as_main``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import server_load as sl  # noqa: E402
from bench.dtls import Peer, provision  # noqa: E402
from keystore.dtls import ClientConfig, DtlsEngine  # noqa: E402

BENCH = "dtls_flood"


@dataclass
class Config:
    seconds: float = 10.0
    rate: int = 10_000
    concurrency: int = 16
    flood_sockets: int = 64
    handshake_timeout: float = 10.0
    hello_rate: float | None = None
    warmup: float = 1.0
    #: the server's event loop: uvloop (as lwm2m-server runs when it is installed) or asyncio
    loop: str = "uvloop"

    @classmethod
    def quick_run(cls) -> Config:
        return cls(seconds=2.0, rate=2_000, concurrency=4, flood_sockets=16, warmup=0.5)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps({"bench": BENCH, **record}), flush=True)


# -- the server process -------------------------------------------------------------------------


async def serve(db: Path, hello_rate: float | None) -> None:
    """``--serve DB``: print the CoAPs port, then answer ``stats`` lines on stdin until EOF."""
    import dataclasses

    from keystore.coaps import EndpointSettings, server_dtls_config
    from keystore.resolver import Resolver
    from keystore.store.credentials import SqliteCredentialStore
    from keystore.store.database import SqliteDatabase
    from lwm2m_runtime.coap import Code, Message
    from lwm2m_runtime.server import CoapServer, IncomingRequest

    def answer(request: IncomingRequest) -> Message:
        return Message.response(Code.NOT_FOUND)

    credentials = SqliteCredentialStore(SqliteDatabase(db))
    identity = credentials.server_identity()
    assert identity is not None
    settings = EndpointSettings()
    if hello_rate is not None:
        settings = dataclasses.replace(settings, hello_rate=hello_rate)
    server = CoapServer(answer)
    await server.start(
        host="127.0.0.1",
        port=None,
        coaps_port=0,
        dtls_config=server_dtls_config(Resolver(credentials, open_registration=False), identity),
        dtls_settings=settings,
    )
    assert server.coaps is not None and server.coaps.dtls is not None
    dtls = server.coaps.dtls
    print(json.dumps({"coaps_port": dtls.local_address[1]}), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "stats":
            stats = dataclasses.asdict(dtls.stats)
            stats["cpu_s"] = time.process_time()
            stats["sessions"] = len(dtls.sessions)
            print(json.dumps(stats), flush=True)
    await server.stop()


class ServerProcess:
    def __init__(self, db: Path, hello_rate: float | None, loop: str) -> None:
        command = [sys.executable, __file__, "--serve", str(db), "--loop", loop]
        if hello_rate is not None:
            command += ["--hello-rate", str(hello_rate)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise sl.CannotRun("the CoAPs server did not start")
        self.port: int = json.loads(line)["coaps_port"]

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return cast(dict[str, Any], json.loads(self.proc.stdout.readline()))

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the flooding process -----------------------------------------------------------------------


def client_hello() -> bytes:
    """A real first ClientHello of our engine (PSK suites), as a device sends it."""
    engine = DtlsEngine.client(ClientConfig(psk_identity=b"flood", psk=b"f" * 16))
    engine.connect(0.0)
    (datagram,) = engine.datagrams_to_send()
    return datagram


def flood(port: int, rate: int, sockets: int, seconds: float) -> None:
    """``--flood PORT``: ``rate`` cookie-less ClientHellos/s for ``seconds`` (or until stdin
    closes), then one JSON line with what was really sent."""
    hello = client_hello()
    rng = random.Random(11)
    # 256 variants of the random (bytes 27..58): the server cannot tell them from new devices
    variants = [hello[:27] + rng.randbytes(32) + hello[59:] for _ in range(256)]
    socks: list[socket.socket] = []
    for i in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # the HVRs are never read
        s.bind((f"127.0.0.{2 + i % 250}", 0))
        s.setblocking(False)
        socks.append(s)
    target = ("127.0.0.1", port)
    sent = errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    k = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        due = int((now - start) * rate) - sent - errors
        for _ in range(min(due, rate // 10 or 1)):
            try:
                socks[k % sockets].sendto(variants[k & 255], target)
                sent += 1
            except OSError:  # a full send buffer: counted, not retried
                errors += 1
            k += 1
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    print(json.dumps({"sent": sent, "errors": errors, "seconds": elapsed,
                      "cpu_s": time.process_time()}), flush=True)  # fmt: skip


class FloodProcess:
    def __init__(self, port: int, cfg: Config, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--flood", str(port), "--rate", str(cfg.rate),
             "--flood-sockets", str(cfg.flood_sockets), "--seconds", str(seconds)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=60)
        return cast(dict[str, Any], json.loads(out.strip().splitlines()[-1]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- legitimate clients -------------------------------------------------------------------------


async def handshakes_for(port: int, config: ClientConfig, cfg: Config) -> dict[str, Any]:
    """Full PSK handshakes, ``cfg.concurrency`` at a time, for ``cfg.seconds``."""
    done = failed = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + cfg.seconds

    async def worker() -> None:
        nonlocal done, failed
        while time.perf_counter() < deadline:
            peer = await Peer.open(port)
            began = time.perf_counter()
            try:
                await asyncio.wait_for(peer.handshake(config), cfg.handshake_timeout)
                done += 1
                latencies.append(time.perf_counter() - began)
            except (ConnectionError, TimeoutError):
                failed += 1
            finally:
                peer.close()

    start = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else None
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
    return {"value": round(done / elapsed, 1), "done": done, "failed": failed,
            "seconds": round(elapsed, 2), "concurrency": cfg.concurrency,
            "client_cpu": round(cpu / elapsed, 2),
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 1)}  # fmt: skip


def delta(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    drops_before, drops_after = before["drops"], after["drops"]
    overload = drops_after.get("hello_overload", 0) - drops_before.get("hello_overload", 0)
    return {
        "server_datagrams_per_s": round((after["datagrams"] - before["datagrams"]) / seconds),
        "server_hvr_per_s": round(
            (after["hello_verify_requests"] - before["hello_verify_requests"]) / seconds
        ),
        "server_hello_overload_per_s": round(overload / seconds),
        "server_cpu": round((after["cpu_s"] - before["cpu_s"]) / seconds, 2),
    }


def run(cfg: Config) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dtls-flood-") as tmp:
        clients = provision(Path(tmp) / "keystore.sqlite")
        psk = clients.configs["psk-ccm8"]
        server = ServerProcess(Path(tmp) / "keystore.sqlite", cfg.hello_rate, cfg.loop)
        flooder: FloodProcess | None = None
        try:
            from lwm2m_runtime.server import run as run_loop

            s0 = server.stats()
            unloaded = run_loop(handshakes_for(server.port, psk, cfg))
            unloaded["server_loop"] = cfg.loop
            s1 = server.stats()
            emit({"figure": "handshakes_per_s_unloaded", "mode": "psk-ccm8", **unloaded,
                  **delta(s0, s1, unloaded["seconds"])})  # fmt: skip
            flooder = FloodProcess(server.port, cfg, cfg.warmup + cfg.seconds + 1.0)
            time.sleep(cfg.warmup)
            s2 = server.stats()
            flooded = run_loop(handshakes_for(server.port, psk, cfg))
            flooded["server_loop"] = cfg.loop
            s3 = server.stats()
            sent = flooder.result()
            flooder = None
            emit({"figure": "handshakes_per_s_flooded", "mode": "psk-ccm8", **flooded,
                  "flood_rate": cfg.rate,
                  "flood_sent_per_s": round(sent["sent"] / sent["seconds"]),
                  "flooder_cpu": round(sent["cpu_s"] / sent["seconds"], 2),
                  **delta(s2, s3, flooded["seconds"])})  # fmt: skip
            ratio = flooded["value"] / unloaded["value"] if unloaded["value"] else 0.0
            emit({"figure": "flood_ratio", "value": round(ratio, 3), "target": 0.5,
                  "met": ratio >= 0.5, "unloaded": unloaded["value"],
                  "flooded": flooded["value"], "flood_rate": cfg.rate})  # fmt: skip
        finally:
            if flooder is not None:
                flooder.stop()
            server.stop()


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(prog="python bench/dtls_flood.py",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flood", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="short and light (CI smoke run)")
    defaults = Config()
    parser.add_argument("--seconds", type=float, help=f"per phase (default {defaults.seconds})")
    parser.add_argument("--rate", type=int, help=f"ClientHellos/s (default {defaults.rate})")
    parser.add_argument(
        "--concurrency",
        type=int,
        help=f"legitimate handshakes at once (default {defaults.concurrency})",
    )
    parser.add_argument(
        "--flood-sockets",
        type=int,
        help=f"flooding source sockets (default {defaults.flood_sockets})",
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), help="the server's loop (default uvloop)"
    )
    parser.add_argument(
        "--hello-rate",
        type=float,
        help="the server's dtls hello_rate (default: the server's default)",
    )
    args = parser.parse_args(argv)
    cfg = Config.quick_run() if args.quick else Config()
    for name in ("seconds", "rate", "concurrency", "flood_sockets", "hello_rate", "loop"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    return args, cfg


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    if args.serve is not None:
        if cfg.loop == "asyncio":
            asyncio.run(serve(args.serve, cfg.hello_rate))
        else:
            from lwm2m_runtime.server import run as run_loop

            run_loop(serve(args.serve, cfg.hello_rate))
        return 0
    if args.flood is not None:
        flood(args.flood, cfg.rate, cfg.flood_sockets, cfg.seconds)
        return 0
    return sl.run_as_main(BENCH, lambda: run(cfg))


if __name__ == "__main__":
    sys.exit(main())

"""The event loop never stalls (issue 11 item 2): start-up with many restored registrations, and
CoAP while large Sends are decoded. One JSON line per figure.

Usage (from the repository root)::

    python bench/stall.py [--restored 100000] [--seconds 10] [--quick] [--skip startup|send]

1. **startup_first_register_s**: a data dir is filled with ``--restored`` registrations (written
   through the server's own core and sqlite store, as ``lwm2m-server`` would have stored them;
   their devices are on a port where nothing answers) and a profile that matches every one of
   them (it observes two resources: every restored client gets requests; each device has an
   address of its own in 127.0.0.0/8, all served by one silent socket on 0.0.0.0). Then
   ``python -m lwm2m_server serve`` starts on it and a probe sends a CON Register every 20 ms
   from the moment the process is launched: seconds until the first 2.01 (and the server's CPU
   seconds by then), beside the seconds until ``/api/health`` answers. This is
   ``bench/server_load.py``'s restart figure on a database of known size, without the C
   generator.
2. **register_p50/p99 while sending**: a fresh server with one registered sender; a probe
   sends a CON Register every 20 ms (``bench/api_list.py``'s ``RegisterProbe``) for
   ``--seconds`` while the sender, one exchange after another, POSTs ``/dp`` (Block1, 1 KiB
   blocks, SenML CBOR time series of /3303/0/5700) of a given size: ``idle`` (no Send),
   ``capped`` (the largest Send the default ``payload_limits.senml_cbor`` accepts, 8 KiB),
   ``over_cap`` (1 MiB: refused 4.13 at the first block, RFC 7959 §2.9.3), and with the limit
   raised ``capped_16k`` (16 KiB), ``capped_64k`` (64 KiB) and ``uncapped`` (256 KiB, the
   CoAP layer's largest request body: what a Send costs the loop without the cap). Each line
   has the sends answered and their codes.

The benchmark reports; it never fails on a figure. Children are killed on exit (130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cbor2  # noqa: E402

from bench import api_list as al  # noqa: E402
from bench import server_load as sl  # noqa: E402
from bench.load import generator as g  # noqa: E402
from lwm2m_runtime.address import Address  # noqa: E402
from lwm2m_runtime.coap import Block, CoapError, Code, Message, Type, options, parse, serialize  # noqa: E402

LOOPBACK = sl.LOOPBACK
LINKS = b'</>;rt="oma.lwm2m";ct="0 112 11542",</1/0>,</3/0>,</3303/0>'
PROFILE = """\
name: stall-bench
endpoints: ["st-*"]
observe_strategy: single
on_connect: observe_only
resources:
  /3303/0/5700: {key: temperature, kind: telemetry, observe: true}
  /3/0/9: {key: batteryLevel, kind: telemetry, observe: true}
"""
SENML_CBOR = 112
BLOCK_SZX = 6  # 1024-byte blocks
SIZES = {
    "capped": 8 * 1024,
    "capped_16k": 16 * 1024,
    "capped_64k": 64 * 1024,
    "over_cap": 1 << 20,
    "uncapped": 256 * 1024,
}


@dataclass
class Config:
    restored: int = 100_000
    seconds: float = 10.0
    startup_timeout: float = 300.0
    skip: tuple[str, ...] = ()
    quick: bool = False


def line(figure: str, value: float | None, **extra: Any) -> dict[str, Any]:
    return {"bench": "stall", "figure": figure, "value": sl._num(value), **extra}


# -- start-up -------------------------------------------------------------------------------------


def fill_database(data_dir: Path, count: int, device_port: int) -> float:
    """``count`` registrations as the server stores them (its core validates, its store writes),
    committed every 5000; returns the seconds it took."""
    from keystore.store.database import DATABASE_FILE
    from lwm2m_server.core.server import ServerCore
    from lwm2m_server.store.sqlite import SqliteStore

    started = time.monotonic()
    store = SqliteStore(data_dir / DATABASE_FILE)
    store.enable_group_commit()
    core = ServerCore()
    try:
        for n in range(count):
            # a peer of its own per device (the CoAP layer sends one request at a time per
            # peer): 127.1.0.0/16 and up is loopback, and all reach ``device_port`` on 0.0.0.0
            address = Address(f"127.{1 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}", device_port)
            query = [f"ep=st-{n:07d}", "lt=86400", "lwm2m=1.1", "b=U"]
            result = core.register(query, LINKS, 40, now=time.time(), address=address)
            assert result.registration is not None
            store.put_registration(result.registration)
            if n % 5000 == 4999:
                store.commit()
        store.commit()
    finally:
        store.close()
    return time.monotonic() - started


def measure_startup(cfg: Config, children: sl.Children, workdir: Path) -> Iterator[dict[str, Any]]:
    data_dir = workdir / "startup"
    profiles = workdir / "profiles"
    data_dir.mkdir()
    profiles.mkdir()
    (profiles / "stall-bench.yaml").write_text(PROFILE)
    # the restored devices "live" on a bound socket that never answers (no ICMP errors)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    silent.bind(("0.0.0.0", 0))  # every 127.x.y.z of the restored devices
    try:
        fill_s = fill_database(data_dir, cfg.restored, silent.getsockname()[1])
        with (workdir / "startup.log").open("wb") as log:
            server = sl.Server(
                children, data_dir, log,
                sl.free_port(socket.SOCK_DGRAM), sl.free_port(socket.SOCK_DGRAM),
                sl.free_port(socket.SOCK_STREAM),
            )  # fmt: skip
            os.environ["LWM2M_SERVER_PROFILES_DIR"] = str(profiles)
            try:
                start = time.monotonic()
                deadline = start + cfg.startup_timeout
                proc = server.launch()
            finally:
                os.environ.pop("LWM2M_SERVER_PROFILES_DIR", None)
            answered: list[float | None] = [None]
            cpu: list[float | None] = [None]

            def probe() -> None:
                answered[0] = sl.register_probe(server.coap_port, "startup-probe", deadline)
                with contextlib.suppress(OSError):
                    cpu[0] = g.cpu_seconds(proc.pid)

            thread = threading.Thread(target=probe, daemon=True)
            thread.start()
            api_up = None
            while time.monotonic() < deadline and proc.poll() is None:
                if sl.http_get(server.api + "/api/health", 2.0):
                    api_up = time.monotonic() - start
                    break
                time.sleep(0.02)
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
            requests = _drain(silent)
            sl.Children.stop(proc)
            first = None if answered[0] is None else answered[0] - start
            yield line(
                "startup_first_register_s",
                first,
                lower_is_better=True,
                restored=cfg.restored,
                api_up_s=sl._num(api_up),
                server_cpu_s_at_first_register=cpu[0],
                device_requests_by_then=requests,
                fill_s=sl._num(fill_s),
                note="process start -> first 2.01 to a new Register; every restored client "
                "matches a profile that observes two resources",
                log_tail=None if first is not None else server.log_tail(),
            )
    finally:
        silent.close()


def _drain(sock: socket.socket) -> int:
    sock.setblocking(False)
    count = 0
    while True:
        try:
            sock.recv(2048)
        except (BlockingIOError, OSError):
            return count
        count += 1


# -- Register latency while Sends are decoded -----------------------------------------------------


def send_pack(size: int) -> bytes:
    """A SenML CBOR time series of /3303/0/5700 of about ``size`` bytes (at most)."""
    record = {-3: 1_700_000_000, 2: 21.5}
    first = cbor2.dumps([{-2: "/3303/0/5700", **record}])
    per = len(cbor2.dumps({6: 100_000, 2: 21.5}))
    count = max(1, (size - len(first)) // per)
    records = [{-2: "/3303/0/5700", -3: 1_700_000_000, 2: 21.5}]
    records += [{6: i, 2: 21.5 + (i % 7)} for i in range(1, count)]
    payload = cbor2.dumps(records)
    while len(payload) > size:
        records.pop()
        payload = cbor2.dumps(records)
    return payload


class Sender(threading.Thread):
    """A registered device that POSTs ``/dp`` with ``payload`` (Block1 when over one block)
    one exchange after another until stopped; counts the final codes."""

    def __init__(self, port: int, payload: bytes) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.payload = payload
        self.stop_at = 0.0
        self.codes: Counter[str] = Counter()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(5.0)
        self.mid = int.from_bytes(os.urandom(2), "big")

    def exchange(self, message: Message) -> Message | None:
        self.mid = (self.mid + 1) & 0xFFFF
        data = serialize(message.replace(mid=self.mid))
        for _ in range(3):
            self.sock.sendto(data, (LOOPBACK, self.port))
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                try:
                    answer = parse(self.sock.recv(4096))
                except (TimeoutError, OSError):
                    break
                except CoapError:
                    continue
                if answer.mid == self.mid and answer.mtype in (Type.ACK, Type.RST):
                    return answer
        return None

    def register(self) -> None:
        opts = options(
            uri_path=["rd"], uri_query=["ep=stall-sender", "lt=86400", "lwm2m=1.1", "b=U"],
            content_format=40,
        )  # fmt: skip
        answer = self.exchange(Message(Type.CON, Code.POST, 0, os.urandom(4), opts, LINKS))
        if answer is None or answer.code != Code.CREATED:
            raise sl.CannotRun("the sender could not register")

    def send_once(self) -> str:
        size = 16 << BLOCK_SZX
        token = os.urandom(4)
        blocks = max(1, -(-len(self.payload) // size))
        for num in range(blocks):
            chunk = self.payload[num * size : (num + 1) * size]
            more = num + 1 < blocks
            opts = options(
                uri_path=["dp"], content_format=SENML_CBOR,
                block1=Block(num, more, BLOCK_SZX) if blocks > 1 else None,
                size1=len(self.payload) if num == 0 and blocks > 1 else None,
            )  # fmt: skip
            answer = self.exchange(Message(Type.CON, Code.POST, 0, token, opts, chunk))
            if answer is None:
                return "timeout"
            if answer.code != Code.CONTINUE:
                return f"{answer.code >> 5}.{answer.code & 0x1F:02d}"
        return "no final answer"

    def run(self) -> None:
        while time.monotonic() < self.stop_at:
            self.codes[self.send_once()] += 1


def measure_sends(cfg: Config, children: sl.Children, workdir: Path) -> Iterator[dict[str, Any]]:
    variants: list[tuple[str, int | None, dict[str, str]]] = [("idle", None, {})]
    raised = {"LWM2M_SERVER_PAYLOAD_LIMITS_SENML_CBOR": "1048576"}
    variants += [("capped", SIZES["capped"], {}), ("over_cap", SIZES["over_cap"], {})]
    variants += [("capped_16k", SIZES["capped_16k"], raised)]
    variants += [("capped_64k", SIZES["capped_64k"], raised)]
    variants += [("uncapped", SIZES["uncapped"], raised)]
    for name, size, env in variants:
        data_dir = workdir / f"send-{name}"
        data_dir.mkdir()
        with (workdir / f"send-{name}.log").open("wb") as log:
            server = sl.Server(
                children, data_dir, log,
                sl.free_port(socket.SOCK_DGRAM), sl.free_port(socket.SOCK_DGRAM),
                sl.free_port(socket.SOCK_STREAM),
            )  # fmt: skip
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                proc = server.launch()
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            try:
                server.wait_healthy(60.0)
                payload = send_pack(size) if size else b""
                sender = Sender(server.coap_port, payload)
                sender.register()
                probe = al.RegisterProbe(server.coap_port, f"stall-{name}-")
                started = time.monotonic()
                sender.stop_at = started + cfg.seconds
                if size:
                    sender.start()
                cpu0 = g.cpu_seconds(proc.pid)
                probe.start()
                time.sleep(cfg.seconds)
                probe.stop.set()
                probe.join(10.0)
                if size:
                    sender.join(30.0)
                cpu = g.cpu_seconds(proc.pid) - cpu0
                figures = probe.figures()
                common = {
                    "variant": name,
                    "send_bytes": len(payload) or None,
                    "sends": dict(sender.codes),
                    "server_cpu_s": sl._num(cpu),
                    "seconds": cfg.seconds,
                    **{k: v for k, v in figures.items() if not k.endswith(("p50_ms", "p99_ms"))},
                }
                for figure in ("register_p50_ms", "register_p99_ms"):
                    yield line(figure, figures.get(figure), lower_is_better=True, **common)
                sender.sock.close()
            finally:
                sl.Children.stop(proc)


def run(cfg: Config) -> None:
    children = sl.Children()
    try:
        with tempfile.TemporaryDirectory(prefix="pylwm2m-stall-") as tmp:
            workdir = Path(tmp)
            parts = []
            if "startup" not in cfg.skip:
                parts.append(measure_startup(cfg, children, workdir))
            if "send" not in cfg.skip:
                parts.append(measure_sends(cfg, children, workdir))
            for part in parts:
                for figure in part:
                    print(json.dumps(figure), flush=True)
    finally:
        children.kill_all()


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python bench/stall.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--restored", type=int, help="registrations restored at start-up")
    parser.add_argument("--seconds", type=float, help="seconds per Send variant")
    parser.add_argument("--skip", action="append", choices=("startup", "send"), default=[])
    parser.add_argument("--quick", action="store_true", help="2,000 restored, 2 s per variant")
    args = parser.parse_args(argv)
    cfg = Config(restored=2_000, seconds=2.0, quick=True) if args.quick else Config()
    if args.restored is not None:
        cfg.restored = args.restored
    if args.seconds is not None:
        cfg.seconds = args.seconds
    cfg.skip = tuple(args.skip)
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return sl.run_as_main("stall", lambda: run(cfg))


if __name__ == "__main__":
    sys.exit(main())

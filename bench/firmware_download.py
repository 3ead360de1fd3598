"""Firmware pull-download throughput: N devices fetch one package in parallel over CoAP Block2
from the LwM2M server's download server (``GET /fw/<token>``, docs/firmware.md), against a
raw UDP ceiling measured in the same run.

Usage: ``python bench/firmware_download.py [--devices 50] [--size 1048576] [--quick]``; one JSON
object per line on stdout (``bench/run.py --only firmware_download`` runs it too).

* The **server** is the real ``Lwm2mServer`` (uvloop when installed, sqlite store, the package
  in the data dir) in its own process: ``--serve`` mode of this file, which adds the package,
  grants one token per device, prints them and serves until its stdin closes.
* The **generator** is this process: plain Python, one non-blocking UDP socket per device, one
  ``select`` loop; each device sends the next CON ``GET /fw/<token>`` with Block2 (1024-byte
  blocks, szx 6) as soon as the previous block's ACK arrives (one request in flight per device,
  as a real device does), retransmitting after 2 s of silence. It builds and parses with the
  project's sans-IO CoAP codec. Every device's bytes are checked against the SHA-256 after the
  run (outside the timed window).
* The **ceiling** is the same generator against a raw UDP server in its own process
  (``--echo``, asyncio on uvloop when installed) that answers every request with a datagram of
  the size of a real block answer (same MID and token), doing no other work: what the machine,
  the kernel and an asyncio UDP loop allow with this generator in front.

Figures: MB/s (10^6 bytes of package payload per second), devices served (bytes and SHA-256
right), the server's CPU seconds per MB (``/proc/<pid>/stat`` utime + stime over the transfer),
the same for the echo, and the generator's own CPU (if it is near the wall time, the generator
is the limit, not the server).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lwm2m_runtime.coap import (  # noqa: E402
    Block,
    Code,
    Message,
    OptionNumber,
    Type,
    parse,
    serialize,
)

SZX = 6
BLOCK = 16 << SZX
RETRANSMIT_S = 2.0


# -- the server (child process) ------------------------------------------------------------------


async def _serve(devices: int, size: int) -> None:
    from lwm2m_server.config import FirmwareSettings, ServerConfig
    from lwm2m_server.firmware.contracts import PackageKind
    from lwm2m_server.service import Lwm2mServer

    with tempfile.TemporaryDirectory(prefix="fw-bench-") as data:
        config = ServerConfig(
            host="127.0.0.1",
            coap_port=0,
            coaps_port=0,
            data_dir=Path(data),
            security_modes=("nosec",),
            log_level="WARNING",
            firmware=FirmwareSettings(max_package_size=max(size, 1 << 20)),
        )
        server = Lwm2mServer(config)
        await server.start()
        assert server.packages is not None and server.downloads is not None
        image = os.urandom(size)
        package = server.packages.add(image, kind=PackageKind.FIRMWARE, name="bench", version="1")
        tokens = [
            server.downloads.grant(package.id, f"dev-{i}", 3600).token for i in range(devices)
        ]
        server.store.commit()
        print(
            json.dumps({"port": server.coap_address.port, "sha256": package.id, "tokens": tokens}),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        await server.stop()


# -- the echo ceiling (child process) -------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    """Answers each request with an ACK of the same MID and token and a block-sized payload."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.payload = bytes([0xFF]) + b"\x00" * BLOCK
        self.options = serialize(
            Message(Type.ACK, Code.CONTENT, 0, b"", ((int(OptionNumber.BLOCK2), b"\x0e"),))
        )[4:]

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        tkl = data[0] & 0x0F
        header = bytes([0x60 | tkl, Code.CONTENT]) + data[2 : 4 + tkl]
        self.transport.sendto(header + self.options + self.payload, addr)


async def _echo() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    print(json.dumps({"port": transport.get_extra_info("sockname")[1]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    transport.close()


def _run_child(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


# -- the generator (this process) ---------------------------------------------------------------


class Device:
    __slots__ = ("body", "done", "mid", "num", "sent_at", "sock", "token", "wire")

    def __init__(self, sock: socket.socket, token: str, index: int) -> None:
        self.sock = sock
        self.token = token
        self.num = 0
        self.mid = index * 4096 % 65536
        self.body = bytearray()
        self.done = False
        self.sent_at = 0.0
        self.wire = b""

    def request(self, now: float) -> None:
        self.mid = (self.mid + 1) & 0xFFFF
        opts = (
            (int(OptionNumber.URI_PATH), b"fw"),
            (int(OptionNumber.URI_PATH), self.token.encode()),
            (int(OptionNumber.BLOCK2), Block(self.num, False, SZX).encode()),
        )
        self.wire = serialize(Message(Type.CON, Code.GET, self.mid, b"\x01", opts))
        self.sock.send(self.wire)
        self.sent_at = now


def generate(port: int, tokens: list[str], size: int, *, check_coap: bool) -> dict[str, Any]:
    """Every device downloads ``size`` bytes; wall seconds, bytes, devices and blocks."""
    blocks_per_device = (size + BLOCK - 1) // BLOCK
    devices: list[Device] = []
    by_fd: dict[int, Device] = {}
    for index, token in enumerate(tokens):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        device = Device(sock, token, index)
        devices.append(device)
        by_fd[sock.fileno()] = device
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    cpu0, started = time.process_time(), time.perf_counter()
    for device in devices:
        device.request(started)
    pending = len(devices)
    retransmits = errors = blocks = 0
    while pending:
        events = poller.poll(0.5)
        now = time.perf_counter()
        for fd, _ in events:
            device = by_fd[fd]
            while True:
                try:
                    data = device.sock.recv(2048)
                except BlockingIOError:
                    break
                if check_coap:
                    message = parse(data)
                    if message.mid != device.mid:
                        continue  # a late duplicate
                    if message.code != Code.CONTENT:
                        errors += 1
                        device.done = True
                        pending -= 1
                        break
                    device.body += message.payload
                else:
                    if int.from_bytes(data[2:4], "big") != device.mid:
                        continue
                    device.body += data[-BLOCK:]
                blocks += 1
                device.num += 1
                if device.num >= blocks_per_device:
                    device.done = True
                    pending -= 1
                    break
                device.request(now)
        if not events or now - started > 1.0:
            for device in devices:
                if not device.done and now - device.sent_at > RETRANSMIT_S:
                    device.sock.send(device.wire)
                    device.sent_at = now
                    retransmits += 1
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    poller.close()
    for device in devices:
        device.sock.close()
    return {
        "seconds": seconds,
        "generator_cpu_s": cpu,
        "blocks": blocks,
        "retransmits": retransmits,
        "errors": errors,
        "bodies": [bytes(d.body) for d in devices],
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(mode: str, devices: int, size: int) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, __file__, mode, "--devices", str(devices), "--size", str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"the {mode} child exited with {process.wait()}")
    return process, json.loads(line)


def _stop(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(devices: int, size: int) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    common = {"devices": devices, "package_bytes": size, "block_bytes": BLOCK}
    server, info = _child("--serve", devices, size)
    try:
        cpu0 = _cpu_seconds(server.pid)
        run = generate(info["port"], info["tokens"], size, check_coap=True)
        cpu = _cpu_seconds(server.pid) - cpu0
    finally:
        _stop(server)
    served = sum(1 for b in run["bodies"] if hashlib.sha256(b).hexdigest() == info["sha256"])
    mb = served * size / 1e6
    figures.append({
        "bench": "firmware_download", "figure": "coap_block2", **common,
        "generator": "python raw UDP (one socket per device, epoll, next block on each ACK)",
        "devices_served": served, "seconds": round(run["seconds"], 3),
        "mb_per_s": round(mb / run["seconds"], 2),
        "blocks_per_s": round(run["blocks"] / run["seconds"]),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_s_per_mb": round(cpu / mb, 4) if mb else None,
        "generator_cpu_s": round(run["generator_cpu_s"], 2),
        "retransmits": run["retransmits"], "errors": run["errors"],
    })  # fmt: skip
    echo, echo_info = _child("--echo", devices, size)
    try:
        cpu0 = _cpu_seconds(echo.pid)
        ceiling = generate(echo_info["port"], info["tokens"], size, check_coap=False)
        echo_cpu = _cpu_seconds(echo.pid) - cpu0
    finally:
        _stop(echo)
    echo_mb = devices * size / 1e6
    ceiling_rate = echo_mb / ceiling["seconds"]
    figures.append({
        "bench": "firmware_download", "figure": "udp_echo_ceiling", **common,
        "seconds": round(ceiling["seconds"], 3), "mb_per_s": round(ceiling_rate, 2),
        "blocks_per_s": round(ceiling["blocks"] / ceiling["seconds"]),
        "echo_cpu_s_per_mb": round(echo_cpu / echo_mb, 4),
        "generator_cpu_s": round(ceiling["generator_cpu_s"], 2),
    })  # fmt: skip
    figures.append({
        "bench": "firmware_download", "figure": "ratio",
        "server_vs_ceiling": round(figures[0]["mb_per_s"] / ceiling_rate, 3),
    })  # fmt: skip
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--size", type=int, default=1 << 20, help="package bytes (1 MiB)")
    parser.add_argument("--quick", action="store_true", help="10 devices, 256 KiB")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _run_child(_serve(args.devices, args.size))
        return 0
    if args.echo:
        _run_child(_echo())
        return 0
    devices, size = (10, 256 * 1024) if args.quick else (args.devices, args.size)
    for figure in measure(devices, size):
        print(json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

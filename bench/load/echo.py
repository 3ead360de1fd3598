"""The ceiling: a raw asyncio UDP echo server, run in its own process like the LwM2M server.

Every load figure is compared with the same generator driving this server with the same
datagrams (sizes, window, socket layout): whatever the echo reaches is the most any Python
asyncio UDP server could do on this machine *with this generator in front of it*, so the ratio
``server / echo`` isolates what the LwM2M server itself costs (aiocoap, the core, sqlite,
logging) from what the generator, the kernel and asyncio cost.

``--remember`` keeps every datagram received (bytes objects in a list): the RSS per client of
that process is the floor for "remembering a client at all" in CPython, the ceiling for the
server's RSS-per-registered-client figure.

Usage: ``python bench/load/echo.py --port P [--remember]`` prints ``READY <port>`` on stdout
once bound (so a parent can use port 0) and runs until SIGTERM/SIGINT or ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast


class EchoProtocol(asyncio.DatagramProtocol):
    """Sends every datagram back to where it came from; nothing else."""

    def __init__(self, remember: bool) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.remember = remember
        self.kept: list[bytes] = []
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.count += 1
        if self.remember:
            # a compact copy: asyncio receives into a 256 KiB buffer and shrinks it in place,
            # so keeping ``data`` itself pins a 4 KiB page per datagram (measured: 4.1 KB vs
            # 230 B per 190-byte datagram), which would make the floor a malloc artefact
            self.kept.append(bytes(memoryview(data)))
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def serve(host: str, port: int, remember: bool, max_seconds: float) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: EchoProtocol(remember), local_addr=(host, port)
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sockname = transport.get_extra_info("sockname")
    print(f"READY {sockname[1]}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    finally:
        transport.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--remember", action="store_true", help="keep every datagram received")
    parser.add_argument(
        "--max-seconds", type=float, default=3600.0, help="stop by itself after this long"
    )
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the benchmark only runs on the loopback interface")
    return asyncio.run(serve(args.host, args.port, args.remember, args.max_seconds))


if __name__ == "__main__":
    sys.exit(main())

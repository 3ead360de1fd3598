"""The event stream's figures (issue 13 item 5): what publishing costs with no reader, and how
many events per second one SSE reader receives.

Usage (from the repository root)::

    python bench/events.py [--events 200000] [--quick]

1. **publish cost, no subscriber**: ``EventBus.publish`` of an UPDATED event with its lazy
   registration payload (what ``service._handle_events`` does per Update), no SSE reader, one
   in-process listener as the profile engine registers: µs per event (CPU time).
2. **SSE delivery**: the API's ``GET /api/event`` (``create_app``, the real handler and
   formatter, no auth) on a free loopback port in this process, one reader in another process
   (a plain socket counting frames, so it does not measure an HTTP client library). The
   publisher keeps the reader within half the replay buffer (the most it can sustain without a
   GAP) and publishes as fast as that allows: events delivered per second, and GAPs (0 expected).

One JSON line per figure; the benchmark reports, it never fails on a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lwm2m_runtime.address import Address  # noqa: E402
from lwm2m_server.core.registration import ObjectLinks, Registration  # noqa: E402
from lwm2m_server.events_bus import UPDATED, EventBus, Subscription, registration_data  # noqa: E402


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"bench": "events", "figure": figure, **values}), flush=True)


def registration(n: int) -> Registration:
    return Registration(
        registration_id=f"reg-{n}",
        endpoint=f"dev-{n}",
        address=Address("127.0.0.1", 40000 + n % 20000),
        lifetime=300,
        lwm2m_version="1.1",
        binding="U",
        queue_mode=False,
        object_links=ObjectLinks.parse('</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</3303/0>'),
        registered_at=1_700_000_000.0,
        last_update=1_700_000_000.0 + n,
    )


def publish_cost(count: int) -> None:
    bus = EventBus()
    bus.listen(lambda event: None)  # the profile engine's listener looks at kind and endpoint
    regs = [registration(n) for n in range(1000)]
    started = time.process_time()
    for n in range(count):
        reg = regs[n % 1000]
        bus.publish(UPDATED, reg.endpoint, registration_data(reg, sleeping=False))
    seconds = time.process_time() - started
    emit(
        "publish_no_subscriber",
        events=count,
        us_per_event=round(seconds / count * 1e6, 3),
        replay_size=bus.replay_size,
    )


READER = textwrap.dedent(
    """
    import json, socket, sys, time
    port, count = int(sys.argv[1]), int(sys.argv[2])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/event HTTP/1.1\\r\\nHost: x\\r\\nAccept: text/event-stream\\r\\n\\r\\n")
    seen = gaps = missed = 0
    tail = b""
    first = None
    while seen + missed < count:
        data = s.recv(1 << 20)
        if not data:
            break
        if first is None and b"event: " in data:
            first = time.monotonic()
        chunk = tail + data
        seen += chunk.count(b"event: UPDATED")
        for part in chunk.split(b"event: GAP")[1:]:
            gaps += 1
            missed += json.loads(part.split(b"data: ", 1)[1].split(b"\\n", 1)[0])["missed"]
        keep = chunk.rfind(b"\\n\\n")
        tail = chunk[keep + 2:] if keep >= 0 else chunk
        seen -= tail.count(b"event: UPDATED")
    print(json.dumps({"seen": seen, "gaps": gaps, "missed": missed,
                      "seconds": time.monotonic() - (first or time.monotonic())}))
    """
)


class Ops:
    """Just enough of ``ServerOperations`` for ``GET /api/event``."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def events(self, after: int | None = None) -> Subscription:
        return self.bus.subscribe(after)

    def clients(self) -> list[Registration]:
        return []


async def sse_delivery(count: int) -> None:
    from aiohttp import web

    from lwm2m_server.api import create_app

    bus = EventBus()
    app = create_app(Ops(bus))  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READER, str(port), str(count), stdout=subprocess.PIPE
    )
    while not bus.has_subscribers:
        await asyncio.sleep(0.01)
    regs = [registration(n) for n in range(1000)]
    window = bus.replay_size // 2
    started = time.monotonic()
    cpu = time.process_time()
    published = 0
    while published < count:
        cursor = min((s.cursor for s in list(bus._subscribers)), default=bus._next_id)
        room = min(window - (bus.last_id + 1 - cursor), count - published, 500)
        for _ in range(max(0, room)):
            reg = regs[published % 1000]
            bus.publish(UPDATED, reg.endpoint, registration_data(reg, sleeping=False))
            published += 1
        await asyncio.sleep(0 if room > 0 else 0.001)
    out, _ = await reader.communicate()
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu
    result = json.loads(out)
    emit(
        "sse_one_reader",
        events=count,
        delivered=result["seen"],
        gaps=result["gaps"],
        missed=result["missed"],
        events_per_s=round(result["seen"] / wall),
        server_cpu_us_per_event=round(cpu / count * 1e6, 2),
    )
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 20_000 if args.quick else args.events
    publish_cost(count * 5)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(sse_delivery(count))


if __name__ == "__main__":
    main()

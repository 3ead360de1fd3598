"""Paging ``GET /api/clients`` with 100k registrations in a real server process, and what it does
to CoAP meanwhile (issue 11 item 2: one unpaged listing held the event loop for 8-36 s).

Usage (from the repository root)::

    python bench/api_list.py [--clients 100000] [--book sorted,plain] [--seconds 20] [--quick]

Per server-book variant, on 127.0.0.1 with free ports and a temporary data dir:

1. a fresh ``python -m lwm2m_server`` (``bench/server_load.py``'s ``Server``), N clients
   registered by the C generator ``lwm2m-loadgen -m register`` (built and run with
   ``server_load``'s helpers);
2. **Register p50/p99 idle**: a probe sends one CON Register (a new endpoint each) every 20 ms
   and times each 2.01, for ``--seconds``;
3. **paging**: one HTTP client walks the whole list page after page (default ``limit``, 1000)
   by its ``X-Next-Cursor``, again and again, for ``--seconds``, while the same probe runs:
   **page p50/p99**, **seconds per full pass**, **Register p50/p99 while paging**;
4. a few pages at the largest ``limit`` (10,000): their latency (the most one request can
   hold the loop).

``--book sorted`` runs the server as it is (``ServerCore`` keeps ``SortedRegistrationBook``,
``lwm2m_server/core/sorted_book.py``); ``plain`` swaps a plain ``RegistrationBook`` in through a
``sitecustomize`` module on the server's ``PYTHONPATH``, where the API pages a sorted snapshot
(O(n log n) per page): the figures without the index. One JSON line per figure; the benchmark
reports, it never fails on a figure; it prints ``{"skipped": ...}`` and exits 0 when it cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import server_load as sl  # noqa: E402
from bench.load import generator as g  # noqa: E402
from lwm2m_runtime.coap import CoapError, Code, parse  # noqa: E402

SITECUSTOMIZE = """\
# written by bench/api_list.py: the server keeps its registrations in a plain (unsorted) book
import lwm2m_server.core.server as _core
_core.SortedRegistrationBook = _core.RegistrationBook
"""


@dataclass
class Config:
    clients: int = 100_000
    books: tuple[str, ...] = ("sorted", "plain")
    seconds: float = 20.0
    limit: int = 1000
    loadgen_timeout: float = 900.0
    startup_timeout: float = 60.0
    loadgen_src: Path | None = None
    quick: bool = False


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RegisterProbe(threading.Thread):
    """CON Registers, one at a time every ``interval`` s, each a new endpoint; latencies in ms
    of those answered 2.01 within ``timeout`` (the others are counted as lost)."""

    def __init__(self, port: int, prefix: str, interval: float = 0.02, timeout: float = 5.0):
        super().__init__(daemon=True)
        self.port, self.prefix, self.interval, self.timeout = port, prefix, interval, timeout
        self.latencies_ms: list[float] = []
        self.lost = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            mid = int.from_bytes(os.urandom(2), "big")
            i = 0
            while not self.stop.is_set():
                mid, i = (mid + 1) & 0xFFFF, i + 1
                token = os.urandom(8)
                request = g.registration_request(f"{self.prefix}{i}", mid, token, 86400)
                start = time.perf_counter()
                sock.sendto(request, (sl.LOOPBACK, self.port))
                if self._answer(sock, token, start + self.timeout):
                    self.latencies_ms.append((time.perf_counter() - start) * 1000)
                else:
                    self.lost += 1
                self.stop.wait(self.interval)

    @staticmethod
    def _answer(sock: socket.socket, token: bytes, deadline: float) -> bool:
        while (left := deadline - time.perf_counter()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except (TimeoutError, OSError):
                return False
            with contextlib.suppress(CoapError):
                msg = parse(data)
                if msg.token == token and msg.code == Code.CREATED:
                    return True
        return False

    def figures(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "register_p50_ms": sl._num(percentile(lat, 0.50)),
            "register_p99_ms": sl._num(percentile(lat, 0.99)),
            "register_max_ms": sl._num(max(lat) if lat else None),
            "registers": len(lat),
            "registers_lost": self.lost,
        }


def get_page(api: str, limit: int, cursor: str | None) -> tuple[float, int, int, str | None]:
    """(seconds, clients, bytes, next cursor) of one page."""
    url = f"{api}/api/clients?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    start = time.perf_counter()
    request = urllib.request.Request(url, headers=g.API_HEADERS)
    with urllib.request.urlopen(request, timeout=120) as resp:
        body = resp.read()
        next_cursor = resp.headers.get("X-Next-Cursor")
    return time.perf_counter() - start, len(json.loads(body)), len(body), next_cursor


def page_for(api: str, limit: int, seconds: float) -> dict[str, Any]:
    """Walk the whole list by cursor again and again for ``seconds``."""
    latencies: list[float] = []
    passes: list[float] = []
    listed: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cursor: str | None = None
        pass_start, count = time.perf_counter(), 0
        while True:
            took, n, _, cursor = get_page(api, limit, cursor)
            latencies.append(took * 1000)
            count += n
            if cursor is None or time.monotonic() >= end + 60:
                break
        passes.append(time.perf_counter() - pass_start)
        listed.append(count)
    return {
        "page_p50_ms": sl._num(percentile(latencies, 0.50)),
        "page_p99_ms": sl._num(percentile(latencies, 0.99)),
        "pages": len(latencies),
        "full_pass_s": sl._num(statistics.median(passes)) if passes else None,
        "full_passes": len(passes),
        "listed_per_pass": listed[-1] if listed else None,
    }


def line(figure: str, value: float | None, **extra: Any) -> dict[str, Any]:
    return {"bench": "api_list", "figure": figure, "value": sl._num(value), **extra}


def one_book(
    cfg: Config, book: str, children: sl.Children, loadgen: Path, workdir: Path
) -> Iterator[dict[str, Any]]:
    data_dir = workdir / f"server-{book}"
    data_dir.mkdir()
    saved = os.environ.get("PYTHONPATH")
    if book == "plain":
        site = workdir / f"site-{book}"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), saved]))
    with (workdir / f"server-{book}.log").open("wb") as log:
        server = sl.Server(
            children,
            data_dir,
            log,
            sl.free_port(socket.SOCK_DGRAM),
            sl.free_port(socket.SOCK_DGRAM),
            sl.free_port(socket.SOCK_STREAM),
        )
        try:
            proc = server.launch()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        server.wait_healthy(cfg.startup_timeout)
        args = ["-m", "register", "-p", str(server.coap_port), "-n", str(cfg.clients)]
        args += ["-w", "128", "-s", "128", "-e", "al-", "-S", str(proc.pid)]
        started = time.monotonic()
        phases = sl.run_loadgen(children, loadgen, args, cfg.loadgen_timeout, workdir)
        register = next((p for p in phases if p.get("phase") == "register"), {})
        common = {"book": book, "clients": cfg.clients, "limit": cfg.limit}
        yield line(
            "loadgen_registered",
            register.get("ok"),
            seconds=sl._num(time.monotonic() - started),
            rate=register.get("rate"),
            **common,
        )

        idle = RegisterProbe(server.coap_port, "idle-")
        idle.start()
        time.sleep(cfg.seconds)
        idle.stop.set()
        idle.join(30)
        yield line(
            "register_p99_ms_idle", idle.figures()["register_p99_ms"], **idle.figures(), **common
        )

        probe = RegisterProbe(server.coap_port, "busy-")
        probe.start()
        paging = page_for(server.api, cfg.limit, cfg.seconds)
        probe.stop.set()
        probe.join(30)
        yield line("page_p99_ms", paging["page_p99_ms"], **paging, load_avg=sl._load(), **common)
        yield line(
            "register_p99_ms_while_paging",
            probe.figures()["register_p99_ms"],
            **probe.figures(),
            **common,
        )

        big = [get_page(server.api, 10_000, None) for _ in range(3 if cfg.quick else 5)]
        yield line(
            "page_10000_p50_ms",
            statistics.median(b[0] for b in big) * 1000,
            bytes=big[0][2],
            listed=big[0][1],
            **{**common, "limit": 10_000},
        )
        if proc.poll() is not None:
            raise sl.CannotRun(f"server died:\n{server.log_tail()}")
        sl.Children.stop(proc)


def run(cfg: Config) -> None:
    src = sl.loadgen_source(sl.Config(loadgen_src=cfg.loadgen_src))
    loadgen, _ = sl.build_tools(src)
    children = sl.Children()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="pylwm2m-api-list-") as tmp:
            for book in cfg.books:
                for item in one_book(cfg, book, children, loadgen, Path(tmp)):
                    print(json.dumps(item), flush=True)
    finally:
        children.kill_all()
    print(
        json.dumps(
            {
                "bench": "api_list",
                "figure": "run_info",
                "seconds": round(time.monotonic() - started, 1),
                "clients": cfg.clients,
                "books": list(cfg.books),
                "quick": cfg.quick,
                "load_avg_end": sl._load(),
                "python": sys.version.split()[0],
            }
        ),
        flush=True,
    )


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python bench/api_list.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="2,000 clients, 3 s per phase")
    parser.add_argument("--clients", type=int, help="registrations (default 100000)")
    parser.add_argument("--book", help="comma-separated: sorted, plain (default both)")
    parser.add_argument("--seconds", type=float, help="seconds per phase (default 20)")
    parser.add_argument("--limit", type=int, help="page size while paging (default 1000)")
    parser.add_argument("--loadgen-src", type=Path, help="folder of lwm2m-loadgen.c")
    args = parser.parse_args(argv)
    cfg = Config(clients=2_000, seconds=3.0, quick=True) if args.quick else Config()
    if args.clients:
        cfg.clients = args.clients
    if args.book:
        cfg.books = tuple(b.strip() for b in args.book.split(",") if b.strip())
        unknown = set(cfg.books) - {"sorted", "plain"}
        if unknown:
            parser.error(f"unknown --book {', '.join(sorted(unknown))} (sorted, plain)")
    if args.seconds:
        cfg.seconds = args.seconds
    if args.limit:
        cfg.limit = args.limit
    cfg.loadgen_src = args.loadgen_src
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return sl.run_as_main("api_list", lambda: run(cfg))


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark in the repository, one JSON object per line on stdout.

Usage: ``python bench/run.py [--quick] [--only NAME] [-- ARGS for that bench]``, NAME one of
``codecs``, ``models``, ``server``, ``server_load``, ``coap_layer``, ``dtls``, ``events``,
``dtls_flood``, ``firmware_download``.

Benchmarks (each is run if its file exists, in its own subprocess so that one crashing or
leaking memory cannot distort the others' figures):

* ``codecs``: ``bench/codec_speed.py`` — values/s per content format.
* ``models``: ``bench/models_load.py`` — built-in registry load time.
* ``server``: ``python -m bench.load`` — the LwM2M server under load (started as a subprocess
  on free ports with a temporary data dir) against a raw UDP echo ceiling.
* ``server_load``: ``bench/server_load.py`` — issue 10's figures at 1k/10k/100k clients
  (Register/s, Update/s, CPU per message, RSS per client, restart time) with the C generator
  ``lwm2m-loadgen`` against a C UDP echo ceiling (built with ``cc -O2`` outside the repo), and
  against echo bursts right before and after each phase (``ratio_to_echo_paired``).
* ``coap_layer``: ``bench/coap_layer.py`` — the sans-IO CoAP layer alone (parse, serialize,
  endpoint per Update and per downlink request) against a ``struct`` baseline of the same run.
* ``dtls``: ``bench/dtls.py`` — CoAPs handshakes/s per mode and round trips/s beside NoSec over
  loopback, idle bytes per session (transport and engine alone).
* ``dtls_flood``: ``bench/dtls_flood.py`` — PSK handshakes/s unloaded and under a spoofed
  10k/s ClientHello flood from another process, and their ratio (target ≥ 0.5).
* ``firmware_download``: ``bench/firmware_download.py`` — N devices pulling a package over CoAP
  Block2 in parallel: MB/s, devices served, server CPU s per MB, against a UDP echo ceiling.

Every line a benchmark prints that is a JSON object is passed through with ``"bench"`` set
if the benchmark did not set it; anything else goes to stderr. The exit status is non-zero only
when a benchmark crashed (non-zero exit, killed, or over its time limit): a slow figure is a
finding, not a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bench:
    name: str
    marker: Path
    command: Callable[[bool], list[str]]
    limit_s: float
    """Wall-clock limit of the full run; ``--quick`` gets a fifth of it."""


BENCHES = (
    Bench(
        "codecs",
        REPO / "bench" / "codec_speed.py",
        lambda quick: [sys.executable, "bench/codec_speed.py", *(["--quick"] if quick else [])],
        600,
    ),
    Bench(
        "models",
        REPO / "bench" / "models_load.py",
        lambda quick: [sys.executable, "bench/models_load.py", *(["--quick"] if quick else [])],
        120,
    ),
    Bench(
        "server",
        REPO / "bench" / "load" / "scenario.py",
        lambda quick: [sys.executable, "-m", "bench.load", *(["--quick"] if quick else [])],
        1500,
    ),
    Bench(
        "server_load",
        REPO / "bench" / "server_load.py",
        # issue 10: 1k/10k/100k clients with the C generator, restart time, vs a C UDP echo
        lambda quick: [sys.executable, "bench/server_load.py", *(["--quick"] if quick else [])],
        1800,
    ),
    Bench(
        "coap_layer",
        REPO / "bench" / "coap_layer.py",
        lambda quick: [sys.executable, "bench/coap_layer.py", *(["--quick"] if quick else [])],
        300,
    ),
    Bench(
        "dtls",
        REPO / "bench" / "dtls.py",
        # the server transport over loopback beside NoSec, plus the engine's in-memory figures
        lambda quick: [sys.executable, "bench/dtls.py", *(["--quick"] if quick else [])],
        900,
    ),
    Bench(
        "events",
        REPO / "bench" / "events.py",
        # issue 13 item 5: publish cost with no subscriber, events/s to one SSE reader
        lambda quick: [sys.executable, "bench/events.py", *(["--quick"] if quick else [])],
        300,
    ),
    Bench(
        "dtls_flood",
        REPO / "bench" / "dtls_flood.py",
        # PSK handshakes/s unloaded and under a 10k/s cookie-less ClientHello flood, the ratio
        lambda quick: [sys.executable, "bench/dtls_flood.py", *(["--quick"] if quick else [])],
        300,
    ),
    Bench(
        "firmware_download",
        REPO / "bench" / "firmware_download.py",
        # issue 14: 50 devices pull 1 MiB over CoAP Block2; MB/s, CPU s per MB, echo ceiling
        lambda quick: [
            sys.executable,
            "bench/firmware_download.py",
            *(["--quick"] if quick else []),
        ],
        300,
    ),
    Bench(
        "workers",
        REPO / "bench" / "workers.py",
        # issue 12: Updates/s on sqlite, one worker on Redis, --workers 2 on Redis; the ratios
        lambda quick: [
            sys.executable,
            "bench/workers.py",
            *(["--clients", "1000", "--updates", "5000"] if quick else []),
        ],
        900,
    ),
)


def _relay(bench: str, stream: object) -> None:
    """Copy the bench's stdout: JSON objects (tagged with the bench) to stdout, the rest to
    stderr."""
    assert hasattr(stream, "readline")
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data.setdefault("bench", bench)
            print(json.dumps(data), flush=True)
        elif line:
            print(f"[{bench}] {line}", file=sys.stderr, flush=True)


def run_bench(bench: Bench, quick: bool, extra: list[str]) -> int:
    """Run one benchmark; returns its exit status (124 when it overran its limit)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    limit = bench.limit_s / 5 if quick else bench.limit_s
    started = time.monotonic()
    proc = subprocess.Popen(
        [*bench.command(quick), *extra],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    relay = threading.Thread(target=_relay, args=(bench.name, proc.stdout), daemon=True)
    relay.start()
    try:
        status = proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"[{bench.name}] over its {limit:.0f} s limit, stopped", file=sys.stderr)
        status = 124
    relay.join(10)
    print(
        json.dumps({
            "bench": bench.name, "figure": "run", "exit": status,
            "seconds": round(time.monotonic() - started, 1),
        }),
        flush=True,
    )  # fmt: skip
    return status


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke runs of each bench")
    parser.add_argument("--only", choices=[b.name for b in BENCHES])
    args = parser.parse_args(args_in)
    if extra and not args.only:
        parser.error("arguments after -- need --only (they go to that one benchmark)")
    crashed = []
    for bench in BENCHES:
        if args.only and bench.name != args.only:
            continue
        if not bench.marker.exists():
            print(json.dumps({"bench": bench.name, "skipped": f"{bench.marker} not found"}))
            continue
        if run_bench(bench, args.quick, extra) != 0:
            crashed.append(bench.name)
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

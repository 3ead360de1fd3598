"""Issue 12's benchmark: Updates/s of one ``lwm2m-server`` on sqlite, one worker on Redis and
``--workers 2`` on Redis, with the C load generator, in one run; the ratios against the goals
(two workers at least 1.7 times one, one worker on Redis at least 0.7 of sqlite) and Redis
memory per registration.

Usage (from the repository root)::

    python bench/workers.py [--clients 10000] [--updates 50000] [--loadgen-src DIR]

Needs ``redis-server`` (Debian package; the benchmark starts its own on a free port, no
persistence) and a C compiler for ``../shared/tools/lwm2m-loadgen`` (built into a cache like
``bench/server_load.py`` does). One JSON line per figure; a ``{"skipped": ...}`` line and exit
0 when it cannot run. On a 2-core machine two workers compete with the load generator and with
Redis for the cores: the figure says what this machine gives, not what two free cores would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # ``python bench/workers.py`` puts bench/ first
    sys.path.insert(0, str(REPO))

from bench import server_load as sl  # noqa: E402
from bench.load import generator as g  # noqa: E402

LOOPBACK = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(children: sl.Children, workdir: Path) -> tuple[int, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise sl.CannotRun("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    children.start(
        [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    cli = shutil.which("redis-cli")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if cli and subprocess.run([cli, "-p", str(port), "ping"], capture_output=True).stdout:
            return port, cli
        time.sleep(0.05)
    raise sl.CannotRun("redis-server did not answer PING")


def redis_memory(cli: str, port: int) -> int:
    out = subprocess.run([cli, "-p", str(port), "info", "memory"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def run_variant(
    children: sl.Children,
    loadgen: Path,
    workdir: Path,
    name: str,
    *,
    workers: int,
    redis_port: int | None,
    clients: int,
    updates: int,
) -> dict[str, Any]:
    data_dir = workdir / name
    data_dir.mkdir()
    coap, coaps, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(g.server_env())
    env["LWM2M_SERVER_LIMITS_REGISTER_RATE"] = "0"  # every simulated client is on 127.0.0.1
    env["LWM2M_SERVER_LIMITS_DEDUP_ENTRIES"] = str(max(100_000, 2 * (clients + updates)))
    if redis_port is not None:
        env["LWM2M_SERVER_STORE_ENGINE"] = "redis"
        env["LWM2M_SERVER_STORE_URL"] = f"redis://{LOOPBACK}:{redis_port}/0"
        env["LWM2M_SERVER_STORE_PREFIX"] = name
    command = [
        sys.executable, "-m", "lwm2m_server", "serve", "--host", LOOPBACK,
        "--coap-port", str(coap), "--coaps-port", str(coaps), "--http-host", LOOPBACK,
        "--http-port", str(http), "--data-dir", str(data_dir), "--log-level", "WARNING",
        "--workers", str(workers),
    ]  # fmt: skip
    log = (workdir / f"{name}.log").open("wb")
    proc = children.start(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while sl.http_get(f"http://{LOOPBACK}:{http}/api/ready", 2.0) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise sl.CannotRun(f"{name}: the server did not start (see {log.name})")
        time.sleep(0.1)
    args = ["-p", str(coap), "-n", str(clients), "-U", str(updates), "-w", "128", "-s", "128"]
    lines = sl.run_loadgen(children, loadgen, args, 600.0, workdir)
    children.stop(proc)
    phases = {str(line.get("phase")): line for line in lines}
    return phases


def figure(name: str, value: float | None, **extra: Any) -> dict[str, Any]:
    line = {"bench": "workers", "figure": name, "value": value, **extra}
    print(json.dumps(line), flush=True)
    return line


def run(clients: int, updates: int, loadgen_src: Path | None) -> None:
    cfg = sl.Config(loadgen_src=loadgen_src)
    loadgen, _ = sl.build_tools(sl.loadgen_source(cfg))
    children = sl.Children()
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        workdir = Path(tmp)
        try:
            redis_port, cli = start_redis(children, workdir)
            common = {"clients": clients, "updates": updates, "generator": sl.C_GENERATOR}
            results: dict[str, dict[str, Any]] = {}
            for name, workers, on_redis in (
                ("sqlite-1", 1, False),
                ("redis-1", 1, True),
                ("redis-2", 2, True),
            ):
                before = redis_memory(cli, redis_port) if on_redis else 0
                phases = run_variant(
                    children, loadgen, workdir, name, workers=workers,
                    redis_port=redis_port if on_redis else None, clients=clients,
                    updates=updates,
                )  # fmt: skip
                results[name] = phases
                for phase in ("register", "update"):
                    line = phases.get(phase, {})
                    figure(
                        f"{phase}_per_s",
                        line.get("rate"),
                        variant=name,
                        workers=workers,
                        store="redis" if on_redis else "sqlite",
                        ok=line.get("ok"),
                        errors=line.get("errors"),
                        timeouts=line.get("timeouts"),
                        p99_ms=line.get("p99_ms"),
                        load_avg=list(os.getloadavg()),
                        **common,
                    )
                if on_redis and name == "redis-1":
                    used = redis_memory(cli, redis_port) - before
                    registered = phases.get("register", {}).get("ok") or 0
                    figure(
                        "redis_bytes_per_registration",
                        round(used / registered) if registered else None,
                        note="INFO used_memory growth over a run (registrations, indexes, "
                        "expiry set, holder keys) / registrations",
                        **common,
                    )

            def rate(name: str) -> float:
                return float(results[name].get("update", {}).get("rate") or 0.0)

            if rate("redis-1") and rate("sqlite-1"):
                figure(
                    "update_ratio_redis_to_sqlite",
                    round(rate("redis-1") / rate("sqlite-1"), 3),
                    target=0.7,
                    meets_target=rate("redis-1") / rate("sqlite-1") >= 0.7,
                    **common,
                )
            if rate("redis-2") and rate("redis-1"):
                figure(
                    "update_ratio_2_workers_to_1",
                    round(rate("redis-2") / rate("redis-1"), 3),
                    target=1.7,
                    meets_target=rate("redis-2") / rate("redis-1") >= 1.7,
                    cores=os.cpu_count(),
                    **common,
                )
        finally:
            children.kill_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=50_000)
    parser.add_argument("--loadgen-src", type=Path, default=None)
    args = parser.parse_args(argv)

    def body() -> None:
        try:
            run(args.clients, args.updates, args.loadgen_src)
        except sl.CannotRun as exc:
            print(json.dumps({"bench": "workers", "skipped": str(exc)}), flush=True)

    return sl.run_as_main("workers", body)


if __name__ == "__main__":
    raise SystemExit(main())

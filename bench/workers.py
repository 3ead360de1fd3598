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


def free_ports() -> tuple[int, int, int]:
    """A CoAP, a CoAPs (UDP) and an HTTP (TCP) port, distinct: the probe sockets stay open
    until all three are chosen, so the kernel cannot hand out one port twice (two listeners
    bound with SO_REUSEPORT, as ``--workers`` binds them, would share it silently)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coap,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coaps,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as http,
    ):
        for sock in (coap, coaps, http):
            sock.bind((LOOPBACK, 0))
        return coap.getsockname()[1], coaps.getsockname()[1], http.getsockname()[1]


def server_cpus(pinned: str) -> str:
    """The CPUs left to the server processes when Redis and the generator have ``pinned``."""
    taken = {int(c) for c in pinned.split(",")}
    rest = [str(c) for c in sorted(os.sched_getaffinity(0)) if c not in taken]
    if not rest:
        raise sl.CannotRun(f"--pin {pinned} leaves no CPU to the server")
    return ",".join(rest)


def start_redis(
    children: sl.Children, workdir: Path, taskset: tuple[str, str] | None = None
) -> tuple[int, str, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise sl.CannotRun("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    pin = [taskset[0], "-c", taskset[1]] if taskset is not None else []
    proc = children.start(
        [*pin, binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    cli = shutil.which("redis-cli")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if cli and subprocess.run([cli, "-p", str(port), "ping"], capture_output=True).stdout:
            return port, cli, proc.pid
        time.sleep(0.05)
    raise sl.CannotRun("redis-server did not answer PING")


def redis_memory(cli: str, port: int) -> int:
    out = subprocess.run([cli, "-p", str(port), "info", "memory"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (``/proc/<pid>/stat``), 0 when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the supervisor of ``--workers`` and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to ``port`` (``/proc/net/udp`` and ``udp6``): with
    ``--workers N`` the N workers' CoAP sockets share the port (SO_REUSEPORT), so N means every
    worker has joined the kernel's group. Counted before the load starts: a worker that joins
    during the run takes over some of the generator's sockets in the middle of an exchange."""
    count = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]  # HEXADDR:HEXPORT
            if int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a server's log, for a run that lost requests (the figures alone do not say
    why)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}


def run_measured(
    children: sl.Children,
    loadgen: Path,
    args: list[str],
    workdir: Path,
    pids: dict[str, list[int]],
    taskset: tuple[str, str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Run the C generator like ``sl.run_loadgen`` and measure the process CPU of the server
    processes and ``redis-server`` during its Update phase: a snapshot when the register
    phase's line appears (the generator flushes each line), one when it exits. The generator's
    own CPU per phase is in its line (``gen_cpu_s``)."""
    out = workdir / f"loadgen-{time.monotonic_ns()}.out"
    start: dict[str, float] | None = None
    with out.open("wb") as stdout:
        pin = [taskset[0], "-c", taskset[1]] if taskset is not None else []
        proc = children.start([*pin, str(loadgen), "-H", LOOPBACK, *args], stdout=stdout)
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if start is None and b'"phase":"register"' in out.read_bytes():
                start = snapshot(pids)
            time.sleep(0.01)
        end = snapshot(pids)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = []
    for raw in out.read_text(errors="replace").splitlines():
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if isinstance(data, dict):
            lines.append(data)
    used = {name: end[name] - (start or end)[name] for name in end}
    return lines, used


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
    redis_pid: int | None = None,
    taskset: tuple[str, str] | None = None,
) -> dict[str, Any]:
    data_dir = workdir / name
    data_dir.mkdir()
    coap, coaps, http = free_ports()
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
    if taskset is not None:  # the server processes on the cores not given to Redis/loadgen
        command = [taskset[0], "-c", server_cpus(taskset[1]), *command]
    log = (workdir / f"{name}.log").open("wb")
    proc = children.start(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while sl.http_get(f"http://{LOOPBACK}:{http}/api/ready", 2.0) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise sl.CannotRun(f"{name}: the server did not start (see {log.name})")
        time.sleep(0.1)
    expected = 1 if workers == 1 else workers + 1  # --workers N: the parent and N workers
    # the API answers once worker 0 is up; the others start after it, one after the other
    while len(family(proc.pid)) < expected or udp_sockets_on(coap) < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise sl.CannotRun(f"{name}: not every worker started (see {log.name})")
        time.sleep(0.1)
    time.sleep(1.0)  # the last worker's start-up is not part of the figures
    args = ["-p", str(coap), "-n", str(clients), "-U", str(updates), "-w", "128", "-s", "128"]
    pids = {"server": family(proc.pid)}
    if redis_pid is not None:
        pids["redis"] = [redis_pid]
    lines, used = run_measured(children, loadgen, args, workdir, pids, taskset)
    children.stop(proc)
    log.close()
    phases = {str(line.get("phase")): line for line in lines}
    lost = {p: (v.get("errors"), v.get("timeouts")) for p, v in phases.items()}
    if any(errors or timeouts for errors, timeouts in lost.values()) or len(phases) < 2:
        print(
            f"{name}: requests lost {lost}; the server log ends with:\n"
            f"{log_tail(workdir / f'{name}.log')}",
            file=sys.stderr,
            flush=True,
        )
    update = phases.get("update", {})
    done = update.get("ok") or 0
    if done:
        used["loadgen"] = float(update.get("gen_cpu_s") or 0.0)
        update["cpu_us_per_update"] = {k: round(v / done * 1e6, 1) for k, v in used.items()}
        update["cpu_us_per_update"]["total"] = round(sum(used.values()) / done * 1e6, 1)
        update["server_processes"] = len(pids["server"])
        seconds = float(update.get("seconds") or 0.0)
        if seconds:  # cores kept busy during the Update phase, per process group
            update["cores_busy"] = {k: round(v / seconds, 2) for k, v in used.items()}
    return phases


def figure(name: str, value: float | None, **extra: Any) -> dict[str, Any]:
    line = {"bench": "workers", "figure": name, "value": value, **extra}
    print(json.dumps(line), flush=True)
    return line


VARIANTS = {"sqlite-1": (1, False), "redis-1": (1, True), "redis-2": (2, True)}


def run(
    clients: int,
    updates: int,
    loadgen_src: Path | None,
    variants: list[str] | None = None,
    pin: str | None = None,
) -> None:
    cfg = sl.Config(loadgen_src=loadgen_src)
    loadgen, _ = sl.build_tools(sl.loadgen_source(cfg))
    children = sl.Children()
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        workdir = Path(tmp)
        try:
            taskset = None
            if pin is not None:
                binary = shutil.which("taskset")
                if binary is None:
                    raise sl.CannotRun("--pin needs taskset (util-linux)")
                taskset = (binary, pin)
            redis_port, cli, redis_pid = start_redis(children, workdir, taskset)
            common: dict[str, Any] = {
                "clients": clients, "updates": updates, "generator": sl.C_GENERATOR,
            }  # fmt: skip
            if pin is not None:
                common["pinned"] = {"redis+loadgen": pin, "server": server_cpus(pin)}
            results: dict[str, dict[str, Any]] = {}
            for name in variants or list(VARIANTS):
                workers, on_redis = VARIANTS[name]
                before = redis_memory(cli, redis_port) if on_redis else 0
                phases = run_variant(
                    children, loadgen, workdir, name, workers=workers,
                    redis_port=redis_port if on_redis else None, clients=clients,
                    updates=updates, redis_pid=redis_pid if on_redis else None,
                    taskset=taskset,
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
                update = phases.get("update", {})
                if "cpu_us_per_update" in update:
                    figure(
                        "cpu_us_per_update",
                        update["cpu_us_per_update"],
                        variant=name,
                        cores_busy=update.get("cores_busy"),
                        note="process CPU (/proc/<pid>/stat; the generator's getrusage) during "
                        "the Update phase / Updates answered",
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
                return float(results.get(name, {}).get("update", {}).get("rate") or 0.0)

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
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of " + ", ".join(VARIANTS),
    )
    parser.add_argument(
        "--pin",
        metavar="CPUS",
        help="run redis-server and the generator on these CPUs (taskset -c) and the server "
        "processes on the others: what the workers scale to when Redis and the generator do "
        "not take their cores",
    )
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")

    def body() -> None:
        try:
            run(args.clients, args.updates, args.loadgen_src, variants, args.pin)
        except sl.CannotRun as exc:
            print(json.dumps({"bench": "workers", "skipped": str(exc)}), flush=True)

    return sl.run_as_main("workers", body)


if __name__ == "__main__":
    raise SystemExit(main())

"""Restart with N stored registrations: start → first Register answered (issue 10: ≤ 3 s at 100k).

Why a script of its own: ``bench/server_load.py`` measures the restart only after registering
N clients over sockets (minutes at 100k). This one writes N registrations straight into a
sqlite file (the object list and addresses the load generator uses), then times
``python -m lwm2m_server serve`` on a copy of it until a CON Register gets its 2.01, and the
server's process CPU at that moment (``server_cpu_s``: what the start-up itself spends; the
wall clock moves with the box's load). ``--in-process`` times only the part that grows with N
(open the store, ``ServerCore.use_store``); ``--profile out.prof`` writes a cProfile of that,
or of the whole server process (stopped by SIGINT after the probe) without ``--in-process``.

    python bench/restart.py --registrations 100000 --runs 3
    python bench/restart.py --registrations 100000 --in-process --profile restart.prof

The built file is kept (``--cache-dir``, default the system temp dir) and reused by later runs
of the same N and schema; each timed run starts from a fresh copy of it. One JSON line per run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import generator as g  # noqa: E402
from bench.server_load import LOOPBACK, free_port, http_get, register_probe  # noqa: E402
from keystore.store.database import DATABASE_FILE  # noqa: E402
from lwm2m_runtime.address import Address  # noqa: E402
from lwm2m_runtime.server import GC_THRESHOLDS  # noqa: E402
from lwm2m_server.core.registration import Registration, RegistrationRequest  # noqa: E402
from lwm2m_server.store import sqlite as sqlite_store  # noqa: E402
from lwm2m_server.store.sqlite import SqliteStore  # noqa: E402
from object_models.content_format import ContentFormat  # noqa: E402


def build(path: Path, registrations: int) -> None:
    """``registrations`` registrations of ``bench-<i>``, each from a port of its own (as the
    load generator's sockets), lifetime one day, in one transaction."""
    now = time.time()
    request = RegistrationRequest.parse(
        ("ep=x", "lt=86400", "lwm2m=1.1", "b=U"),
        g.REGISTRATION_LINKS,
        ContentFormat.LINK,
    )
    store = SqliteStore(path)
    try:
        chunk = 10_000
        for first in range(0, registrations, chunk):
            regs = [
                Registration.create(
                    f"r{i:07d}",
                    attrs.evolve(request, endpoint=f"bench-{i}"),
                    now=now,
                    address=Address(LOOPBACK, 1024 + i % 60000 + (i // 60000)),
                )
                for i in range(first, min(first + chunk, registrations))
            ]
            store.put_registrations(regs)
    finally:
        store.close()


def built(registrations: int, cache_dir: Path) -> Path:
    """The cached file of ``registrations`` rows for the current schema version."""
    name = f"pylwm2m-restart-{registrations}-v{sqlite_store.SCHEMA_VERSION}.sqlite"
    path = cache_dir / name
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, registrations)
        partial.rename(path)
    return path


def in_process(db: Path, profile: str | None) -> dict[str, object]:
    from lwm2m_server.core.server import ServerCore

    with tempfile.TemporaryDirectory(prefix="pylwm2m-restart-") as tmp:
        copy = Path(tmp) / DATABASE_FILE
        shutil.copyfile(db, copy)
        # the collector as ``lwm2m_runtime.server.run`` sets it for a running server
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        profiler = cProfile.Profile() if profile else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        store = SqliteStore(copy)
        core = ServerCore()
        core.use_store(store)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)  # type: ignore[arg-type]
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        loaded = len(core.registrations)
        store.close()
    return {
        "mode": "in_process",
        "loaded": loaded,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
    }


def over_sockets(db: Path, timeout: float, profile: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="pylwm2m-restart-") as tmp:
        data = Path(tmp)
        shutil.copyfile(db, data / DATABASE_FILE)
        coap, coaps, http = (
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_STREAM),
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["LWM2M_SERVER_OPEN_REGISTRATION"] = "true"
        env["LWM2M_SERVER_LIMITS_REGISTER_RATE"] = "0"
        env.update(g.server_env())
        profiling = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
        command = [
            sys.executable, *profiling, "-m", "lwm2m_server", "serve",
            "--host", LOOPBACK, "--coap-port", str(coap), "--coaps-port", str(coaps),
            "--http-host", LOOPBACK, "--http-port", str(http),
            "--data-dir", str(data), "--log-level", "WARNING",
        ]  # fmt: skip
        with open(data / "server.log", "wb") as log:
            start = time.monotonic()
            proc = subprocess.Popen(
                command, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            try:
                answered: list[float | None] = [None]
                cpu: list[float | None] = [None]

                def probe() -> None:
                    answered[0] = register_probe(coap, "restart-probe", start + timeout)
                    with contextlib.suppress(OSError):
                        cpu[0] = g.cpu_seconds(proc.pid)

                thread = threading.Thread(target=probe, daemon=True)
                thread.start()
                thread.join(timeout + 1.0)
                api = None
                if answered[0] is not None:
                    while time.monotonic() < start + timeout:
                        if http_get(f"http://{LOOPBACK}:{http}/api/health", 2.0) is not None:
                            api = time.monotonic() - start
                            break
                        time.sleep(0.02)
            finally:
                if profile:  # a clean stop, so that cProfile writes its file
                    proc.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
                proc.kill()
                proc.wait(30)
        first = None if answered[0] is None else round(answered[0] - start, 3)
        server_cpu = None if cpu[0] is None else round(cpu[0], 3)
        return {
            "mode": "sockets",
            "first_register_s": first,
            "server_cpu_s": server_cpu,
            "api_up_s": None if api is None else round(api, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    db = built(args.registrations, args.cache_dir)
    for _ in range(args.runs):
        result = in_process(db, args.profile) if args.in_process else over_sockets(db, args.timeout)
        load = os.getloadavg()[0]
        line = {"bench": "restart", "registrations": args.registrations, **result}
        print(json.dumps({**line, "load1": round(load, 2)}), flush=True)


if __name__ == "__main__":
    main()

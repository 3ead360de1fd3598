"""``lwm2m-server --workers N``: a parent process that runs N worker processes on one host.

Why processes: one Python process uses one core. Each worker is a whole ``lwm2m-server``
(``python -m lwm2m_server serve`` with the same options) whose CoAP and CoAPs sockets are bound
with SO_REUSEPORT on the same ports, so the kernel spreads the peers over the workers; all of
them keep their state in Redis (``store.engine: redis``, required), which is what lets a worker
continue what another one started (docs/cluster.md, "Several workers on one host").

Duties of the parent, and only these (it opens no socket and no store):

* start the workers **one after the other**, each once the previous one reported that it
  listens (a line on the pipe named by ``LWM2M_WORKER_READY_FD``): worker 0 binds the
  configured ports (0 = any free port) and the others the ports it got, and the first start on
  an empty Redis generates the server identity once, not N times;
* worker 0 serves the HTTP API (once per host), the others none (``LWM2M_WORKER_INDEX``);
  each worker i > 0 keeps its own sqlite file (telemetry history) in ``data_dir/worker-i``;
* restart a worker that died (after a second when it died within ten seconds of its start,
  so a worker that cannot start does not spin);
* SIGTERM/SIGINT: SIGTERM to every worker, wait for them (SIGKILL after ``STOP_TIMEOUT``),
  exit 0;
* ``worker_cpu_affinity`` (off by default): pin worker i to one CPU (:func:`affinity_plan`),
  at each (re)start.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

log = logging.getLogger("lwm2m_server.cluster")

INDEX_ENV = "LWM2M_WORKER_INDEX"
"""Set for a worker: its index (0 serves the HTTP API)."""
READY_ENV = "LWM2M_WORKER_READY_FD"
"""Set for a worker: the pipe on which it writes ``ready COAP_PORT COAPS_PORT HTTP_PORT`` once it
listens (HTTP_PORT 0 when it serves no API)."""
START_TIMEOUT = 120.0
"""Seconds a worker may take to report ready before the parent gives up."""
QUICK_DEATH = 10.0
"""A worker that dies within these seconds of its start is restarted after ``RESTART_DELAY``."""
RESTART_DELAY = 1.0
STOP_TIMEOUT = 8.0
"""Seconds the workers get to stop after SIGTERM before they are killed (SIGKILL)."""


AFFINITY_OFF = "off"
AFFINITY_AUTO = "auto"


def parse_cpu_list(text: str) -> list[int]:
    """``0,2-3`` → ``[0, 2, 3]`` (Linux's cpu-list syntax, as ``taskset -c`` takes it); raises
    ValueError with the reason."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ValueError(f"{part!r} is not a CPU number or range (like 0,2-3)")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"{part!r} is an empty range")
        cpus += [cpu for cpu in range(first, last + 1) if cpu not in cpus]
    return cpus


def check_affinity(value: str) -> str | None:
    """The configuration check of ``worker_cpu_affinity``: ``off``, ``auto`` or a CPU list."""
    if value.strip().lower() in (AFFINITY_OFF, AFFINITY_AUTO):
        return None
    try:
        parse_cpu_list(value)
    except ValueError as exc:
        return f"{exc}; or off, auto"
    return None


def affinity_plan(setting: str, count: int, allowed: set[int]) -> list[int] | None:
    """The CPU of each of ``count`` workers, or None (``off``: the scheduler places them).

    ``auto``: worker i on the i-th CPU this process may use (``allowed``, its
    ``sched_getaffinity``: a container's or ``taskset``'s limit is kept), round robin when
    there are more workers than CPUs; a list: worker i on its i-th CPU, round robin. A listed
    CPU this process may not use raises ValueError (refused at start, rather than a worker
    silently left where the kernel puts it).

    Why pin at all: a worker that stays on one core keeps its caches (a Python process's
    working set is large) and is never moved; with the scheduler's placement the workers of
    a busy host migrate between cores and meet each other's cache lines. Why it is not the
    default: a worker pinned to a core can only wait when that core is busy with something
    else (Redis, another service) while another core idles; pin on a host whose listed cores
    are the workers' (docs/cluster.md, "CPU affinity")."""
    mode = setting.strip().lower()
    if mode == AFFINITY_OFF:
        return None
    cpus = sorted(allowed) if mode == AFFINITY_AUTO else parse_cpu_list(setting)
    missing = [cpu for cpu in cpus if cpu not in allowed]
    if missing:
        names = ",".join(str(cpu) for cpu in missing)
        usable = ",".join(str(cpu) for cpu in sorted(allowed))
        raise ValueError(
            f"worker_cpu_affinity {setting!r}: CPU {names} is not available to this process "
            f"(it may use {usable})"
        )
    if not cpus:
        raise ValueError(f"worker_cpu_affinity {setting!r}: no CPU")
    return [cpus[i % len(cpus)] for i in range(count)]


def pin(pid: int, cpu: int) -> bool:
    """Every thread of ``pid`` on ``cpu`` only (threads it makes later inherit it); False
    (logged) when the kernel refuses (a CPU taken offline since the start)."""
    try:
        os.sched_setaffinity(pid, {cpu})
    except OSError as exc:
        log.warning(
            "cannot pin pid %d to CPU %d: %s; it runs where the kernel puts it", pid, cpu, exc
        )
        return False
    return True


class _Stop(Exception):
    """SIGTERM/SIGINT reached the parent."""


def worker_index() -> int | None:
    """This process's worker index, or None when it is not a worker of ``--workers``."""
    value = os.environ.get(INDEX_ENV)
    return int(value) if value is not None and value.isdigit() else None


def report_ready(coap_port: int, coaps_port: int, http_port: int) -> None:
    """A worker listens: tell the parent its ports (no-op outside ``--workers``)."""
    fd = os.environ.get(READY_ENV)
    if fd is None or not fd.isdigit():
        return
    try:
        os.write(int(fd), f"ready {coap_port} {coaps_port} {http_port}\n".encode())
        os.close(int(fd))
    except OSError:
        pass  # the parent is gone: it will not restart us either


class Worker:
    """One worker process and what it needs to be (re)started."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0


class Supervisor:
    """Start, watch and stop the workers (see the module docstring)."""

    def __init__(
        self,
        argv: Sequence[str],
        count: int,
        data_dir: Path,
        coap_port: int,
        coaps_port: int,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.workers = [Worker(i) for i in range(count)]
        self.cpus = list(cpus) if cpus is not None else None
        """The CPU of each worker (``affinity_plan``), or None: not pinned."""
        self.data_dir = data_dir
        self.coap_port = coap_port
        self.coaps_port = coaps_port
        self.http_port: int | None = None
        """The port worker 0's API got (the configured one may be 0): a restart keeps it."""

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for worker in self.workers:
                if not self._start(worker):
                    return 1
            log.info("%d workers running (worker 0 serves the HTTP API)", len(self.workers))
            while True:
                self._watch()
        except _Stop:
            log.info("stopping %d workers", len(self.workers))
            return 0
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise _Stop

    def _command(self, worker: Worker) -> list[str]:
        extra = ["--coap-port", str(self.coap_port), "--coaps-port", str(self.coaps_port)]
        if worker.index:
            folder = self.data_dir / f"worker-{worker.index}"
            extra += ["--data-dir", str(folder)]
        elif self.http_port:
            extra += ["--http-port", str(self.http_port)]
        return [sys.executable, "-m", "lwm2m_server", "serve", *self.argv, *extra]

    def _start(self, worker: Worker) -> bool:
        """Start ``worker`` and wait for its ready line; False if it did not come up."""
        if worker.index:
            (self.data_dir / f"worker-{worker.index}").mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **{INDEX_ENV: str(worker.index), READY_ENV: str(write_fd)})
        try:
            worker.proc = subprocess.Popen(self._command(worker), env=env, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        worker.started_at = time.monotonic()
        if self.cpus is not None:
            # Popen returns once the worker exec'd Python, which starts with one thread: every
            # thread it starts later (the Redis breaker's, the API's) inherits the CPU
            pin(worker.proc.pid, self.cpus[worker.index])
        try:
            line = self._read_ready(read_fd, worker)
        finally:
            os.close(read_fd)
        if line is None:
            log.error("worker %d did not start (see its log above)", worker.index)
            return False
        _, coap, coaps, http = line.split()
        self.coap_port, self.coaps_port = int(coap), int(coaps)  # port 0: what worker 0 got
        if worker.index == 0:
            self.http_port = int(http)
        on = "" if self.cpus is None else f" on CPU {self.cpus[worker.index]}"
        log.info("worker %d (pid %d) ready%s", worker.index, worker.proc.pid, on)
        return True

    @staticmethod
    def _read_ready(fd: int, worker: Worker) -> str | None:
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], min(left, 1.0))
            if readable:
                chunk = os.read(fd, 100)
                if not chunk:  # the worker closed the pipe: it exited
                    return None
                data += chunk
            elif worker.proc is not None and worker.proc.poll() is not None:
                return None
        return data.split(b"\n", 1)[0].decode()

    def _watch(self) -> None:
        """Block until a worker exits, then restart it."""
        pid, status = os.wait()
        for worker in self.workers:
            if worker.proc is not None and worker.proc.pid == pid:
                worker.proc.returncode = os.waitstatus_to_exitcode(status)
                log.warning(
                    "worker %d (pid %d) exited with status %d: restarting it",
                    worker.index,
                    pid,
                    worker.proc.returncode,
                )
                if time.monotonic() - worker.started_at < QUICK_DEATH:
                    time.sleep(RESTART_DELAY)  # do not spin on a worker that cannot start
                if not self._start(worker):
                    log.error("worker %d could not be restarted; retrying", worker.index)
                    time.sleep(RESTART_DELAY)
                    self._retry(worker)
                return

    def _retry(self, worker: Worker) -> None:
        while not self._start(worker):
            time.sleep(RESTART_DELAY)

    def _stop_all(self) -> None:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker (pid %d) did not stop in %g s: killed", proc.pid, STOP_TIMEOUT)
                proc.kill()
                proc.wait()


def refuse_reason(workers: int, engine: str) -> str | None:
    """Why ``workers`` cannot run on ``engine``, or None."""
    if workers > 1 and engine != "redis":
        return (
            f"workers: {workers} needs store.engine: redis (the workers share registrations, "
            f"observations and DTLS sessions through it; the sqlite store belongs to one process)"
        )
    return None

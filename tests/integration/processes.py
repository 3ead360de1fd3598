"""The servers as real processes (``python -m lwm2m_server`` / ``python -m bootstrap_server``)
with their log in a file, for tests and benchmarks that need a process to kill, restart or flood
(``tests/integration``, ``bench/fault_injection.py``). Only the standard library: a benchmark
imports it without the test extras.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.auth import ADMIN_TOKEN

REPO = Path(__file__).resolve().parents[2]

PROGRAMS = {"lwm2m_server": "LWM2M_SERVER_", "bootstrap_server": "LWM2M_BOOTSTRAP_"}
"""Each server's module and the prefix of its environment settings (cleared for the child, so a
developer's shell settings do not leak into a test)."""


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the kernel had free a moment ago (for the bootstrap server's HTTP API, which logs
    the configured port, not the bound one, so ``0`` cannot be read back from its log)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server process; its ports are read from the log. ``start(coap_port, coaps_port)``
    with the previous ports restarts on the same ones.

    ``prefix`` runs the command under another (``ip netns exec NS``); ``host``/``http_host``
    are the listen addresses; ``extra_args`` are appended to the command line."""

    def __init__(
        self,
        data_dir: Path,
        log_file: Path,
        *,
        log_level: str = "INFO",
        program: str = "lwm2m_server",
        host: str = "127.0.0.1",
        http_host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        if program not in PROGRAMS:
            raise ValueError(f"unknown program {program!r}")
        # the tests' admin API token (tests/auth.py), so API calls can authenticate
        self.env: dict[str, str] = {PROGRAMS[program] + "API_AUTH_ADMIN_TOKEN": ADMIN_TOKEN}
        self.data_dir = data_dir
        self.log_file = log_file
        self.log_level = log_level
        self.program = program
        self.host = host
        self.http_host = http_host
        self.prefix = list(prefix)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.coap_port = 0
        self.coaps_port = 0
        self.http_port = 0

    @property
    def database(self) -> Path:
        """The server's own sqlite file (registrations / bootstrap sessions)."""
        name = "lwm2m-bootstrap.sqlite" if self.program == "bootstrap_server" else None
        if name is None:
            from keystore.store.database import DATABASE_FILE

            name = DATABASE_FILE
        return self.data_dir / name

    def command(self, coap_port: int, coaps_port: int, http_port: int) -> list[str]:
        return [
            *self.prefix,
            sys.executable,
            "-m",
            self.program,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
            "--coap-port",
            str(coap_port),
            "--coaps-port",  # 0: never collide on the default 5684 with other runs
            str(coaps_port),
            "--http-host",
            self.http_host,
            "--http-port",
            str(http_port),
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]

    def start(
        self, coap_port: int = 0, coaps_port: int = 0, http_port: int = 0, timeout: float = 30.0
    ) -> None:
        env_prefix = PROGRAMS[self.program]
        env = {k: v for k, v in os.environ.items() if not k.startswith(env_prefix)}
        env.update(PYTHONPATH=str(REPO), **self.env)
        if self.program == "bootstrap_server" and not http_port:
            http_port = free_port(host=self.http_host if self.http_host != "0.0.0.0" else "")
        self.log_file.write_text("")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(coap_port, coaps_port, http_port),
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + timeout  # a loaded CI box can take long to start Python
        while time.monotonic() < deadline:
            text = self.log_file.read_text(errors="replace")
            coap = re.search(r"CoAP listening on udp \S+:(\d+)", text)
            coaps = re.search(r"CoAPs listening on udp \S+:(\d+)", text)
            http = re.search(r"HTTP API on http://\S+:(\d+)", text)
            if coap and coaps and http:
                self.coap_port, self.http_port = int(coap.group(1)), int(http.group(1))
                self.coaps_port = int(coaps.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.program} did not start:\n{self.log_file.read_text()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            return self.proc.returncode if self.proc.returncode is not None else -9

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    @property
    def api(self) -> str:
        host = "127.0.0.1" if self.http_host == "0.0.0.0" else self.http_host
        return f"http://{host}:{self.http_port}/api"


REDIS_PREFIX = "nodes"
"""The key prefix the cluster tests' server processes share in Redis."""


def run_to_exit(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m lwm2m_server --data-dir data_dir *args`` run until it exits by itself (what a
    refusal at start looks like to the operator: its status and stderr), in an environment
    without the caller's ``LWM2M_SERVER_*`` settings, with the tests' API token and ``env`` on
    top; 60 s at most."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(PROGRAMS["lwm2m_server"])}
    child.update(PYTHONPATH=str(REPO), LWM2M_SERVER_API_AUTH_ADMIN_TOKEN=ADMIN_TOKEN)
    child.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lwm2m_server", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=child,
        cwd=data_dir,
        timeout=60,
    )


def redis_env(url: str, prefix: str = REDIS_PREFIX) -> dict[str, str]:
    """The settings that put a server process's store in Redis at ``url``."""
    return {
        "LWM2M_SERVER_STORE_ENGINE": "redis",
        "LWM2M_SERVER_STORE_URL": url,
        "LWM2M_SERVER_STORE_PREFIX": prefix,
    }


@contextlib.contextmanager
def redis_nodes(
    tmp_path: Path, redis_url: str, *, log_level: str = "INFO"
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two server processes ``a`` and ``b`` (not started yet) on one Redis store, each with its
    own folder under ``tmp_path``: a cluster of two nodes. Stopped on the way out."""
    pair = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        node = ServerProcess(folder, folder / "server.log", log_level=log_level)
        node.env.update(redis_env(redis_url))
        pair.append(node)
    try:
        yield pair[0], pair[1]
    finally:
        for node in pair:
            node.stop()

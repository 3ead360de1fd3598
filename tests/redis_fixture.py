"""A real ``redis-server`` for the tests (a pytest plugin, loaded by ``tests/conftest.py``).

Why a real server and not a fake: the Redis engines rely on what only the server does (Lua
scripts run atomically, MULTI/EXEC, hash-tag slots); a fake would test the fake. Debian's
``redis-server`` is installed by ``scripts/test.sh`` (what CI runs), so these tests run there;
on a machine without it they are skipped with the reason.

One server per pytest process (session scope: under xdist every worker starts its own, so
workers never share a database), on a free port, in a temporary folder, without persistence
(``--save '' --appendonly no``: nothing to wait for, nothing left behind). Every test that asks
for ``redis_url`` gets an empty database (FLUSHALL before it): tests are independent whatever
ran before them in the same worker.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or shutil.which(
    "redis-server", path="/usr/sbin:/usr/local/sbin:/usr/bin"
)
MISSING = "the redis-server binary is missing (Debian: apt-get install redis-server)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 and a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str) -> None:
        """Start and wait until it answers PING. The port is free when chosen but another
        process may take it before redis binds it: then try another one."""
        import redis

        assert REDIS_SERVER is not None
        for _attempt in range(5):
            self.port = _free_port()
            log = self.folder / f"redis-{self.port}.log"
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                 "--logfile", str(log), "--daemonize", "no", *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            client = redis.Redis(port=self.port, socket_timeout=1)
            deadline = time.monotonic() + 20  # a loaded CI box can take seconds to start one
            try:
                while time.monotonic() < deadline and self.proc.poll() is None:
                    try:
                        if client.ping():
                            return
                    except redis.ConnectionError:
                        time.sleep(0.02)
            finally:
                client.close()
            self.stop()
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Address already in use" not in text:
                raise AssertionError(f"redis-server did not start:\n{text[-2000:]}")
        raise AssertionError("redis-server found no free port in 5 attempts")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The worker's ``redis-server`` (skipped when the binary or redis-py is missing)."""
    if REDIS_SERVER is None:
        pytest.skip(MISSING)
    pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    with tempfile.TemporaryDirectory(prefix="pylwm2m-redis-") as folder:
        server = RedisServer(Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty Redis database (flushed before the test)."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url

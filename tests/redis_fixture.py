"""A real ``redis-server`` for the tests (a pytest plugin, loaded by ``tests/conftest.py``).

Why a real server and not a fake: the Redis engines rely on what only the server does (Lua
scripts run atomically, MULTI/EXEC, hash-tag slots); a fake would test the fake. Debian's
``redis-server`` is installed by ``scripts/test.sh`` (what CI runs), so these tests run there;
on a machine without it they are skipped with the reason.

One server per pytest process (session scope: under xdist every worker starts its own, so
workers never share a database), and for the cluster cases one three-node Redis Cluster
(``redis_cluster_url``, made with ``redis-cli --cluster create``); on free ports, in a temporary
folder, without persistence (``--save '' --appendonly no``: nothing to wait for, nothing left
behind). Every test that asks for ``redis_url`` or ``redis_cluster_url`` gets empty databases
(FLUSHALL before it): tests are independent whatever ran before them in the same worker.
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


REDIS_CLI = shutil.which("redis-cli")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, fixed by Redis) is free too."""
    for _ in range(100):
        port = _free_port()
        if port > 55535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a Redis Cluster node")


class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1 and a free port."""

    def __init__(self, folder: Path, *, cluster_node: bool = False) -> None:
        self.folder = folder
        self.cluster_node = cluster_node
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
            self.port = _free_cluster_port() if self.cluster_node else _free_port()
            if self.cluster_node:
                extra = ("--cluster-enabled", "yes",
                         "--cluster-config-file", f"nodes-{self.port}.conf", *extra)  # fmt: skip
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


class RedisClusterServers:
    """Three ``redis-server`` masters made into one Redis Cluster (no replicas): the smallest
    cluster, enough to prove that every atomic change stays in one slot."""

    def __init__(self, folder: Path) -> None:
        self.nodes = [RedisServer(folder, cluster_node=True) for _ in range(3)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        import redis

        assert REDIS_CLI is not None
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed:\n{created.stdout[-2000:]}")
        deadline = time.monotonic() + 30
        for node in self.nodes:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise AssertionError(f"cluster node {node.port} not ready")
                    time.sleep(0.05)

    def flush(self) -> None:
        import redis

        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """The worker's three-node Redis Cluster (skipped when redis-server/redis-cli is missing)."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip(MISSING)
    pytest.importorskip("redis", reason="redis-py is not installed (pip install redis)")
    with tempfile.TemporaryDirectory(prefix="pylwm2m-redis-cluster-") as folder:
        servers = RedisClusterServers(Path(folder))
        try:
            servers.start()
            yield servers
        finally:
            servers.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The URL of a node of an empty Redis Cluster (every node flushed before the test)."""
    redis_cluster.flush()
    return redis_cluster.url


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


class RestartableRedis(RedisServer):
    """The fixture's ``redis-server``, with an append-only file (so that what was
    acknowledged survives the restart, as in production) and a restart on the same port."""

    def start_again(self) -> None:
        """Start on the port of the first start (the server's URL names it)."""
        assert REDIS_SERVER is not None and self.proc is None
        log = self.folder / f"redis-{self.port}-again.log"
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--logfile", str(log), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 20
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:  # not listening yet, or loading the AOF
                    time.sleep(0.02)
        raise AssertionError(f"redis-server did not start again:\n{log.read_text()[-2000:]}")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A ``redis-server`` of the test's own, with an append-only file, that the test may stop
    and start again (``start_again``): for what the server does while Redis is down."""
    if REDIS_SERVER is None:
        pytest.skip(MISSING)
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RestartableRedis(folder)
    server.start("--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        server.stop()

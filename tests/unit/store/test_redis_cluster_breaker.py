"""The circuit breaker on a Redis Cluster (docs/cluster.md, "Redis down"): one node that hangs
(SIGSTOP: it accepts connections and answers nothing) costs one socket timeout, then every
command of the cluster client fails at once — the store calls through ``errors()`` and also the
commands sent outside it (a single command, a pipeline, as the group commit and the holder
records send them), to that node and to the others — until the breaker's PING (to every node)
answers again. On a test cluster of its own: a stopped node must not disturb other tests."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from keystore.coaps.persistence import StoredSession
from keystore.store.errors import StoreUnavailable
from keystore.store.redis_database import RedisDatabase
from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore
from tests.redis_fixture import REDIS_CLI, REDIS_SERVER, RedisClusterServers
from tests.unit.dtls.test_session_store import IDENTITIES, state


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are needed (Debian package redis-server)")
    folder = tmp_path / "cluster"
    folder.mkdir()
    servers = RedisClusterServers(folder)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


def test_a_cluster_node_that_hangs_opens_the_breaker_for_every_command(
    own_cluster: RedisClusterServers,
) -> None:
    db = RedisDatabase(own_cluster.url, prefix="hang", cluster=True, socket_timeout=0.5)
    store = RedisDtlsSessionStore(db)
    session = StoredSession("s1", "192.0.2.1", 1000, state(IDENTITIES[0]), time.time())
    store.save_dtls_sessions([session], [], [])
    client = db.client
    assert isinstance(client, redis.RedisCluster)
    # no retries inside a command: redis-py's default made the first command to a node that
    # hangs wait 20 socket timeouts (docs/cluster.md, "Redis down")
    assert client.retry.get_retries() == 0
    key = store.session_key("s1")
    hung = client.get_node_from_key(key)
    stopped = next(n for n in own_cluster.nodes if n.port == hung.port)
    others = [k for k in (f"k{i}" for i in range(100)) if client.keyslot(k) != client.keyslot(key)]
    other_key = next(k for k in others if client.get_node_from_key(k).port != hung.port)
    assert stopped.proc is not None
    stopped.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable):
            store.find_dtls_session(address=("192.0.2.1", 1000), cutoff=0)  # Redis is asked
        assert db.breaker.is_open and db.breaker.trips == 1
        refused = db.breaker.refused
        for _ in range(10):
            with pytest.raises(StoreUnavailable) as raised:
                store.find_dtls_session(address=("192.0.2.1", 1000), cutoff=0)
            assert "not asked again" in raised.value.message
            # outside errors(): to the node that hangs and to a node that answers
            for target in (key, other_key):
                with pytest.raises(redis.ConnectionError):
                    client.get(target)
                with pytest.raises(redis.ConnectionError):
                    client.pipeline(transaction=False).get(target).execute()
        assert db.breaker.refused >= refused + 50 and db.breaker.trips == 1
    finally:
        stopped.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 20
    while db.breaker.is_open:
        assert time.monotonic() < deadline, "the probe did not close the breaker"
        time.sleep(0.01)
    assert store.find_dtls_session(address=("192.0.2.1", 1000), cutoff=0) == session
    client.set(other_key, "1")
    assert client.pipeline(transaction=False).get(other_key).execute() == [b"1"]
    db.close()

"""DTLS session progress on Redis (docs/cluster.md, "DTLS sessions per session"): the time of
one ``save_owned_dtls_sessions`` with only progress (the write every event-loop iteration that
accepted records makes) for 1, 10 and 100 sessions, on one ``redis-server`` and on a
three-node Redis Cluster the script starts, and how many EVALSHA each cluster node received
for 100 commits of 100 sessions (where the progress writes land).

Usage: ``python bench/dtls_sessions_redis.py`` (needs ``redis-server``); one JSON object per
line (``"bench": "dtls_sessions_redis"``). To compare with another tree, run this file with
``PYTHONPATH=<that tree>`` (it imports the store from whatever ``keystore`` is first on the
path, and ``tests.redis_fixture`` to start Redis).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.append(str(Path(__file__).resolve().parent.parent))

import redis

from keystore.coaps.persistence import SessionProgress, StoredSession
from keystore.store.redis_database import RedisDatabase
from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore
from tests.redis_fixture import RedisClusterServers, RedisServer
from tests.unit.dtls.test_session_store import IDENTITIES, state

ROUNDS = 300


def median_save_us(db: RedisDatabase, sessions: int, rounds: int) -> float:
    store = RedisDtlsSessionStore(db)
    rows = [
        StoredSession(
            f"{i:024x}",
            "10.0.0.1",
            1000 + i,
            state(IDENTITIES[0], own_cid=i.to_bytes(6, "big")),
            time.time(),
        )
        for i in range(sessions)
    ]
    store.save_dtls_sessions(rows, [], [])
    times = []
    for r in range(rounds):
        progress = [
            SessionProgress(s.id, s.host, s.port, 2048 + r, r, 1, time.time()) for s in rows
        ]
        started = time.perf_counter()
        store.save_owned_dtls_sessions([], progress, [])
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def evalsha_calls(urls: list[str]) -> list[int]:
    calls = []
    for url in urls:
        with redis.Redis.from_url(url) as client:
            stats: Any = client.info("commandstats")
            calls.append(int(stats.get("cmdstat_evalsha", {}).get("calls", 0)))
    return calls


def emit(**fields: Any) -> None:
    print(json.dumps({"bench": "dtls_sessions_redis", **fields}), flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "one").mkdir()
        (Path(folder) / "cluster").mkdir()
        one = RedisServer(Path(folder) / "one")
        nodes = RedisClusterServers(Path(folder) / "cluster")
        one.start()
        nodes.start()
        try:
            for where, url, cluster in (("redis", one.url, False), ("cluster", nodes.url, True)):
                for n in (1, 10, 100):
                    db = RedisDatabase(url, prefix=f"bench{n}", cluster=cluster)
                    value = median_save_us(db, n, ROUNDS)
                    db.close()
                    emit(figure="progress_commit_us", engine=where, sessions=n, value=round(value))
            urls = [node.url for node in nodes.nodes]
            before = evalsha_calls(urls)
            db = RedisDatabase(nodes.url, prefix="spread", cluster=True)
            median_save_us(db, 100, 100)
            db.close()
            after = evalsha_calls(urls)
            emit(
                figure="cluster_evalsha_per_node",
                commits=100,
                sessions=100,
                value=[a - b for a, b in zip(after, before, strict=True)],
            )
        finally:
            one.stop()
            nodes.stop()


if __name__ == "__main__":
    main()

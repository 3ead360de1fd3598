"""The group commit sends its scripts by SHA (``EVALSHA``) once Redis has them: the ~2 KB bodies
of ``_TOUCH_MANY`` and ``_REGISTER_MANY`` travel (and are hashed by Redis) only with the first
commit after a failure. What a user must never see: a write acknowledged and not stored. A
Redis that forgot the scripts (``SCRIPT FLUSH``, a restart) answers ``NOSCRIPT``: that commit
fails as any commit whose script failed (nothing of it is stored, its replies are withheld),
and the device's retransmission is stored by the next commit, which sends the bodies again."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from keystore.store.redis_database import RedisDatabase
from lwm2m_server.store.redis import RedisStore
from tests.redis_fixture import REDIS_SERVER, RedisServer

from .engines import redis_node_pair, reg
from .test_redis_group_commit import Answers, _until


def _scripts_sent(client: Any) -> tuple[int, int]:
    """How many EVAL and EVALSHA this Redis ran (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return (
        int(stats.get("cmdstat_eval", {}).get("calls", 0)),
        int(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
    )


@pytest.fixture
def stores(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    with redis_node_pair(redis_url, "sha") as pair:
        yield pair


@pytest.fixture
def async_stores(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    with redis_node_pair(redis_url, "shaa", asynchronous=True) as pair:
        yield pair


def test_commits_after_the_first_send_the_scripts_by_sha(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    client = other.database.client
    node.touch_registration(attrs.evolve(r, last_update=1100.0))
    assert node.commit() is True
    before = _scripts_sent(client)
    for n in range(3):
        node.touch_registration(attrs.evolve(r, last_update=1200.0 + n))
        node.put_registration_later(reg(10 + n), lambda *_: None)
        assert node.commit() is True
    evals, shas = _scripts_sent(client)
    # the Updates' script by SHA from then on, the Registers' sent once (its first commit)
    assert (evals - before[0], shas - before[1]) == (1, 5)
    assert other.get_registration("id1").last_update == 1202.0  # type: ignore[union-attr]
    assert [other.get_registration(f"id{10 + n}") for n in range(3)] == [
        reg(10 + n) for n in range(3)
    ]


def test_a_script_flush_between_two_synchronous_commits_costs_no_reply(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """The synchronous commit (the server's default): a script answered ``NOSCRIPT`` did not
    run and is sent again with its body at once (nothing else is in flight), so the commit
    succeeds and stores everything; the next one goes by SHA again."""
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    answers = Answers()
    for n in range(2):  # the second by SHA, both scripts
        node.touch_registration(attrs.evolve(r, last_update=1300.0 + 10 * n))
        assert node.put_registration_later(reg(3 + n), answers.done(f"id{3 + n}"))
        assert node.commit() is True
    assert answers.seen == [("id3", True, None), ("id4", True, None)]
    answers.seen.clear()
    client = other.database.client
    client.script_flush()
    node.touch_registration(attrs.evolve(r, last_update=1400.0))
    assert node.put_registration_later(reg(2), answers.done("id2"))
    node.write_later(lambda pipe: pipe.set("sha:advisory", "x"), lambda _: None)
    assert node.commit() is True
    assert answers.seen == [("id2", True, None)]
    assert other.get_registration("id1").last_update == 1400.0  # type: ignore[union-attr]
    assert other.get_registration("id2") == reg(2)
    assert client.get("sha:advisory") == b"x"
    before = _scripts_sent(client)
    node.touch_registration(attrs.evolve(r, last_update=1500.0))
    assert node.commit() is True
    assert _scripts_sent(client)[0] == before[0]  # by SHA again
    assert other.get_registration("id1").last_update == 1500.0  # type: ignore[union-attr]


def test_a_script_error_other_than_noscript_still_fails_the_commit(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Only ``NOSCRIPT`` is answered by sending the script again: any other error of a
    commit by SHA fails it as before (its replies withheld)."""
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    for n in range(2):
        node.touch_registration(attrs.evolve(r, last_update=1600.0 + n))
        assert node.commit() is True
    client = other.database.client
    client.delete(other.database.group_key("reg", "expiry"))
    client.set(other.database.group_key("reg", "expiry"), "not a sorted set")
    node.touch_registration(attrs.evolve(r, last_update=1700.0, lifetime=600))
    assert node.commit() is False  # (what the script wrote before its error stays: Lua)


def test_a_script_flush_between_two_async_commits_loses_no_write(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """The asynchronous commits (the server's): a commit in flight when Redis forgot the
    scripts fails, and so do those sent before its answer came (they may rest on it); the
    retransmission's commit stores it."""
    node, other = async_stores
    r1, r2 = reg(1), reg(2)
    node.put_registration(r1)
    node.put_registration(r2)
    answers: list[tuple[str, bool]] = []

    async def main() -> None:
        for n in range(2):
            node.touch_registration(attrs.evolve(r1, last_update=2000.0 + n))
            node.commit_async(lambda ok: answers.append(("before", ok)))
        await _until(lambda: len(answers) == 2)
        other.database.client.script_flush()
        node.touch_registration(attrs.evolve(r1, last_update=2100.0))
        node.commit_async(lambda ok: answers.append(("flushed", ok)))
        node.touch_registration(attrs.evolve(r2, last_update=2100.0))
        node.commit_async(lambda ok: answers.append(("in flight", ok)))
        await _until(lambda: len(answers) == 4)
        assert other.get_registration("id1").last_update == 2001.0  # type: ignore[union-attr]
        for r in (r1, r2):  # the retransmissions
            node.touch_registration(attrs.evolve(r, last_update=2100.0))
        node.commit_async(lambda ok: answers.append(("again", ok)))
        await _until(lambda: len(answers) == 5)

    asyncio.run(main())
    assert answers == [
        ("before", True),
        ("before", True),
        ("flushed", False),
        ("in flight", False),
        ("again", True),
    ]
    assert other.get_registration("id1").last_update == 2100.0  # type: ignore[union-attr]
    assert other.get_registration("id2").last_update == 2100.0  # type: ignore[union-attr]


def _wait_until_up(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not come back")
    finally:
        client.close()


@pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server")
@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_redis_restart_between_two_commits_loses_no_write(
    tmp_path: Path, asynchronous: bool
) -> None:
    """Redis restarts (with its append-only file: the registration survives, its scripts do
    not) between two commits: every commit answered True is stored, and the retransmission
    of one that was not is stored by the next."""
    server = RedisServer(tmp_path)
    server.start("--appendonly", "yes", "--appendfsync", "always")
    node = RedisStore(RedisDatabase(server.url, prefix="restart"))
    node.enable_group_commit(asynchronous=asynchronous)
    answers: list[bool] = []
    r = reg(1)

    def restart() -> None:
        assert server.proc is not None and REDIS_SERVER is not None
        server.proc.terminate()  # SIGTERM: the append-only file is complete
        server.proc.wait(10)
        args = [REDIS_SERVER, "--port", str(server.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(tmp_path), "--save", "", "--appendonly", "yes"]
        server.proc = subprocess.Popen([*args, "--daemonize", "no"], stdout=subprocess.DEVNULL)

    async def commit(last_update: float) -> bool:
        node.touch_registration(attrs.evolve(r, last_update=last_update))
        node.commit_async(answers.append)
        await _until(lambda: len(answers) == count + 1, timeout=20)
        return answers[-1]

    count = 0

    async def main() -> None:
        nonlocal count
        node.put_registration(r)
        for n in range(2):
            assert await commit(3000.0 + n) is True
            count += 1
        restart()
        _wait_until_up(server.url)
        update = 3100.0
        for _ in range(3):  # the device retransmits until it is answered
            ok = await commit(update)
            count += 1
            if ok:
                break
        assert answers[-1] is True and answers[2:].count(False) <= 1

    try:
        asyncio.run(main())
        fresh = RedisStore(RedisDatabase(server.url, prefix="restart"))
        assert fresh.get_registration("id1").last_update == 3100.0  # type: ignore[union-attr]
        fresh.close()
    finally:
        node.close()
        server.stop()

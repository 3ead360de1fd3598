"""A Redis that cannot be reached is ``StoreUnavailable`` (5.03/503, "try again later"), a
command Redis refuses stays ``StoreError`` (5.00); an outage is logged once by the database
(WARNING at its first failure, INFO at the first success after), whichever path noticed it:
a synchronous command or the group commit, whose failed flush still withholds the replies."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator

import attrs
import pytest
import redis

from keystore.store.errors import StoreError, StoreUnavailable
from keystore.store.redis_database import RedisDatabase
from lwm2m_server.store.redis import RedisStore
from object_models.errors import ResponseCode
from tests.redis_fixture import RestartableRedis, _free_port

from .engines import reg

DB_LOG = "keystore.store.redis_database"


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    node = RedisStore(RedisDatabase(redis_url, prefix="outage"))
    node.enable_group_commit()
    yield node
    node.close()


class _Down:
    """Point the database at a port nothing listens on (Redis stopped), then back."""

    def __init__(self, db: RedisDatabase) -> None:
        self.db = db
        self.working = db.client

    def __enter__(self) -> None:
        # from_url, as RedisDatabase makes its client (no retries with back-off: fails fast)
        url = f"redis://127.0.0.1:{_free_port()}/0"
        self.db.client = redis.Redis.from_url(url, socket_connect_timeout=1)

    def __exit__(self, *exc: object) -> None:
        self.db.client.close()
        self.db.client = self.working


def _outage_log(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == DB_LOG]


def test_unreachable_is_unavailable_and_logged_once_until_a_command_succeeds(
    store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DB_LOG)
    with _Down(store.database):
        for _ in range(3):
            with pytest.raises(StoreUnavailable) as raised:
                store.get_registration("id1")
            assert raised.value.code == ResponseCode.SERVICE_UNAVAILABLE
            assert raised.value.retry_after > 0
    assert store.get_registration("id1") is None  # the same client works again
    assert store.get_registration("id1") is None
    logged = _outage_log(caplog)
    assert [level for level, _ in logged] == ["WARNING", "INFO"], logged
    assert "unreachable" in logged[0][1] and "reachable again after" in logged[1][1]


def test_a_command_redis_refuses_is_a_store_error_not_an_outage(
    store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    db = store.database
    with pytest.raises(StoreError) as raised, db.errors("a wrong command"):
        db.client.execute_command("NO-SUCH-COMMAND")  # type: ignore[no-untyped-call]
    assert not isinstance(raised.value, StoreUnavailable)
    assert raised.value.code == ResponseCode.INTERNAL_SERVER_ERROR
    assert not db.down and _outage_log(caplog) == []


def test_a_group_commit_without_redis_withholds_and_joins_the_outage_log(
    store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DB_LOG)
    r = reg(1)
    store.put_registration(r)
    with _Down(store.database):
        for n in range(3):
            assert store.touch_registration(attrs.evolve(r, last_update=2000.0 + n))  # held
            assert store.commit() is False  # the replies are withheld
    touched = attrs.evolve(r, last_update=3000.0)
    assert store.touch_registration(touched)
    assert store.commit() is True  # the flush alone ends the outage
    assert store.get_registration("id1") == touched
    logged = _outage_log(caplog)
    assert [level for level, _ in logged] == ["WARNING", "INFO"], logged


def test_a_redis_that_hangs_opens_the_breaker_until_a_probe_answers(
    own_redis: RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: Redis accepts connections and answers nothing. The first command waits for its
    socket timeout and opens the breaker; every later command fails at once (StoreUnavailable,
    also a pipeline sent outside ``errors()``, like the group commit's) without asking Redis;
    after SIGCONT the breaker's own PING closes it and commands succeed again."""
    assert own_redis.proc is not None
    caplog.set_level(logging.INFO, logger=DB_LOG)
    store = RedisStore(RedisDatabase(own_redis.url, prefix="hang", socket_timeout=0.5))
    store.enable_group_commit()
    db = store.database
    r = reg(1)
    store.put_registration(r)
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable):
            store.get_registration("id1")  # waits 0.5 s: Redis is asked
        assert db.breaker.is_open and db.breaker.trips == 1
        for _ in range(20):
            with pytest.raises(StoreUnavailable) as raised:
                store.get_registration("id1")
            assert "not asked again" in raised.value.message
            assert raised.value.retry_after > 0
            with pytest.raises(redis.ConnectionError):
                db.client.pipeline(transaction=False).get("k").execute()
            assert store.touch_registration(attrs.evolve(r, last_update=2000.0))
            assert store.commit() is False  # the held Update's replies are withheld
        assert db.breaker.refused >= 60 and db.breaker.trips == 1
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 20
    while db.breaker.is_open:
        assert time.monotonic() < deadline, "the probe did not close the breaker"
        time.sleep(0.01)
    assert store.get_registration("id1") == r  # what was stored before is there
    touched = attrs.evolve(r, last_update=3000.0)
    assert store.touch_registration(touched) and store.commit() is True
    assert store.get_registration("id1") == touched
    store.close()
    logged = _outage_log(caplog)
    assert [level for level, _ in logged] == ["WARNING", "INFO"], logged
    assert "not asked again" in logged[0][1] and "reachable again" in logged[1][1]

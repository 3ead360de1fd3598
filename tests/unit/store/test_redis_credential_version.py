"""The credential version read by the group commit (``keystore.credential_cache``, "Versions
read by the group commit"; docs/cluster.md, "Credential cache"): on one Redis a busy server
iteration waits for Redis once (its commit), not twice (a GET of the version at its first
lookup, then the commit), and a credential write another node commits still decides every
request read after this node's next commit; a version older than one loop turn or than
``FRESH_FOR``, or a commit that failed, is never trusted.

Each test plays a node's loop as the server runs it: a turn starts with the group commit of
what the previous turn's requests wrote (the store's own turn after a write, before the CoAP
driver's flush), then handles the turn's requests: a credential lookup, then a held Update.
``await asyncio.sleep(0)`` is the next turn; node B is another credential store on the same
Redis (another process, another host).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import redis

from keystore import credential_cache
from keystore.credential_cache import CachedCredentials
from keystore.credentials import DeviceCredentials
from keystore.resolver import IdentityRefused, PeerIdentity, Resolver
from keystore.store.errors import StoreUnavailable
from keystore.store.redis_credentials import RedisCredentialStore
from keystore.store.redis_database import RedisDatabase
from lwm2m_server.store.redis import RedisStore
from object_models.errors import ResponseCode
from tests.redis_fixture import _free_port

from .engines import reg

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
NOSEC = PeerIdentity.nosec(("192.0.2.1", 5683))


class Commands:
    """The commands node A's client sends, each round trip apart (a single command, or one
    pipeline's commands), by wrapping the client's two ways to talk to Redis."""

    def __init__(self, client: Any) -> None:
        self.trips: list[list[str]] = []
        single, pipeline = client.execute_command, client.pipeline

        def one(*args: Any, **options: Any) -> Any:
            self.trips.append([str(args[0]).upper()])
            return single(*args, **options)

        def many(*args: Any, **options: Any) -> Any:
            pipe = pipeline(*args, **options)
            execute = pipe.execute

            def counted(*a: Any, **k: Any) -> Any:
                self.trips.append([str(c[0][0]).upper() for c in pipe.command_stack])
                return execute(*a, **k)

            pipe.execute = counted
            return pipe

        client.execute_command = one
        client.pipeline = many

    def take(self) -> list[list[str]]:
        """The trips so far; a script is ``EVAL`` whether its body or its SHA was sent (the
        group commit sends the body once, then ``EVALSHA``: tests/unit/store/
        test_redis_evalsha.py)."""
        trips, self.trips = self.trips, []
        return [["EVAL" if name == "EVALSHA" else name for name in trip] for trip in trips]


class Node:
    """Node A: its credential store, core store (group commit on) and resolver on one
    connection, as ``Lwm2mServer._open_stores`` opens them on Redis; one registration whose
    Updates are the turns' writes."""

    def __init__(self, url: str, *, asynchronous: bool = False) -> None:
        self.db = RedisDatabase(url, prefix="cv")
        self.credentials = RedisCredentialStore(self.db)
        self.core = RedisStore(self.db)
        self.core.enable_group_commit(asynchronous=asynchronous)
        self.resolver = Resolver(self.credentials, open_registration=False)
        cache = self.resolver.store
        assert isinstance(cache, CachedCredentials)
        self.cache = cache
        self.registration = reg(1)
        self.core.put_registration(self.registration)
        self.commands = Commands(self.db.client)

    def outcome(self, peer: PeerIdentity = NOSEC, endpoint: str = "dev") -> ResponseCode | str:
        try:
            return self.resolver.resolve(peer, endpoint).endpoint
        except IdentityRefused as exc:
            return exc.code

    def update(self) -> None:
        """A request's write: an Update, held for the commit at the start of the next turn."""
        self.registration = attrs.evolve(
            self.registration, last_update=self.registration.last_update + 1
        )
        assert self.core.touch_registration(self.registration)

    async def busy_turn(self) -> None:
        """A turn that looks ``dev`` up and writes; then the next turn, whose commit is made."""
        assert self.outcome() == "dev"
        self.update()
        await asyncio.sleep(0)

    def close(self) -> None:
        self.core.close()


@pytest.fixture(autouse=True)
def slow_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a fresh version does must not depend on how fast a loaded CI machine gets from a
    commit to the next lookup: the bound is an hour here, except where a test sets it."""
    monkeypatch.setattr(credential_cache, "FRESH_FOR", 3600.0)


@pytest.fixture
def nodes(redis_url: str) -> Iterator[tuple[Node, RedisCredentialStore]]:
    """Node A, and node B's credential store; ``dev`` is a NoSec device."""
    node = Node(redis_url)
    other = RedisCredentialStore.open(redis_url, prefix="cv")
    other.put_device(DeviceCredentials.for_nosec("dev"))
    yield node, other
    other.close()
    node.close()


COMMIT = ["EVAL", "GET"]
"""A commit's round trip: the Updates' script, then the version."""


def gets(trips: list[list[str]]) -> int:
    """Round trips that were a GET of their own (the version read outside a commit)."""
    return sum(1 for trip in trips if trip == ["GET"])


async def test_a_busy_iteration_waits_for_redis_once(
    nodes: tuple[Node, RedisCredentialStore],
) -> None:
    """The commit carries the version (last in its pipeline); the lookups of the turn it
    starts are answered from the cache with no round trip of their own."""
    node, _ = nodes
    assert node.outcome() == "dev"  # the first lookup after a pause reads the version: a GET
    node.update()
    assert gets(node.commands.take()) == 1
    for _ in range(3):
        await asyncio.sleep(0)  # the commit
        assert node.outcome() == "dev"
        node.update()
        assert node.commands.take() == [COMMIT]
    assert node.cache.versions_from_commits == 3


async def test_a_commit_after_no_lookup_reads_no_version(
    nodes: tuple[Node, RedisCredentialStore],
) -> None:
    """A turn that looked nothing up (notifications alone) adds no GET to the next commit."""
    node, _ = nodes
    await node.busy_turn()
    node.update()  # no lookup in this turn
    assert node.commands.take()[-1] == COMMIT
    await asyncio.sleep(0)
    assert node.commands.take() == [["EVAL"]]


async def test_another_nodes_revocation_decides_the_lookup_after_the_next_commit(
    nodes: tuple[Node, RedisCredentialStore],
) -> None:
    """Node B gives the NoSec device PSK credentials, then deactivates it: node A's lookups
    after its next commit refuse it (4.03, then 4.01 as a PSK peer), with the version that
    commit read: no GET of their own."""
    node, other = nodes
    await node.busy_turn()
    assert node.outcome() == "dev"  # cached, trusted against the commit's version
    node.update()
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    node.commands.take()
    await asyncio.sleep(0)
    assert node.outcome() == ResponseCode.FORBIDDEN
    assert node.resolver.psk_lookup(b"dev-id") == KEY
    node.update()
    assert gets(node.commands.take()) == 0
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY, active=False))
    await asyncio.sleep(0)
    assert node.outcome(PeerIdentity.psk(b"dev-id")) == ResponseCode.UNAUTHORIZED
    assert gets(node.commands.take()) == 0


async def test_a_version_older_than_one_turn_is_not_trusted(
    nodes: tuple[Node, RedisCredentialStore],
) -> None:
    """A commit read the version; node B revoked the device after that read; a turn passed
    with no request (the node going idle). The next lookup must not trust the commit's
    version: it reads the version itself, sees the revocation and refuses."""
    node, other = nodes
    await node.busy_turn()  # the commit read the version; nothing looked up in this turn
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    await asyncio.sleep(0)
    node.commands.take()
    assert node.outcome() == ResponseCode.FORBIDDEN
    assert gets(node.commands.take()) == 1


async def test_a_version_older_than_the_bound_is_not_trusted(
    nodes: tuple[Node, RedisCredentialStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit's own turn, but more than ``FRESH_FOR`` after it was sent (a long callback
    between the commit and the lookups): the lookup reads the version itself."""
    node, other = nodes
    monkeypatch.setattr(credential_cache, "FRESH_FOR", 0.05)
    await node.busy_turn()
    other.put_device(DeviceCredentials.for_psk("dev", "dev-id", KEY))
    time.sleep(0.1)  # the loop stalls: the commit's version is no longer fresh
    node.commands.take()
    assert node.outcome() == ResponseCode.FORBIDDEN
    assert gets(node.commands.take()) == 1


async def test_a_failed_commit_leaves_nothing_trusted(
    nodes: tuple[Node, RedisCredentialStore],
) -> None:
    """Redis goes away: a commit fails (its Update's reply is withheld), and the lookups
    after it trust neither the cache nor the version an earlier commit of the same turn read:
    they read through and fail, which the server answers 5.03; so do the next turn's, whose
    own commit fails. Redis back, the lookups answer from Redis again."""
    node, _ = nodes
    await node.busy_turn()
    assert node.outcome() == "dev"  # trusted against this turn's commit
    node.update()
    working = node.db.client
    node.db.client = redis.Redis(port=_free_port(), socket_connect_timeout=1, retry=None)
    try:
        assert node.core.commit() is False  # the driver's flush, in the same turn
        with pytest.raises(StoreUnavailable):
            node.resolver.resolve(NOSEC, "dev")
        node.update()
        await asyncio.sleep(0)  # the loop's own commit fails at the start of the turn
        assert node.core.commit() is False  # what the driver's flush is told
        with pytest.raises(StoreUnavailable):
            node.resolver.resolve(NOSEC, "dev")
    finally:
        node.db.client.close()
        node.db.client = working
    assert node.outcome() == "dev"


async def test_a_version_that_cannot_be_read_in_the_commit_is_not_trusted(
    nodes: tuple[Node, RedisCredentialStore],
) -> None:
    """The version key holds something that is not a number (a hand edit): the commit
    stores its Updates but hands over no version, and the next lookup reads it itself."""
    node, _ = nodes
    assert node.outcome() == "dev"
    node.update()
    node.db.client.set(node.db.group_key("cred", "version"), "not a number")
    node.commands.take()
    await asyncio.sleep(0)
    node.outcome()
    assert node.commands.take()[:2] == [COMMIT, ["GET"]]
    assert node.cache.versions_from_commits == 0


async def test_the_asynchronous_commit_hands_the_version_over_too(redis_url: str) -> None:
    """With ``PYLWM2M_REDIS_ASYNC_COMMIT=1`` the commit is answered by the loop's reader of
    its connection; the lookups after the answer, in that turn, trust the version it read
    (here one made when the driver releases the replies the commit held)."""
    node = Node(redis_url, asynchronous=True)
    other = RedisCredentialStore.open(redis_url, prefix="cv")
    try:
        other.put_device(DeviceCredentials.for_nosec("dev"))
        assert node.outcome() == "dev"
        node.update()
        answered: list[tuple[bool, ResponseCode | str, list[list[str]]]] = []

        def released(ok: bool) -> None:
            node.commands.take()
            answered.append((ok, node.outcome(), node.commands.take()))

        node.core.commit_async(released)
        await until(lambda: bool(answered))
        assert answered == [(True, "dev", [])]
        assert node.cache.versions_from_commits == 1
    finally:
        other.close()
        node.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not answered"
        await asyncio.sleep(0.001)

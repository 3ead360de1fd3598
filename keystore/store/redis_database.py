"""``RedisDatabase``: the one Redis connection every Redis store engine of a process shares.

The Redis counterpart of ``SqliteDatabase`` (see docs/cluster.md, "Redis store", for the key
layout). It owns what all the Redis engines have in common:

* the client (redis-py's synchronous ``Redis``: the store Protocols are synchronous, like the
  sqlite engines, and a small command on a local Redis costs about what a small sqlite
  transaction does; the asyncio client and pipelining per loop iteration come with the
  registration store, docs/cluster.md "Not yet");
* key names: every key starts with the configurable ``prefix`` (several deployments, or the
  tests, share one Redis), and carries a hash tag (``{...}``) so that the keys one atomic
  change touches are in one Redis Cluster slot;
* errors: any redis-py failure becomes ``StoreError`` naming the Redis URL (never its password)
  and what failed, the same contract as the sqlite engines' file name and reason; a Redis that
  cannot be reached (connection refused or lost, timeout, loading its data after a restart)
  becomes ``StoreUnavailable`` (5.03 to a device, 503 on the API), and the outage is logged
  here once (WARNING at its first failure, INFO at the first success after), not per request.
  Nothing reconnects explicitly: redis-py drops a broken connection and opens a new one on
  the next command, so the first request after Redis is back succeeds;
* the circuit breaker (``redis_breaker.Breaker``): after a command timed out, every command
  fails at once, without asking Redis, until a PING from the breaker's own thread answers, so
  a Redis that silently drops packets costs the event loop one socket timeout per outage, not
  one per command. It guards ``errors()`` and the client's connection pool (the writes that
  use redis-py outside ``errors()``: the group commit, the cluster's holder records); on a
  Redis Cluster, where there is a pool per node, the client's commands and pipelines
  (``_guarded_cluster``).

Durability is the Redis server's configuration (``appendonly yes`` with ``appendfsync
everysec`` or ``always``): a write is acknowledged by Redis when it is in its memory and
(with AOF) in its log, which is what the sqlite engine's WAL gives (docs/cluster.md).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Self, cast
from urllib.parse import urlsplit

from .errors import StoreError, StoreUnavailable
from .redis_breaker import Breaker

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster

# redis-py is imported when a Redis store is opened or a URL checked, not with this module:
# the settings loader imports it, and sqlite deployments need not pay for redis-py's import.

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "lwm2m"

CommitRead = tuple[Callable[[Any], object], Callable[[Any], None]]
"""A read for a group commit's pipeline: what queues it (redis-py's method, which parses the
answer), what gets the answer (or the exception when the commit failed)."""
URL_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` without its password (user names stay: they help, and are not secret). Works on
    text only, so that even a URL that does not parse (a bad port) loses its password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    shown = url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        shown = shown.replace(parts.netloc, f"{userinfo.partition(':')[0]}:***@{hostport}", 1)
    # redis-py also takes ?password=...
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", shown)


def check_url(url: str) -> str | None:
    """``None`` if ``url`` is a Redis URL redis-py accepts, else why not (without secrets)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in URL_SCHEMES:
            return f"{redact_url(url)!r}: the scheme must be one of {', '.join(URL_SCHEMES)}"
        if parts.scheme != "unix" and not parts.hostname:
            return f"{redact_url(url)!r}: no host"
        if parts.scheme == "unix" and not parts.path:
            return f"{redact_url(url)!r}: no socket path"
        _ = parts.port  # raises on a port that is not a number or out of range
        from redis.connection import parse_url

        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        text = str(exc).replace(url, redact_url(url))
        return f"{redact_url(url)!r}: {text}"
    return None


def text(value: bytes | str) -> str:
    """A key, field or value redis-py returned, as text (it returns bytes unless asked not to)."""
    return value.decode() if isinstance(value, bytes) else value


def check_prefix(prefix: str) -> str | None:
    """A prefix may not contain braces (they would change the keys' hash tags) nor be empty."""
    if not prefix:
        return "must not be empty"
    if any(c in prefix for c in "{} \t\r\n"):
        return f"{prefix!r}: no braces or white space"
    return None


class RedisDatabase:
    """The connection, the key prefix and the error mapping."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        cluster: bool = False,
        socket_timeout: float = 5.0,
        client: redis.Redis | RedisCluster | None = None,
    ) -> None:
        self.url = redact_url(url)
        problem = check_url(url) or check_prefix(prefix)
        if problem is not None:
            raise StoreError(f"Redis store {self.url}: {problem}")
        self.prefix = prefix
        self.cluster = cluster
        self._closed = False
        self._down_since: float | None = None
        """``time.monotonic()`` of the first failure of the current outage; None when up."""
        self._outage_lock = threading.Lock()  # the API's executor threads use the store too
        self.socket_timeout = socket_timeout
        self.commit_readers: list[Callable[[], CommitRead | None]] = []
        """Reads every group commit on this connection carries (``read_with_commits``)."""
        self._probe_client: Any = None
        self.breaker = Breaker(self._prober(url, cluster, socket_timeout), self.reachable)
        self.client: redis.Redis | RedisCluster
        if client is not None:
            self.client = client
        elif cluster:
            self.client = self._connect_cluster(url, socket_timeout)
        else:
            import redis

            pool = _guarded_pool(self.breaker).from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
            self.client = redis.Redis(connection_pool=pool)
            self.client.auto_close_connection_pool = True  # as from_url makes it

    def _connect_cluster(self, url: str, socket_timeout: float) -> RedisCluster:
        """A Redis Cluster client: ``url`` is any node (it asks that node for the others; the
        connection is made here, so an unreachable node is reported at open)."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        with self.errors("cannot connect to the cluster"):
            # no retries inside a command, as for one Redis: redis-py's default (10 retries,
            # exponential back-off, a topology refresh each) made the first command to a node
            # that hangs cost 20 socket timeouts on the event loop instead of one
            return _guarded_cluster(self.breaker).from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        raise AssertionError("unreachable")  # errors() raises

    def _prober(self, url: str, cluster: bool, socket_timeout: float) -> Callable[[], object]:
        """The breaker's probe: a PING on a client of its own (the store's pool refuses
        every command while the breaker is open), made at the first probe."""
        options = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}

        def probe() -> object:
            if self._probe_client is None:
                if cluster:
                    from redis.cluster import RedisCluster

                    self._probe_client = RedisCluster.from_url(url, **options)
                else:
                    import redis

                    self._probe_client = redis.Redis.from_url(url, **options)
            if cluster:  # every node answers: the one that hung may be any of them
                return self._probe_client.ping(target_nodes="all")
            return self._probe_client.ping()

        return probe

    def __str__(self) -> str:
        return self.url

    # -- lifecycle ---------------------------------------------------------------------------
    def ping(self) -> None:
        """Fail early (``StoreError``) when Redis cannot be reached: called at open, so a wrong
        URL is reported at start and not on the first device."""
        with self.errors("cannot connect"):
            self.client.ping()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.breaker.stop()
            self.client.close()
            if self._probe_client is not None:
                self._probe_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys --------------------------------------------------------------------------------
    def group_key(self, group: str, name: str) -> str:
        """A key of a group whose keys change together: ``{prefix:group}:name``, one slot."""
        return f"{{{self.prefix}:{group}}}:{name}"

    def endpoint_key(self, kind: str, endpoint: str) -> str:
        """A per-device key: ``prefix:kind:{endpoint}``, in the endpoint's slot (every key of
        one endpoint is in the same slot, so a change to several of them can be atomic)."""
        return f"{self.prefix}:{kind}:{{{_tag(endpoint)}}}"

    # -- errors ------------------------------------------------------------------------------
    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn a redis-py failure into ``StoreError("<url>: <what>: <reason>")``."""
        if self._closed:
            raise StoreError(f"Redis store {self.url}: {what}: the store is closed")
        if self.breaker.refuse():  # Redis hangs: not asked until the probe answers
            raise StoreUnavailable(f"Redis store {self.url}: {what}: {self._refusal()}")
        from redis.exceptions import RedisClusterException, RedisError

        try:
            yield
        except (RedisError, RedisClusterException) as exc:
            message = f"Redis store {self.url}: {what}: {_explain(exc)}"
            if unreachable(exc):
                self.unavailable(exc)
                raise StoreUnavailable(message) from exc
            raise StoreError(message) from exc
        if self._down_since is not None:
            self.reachable()

    @property
    def down(self) -> bool:
        """An outage is under way (a command failed for want of Redis, none succeeded since)."""
        return self._down_since is not None

    def unavailable(self, exc: BaseException) -> None:
        """Redis could not be reached: WARNING if this starts an outage, DEBUG during one
        (every request fails while Redis is down: a line each would bury the log). Public for
        the writes that talk to redis-py outside ``errors()`` (the group commit's pipeline).
        A timeout opens the breaker (said in the same line when it starts the outage)."""
        if getattr(exc, "from_breaker", False) and not self.breaker.is_open:
            return  # refused just before the probe closed the breaker: not a new outage
        with self._outage_lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        tripped = timed_out(exc) and self.breaker.trip()
        log.log(
            logging.WARNING if first else logging.INFO if tripped else logging.DEBUG,
            "Redis store %s unreachable: %s; requests that need it are answered 5.03 "
            "(Max-Age %d s) until it is back%s",
            self.url,
            str(exc) or type(exc).__name__,
            StoreUnavailable.retry_after,
            "; it did not answer in time: Redis is not asked again (requests fail at once) "
            "until a PING answers"
            if tripped
            else "",
        )

    def _refusal(self) -> str:
        return (
            f"Redis did not answer within {self.socket_timeout:g} s; not asked again until a "
            "PING answers (is Redis running and reachable?)"
        )

    def reachable(self) -> None:
        """A command succeeded: if Redis was unreachable, the outage is over (logged once)."""
        with self._outage_lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.info(
                "Redis store %s reachable again after %.1f s", self.url, time.monotonic() - since
            )

    def read_with_commits(self, reader: Callable[[], CommitRead | None]) -> None:
        """Have every group commit sent on this connection (the server's ``RedisStore``, on one
        Redis) also carry the read ``reader()`` gives (none when it gives None), queued after
        the commit's writes; its answer, or the exception when the commit failed, goes to the
        read's ``done``. The stores of a process share the database, so a store that does not
        know the server's ``RedisStore`` can still have a read ride its commit: the credential
        store's version (docs/cluster.md, "Credential cache"). Never called on a cluster,
        which has no group commit."""
        self.commit_readers.append(reader)

    def script(self, source: str) -> Any:
        """A Lua script (run atomically by Redis; loaded by its SHA, re-sent if Redis
        restarted and forgot it)."""
        return self.client.register_script(source)


def _tag(endpoint: str) -> str:
    """The endpoint as a hash tag: braces would end the tag early (Redis hashes only up to the
    first ``}``), so they and ``%`` are percent-escaped; an empty name would be an empty tag,
    which Redis ignores (the whole key is hashed), so it becomes ``%``."""
    if not endpoint:
        return "%"
    return endpoint.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _guarded_pool(breaker: Breaker) -> type[redis.ConnectionPool]:
    """redis-py's ``ConnectionPool`` refusing connections while ``breaker`` is open: every
    command of the client (single commands, pipelines, scripts) takes its connection there,
    so also those sent outside ``errors()`` fail at once instead of waiting for the socket
    timeout. The error is redis-py's ``ConnectionError``, which every caller already treats
    as "Redis unreachable"."""
    import redis

    class GuardedPool(redis.ConnectionPool):
        def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            if breaker.refuse():
                refusal = redis.ConnectionError(
                    "Redis did not answer in time; not asked again until a PING answers"
                )
                refusal.from_breaker = True  # type: ignore[attr-defined]
                raise refusal
            return super().get_connection(*args, **kwargs)

    return GuardedPool


def _guarded_cluster(breaker: Breaker) -> type[RedisCluster]:
    """redis-py's ``RedisCluster`` refusing every command while ``breaker`` is open, as
    ``_guarded_pool`` does for one Redis: a single command (scripts too) and a pipeline's
    ``execute`` fail at once with redis-py's ``ConnectionError``, whichever node they are
    for, without asking Redis. Why here and not in the nodes' pools (a cluster has one per
    node): a refused connection makes the cluster client refresh its topology, which it
    would try (and log as an ERROR) at every command of the outage."""
    import redis
    from redis.cluster import ClusterPipeline, RedisCluster

    def check() -> None:
        if breaker.refuse():
            refusal = redis.ConnectionError(
                "Redis did not answer in time; not asked again until a PING answers"
            )
            refusal.from_breaker = True  # type: ignore[attr-defined]
            raise refusal

    class GuardedCluster(RedisCluster):
        def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            check()
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

        def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
            pipe: Any = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]
            execute = pipe.execute

            def guarded(raise_on_error: bool = True) -> Any:
                check()
                return execute(raise_on_error)

            pipe.execute = guarded
            return cast("ClusterPipeline", pipe)

    return GuardedCluster


def timed_out(exc: BaseException) -> bool:
    """A command waited for its socket timeout (connecting or reading): Redis hangs or the
    network drops packets, the case the breaker is for."""
    import redis

    return isinstance(exc, redis.TimeoutError | TimeoutError)


def unreachable(exc: BaseException) -> bool:
    """Redis is not there (refused, reset, timed out, still loading its data after a restart)
    rather than refusing the command: retrying later may succeed. Nothing is acknowledged
    (a timed-out write may still have reached Redis: the device's retry repeats it). A wrong
    password (redis-py's ``AuthenticationError`` is a ``ConnectionError``) is a configuration
    error, not an outage: plain ``StoreError``."""
    import redis
    from redis.exceptions import (
        AuthenticationError,
        AuthorizationError,
        BusyLoadingError,
        ClusterDownError,
        TryAgainError,
    )

    if isinstance(exc, AuthenticationError | AuthorizationError):
        return False
    return isinstance(
        exc,
        redis.ConnectionError
        | redis.TimeoutError
        | BusyLoadingError
        | ClusterDownError
        | TryAgainError,
    )


def _explain(exc: BaseException) -> str:
    import redis

    text = str(exc) or type(exc).__name__
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"{text} (is Redis running and reachable?)"
    if isinstance(exc, redis.ResponseError) and "CROSSSLOT" in text:
        return f"{text} (a change spans Redis Cluster slots)"
    return text


MISSING: Any = object()
"""``ReadAhead.take``: nothing read ahead for that key (None is a value: read, and absent)."""


class ReadAhead:
    """Values read with a group commit for the reads of the next loop iteration (the server's
    ``RedisStore.read_with_registers``: the profile engine runs the iteration after the
    Registers' commit answered and asks the store about those devices). Kept for two commits
    and at most ``ttl`` seconds, each value taken once: a value read ahead is as fresh as a read
    made a moment later, never a cache that outlives the moment it was read for. A store that
    writes a key itself ``forget``s it (its own write is newer)."""

    def __init__(self, ttl: float = 1.0) -> None:
        self._ttl = ttl
        self._new: dict[str, Any] = {}
        self._old: dict[str, Any] = {}
        self._at = float("-inf")

    def fill(self, values: dict[str, Any]) -> None:
        now = time.monotonic()
        self._old = self._new if now - self._at < self._ttl else {}
        self._new, self._at = values, now

    def take(self, key: str) -> Any:
        """The value read ahead for ``key`` (once), or ``MISSING``."""
        if not self._new and not self._old:
            return MISSING
        if time.monotonic() - self._at >= self._ttl:
            self._new, self._old = {}, {}
            return MISSING
        newer, older = self._new.pop(key, MISSING), self._old.pop(key, MISSING)
        return older if newer is MISSING else newer

    def forget(self, key: str) -> None:
        self._new.pop(key, None)
        self._old.pop(key, None)

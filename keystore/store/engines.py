"""Which engine holds the stores (``store:`` in the servers' settings) and ``open_stores``, the
one place that opens the keystore's stores for it.

``sqlite`` (the default) is the embedded file of one process; ``redis`` is for several server
processes and hosts sharing one store (docs/cluster.md). The settings are checked when the
configuration is loaded (``lwm2m_runtime.settings.store_checks``/``check_store``), so a wrong
engine or URL stops the start with the key and the reason; ``open_stores`` checks again (it may
be called with settings built in code) and raises ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from ..api_tokens import ApiTokenStore, SqliteApiTokenStore
from ..coaps.persistence import DtlsSessionStore
from .credentials import CredentialStore, SqliteCredentialStore
from .dtls_sessions import SqliteDtlsSessionStore
from .errors import StoreError
from .profiles import ProfileStore, SqliteProfileStore
from .redis_database import DEFAULT_PREFIX, RedisDatabase, check_prefix, check_url, redact_url

ENGINES = ("sqlite", "redis")


@attrs.frozen
class StoreSettings:
    """The ``store:`` section."""

    engine: str = "sqlite"
    """``sqlite`` (one process, the file in the data folder) or ``redis``."""
    url: str = ""
    """The Redis URL (``redis://[user:password@]host:6379/0``, ``rediss://`` for TLS,
    ``unix:///path/redis.sock``); only with ``engine: redis``, where it is required."""
    prefix: str = DEFAULT_PREFIX
    """Every Redis key starts with it: several deployments (or tests) can share one Redis."""
    cluster: bool = False
    """``url`` is a node of a Redis Cluster (the keys are hash-tagged for it, docs/cluster.md)."""

    def __repr__(self) -> str:  # the URL may hold a password
        url = redact_url(self.url)
        return (
            f"StoreSettings(engine={self.engine!r}, url={url!r}, prefix={self.prefix!r}, "
            f"cluster={self.cluster!r})"
        )

    @property
    def where(self) -> str:
        """The store for messages: the engine and, for Redis, the URL without its password."""
        return f"redis {redact_url(self.url)}" if self.engine == "redis" else "sqlite"


def check_engine(engine: str) -> str | None:
    return None if engine in ENGINES else f"{engine!r} is not one of {', '.join(ENGINES)}"


def check_store_url(url: str) -> str | None:
    """An empty URL passes here (``store_problems`` says when one is required)."""
    return None if not url else check_url(url)


def store_problems(settings: StoreSettings) -> list[tuple[str, str]]:
    """``(field, reason)`` for each thing wrong with ``settings`` (empty when usable): the
    checks of each field and those across fields."""
    problems: list[tuple[str, str]] = []
    for field, check, value in (
        ("engine", check_engine, settings.engine),
        ("url", check_store_url, settings.url),
        ("prefix", check_prefix, settings.prefix),
    ):
        reason = check(value)
        if reason is not None:
            problems.append((field, reason))
    if settings.engine == "redis" and not settings.url:
        problems.append(("url", "required with engine redis (e.g. redis://localhost:6379/0)"))
    if settings.engine == "sqlite" and settings.url:
        problems.append(("url", "only used with engine redis (the sqlite store is a file)"))
    if settings.engine == "sqlite" and settings.cluster:
        problems.append(("cluster", "only used with engine redis"))
    return problems


@attrs.define
class KeystoreStores:
    """The keystore's stores on one engine, and how to close them."""

    settings: StoreSettings
    credentials: CredentialStore
    profiles: ProfileStore
    dtls_sessions: DtlsSessionStore
    _close: Callable[[], None]

    def close(self) -> None:
        self._close()

    def __enter__(self) -> KeystoreStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_redis(settings: StoreSettings) -> RedisDatabase:
    """The Redis connection of ``settings`` (checked, and Redis answered a PING)."""
    problems = store_problems(settings)
    if settings.engine != "redis":
        problems.append(("engine", "not redis"))
    if problems:
        field, reason = problems[0]
        raise StoreError(f"store.{field}: {reason}")
    db = RedisDatabase(settings.url, prefix=settings.prefix, cluster=settings.cluster)
    try:
        db.ping()
    except StoreError:
        db.close()
        raise
    return db


def open_stores(settings: StoreSettings, *, sqlite_path: str | Path) -> KeystoreStores:
    """Open the credential, profile and DTLS session stores of ``settings``' engine: with
    sqlite all three on one connection to ``sqlite_path`` (the server's file), with Redis on one
    connection. ``StoreError`` (naming the file or the URL) if that fails."""
    problems = store_problems(settings)
    if problems:
        field, reason = problems[0]
        raise StoreError(f"store.{field}: {reason}")
    if settings.engine == "redis":
        from .redis_credentials import RedisCredentialStore
        from .redis_dtls_sessions import RedisDtlsSessionStore
        from .redis_profiles import RedisProfileStore

        db = open_redis(settings)
        return KeystoreStores(
            settings,
            RedisCredentialStore(db),
            RedisProfileStore(db),
            RedisDtlsSessionStore(db),
            db.close,
        )
    credentials = SqliteCredentialStore.open(sqlite_path)
    try:
        database = credentials.store
        return KeystoreStores(
            settings,
            credentials,
            SqliteProfileStore(database),
            SqliteDtlsSessionStore(database),
            database.close,
        )
    except StoreError:
        credentials.close()
        raise


def api_token_store(credentials: CredentialStore) -> ApiTokenStore:
    """The API tokens kept beside ``credentials`` (the same sqlite file or Redis database):
    both servers find the same tokens wherever their keystore is."""
    if isinstance(credentials, SqliteCredentialStore):
        return SqliteApiTokenStore(credentials.store)
    from .redis_api_tokens import RedisApiTokenStore
    from .redis_credentials import RedisCredentialStore

    if isinstance(credentials, RedisCredentialStore):
        return RedisApiTokenStore(credentials.database)
    raise TypeError(f"no API token store for {type(credentials).__name__}")

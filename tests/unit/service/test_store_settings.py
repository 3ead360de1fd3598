"""The ``store:`` section (``keystore.store.engines.StoreSettings``) in the shared settings
loader, as the bootstrap server reads it: a wrong engine, URL or prefix stops the start with the
source, the key and the reason (never the URL's password); ``open_stores`` opens the keystore's
stores on either engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap_server import config as bootstrap_config
from keystore.config_error import ConfigError
from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from keystore.store.engines import StoreSettings, open_stores
from keystore.store.errors import StoreError
from keystore.store.redis_credentials import RedisCredentialStore


def test_default_is_sqlite_and_redis_is_read_from_file_and_env(tmp_path: Path) -> None:
    assert bootstrap_config.load_config(env={}).store == StoreSettings()
    path = tmp_path / "bs.yaml"
    path.write_text("store:\n  engine: redis\n  url: ${REDIS_URL:redis://localhost:6379/0}\n")
    loaded = bootstrap_config.load_config(path, env={"LWM2M_BOOTSTRAP_STORE_PREFIX": "site-a"})
    assert loaded.store == StoreSettings("redis", "redis://localhost:6379/0", "site-a")
    with_env = bootstrap_config.load_config(path, env={"REDIS_URL": "rediss://:pw@r:6380/2"})
    assert with_env.store.url == "rediss://:pw@r:6380/2"
    assert "pw" not in repr(with_env.store) and "***" in repr(with_env.store)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("store: {engine: mongo}\n", "store.engine", "'mongo' is not one of sqlite, redis"),
        ("store: {engine: redis}\n", "store.url", "required with engine redis"),
        ("store: {url: 'redis://h:6379/0'}\n", "store.url", "only used with engine redis"),
        ("store: {engine: redis, url: 'http://h'}\n", "store.url", "scheme must be one of"),
        ("store: {engine: redis, url: 'redis://h:99999/0'}\n", "store.url", "out of range"),
        ("store: {engine: redis, url: 'redis://:s3cret@h:x/0'}\n", "store.url", "redis://:***@"),
        ("store: {engine: redis, url: 'redis://'}\n", "store.url", "no host"),
        ("store: {prefix: 'a{b}'}\n", "store.prefix", "no braces"),
        ("store: {prefix: ''}\n", "store.prefix", "must not be empty"),
        ("store: {cluster: true}\n", "store.cluster", "only used with engine redis"),
    ],
)
def test_bad_store_settings_stop_the_start(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "bs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        bootstrap_config.load_config(path, env={})
    assert (info.value.source, info.value.key) == (str(path), key)
    assert reason in info.value.reason
    assert "s3cret" not in str(info.value)


def test_a_missing_url_is_blamed_on_where_the_engine_was_chosen() -> None:
    with pytest.raises(ConfigError) as info:
        bootstrap_config.load_config(env={"LWM2M_BOOTSTRAP_STORE_ENGINE": "redis"})
    assert (info.value.source, info.value.key) == (
        "environment LWM2M_BOOTSTRAP_STORE_ENGINE",
        "store.url",
    )


def test_open_stores_sqlite(tmp_path: Path) -> None:
    with open_stores(StoreSettings(), sqlite_path=tmp_path / "s.sqlite") as stores:
        assert isinstance(stores.credentials, SqliteCredentialStore)
        stores.credentials.put_device(DeviceCredentials.for_nosec("a"))
        stores.dtls_sessions.save_dtls_sessions([], [], [])
        stores.profiles.assign("a", "p")
    with open_stores(StoreSettings(), sqlite_path=tmp_path / "s.sqlite") as stores:
        assert stores.credentials.get_device("a") == DeviceCredentials.for_nosec("a")
        assert stores.profiles.assignments() == {"a": "p"}


def test_open_stores_redis(tmp_path: Path, redis_url: str) -> None:
    settings = StoreSettings("redis", redis_url, "opened")
    with open_stores(settings, sqlite_path=tmp_path / "unused.sqlite") as stores:
        assert isinstance(stores.credentials, RedisCredentialStore)
        stores.credentials.put_device(DeviceCredentials.for_nosec("a"))
        stores.profiles.assign("a", "p")
        assert stores.dtls_sessions.load_dtls_sessions() == []
    with open_stores(settings, sqlite_path=tmp_path / "unused.sqlite") as stores:
        assert stores.credentials.get_device("a") == DeviceCredentials.for_nosec("a")
        assert stores.profiles.assignments() == {"a": "p"}
    assert not (tmp_path / "unused.sqlite").exists()


def test_open_stores_redis_cluster(tmp_path: Path, redis_cluster_url: str) -> None:
    settings = StoreSettings("redis", redis_cluster_url, "opened", cluster=True)
    with open_stores(settings, sqlite_path=tmp_path / "unused.sqlite") as stores:
        stores.credentials.put_device(DeviceCredentials.for_psk("a", b"id", bytes(16)))
        stores.profiles.assign("a", "p")
    with open_stores(settings, sqlite_path=tmp_path / "unused.sqlite") as stores:
        assert stores.credentials.device_by_psk_identity(b"id") is not None
        assert stores.profiles.assignments() == {"a": "p"}


def test_open_stores_refuses_what_the_loader_would() -> None:
    with pytest.raises(StoreError, match=r"store\.url: required with engine redis"):
        open_stores(StoreSettings("redis"), sqlite_path="unused")

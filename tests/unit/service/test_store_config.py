"""``lwm2m-server``'s ``store:`` section (docs/configuration.md, docs/cluster.md): the same
keys and checks as the bootstrap server's (``lwm2m_runtime.settings.store_checks``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystore.config_error import ConfigError
from keystore.store.engines import StoreSettings
from lwm2m_server.config import load_config


def test_redis_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("store:\n  engine: redis\n  url: redis://r1:6379/0\n", encoding="utf-8")
    config = load_config(path, env={"LWM2M_SERVER_STORE_PREFIX": "site1"})
    assert config.store == StoreSettings("redis", "redis://r1:6379/0", "site1")
    assert load_config(env={}).store == StoreSettings()


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"LWM2M_SERVER_STORE_ENGINE": "redis"}, "store.url"),
        ({"LWM2M_SERVER_STORE_URL": "redis://r1:6379/0"}, "store.url"),
        ({"LWM2M_SERVER_STORE_ENGINE": "mongo"}, "store.engine"),
        (
            {"LWM2M_SERVER_STORE_ENGINE": "redis", "LWM2M_SERVER_STORE_URL": "http://r1"},
            "store.url",
        ),
    ],
)
def test_a_wrong_store_is_refused_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(env=env)
    assert key in str(refused.value)

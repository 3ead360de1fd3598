"""The ``firmware.*`` job settings: loaded from the file and the environment, checked with
errors naming the key, and handed to the jobs as ``JobSettings``."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystore.config_error import ConfigError
from lwm2m_server.config import load_config
from lwm2m_server.firmware.jobs import JobSettings
from lwm2m_server.firmware.manager import settings_from


def test_the_defaults_are_the_jobs_defaults() -> None:
    assert settings_from(load_config(env={}).firmware) == JobSettings()


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("firmware:\n  download_timeout: 120\n  retries: 0\n  software_activate: true\n")
    config = load_config(path, env={"LWM2M_SERVER_FIRMWARE_RETRY_BACKOFF": "0.5"})
    settings = settings_from(config.firmware)
    assert settings.download_timeout == 120 and settings.retries == 0
    assert settings.backoff == 0.5 and settings.activate is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REQUEST_TIMEOUT", "0"),
        ("DOWNLOAD_TIMEOUT", "-1"),
        ("UPDATE_TIMEOUT", "0"),
        ("QUEUED_TIMEOUT", "-5"),
        ("RETRIES", "101"),
        ("RETRY_BACKOFF", "-1"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(env={f"LWM2M_SERVER_FIRMWARE_{key}": value})
    assert f"firmware.{key.lower()}" in str(error.value)

"""Configuration: defaults < file < environment < flags, ``${ENV:default}`` substitution, and
errors that name the source, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystore.config_error import ConfigError
from lwm2m_server.config import SCHEMA, QueueSettings, ServerConfig, load_config

DOCS = Path(__file__).resolve().parents[3] / "docs"
EXAMPLE = DOCS / "examples" / "lwm2m-server.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config(env={})
    assert config == ServerConfig()
    assert (config.host, config.coap_port, config.coaps_port) == ("0.0.0.0", 5683, 5684)
    assert (config.http_host, config.http_port) == ("127.0.0.1", 8080)
    assert config.open_registration is True and config.queue == QueueSettings()


def test_documented_example_loads() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.coap_port == 5683 and config.open_registration is False


def test_file_env_and_flags_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "coap_port: 6000\nhttp_port: 9000\nlog_level: debug\nqueue:\n  max_per_client: 4\n",
    )
    env = {"LWM2M_SERVER_HTTP_PORT": "9100", "LWM2M_SERVER_QUEUE_AWAKE_TIME": "10.5"}
    config = load_config(path, env=env, overrides={"coap_port": 7000, "data_dir": None})
    assert config.coap_port == 7000  # flag beats file
    assert config.http_port == 9100  # environment beats file
    assert config.log_level == "DEBUG"
    assert config.queue == QueueSettings(max_per_client=4, awake_time=10.5)


def test_substitution(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "coap_port: ${COAP_PORT:5699}\nopen_registration: ${OPEN:false}\n"
        "data_dir: ${DATA:/var/lib}/lwm2m\nmodels_dirs: ['${MODELS:/m1}', /m2]\n",
    )
    config = load_config(path, env={"DATA": "/srv"})
    assert config.coap_port == 5699 and config.open_registration is False
    assert config.data_dir == Path("/srv/lwm2m")
    assert config.models_dirs == (Path("/m1"), Path("/m2"))
    assert load_config(path, env={"COAP_PORT": "1234"}).coap_port == 1234


def test_env_lists(tmp_path: Path) -> None:
    config = load_config(env={"LWM2M_SERVER_MODELS_DIRS": "/a:/b"})
    assert config.models_dirs == (Path("/a"), Path("/b"))


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("coap_prot: 5683\n", "coap_prot", "unknown key"),
        ("queue:\n  size: 3\n", "queue.size", "unknown key"),
        ("coap_port: 70000\n", "coap_port", "out of range"),
        ("coap_port: '5683'\n", "coap_port", "expected an integer"),
        ("open_registration: maybe\n", "open_registration", "expected true or false"),
        ("log_level: LOUD\n", "log_level", "not one of"),
        ("queue: 3\n", "queue", "expected a mapping"),
        ("request_timeout: 0\n", "request_timeout", "greater than 0"),
        ("coap_port: ${UNSET_PORT}\n", "coap_port", "UNSET_PORT is not set"),
        ("models_dirs: 3\n", "models_dirs", "list of folder paths"),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message and key in message and reason in message


def test_env_and_flag_errors_name_their_source() -> None:
    with pytest.raises(ConfigError, match="LWM2M_SERVER_COAP_PORT: coap_port"):
        load_config(env={"LWM2M_SERVER_COAP_PORT": "http"})
    with pytest.raises(ConfigError, match="--http-port"):
        load_config(env={}, overrides={"http_port": -1})


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(write(tmp_path, "a: 1\nb: [\n"), env={})
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n"), env={})
    assert load_config(write(tmp_path, ""), env={}) == ServerConfig()


def test_every_accepted_key_is_documented() -> None:
    """docs/configuration.md's key table has a row for every key the schema accepts (the
    schema, built from ServerConfig's fields, is the truth), and no row for anything else."""
    import re

    guide = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", guide, flags=re.MULTILINE))
    assert set(SCHEMA.keys) - rows == set()
    assert rows - set(SCHEMA.keys) == set()
    assert {"profiles_dir", "default_profile", "sinks.jsonl", "sinks.queue_size"} <= rows


def test_limits_and_address_binding_from_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(
        "limits:\n  register_rate: 5\n  observations_per_client: 0\n"
        "nosec_address_binding: strict\n",
        encoding="utf-8",
    )
    config = load_config(path, env={"LWM2M_SERVER_LIMITS_DEDUP_ENTRIES": "5000"})
    assert config.limits.register_rate == 5.0 and config.limits.observations_per_client == 0
    assert config.limits.dedup_entries == 5000 and config.nosec_address_binding == "strict"
    params = config.limits.parameters()
    assert params.dedup_capacity == 5000 and params.max_body_size == 256 * 1024
    assert load_config(env={}).nosec_address_binding == "loose"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LWM2M_SERVER_NOSEC_ADDRESS_BINDING": "tight"}, "nosec_address_binding: 'tight' is not"),
        ({"LWM2M_SERVER_LIMITS_REGISTER_RATE": "-1"}, "limits.register_rate: -1.0 must not"),
        ({"LWM2M_SERVER_LIMITS_REGISTER_BURST": "0"}, "limits.register_burst: 0 must be at least"),
        ({"LWM2M_SERVER_LIMITS_BLOCK1_TOTAL": "0"}, "limits.block1_total: 0 must be at least"),
        ({"LWM2M_SERVER_LIMITS_DEDUP_BYTES": "100"}, "limits.dedup_bytes: 100 is outside"),
        ({"LWM2M_SERVER_LIMITS_MAX_BODY_SIZE": "x"}, "limits.max_body_size: expected an integer"),
    ],
)
def test_invalid_limits_are_refused_naming_the_key_and_reason(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)

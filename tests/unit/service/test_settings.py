"""The shared settings loader (``lwm2m_runtime.settings``): one implementation behind both
servers' ``config`` modules, driven by the attrs fields of each config class."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from bootstrap_server import config as bootstrap_config
from bootstrap_server.config import BootstrapServerConfig
from keystore.config_error import ConfigError
from lwm2m_runtime.settings import FromText, Key, Schema, between, port, substitute
from lwm2m_server import config as server_config


@attrs.frozen
class _Inner:
    limit: int = 3


@attrs.frozen
class _Sample:
    name: str = "x"
    ratio: float = 1.0
    enabled: bool = False
    folder: Path | None = None
    folders: tuple[Path, ...] = ()
    inner: _Inner = _Inner()


SAMPLE = Schema(_Sample, env_prefix="SAMPLE_", checks={"inner.limit": between(1, 5)})


def test_keys_come_from_the_attrs_fields() -> None:
    assert SAMPLE.keys == {
        "name": Key("str"),
        "ratio": Key("float"),
        "enabled": Key("bool"),
        "folder": Key("path"),
        "folders": Key("paths"),
        "inner.limit": Key("int", SAMPLE.keys["inner.limit"].check),
    }
    assert SAMPLE.sections == {"inner": _Inner}
    assert SAMPLE.env_name("inner.limit") == "SAMPLE_INNER_LIMIT"
    assert SAMPLE.flag_name("inner.limit") == "--inner-limit"


def test_both_servers_use_the_shared_schema() -> None:
    assert isinstance(server_config.SCHEMA, Schema)
    assert isinstance(bootstrap_config.SCHEMA, Schema)
    expected = set()
    for field in attrs.fields(BootstrapServerConfig):
        if attrs.has(field.type):  # a section: its keys are section.field
            expected |= {f"{field.name}.{f.name}" for f in attrs.fields(field.type)}
        else:
            expected.add(field.name)
    assert expected == set(bootstrap_config.SCHEMA.keys)
    assert "dtls.cipher_suites" in bootstrap_config.SCHEMA.keys
    assert "queue.max_per_client" in server_config.SCHEMA.keys
    assert "sinks.mqtt_topic" in server_config.SCHEMA.keys
    # one error type for both (``keystore.config_error``), whichever loader refused the value
    with pytest.raises(ConfigError):
        bootstrap_config.load_config(env={"LWM2M_BOOTSTRAP_COAP_PORT": "70000"})
    with pytest.raises(ConfigError):
        server_config.load_config(env={"LWM2M_SERVER_COAP_PORT": "70000"})


def test_load_sections_env_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: ${NAME:dflt}\ninner:\n  limit: 2\nfolders: [/a]\n")
    loaded = SAMPLE.load(path, env={"SAMPLE_ENABLED": "yes"}, overrides={"ratio": "2.5"})
    assert loaded == _Sample(name="dflt", ratio=2.5, enabled=True, folders=(Path("/a"),),
                             inner=_Inner(2))  # fmt: skip
    with pytest.raises(ConfigError, match=r"--inner-limit: inner\.limit: 9 is outside 1\.\.5"):
        SAMPLE.load(env={}, overrides={"inner.limit": 9})


def test_empty_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="SAMPLE_FOLDER: folder: expected a path"):
        SAMPLE.load(env={"SAMPLE_FOLDER": ""})


def test_substitute_marks_text_and_names_the_key() -> None:
    done = substitute({"a": {"b": "${X:1}"}, "c": 3}, "f.yaml", "", {})
    assert done == {"a": {"b": "1"}, "c": 3} and isinstance(done["a"]["b"], FromText)
    with pytest.raises(ConfigError, match=r"f\.yaml: a\.b: environment variable Y is not set"):
        substitute({"a": {"b": "${Y}"}}, "f.yaml", "", {})


def test_schema_refuses_what_it_cannot_convert() -> None:
    @attrs.frozen
    class Odd:
        when: complex = 0j

    with pytest.raises(TypeError, match=r"Odd\.when"):
        Schema(Odd, env_prefix="ODD_")
    with pytest.raises(TypeError, match="nam"):
        Schema(_Sample, env_prefix="S_", checks={"nam": port})


# -- the bootstrap server's settings through the shared loader ------------------------------------


def test_bootstrap_defaults_env_and_flags(tmp_path: Path) -> None:
    assert bootstrap_config.load_config(env={}) == BootstrapServerConfig()
    path = tmp_path / "bs.yaml"
    path.write_text("coap_port: ${BS_PORT:6000}\nstep_timeout: 5\nlog_level: debug\n")
    env = {"LWM2M_BOOTSTRAP_STEP_RETRIES": "4", "LWM2M_BOOTSTRAP_COAPS": "off"}
    flags = {"http_port": 0, "configs_dir": "/c"}
    loaded = bootstrap_config.load_config(path, env=env, overrides=flags)
    assert (loaded.coap_port, loaded.step_timeout, loaded.log_level) == (6000, 5.0, "DEBUG")
    assert (loaded.step_retries, loaded.coaps, loaded.http_port) == (4, False, 0)
    assert loaded.configs_folder == Path("/c")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("coap_prot: 1\n", "coap_prot", "unknown key"),
        ("step_retries: 11\n", "step_retries", "outside 0..10"),
        ("step_timeout: 0\n", "step_timeout", "greater than 0"),
        ("coaps: maybe\n", "coaps", "expected true or false"),
        ("log_level: LOUD\n", "log_level", "not one of"),
        ("http_port: '80'\n", "http_port", "expected an integer"),
        ("keystore: 3\n", "keystore", "expected a path"),
    ],
)
def test_bootstrap_errors_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "bs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        bootstrap_config.load_config(path, env={})
    assert (info.value.source, info.value.key) == (str(path), key)
    assert reason in info.value.reason
    with pytest.raises(ConfigError, match="environment LWM2M_BOOTSTRAP_COAP_PORT: coap_port"):
        bootstrap_config.load_config(env={"LWM2M_BOOTSTRAP_COAP_PORT": "x"})

"""Unknown ``LWM2M_SERVER_*`` / ``LWM2M_BOOTSTRAP_*`` variables are refused like unknown YAML
keys, naming the variable and the closest known one (issue 11, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap_server import cli as bootstrap_cli
from bootstrap_server import config as bootstrap_config
from keystore.config_error import ConfigError
from lwm2m_server import config as server_config

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("module", "name", "suggestion"),
    [
        (server_config, "LWM2M_SERVER_COAP_PROT", "LWM2M_SERVER_COAP_PORT"),
        (server_config, "LWM2M_SERVER_QUEUE_MAX_PER_CLEINT", "LWM2M_SERVER_QUEUE_MAX_PER_CLIENT"),
        (server_config, "LWM2M_SERVER_DATADIR", "LWM2M_SERVER_DATA_DIR"),
        (bootstrap_config, "LWM2M_BOOTSTRAP_STEP_RETRY", "LWM2M_BOOTSTRAP_STEP_RETRIES"),
        (bootstrap_config, "LWM2M_BOOTSTRAP_COAPS_PORTS", "LWM2M_BOOTSTRAP_COAPS_PORT"),
    ],
)
def test_unknown_variable_is_refused_with_the_closest_name(
    module: object, name: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        module.load_config(env={name: "1"})  # type: ignore[attr-defined]
    assert caught.value.source == f"environment {name}"
    assert str(caught.value) == f"environment {name}: unknown variable (did you mean {suggestion}?)"


def test_nothing_close_lists_the_known_variables() -> None:
    with pytest.raises(ConfigError, match=r"known variables: .*LWM2M_SERVER_COAP_PORT"):
        server_config.load_config(env={"LWM2M_SERVER_X": "1"})


def test_the_other_servers_variables_are_not_errors() -> None:
    server_env = {"LWM2M_SERVER_COAP_PORT": "6000", "LWM2M_SERVER_ANYTHING": "1"}
    assert bootstrap_config.load_config(env=server_env) == bootstrap_config.BootstrapServerConfig()
    bootstrap_env = {"LWM2M_BOOTSTRAP_COAP_PORT": "6000", "LWM2M_BOOTSTRAP_ANYTHING": "1"}
    assert server_config.load_config(env=bootstrap_env) == server_config.ServerConfig()
    # nor are variables of other programs, or names that only look alike
    other = {"LWM2M_API": "http://x", "LWM2M_LOADGEN_SRC": "/x", "LWM2M_SERVER": "1"}
    assert server_config.load_config(env=other) == server_config.ServerConfig()


def test_variables_read_by_the_operator_commands_are_known() -> None:
    assert bootstrap_cli.API_ENV in bootstrap_config.SCHEMA.env_names()
    loaded = bootstrap_config.load_config(env={bootstrap_cli.API_ENV: "http://h:1"})
    assert loaded == bootstrap_config.BootstrapServerConfig()


def test_every_key_has_its_known_variable() -> None:
    for schema in (server_config.SCHEMA, bootstrap_config.SCHEMA):
        env = {schema.env_name(key): "" for key in schema.keys}
        schema.check_env(env)  # no unknown-variable error for any key's own variable


@pytest.mark.parametrize(
    ("module", "variable"),
    [("lwm2m_server", "LWM2M_SERVER_COAP_PROT"), ("bootstrap_server", "LWM2M_BOOTSTRAP_COAP_PROT")],
)
def test_the_process_refuses_to_start(tmp_path: Path, module: str, variable: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWM2M_")}
    env.update(PYTHONPATH=str(REPO), **{variable: "5683"})
    done = subprocess.run(
        [sys.executable, "-m", module, "--data-dir", str(tmp_path), "--http-port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"environment {variable}: unknown variable (did you mean" in done.stderr
    assert "COAP_PORT?" in done.stderr
    assert "Traceback" not in done.stderr

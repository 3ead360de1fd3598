"""The documented examples load (so docs/bootstrap.md cannot drift from the code)."""

from __future__ import annotations

from pathlib import Path

from bootstrap_server.config import load_config
from bootstrap_server.core.catalog import load_folder

from .helpers import REGISTRY

EXAMPLES = Path(__file__).parents[3] / "docs" / "examples" / "bootstrap"


def test_example_configs_load() -> None:
    catalog, errors = load_folder(EXAMPLES / "configs", REGISTRY)
    assert errors == []
    assert sorted(catalog.configs) == [("endpoint", "dev-1"), ("endpoint", "meter-7"),
                                       ("profile", "fleet")]  # fmt: skip
    meter = catalog.endpoint("meter-7")
    assert meter is not None and meter.servers[0].security.secret_key == b"0123456789abcdef"


def test_example_settings_load() -> None:
    config = load_config(EXAMPLES / "lwm2m-bootstrap.yaml", env={})
    assert (config.coap_port, config.http_port, config.step_retries) == (5783, 8081, 2)

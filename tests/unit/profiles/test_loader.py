"""Profile documents -> ``Profile``: what is accepted, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keystore.config_error import ConfigError
from lwm2m_server.profiles.loader import load_file, parse_profile
from lwm2m_server.profiles.model import Kind, ObserveStrategy, OnConnect
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ResourceType

from .helpers import BOOTSTRAP

EXAMPLE = Path(__file__).parents[3] / "docs" / "examples" / "profiles" / "temperature-sensor.yaml"
REGISTRY = ModelRegistry.builtin()


def parse(doc: dict[str, Any]) -> Any:
    return parse_profile({"name": "p", **doc}, "p.yaml", REGISTRY)


def error(doc: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(doc)
    return info.value


def test_the_example_profile_loads() -> None:
    profile = load_file(EXAMPLE, REGISTRY)
    assert profile.name == "temperature-sensor"
    assert profile.observe_strategy is ObserveStrategy.COMPOSITE_BY_OBJECT
    assert profile.on_connect is OnConnect.READ_MAPPED
    assert profile.objects == {3: "1.2", 3303: "1.1"}
    temp = profile.resources[LwM2mPath(3303, 0, 5700)]
    assert (temp.key, temp.kind, temp.type, temp.observe) == (
        "temperature",
        Kind.TELEMETRY,
        ResourceType.FLOAT,
        True,
    )
    assert temp.attributes.query() == {"pmin": "10", "pmax": "300", "st": "0.5"}
    assert profile.resources[LwM2mPath(3, 0, 14)].writable
    assert profile.matches("temp-7") and not profile.matches("other")


def test_defaults_key_from_the_model_and_object_version() -> None:
    profile = parse({"resources": {"/3303/1/5700": {"observe": True}}})
    mapping = profile.resources[LwM2mPath(3303, 1, 5700)]
    assert mapping.key == "sensorValue_1"  # the default telemetry key rules
    assert profile.objects[3303] == REGISTRY.get(3303).version  # type: ignore[union-attr]
    assert profile.observe_strategy is ObserveStrategy.SINGLE
    assert profile.on_connect is OnConnect.OBSERVE_ONLY


@pytest.mark.parametrize(
    ("doc", "key", "reason"),
    [
        ({"resources": {"/3303/0/9999": {}}}, "resources./3303/0/9999", "has no resource 9999"),
        ({"resources": {"/3/0": {}}}, "resources./3/0", "map resources"),
        ({"resources": {"/3/0/4": {"observe": True}}}, "resources./3/0/4.observe", "executable"),
        ({"resources": {"/3/0/4": {}}}, "resources./3/0/4", "not readable"),
        ({"resources": {"/3/0/0/1": {}}}, "resources./3/0/0/1", "has no instances"),
        ({"resources": {"/3/0/0": {"kind": "both"}}}, "resources./3/0/0.kind", "one of"),
        ({"resources": {"/3/0/0": {"bogus": 1}}}, "resources./3/0/0.bogus", "unknown key"),
        (
            {"resources": {"/3/0/0": {"attributes": {"gt": 3}}}},
            "resources./3/0/0.attributes.gt",
            "numeric",
        ),
        (
            {"resources": {"/3/0/9": {"attributes": {"pmin": 60, "pmax": 10}}}},
            "resources./3/0/9.attributes.pmax",
            "below pmin",
        ),
        (
            {"resources": {"/3/0/0": {"key": "x"}, "/3/0/1": {"key": "x"}}},
            "resources./3/0/1",
            "also used",
        ),
        ({"objects": {3303: "9.9"}}, "objects.3303", "not in the object models"),
        ({"observe_strategy": "all"}, "observe_strategy", "composite_all"),
        ({"endpoints": ["re:("]}, "endpoints.0", "regular expression"),
        ({"colour": 1}, "colour", "unknown key"),
    ],
)
def test_errors_name_the_file_the_key_and_the_reason(
    doc: dict[str, Any], key: str, reason: str
) -> None:
    exc = error(doc)
    assert exc.source == "p.yaml"
    assert exc.key == key
    assert reason in exc.reason


def test_bootstrap_section_is_validated_by_the_bootstrap_loader() -> None:
    exc = error({"bootstrap": {"servers": []}})
    assert exc.key.startswith("bootstrap")
    section = BOOTSTRAP
    profile = parse({"bootstrap": section})
    assert profile.bootstrap is not None and profile.bootstrap["profile"] == "p"


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_file(bad, REGISTRY)
    assert info.value.source == str(bad) and "YAML" in info.value.reason

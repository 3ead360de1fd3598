"""The profile's ``firmware`` section: update strategy and package per kind, validated with
errors naming the key (as every profile error does)."""

from __future__ import annotations

from typing import Any

import pytest

from keystore.config_error import ConfigError
from lwm2m_server.firmware.contracts import PackageKind, Strategy
from lwm2m_server.profiles.loader import parse_profile
from lwm2m_server.profiles.model import UpdateSetting
from object_models.registry import ModelRegistry

REGISTRY = ModelRegistry.builtin()
PACKAGE = "0f" * 32


def parse(firmware: Any) -> Any:
    return parse_profile({"name": "p", "firmware": firmware}, "p.yaml", REGISTRY)


def test_strategy_and_package_per_kind() -> None:
    profile = parse(
        {
            "firmware": {"strategy": "pull-coap", "package": PACKAGE.upper()},
            "software": {"strategy": "push", "package": {"name": "app", "version": 2.1}},
        }
    )
    assert profile.firmware == {
        PackageKind.FIRMWARE: UpdateSetting(Strategy.PULL_COAP, PACKAGE),
        PackageKind.SOFTWARE: UpdateSetting(Strategy.PUSH, None, "app", "2.1"),
    }
    assert profile.firmware[PackageKind.SOFTWARE].to_json() == {
        "strategy": "push",
        "package": {"name": "app", "version": "2.1"},
    }


def test_no_section_means_no_setting_and_strategy_defaults_to_auto() -> None:
    assert parse_profile({"name": "p"}, "p.yaml", REGISTRY).firmware == {}
    assert parse({"firmware": {}}).firmware[PackageKind.FIRMWARE] == UpdateSetting()


@pytest.mark.parametrize(
    ("firmware", "key", "words"),
    [
        ({"hardware": {}}, "firmware.hardware", "unknown key"),
        ({"firmware": {"strategy": "carrier-pigeon"}}, "firmware.firmware.strategy", "push"),
        ({"firmware": {"package": "abc"}}, "firmware.firmware.package", "64 hex digits"),
        ({"firmware": {"package": {"name": "x"}}}, "firmware.firmware.package.version", ""),
        ({"firmware": {"package": 5}}, "firmware.firmware.package", "package id"),
        ({"firmware": {"url": "x"}}, "firmware.firmware.url", "unknown key"),
        ("push", "firmware", "mapping"),
    ],
)
def test_bad_settings_name_the_key(firmware: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(firmware)
    assert info.value.key == key
    assert words in info.value.reason

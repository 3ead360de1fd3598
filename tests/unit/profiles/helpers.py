"""Registrations and profiles for the profile unit tests."""

from __future__ import annotations

from typing import Any

from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.profiles.loader import parse_profile
from lwm2m_server.profiles.model import Profile
from object_models.registry import ModelRegistry

REGISTRY = ModelRegistry.builtin()

RESOURCES: dict[str, Any] = {
    "/3303/0/5700": {"key": "temperature", "observe": True, "attributes": {"pmin": 5}},
    "/3303/0/5701": {"key": "units", "kind": "attribute"},
    "/3/0/9": {"key": "batteryLevel", "observe": True},
    "/3/0/0": {"key": "manufacturer", "kind": "attribute"},
}

BOOTSTRAP: dict[str, Any] = {
    "bootstrap_security": [{"mode": "psk", "identity": "fleet", "key": "hex:00112233"}],
    "servers": [
        {
            "uri": "coaps://lwm2m.example:5684",
            "short_server_id": 1,
            "security": {"mode": "psk", "generate": True},
        }
    ],
}
"""A profile-kind bootstrap section the bootstrap server's loader accepts."""


def profile(**doc: Any) -> Profile:
    doc.setdefault("resources", RESOURCES)
    return parse_profile({"name": "temp", **doc}, "temp.yaml", REGISTRY)


def registration(
    links: str = "</1/0>,</3/0>,</3303/0>", version: str = "1.1", endpoint: str = "dev-1"
) -> Registration:
    return Registration(
        registration_id="r1",
        endpoint=endpoint,
        address=Address("127.0.0.1", 5683),
        lifetime=300,
        lwm2m_version=version,
        binding="U",
        object_links=ObjectLinks.parse(links),
        registered_at=0.0,
        last_update=0.0,
    )

"""The bootstrap sections of the stored profiles, for the bootstrap server.

A profile may carry a ``bootstrap:`` section: a profile-kind bootstrap configuration (servers,
security, provisioning) in ``bootstrap_server.core.config_loader``'s format. The profile engine
validates and stores it but never uses it; the bootstrap server reads it from the shared store
with ``bootstrap_configs`` and gets its own ``BootstrapConfig`` values, so both servers work
from one profile definition without either re-defining the other's types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keystore.config_error import ConfigError
from keystore.store.profiles import ProfileStore
from object_models.registry import ModelRegistry

if TYPE_CHECKING:
    from bootstrap_server.core.config import BootstrapConfig


def bootstrap_configs(
    store: ProfileStore, registry: ModelRegistry
) -> tuple[list[BootstrapConfig], list[ConfigError]]:
    """Every stored profile's bootstrap section as a ``BootstrapConfig`` (kind ``profile``,
    named after the profile), and the sections that no longer validate (e.g. after a model
    change), each error naming the profile's source and the key under ``bootstrap``."""
    from bootstrap_server.core.config_loader import parse_config

    configs, errors = [], []
    for stored in store.profiles():
        section = stored.document.get("bootstrap")
        if not isinstance(section, dict):
            continue
        data = {**section, "profile": section.get("profile", stored.name)}
        try:
            configs.append(parse_config(data, stored.source, registry))
        except ConfigError as exc:
            key = f"bootstrap.{exc.key}".rstrip(".")
            errors.append(ConfigError(exc.source, key, exc.reason))
    return configs, errors

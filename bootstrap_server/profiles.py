"""The bootstrap sections of the stored profiles, as the bootstrap server's configurations.

A profile may carry a ``bootstrap:`` section: a profile-kind bootstrap configuration (servers,
security, provisioning) in ``keystore.bootstrap_config.loader``'s format. The LwM2M server's
profile engine validates and stores it but never uses it; the bootstrap server reads it from the
shared profile store with ``bootstrap_configs``, so both servers work from one profile definition
and neither imports the other (the types and the parser are ``keystore``'s).
"""

from __future__ import annotations

from keystore.bootstrap_config.loader import parse_config
from keystore.bootstrap_config.model import BootstrapConfig
from keystore.config_error import ConfigError
from keystore.store.profiles import ProfileStore
from object_models.registry import ModelRegistry


def bootstrap_configs(
    store: ProfileStore, registry: ModelRegistry
) -> tuple[list[BootstrapConfig], list[ConfigError]]:
    """Every stored profile's bootstrap section as a ``BootstrapConfig`` (kind ``profile``,
    named after the profile), and the sections that no longer validate (e.g. after a model
    change), each error naming the profile's source and the key under ``bootstrap``."""
    configs: list[BootstrapConfig] = []
    errors: list[ConfigError] = []
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

"""All bootstrap configurations of a folder, checked against each other, with lookups.

Per file, ``config_loader`` checks the document; here the checks that need every file:
one configuration per endpoint and per profile, and every bootstrap credential (PSK identity,
raw public key, pinned certificate, CA) in at most one configuration, because "a bootstrap
identity maps to exactly one endpoint, or to one profile". At most one profile may accept NoSec
bootstrap: it is where an unlisted NoSec endpoint goes, and two would make that a guess.

A folder holds ``*.yaml``/``*.yml``/``*.json`` files (not recursive; names starting with ``.``
are skipped). ``load_folder`` returns every error it finds, each naming the file, the key and
the reason; the service refuses to start while there is any.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs
import yaml

from keystore.bootstrap_config.loader import parse_config
from keystore.bootstrap_config.model import BootstrapConfig, ConfigKind
from keystore.config_error import ConfigError
from keystore.credentials import fingerprint
from keystore.modes import SecurityMode
from object_models.model import ModelProvider

SUFFIXES = (".yaml", ".yml", ".json")


def _configs(
    value: Mapping[tuple[str, str], BootstrapConfig],
) -> dict[tuple[str, str], BootstrapConfig]:
    return dict(value)


@attrs.frozen
class Catalog:
    """Immutable: a reload builds a new one and swaps it in with one assignment."""

    configs: Mapping[tuple[str, str], BootstrapConfig] = attrs.field(
        factory=dict, converter=_configs
    )

    @classmethod
    def of(cls, configs: Iterable[BootstrapConfig]) -> Catalog:
        """A catalog of already-checked configs; ``ConfigError`` if they conflict."""
        items = list(configs)
        errors = cross_check(items)
        if errors:
            raise errors[0]
        return cls({c.key: c for c in items})

    def endpoint(self, name: str) -> BootstrapConfig | None:
        return self.configs.get((ConfigKind.ENDPOINT.value, name))

    def profile(self, name: str) -> BootstrapConfig | None:
        return self.configs.get((ConfigKind.PROFILE.value, name))

    def all(self) -> list[BootstrapConfig]:
        return [self.configs[k] for k in sorted(self.configs)]

    def by_psk_identity(self, identity: bytes) -> tuple[BootstrapConfig, bytes] | None:
        """The config whose bootstrap PSK identity this is, with its key (DTLS callback)."""
        for config in self.configs.values():
            for cred in config.bootstrap:
                if cred.psk_identity == identity and cred.psk_key is not None:
                    return config, cred.psk_key
        return None

    def by_rpk(self, spki: bytes) -> BootstrapConfig | None:
        for config in self.configs.values():
            if any(c.rpk_spki == spki for c in config.bootstrap):
                return config
        return None

    def by_certificate(self, der: bytes) -> BootstrapConfig | None:
        """The endpoint config that pinned exactly this device certificate."""
        for config in self.configs.values():
            if config.kind is ConfigKind.ENDPOINT and any(
                c.certificate == der for c in config.bootstrap
            ):
                return config
        return None

    def profile_cas(self) -> list[tuple[BootstrapConfig, bytes]]:
        """(profile, CA certificate DER) for X.509 auto-registration."""
        return [
            (config, cred.certificate)
            for config in self.configs.values()
            if config.kind is ConfigKind.PROFILE
            for cred in config.bootstrap
            if cred.mode is SecurityMode.X509 and cred.certificate is not None
        ]

    def nosec_profile(self) -> BootstrapConfig | None:
        return next(
            (
                c
                for c in self.configs.values()
                if c.kind is ConfigKind.PROFILE and c.allows(SecurityMode.NOSEC)
            ),
            None,
        )

    def replaced(self, config: BootstrapConfig) -> Catalog:
        """This catalog with ``config`` added or replacing its namesake; ``ConfigError`` on a
        conflict with another config (nothing changes then)."""
        items = {**self.configs, config.key: config}
        return Catalog.of(items.values())

    def without(self, key: tuple[str, str]) -> Catalog:
        return Catalog({k: v for k, v in self.configs.items() if k != key})


def cross_check(configs: Sequence[BootstrapConfig]) -> list[ConfigError]:
    errors: list[ConfigError] = []
    owners: dict[tuple[str, object], BootstrapConfig] = {}

    def claim(config: BootstrapConfig, what: str, value: object, key: str) -> None:
        other = owners.setdefault((what, value), config)
        if other is not config:
            errors.append(ConfigError(config.source, key,
                                      f"{what} is also used by {other.kind.value} "
                                      f"{other.name!r} ({other.source})"))  # fmt: skip

    for config in configs:
        claim(config, f"{config.kind.value} name", config.name, config.kind.value)
        for index, cred in enumerate(config.bootstrap):
            key = f"bootstrap_security[{index}]"
            if cred.psk_identity is not None:
                claim(config, "the bootstrap PSK identity", cred.psk_identity, f"{key}.identity")
            if cred.rpk_spki is not None:
                claim(config, "the bootstrap public key", cred.rpk_spki, f"{key}.public_key")
            if cred.certificate is not None:
                claim(config, "the bootstrap certificate", fingerprint(cred.certificate), key)
            if cred.mode is SecurityMode.NOSEC and config.kind is ConfigKind.PROFILE:
                claim(config, "NoSec bootstrap of unlisted devices", "nosec", key)
    return errors


# -- files --------------------------------------------------------------------------------------


def read_document(path: Path) -> object:
    """The YAML or JSON document of one file; ``ConfigError`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(str(path), "", f"cannot read the file: {reason}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON at line {exc.lineno}: {exc.msg}"
        raise ConfigError(str(path), "", reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            str(path), "", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None


def load_file(path: Path, models: ModelProvider) -> BootstrapConfig:
    return parse_config(read_document(path), str(path), models, base_dir=path.parent)


def config_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_folder(
    folder: Path, models: ModelProvider, extra: Sequence[BootstrapConfig] = ()
) -> tuple[Catalog, list[ConfigError]]:
    """Every valid config of ``folder`` and every error found (files with errors left out).

    ``extra`` are configs from elsewhere (the device profiles' ``bootstrap`` sections): a file
    of the folder wins over an extra config of the same kind and name, so an operator can
    override one profile's bootstrap settings without editing the profile; identities are
    cross-checked across both."""
    files: list[Path] = []
    errors: list[ConfigError] = []
    if folder.exists():
        try:
            files = config_files(folder)
        except OSError as exc:
            return Catalog(), [ConfigError(str(folder), "", f"cannot list: {exc.strerror or exc}")]
    loaded: list[BootstrapConfig] = []
    for path in files:
        try:
            loaded.append(load_file(path, models))
        except ConfigError as exc:
            errors.append(exc)
    from_files = {c.key for c in loaded}
    loaded.extend(c for c in extra if c.key not in from_files)
    conflicts = cross_check(loaded)
    errors.extend(conflicts)
    bad = {e.source for e in conflicts}
    return Catalog({c.key: c for c in loaded if c.source not in bad}), errors

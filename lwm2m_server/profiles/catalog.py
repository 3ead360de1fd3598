"""The profiles in use: loaded from the store, refreshed from the profiles folder, changed through
the API; and which profile a device gets.

The store is the record the running server works from. The folder is declarative configuration
layered on it: a reload validates every ``*.yaml``/``*.yml``/``*.json`` file and stores the good
ones (source = the file path); a file that fails keeps the previously stored version of its
profile and is reported; a profile whose file is gone is removed. A file-managed profile cannot be
changed or deleted through the API (edit the file instead), so the two never fight.

Which profile a device gets, first match wins:

1. its device record's profile (``assign``: ``PUT /api/clients/{ep}/profile``, CLI
   ``profiles assign``);
2. a profile whose ``endpoints`` patterns match the name (globs, or ``re:`` regular expressions;
   profiles are tried by name, and a device matched by several is reported);
3. the default profile (``default_profile``, ``default`` unless configured; built in when no
   profile of that name exists: observe nothing, default telemetry keys).

The catalog's profiles and assignments are a cache of the store. With the server's sqlite store
a write is committed with the loop iteration's group, after the caller has moved on; a change
(``put``, ``remove``, ``assign``, ``reload_folder``) therefore makes its writes durable at once
(``durable``: the store's ``settle``) and, when that commit fails, re-reads the cache from the
store (which rolled the change back) and raises ``StoreError``: a profile whose commit failed
must not go on being served, applied to devices or reported as "replaced" by a retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from keystore.config_error import ConfigError
from keystore.store.errors import StoreError
from keystore.store.profiles import ProfileStore, StoredProfile
from object_models.errors import Lwm2mError, ResponseCode
from object_models.registry import ModelRegistry

from .loader import SUFFIXES, load_file, parse_profile
from .model import DEFAULT_PROFILE, Profile, builtin_default

log = logging.getLogger(__name__)

API_SOURCE = "api"


class ProfileConflict(Lwm2mError):
    """A change through the API to a profile its file manages."""

    code = ResponseCode.PRECONDITION_FAILED


@attrs.frozen
class Reload:
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    errors: tuple[ConfigError, ...] = ()


class Catalog:
    def __init__(
        self,
        store: ProfileStore,
        registry: ModelRegistry,
        folder: Path | None = None,
        *,
        default_name: str = DEFAULT_PROFILE,
        durable: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.durable = durable
        """Commits the writes made so far now; False when that commit failed (the server's
        ``SqliteStore.settle``). None: the store's writes are durable when they return."""
        self.registry = registry
        self.folder = folder
        self.default_name = default_name
        self._profiles: dict[str, Profile] = {}
        self._assignments: dict[str, str] = {}
        self.errors: list[ConfigError] = []

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> list[ConfigError]:
        """Compile every stored profile (one that no longer validates, e.g. after a model
        change, is left out and reported)."""
        errors = []
        profiles = {}
        for stored in self.store.profiles():
            try:
                profiles[stored.name] = parse_profile(stored.document, stored.source, self.registry)
            except ConfigError as exc:
                errors.append(exc)
        self._profiles = profiles
        self._assignments = self.store.assignments()
        self.errors = errors
        return errors

    def _files(self) -> list[Path]:
        assert self.folder is not None
        return sorted(
            p
            for p in self.folder.iterdir()
            if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")
        )

    def reload_folder(self) -> Reload:
        """Re-read the profiles folder (see the module docstring)."""
        if self.folder is None:
            return Reload()
        errors: list[ConfigError] = []
        seen: dict[str, str] = {}
        changed: list[str] = []
        kept_sources: set[str] = set()
        try:
            files = self._files()
        except OSError as exc:
            error = ConfigError(str(self.folder), "", f"cannot read the profiles folder: {exc}")
            return Reload(errors=(error,))
        for path in files:
            kept_sources.add(str(path))
            try:
                profile = load_file(path, self.registry)
            except ConfigError as exc:
                errors.append(exc)
                continue
            if profile.name in seen:
                errors.append(
                    ConfigError(
                        str(path),
                        "name",
                        f"profile {profile.name!r} is also in "
                        f"{seen[profile.name]}; keeping that one",
                    )
                )
                continue
            seen[profile.name] = str(path)
            old = self._profiles.get(profile.name)
            # compared normalised: the stored document is JSON (string keys), the file's YAML
            # may say ``objects: {3303: ...}``; equal documents must not re-apply anything
            if old is None or old.digest != profile.digest or old.source != profile.source:
                self._put(profile)
                changed.append(profile.name)
        removed = []
        for name, profile in list(self._profiles.items()):
            if self._managed_here(profile.source) and profile.source not in kept_sources:
                self.store.remove_profile(name)
                del self._profiles[name]
                removed.append(name)
        try:
            self._commit()
        except StoreError as exc:
            errors.append(ConfigError(str(self.folder), "", str(exc)))
            changed, removed = [], []
        for error in errors:
            log.error("profile: %s", error)
        self.errors = errors
        return Reload(tuple(changed), tuple(removed), tuple(errors))

    def _commit(self) -> None:
        """Make this change's writes durable; when the commit fails, the cache is read again
        from the store (which rolled the change back) and ``StoreError`` raised."""
        if self.durable is None or self.durable():
            return
        errors = self.errors
        self.load()
        self.errors = errors
        raise StoreError("the profile change could not be committed (rolled back)")

    def _managed_here(self, source: str) -> bool:
        return self.folder is not None and Path(source).parent == self.folder

    def _put(self, profile: Profile) -> None:
        self.store.put_profile(
            StoredProfile(profile.name, dict(profile.document), profile.source, time.time())
        )
        self._profiles[profile.name] = profile

    # -- API changes -----------------------------------------------------------------------------
    def put(self, document: Mapping[str, Any], name: str) -> Profile:
        """Validate and store a profile from the API (``ConfigError`` / ``ProfileConflict``)."""
        old = self._profiles.get(name)
        if old is not None and old.source != API_SOURCE:
            raise ProfileConflict(f"profile {name!r} is managed by {old.source}: edit the file")
        data = dict(document)
        if data.setdefault("name", name) != name:
            raise ConfigError(
                API_SOURCE, "name", f"the body names {data['name']!r}, the URL {name!r}"
            )
        profile = parse_profile(data, API_SOURCE, self.registry)
        self._put(profile)
        self._commit()
        return profile

    def remove(self, name: str) -> Profile | None:
        old = self._profiles.get(name)
        if old is not None and old.source != API_SOURCE:
            raise ProfileConflict(f"profile {name!r} is managed by {old.source}: delete the file")
        self.store.remove_profile(name)
        removed = self._profiles.pop(name, None)
        self._commit()
        return removed

    def assign(self, endpoint: str, name: str | None) -> None:
        if name is not None and name not in self._profiles and name != self.default_name:
            raise Lwm2mError(f"no profile {name!r}", code=ResponseCode.NOT_FOUND)
        self.store.assign(endpoint, name)
        if name is None:
            self._assignments.pop(endpoint, None)
        else:
            self._assignments[endpoint] = name
        self._commit()

    # -- lookups ---------------------------------------------------------------------------------
    def get(self, name: str) -> Profile | None:
        found = self._profiles.get(name)
        if found is None and name == self.default_name:
            return builtin_default()
        return found

    def profiles(self) -> list[Profile]:
        result = dict(self._profiles)
        result.setdefault(self.default_name, self.get(self.default_name) or builtin_default())
        return [result[n] for n in sorted(result)]

    def assignment(self, endpoint: str) -> str | None:
        return self._assignments.get(endpoint)

    def refresh_assignment(self, endpoint: str) -> str | None:
        """Re-read the device's assignment from the store (a Register): another process may
        have assigned it since this one loaded, the bootstrap server above all, which assigns
        the profile a device was provisioned under (docs/bootstrap.md)."""
        name = self.store.assignment(endpoint)
        if name is None:
            self._assignments.pop(endpoint, None)
        else:
            self._assignments[endpoint] = name
        return name

    def refresh_assignments(self, endpoints: Sequence[str]) -> None:
        """``refresh_assignment`` of many devices in one read (the Registers of a loop
        iteration)."""
        found = self.store.assignments_of(endpoints)
        for endpoint in endpoints:
            name = found.get(endpoint)
            if name is None:
                self._assignments.pop(endpoint, None)
            else:
                self._assignments[endpoint] = name

    def resolve(self, endpoint: str) -> tuple[Profile, str]:
        """The device's profile and why (``assigned``, ``pattern``, ``default``)."""
        assigned = self._assignments.get(endpoint)
        if assigned is not None:
            profile = self.get(assigned)
            if profile is not None:
                return profile, "assigned"
            log.warning("%s is assigned missing profile %r: using the default", endpoint, assigned)
        for name in sorted(self._profiles):
            if self._profiles[name].matches(endpoint):
                return self._profiles[name], "pattern"
        return self.get(self.default_name) or builtin_default(), "default"

    def users(self, name: str, endpoints: list[str]) -> list[str]:
        """Which of ``endpoints`` resolve to profile ``name``."""
        return [ep for ep in endpoints if self.resolve(ep)[0].name == name]

"""The versioned object-model registry: built-in OMA models plus the user's model folders.

Models are keyed by (object id, object version). Versions compare numerically per part, so
``1.10`` is newer than ``1.2``; "latest" means the highest version known.

Sources, in order:

1. the built-in models shipped in ``object_models/builtin/`` (the OMA registry),
2. every ``*.json`` (JSON object-model format) and ``*.xml`` (OMA DDF) file directly inside each
   user models folder (not recursive; names starting with ``.`` are skipped).

A user model with the same id and version as a built-in replaces the built-in. Two user files
defining the same id and version is an error naming both files; the one read first (folders in
the order given, files by name) is kept. A file that cannot be loaded is rejected as a whole and
reported in ``errors``; every other model still loads.

``reload()`` re-reads the user folders and swaps the new state in with one assignment, so a
reader (an asyncio task, another thread) always sees either the old or the new models, never a
mix. By default a reload that finds any error keeps the previous state and returns the errors.
It does blocking file I/O: from asyncio, call it with ``await asyncio.to_thread(reg.reload)``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import resources as importlib_resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import attrs

from . import json_models
from .ddf import load_ddf_located
from .errors import ModelError
from .model import ModelProvider, ObjectModel

__all__ = ["BUILTIN", "ClientModels", "ModelEntry", "ModelRegistry", "version_key"]

log = logging.getLogger(__name__)

BUILTIN = "builtin"
"""The ``origin`` of a shipped model."""

VersionKey = tuple[int, ...]


def version_key(version: str) -> VersionKey | None:
    """``"1.10"`` -> ``(1, 10)``; ``None`` when ``version`` is not dotted decimal numbers."""
    parts = version.strip().split(".")
    if not all(p.isdigit() and p.isascii() for p in parts):
        return None
    return tuple(int(p) for p in parts)


@attrs.frozen
class ModelEntry:
    """A model and where it came from: ``origin`` is ``"builtin"`` or the file path."""

    model: ObjectModel
    origin: str
    source: Mapping[str, str] = attrs.field(factory=dict)
    field: str = ""
    line: int | None = None

    @property
    def is_builtin(self) -> bool:
        return self.origin == BUILTIN

    @property
    def key(self) -> tuple[int, VersionKey]:
        return self.model.id, _key(self.model.version)


def _key(version: str) -> VersionKey:
    key = version_key(version)
    if key is None:  # loaders only accept X.Y versions
        raise ValueError(f"invalid object version {version!r}")
    return key


@attrs.frozen
class _State:
    """One immutable snapshot of the registry."""

    by_id: Mapping[int, Mapping[VersionKey, ModelEntry]]
    latest: Mapping[int, ModelEntry]
    errors: tuple[ModelError, ...]

    @classmethod
    def build(cls, entries: Iterable[ModelEntry], errors: Sequence[ModelError]) -> _State:
        by_id: dict[int, dict[VersionKey, ModelEntry]] = {}
        for entry in entries:
            object_id, key = entry.key
            by_id.setdefault(object_id, {})[key] = entry
        ordered = {
            object_id: dict(sorted(versions.items())) for object_id, versions in by_id.items()
        }
        latest = {object_id: versions[max(versions)] for object_id, versions in ordered.items()}
        return cls(ordered, latest, tuple(errors))


# -- loading --------------------------------------------------------------------------------------
@functools.cache
def _builtin() -> tuple[tuple[ModelEntry, ...], tuple[ModelError, ...]]:
    """The shipped models and the problems met reading them (read once per process)."""
    return read_builtin(importlib_resources.files("object_models").joinpath("builtin"))


def builtin_entries() -> tuple[ModelEntry, ...]:
    """Every shipped model that loads."""
    return _builtin()[0]


def builtin_errors() -> tuple[ModelError, ...]:
    """Shipped files that could not be loaded (a damaged installation): reported in every
    registry's ``errors``, never raised, so the server still starts with the others."""
    return _builtin()[1]


def read_builtin(folder: Traversable) -> tuple[tuple[ModelEntry, ...], tuple[ModelError, ...]]:
    """The models of a built-in folder (``*.json``, trusted: no schema pass), and its errors."""
    entries: list[ModelEntry] = []
    errors: list[ModelError] = []
    seen: dict[tuple[int, VersionKey], str] = {}
    names = sorted(
        (item for item in folder.iterdir() if item.name.endswith(".json")),
        key=lambda item: item.name,
    )
    for item in names:
        file = f"{BUILTIN}/{item.name}"
        try:
            loaded_objects = _guarded(file, functools.partial(_read_builtin_file, item, file))
        except ModelError as exc:
            errors.append(exc)
            continue
        for loaded in loaded_objects:
            entry = ModelEntry(loaded.model, BUILTIN, loaded.source, loaded.field, loaded.line)
            if entry.key in seen:
                errors.append(
                    ModelError(
                        file,
                        loaded.field,
                        f"defined twice in the built-ins (also {seen[entry.key]}); "
                        "keeping that one",
                        line=loaded.line,
                    )
                )
                continue
            seen[entry.key] = file
            entries.append(entry)
    return tuple(entries), tuple(errors)


def _read_builtin_file(item: Traversable, file: str) -> list[json_models.LoadedObject]:
    return json_models.loads(item.read_bytes(), file, validate=False)


_T = TypeVar("_T")


def _guarded(file: str, load: Callable[[], _T]) -> _T:
    """Run a loader; anything but ``ModelError`` becomes one naming ``file``.

    The loaders refuse every bad input they know of with a precise ``ModelError`` (and a fuzz
    test holds them to it); this is the last line that keeps an input nobody thought of from
    stopping the server or a SIGHUP reload: the file is then refused like any other bad file,
    with the exception's type and text, and the traceback goes to the DEBUG log."""
    try:
        return load()
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    except Exception as exc:  # see the docstring
        log.debug("unexpected error loading %s", file, exc_info=True)
        raise ModelError(file, "", f"cannot load: {type(exc).__name__}: {exc}") from None


def load_file(path: Path) -> list[ModelEntry]:
    """The models of one user file (``.json`` or ``.xml``); raises ``ModelError`` only."""
    file = str(path)
    if path.suffix.lower() == ".xml":
        located = _guarded(file, lambda: load_ddf_located(path))
        return [
            ModelEntry(model, file, {}, f"Object[{index}]", line)
            for index, (model, line) in enumerate(located)
        ]
    return [
        ModelEntry(loaded.model, file, loaded.source, loaded.field, loaded.line)
        for loaded in _guarded(file, lambda: json_models.load(path))
    ]


def _model_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".json", ".xml") and not p.name.startswith(".") and p.is_file()
    )


def _load_user(folders: Sequence[Path]) -> tuple[list[ModelEntry], list[ModelError]]:
    entries: dict[tuple[int, VersionKey], ModelEntry] = {}
    errors: list[ModelError] = []
    for folder in folders:
        try:
            files = _model_files(folder)
        except OSError as exc:
            reason = "no such directory" if not folder.exists() else str(exc.strerror or exc)
            errors.append(ModelError(str(folder), "", f"cannot read models folder: {reason}"))
            continue
        for path in files:
            try:
                loaded = load_file(path)
            except ModelError as exc:
                errors.append(exc)
                continue
            for entry in loaded:
                other = entries.get(entry.key)
                if other is not None:
                    where = f" ({other.field})" if other.field else ""
                    errors.append(
                        ModelError(
                            entry.origin,
                            entry.field,
                            f"object {entry.model.id} version {entry.model.version} is also "
                            f"defined in {other.origin}{where}; keeping that one",
                            line=entry.line,
                        )
                    )
                    continue
                entries[entry.key] = entry
    return list(entries.values()), errors


# -- the registry ---------------------------------------------------------------------------------
class ModelRegistry:
    """Object models by (id, version); implements ``ModelProvider`` with the latest versions."""

    def __init__(
        self, models_dirs: Iterable[str | Path] = (), *, include_builtin: bool = True
    ) -> None:
        self._dirs = tuple(Path(d) for d in models_dirs)
        self._include_builtin = include_builtin
        self._lock = threading.Lock()
        self._state = self._read()

    @classmethod
    @functools.cache
    def builtin(cls) -> ModelRegistry:
        """The registry of the shipped models only (one shared instance)."""
        return cls()

    # -- loading ----------------------------------------------------------------------------------
    def _read(self) -> _State:
        base = builtin_entries() if self._include_builtin else ()
        base_errors = builtin_errors() if self._include_builtin else ()
        user, errors = _load_user(self._dirs)
        return _State.build([*base, *user], [*base_errors, *errors])

    def reload(self, *, keep_on_error: bool = True) -> list[ModelError]:
        """Re-read the user folders; returns the errors found in them (empty when all went
        well; damaged built-ins are not re-read and stay reported in ``errors`` only).

        With ``keep_on_error`` (the default) any error keeps the previous models untouched, so a
        half-written file never removes a model in use. ``keep_on_error=False`` applies the new
        state anyway, like the constructor does (broken files left out, reported in ``errors``).
        """
        with self._lock:
            state = self._read()
            # the built-ins do not change while the process runs: their errors (a damaged
            # installation, already reported at start) must not block every reload
            fresh = [e for e in state.errors if e not in builtin_errors()]
            if fresh and keep_on_error:
                return fresh
            self._state = state
            return fresh

    @property
    def models_dirs(self) -> tuple[Path, ...]:
        return self._dirs

    @property
    def errors(self) -> tuple[ModelError, ...]:
        """Problems found by the load that produced the current models."""
        return self._state.errors

    # -- lookups ----------------------------------------------------------------------------------
    def entry(self, object_id: int, version: str | None = None) -> ModelEntry | None:
        """The entry of ``object_id`` at ``version`` (latest when ``None``), or ``None``."""
        state = self._state
        if version is None:
            return state.latest.get(object_id)
        key = version_key(version)
        versions = state.by_id.get(object_id)
        if key is None or versions is None:
            return None
        return versions.get(key)

    def get(self, object_id: int, version: str | None = None) -> ObjectModel | None:
        """The model of ``object_id`` at ``version`` (latest when ``None``), or ``None``."""
        found = self.entry(object_id, version)
        return None if found is None else found.model

    def get_object(self, object_id: int) -> ObjectModel | None:
        """``ModelProvider``: the latest known version of the object."""
        found = self._state.latest.get(object_id)
        return None if found is None else found.model

    def versions(self, object_id: int) -> list[str]:
        """The known versions of ``object_id``, oldest first."""
        return [e.model.version for e in self._state.by_id.get(object_id, {}).values()]

    def objects(self) -> list[ObjectModel]:
        """The latest version of every known object, by id."""
        state = self._state
        return [state.latest[i].model for i in sorted(state.latest)]

    def entries(self) -> list[ModelEntry]:
        """Every model of every version, by id then version."""
        state = self._state
        return [e for i in sorted(state.by_id) for e in state.by_id[i].values()]

    def for_client(self, versions: Mapping[int, str]) -> ClientModels:
        """A ``ModelProvider`` for a client that registered these object versions
        (``</3303>;ver=1.0`` -> ``{3303: "1.0"}``); unknown versions and objects the client did
        not name fall back to the latest."""
        return ClientModels(self, dict(versions))

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._state.latest

    def __iter__(self) -> Iterator[ObjectModel]:
        return iter(self.objects())

    def __len__(self) -> int:
        """The number of distinct object ids."""
        return len(self._state.latest)


_CLIENT_MEMO_SIZE = 64
"""Object ids a ``ClientModels`` remembers at most (a device uses a handful)."""


@attrs.frozen
class ClientModels:
    """The models as one client knows them; reads through to the registry (sees reloads)."""

    registry: ModelRegistry
    versions: Mapping[int, str]
    _memo: dict[int, tuple[object, ObjectModel | None]] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )
    """``get_object``'s answers, each with the registry snapshot (``_State``) it was read
    from: a notification looks its object up three times (type, single/multiple, telemetry
    key) and the versioned lookup (``version_key`` parses the version string each time) was
    ~1.2 µs of a notification's ~40 each time. A reload swaps the snapshot, so an answer of
    an older one is never returned; ``versions`` is not changed after construction."""

    def get_object(self, object_id: int) -> ObjectModel | None:
        state = self.registry._state
        hit = self._memo.get(object_id)
        if hit is not None and hit[0] is state:
            return hit[1]
        found = self._lookup(object_id)
        memo = self._memo
        if len(memo) >= _CLIENT_MEMO_SIZE:  # a device naming many unknown objects
            memo.clear()
        # ``state`` was read before the lookup: if a reload ran in between, the entry is of
        # the older snapshot and is simply read again next time
        memo[object_id] = (state, found)
        return found

    def _lookup(self, object_id: int) -> ObjectModel | None:
        """``get_object`` without the memo (the reference its property test compares with)."""
        version = self.versions.get(object_id)
        if version is not None:
            exact = self.registry.get(object_id, version)
            if exact is not None:
                return exact
        return self.registry.get_object(object_id)


if TYPE_CHECKING:  # both are ModelProviders
    _registry: ModelProvider = ModelRegistry()
    _client: ModelProvider = ModelRegistry().for_client({})

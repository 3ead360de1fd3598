"""A device profile as validated, immutable values (the loader builds them; nothing here checks).

Vocabulary follows ThingsBoard's LwM2M device profile where it has one (observe strategies
SINGLE / COMPOSITE_ALL / COMPOSITE_BY_OBJECT, the on-connect modes, key names per resource,
telemetry or attribute), so a ThingsBoard profile translates line by line.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from object_models.path import LwM2mPath
from object_models.types import ResourceType

from ..firmware.contracts import PackageKind, Strategy

DEFAULT_PROFILE = "default"
"""The profile a device gets when nothing else names one (built in: observe nothing, keep the
default telemetry keys), unless a stored or file profile of that name replaces it."""


class ObserveStrategy(enum.Enum):
    """How the observed paths are grouped on the wire."""

    SINGLE = "single"
    """One Observe per path: works with every client (LwM2M 1.0 too)."""
    COMPOSITE_ALL = "composite_all"
    """One Observe-Composite with every path: one notification stream, fewest wake-ups."""
    COMPOSITE_BY_OBJECT = "composite_by_object"
    """One Observe-Composite per object id: a middle ground (ThingsBoard's third strategy)."""


class OnConnect(enum.Enum):
    """What the server does after a Register (and a re-Register)."""

    OBSERVE_ONLY = "observe_only"
    """(1) only the observations (and their Write-Attributes)."""
    READ_ALL = "read_all"
    """(2) Read every object the profile names, then observe."""
    READ_MAPPED = "read_mapped"
    """(3) Read the mapped attribute and telemetry resources, then observe."""


class Kind(enum.Enum):
    TELEMETRY = "telemetry"
    ATTRIBUTE = "attribute"


NOTIFICATION_ATTRIBUTES = ("pmin", "pmax", "gt", "lt", "st")


@attrs.frozen
class NotificationAttributes:
    """Write-Attributes values (Core §5.1.2); ``None`` = not set by the profile."""

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None

    def query(self) -> dict[str, str | None]:
        """The ``write_attributes`` argument: only the attributes the profile sets."""
        values = attrs.asdict(self)
        return {n: _number(values[n]) for n in NOTIFICATION_ATTRIBUTES if values[n] is not None}

    def __bool__(self) -> bool:
        return any(v is not None for v in attrs.astuple(self))


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@attrs.frozen
class ResourceMapping:
    """What the profile says about one resource (or resource instance) path."""

    path: LwM2mPath
    key: str
    kind: Kind
    type: ResourceType
    """The type values are stored as: the model's, or the profile's ``type:``."""
    observe: bool = False
    attributes: NotificationAttributes = NotificationAttributes()
    writable: bool = False


@attrs.frozen
class EndpointPattern:
    """``sensor-*`` (a shell glob) or ``re:^temp-[0-9]+$`` (a regular expression, full match)."""

    text: str

    def matches(self, endpoint: str) -> bool:
        if self.text.startswith("re:"):
            return re.fullmatch(self.text[3:], endpoint) is not None
        return fnmatch.fnmatchcase(endpoint, self.text)


@attrs.frozen
class UpdateSetting:
    """The profile's ``firmware.<kind>`` entry (ThingsBoard's per-profile update strategy and
    package): what a campaign targeting the profile uses when it names neither."""

    strategy: Strategy = Strategy.AUTO
    package_id: str | None = None
    """A package by id (its SHA-256), or by ``package_name`` + ``package_version``."""
    package_name: str | None = None
    package_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        package: object = self.package_id
        if package is None and self.package_name is not None:
            package = {"name": self.package_name, "version": self.package_version}
        return {"strategy": self.strategy.value, "package": package}


def _mapping_dict(value: Mapping[LwM2mPath, ResourceMapping]) -> dict[LwM2mPath, ResourceMapping]:
    return dict(value)


def document_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the normalised document: JSON as the store keeps it (``{3303: "1.1"}`` from
    YAML and ``{"3303": "1.1"}`` read back are one document), keys sorted. Two documents with
    one digest make the same profile, so a reload that finds the digest unchanged has nothing
    to re-apply."""
    normalised = json.loads(json.dumps(document, default=str))
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.frozen
class Profile:
    name: str
    source: str
    """Where it came from: a file path, ``api``, or ``builtin``."""
    document: Mapping[str, Any]
    """The document it was built from (what the store keeps and ``show`` prints)."""
    objects: Mapping[int, str] = attrs.field(factory=dict)
    """Expected object versions (``3303: "1.1"``)."""
    resources: Mapping[LwM2mPath, ResourceMapping] = attrs.field(
        factory=dict, converter=_mapping_dict
    )
    observe_strategy: ObserveStrategy = ObserveStrategy.SINGLE
    on_connect: OnConnect = OnConnect.OBSERVE_ONLY
    keep_unmapped: bool = True
    endpoints: tuple[EndpointPattern, ...] = ()
    description: str = ""
    bootstrap: Mapping[str, Any] | None = None
    """The bootstrap server's section, validated by ``keystore.bootstrap_config.loader``
    (a profile-kind ``BootstrapConfig``) but kept opaque here: the bootstrap server reads it."""
    retention: float | None = None
    """Seconds of telemetry history kept for this profile's devices (``retention: 30d``);
    ``0.0``: forever; None: the deployment's ``telemetry.retention``
    (``lwm2m_server.telemetry_retention``)."""
    firmware: Mapping[PackageKind, UpdateSetting] = attrs.field(factory=dict)
    """The ``firmware`` section: update strategy and package per kind (docs/firmware.md)."""
    _digest: str = attrs.field(init=False, eq=False, repr=False, default="")

    def __attrs_post_init__(self) -> None:
        # once, here: ``digest`` is read on every Register (the device's status records which
        # version of its profile it got), and hashing the normalised document cost ~20 µs
        object.__setattr__(self, "_digest", document_digest(self.document))

    def by_key(self, key: str) -> ResourceMapping | None:
        return next((m for m in self.resources.values() if m.key == key), None)

    def mapping_for(self, path: LwM2mPath) -> tuple[ResourceMapping, str] | None:
        """The mapping of a leaf path and the key it gets: the exact path, else its resource
        (a resource instance ``/3/0/6/1`` of a mapped ``/3/0/6`` is ``key[1]``)."""
        found = self.resources.get(path)
        if found is not None:
            return found, found.key
        if path.is_resource_instance:
            parent = self.resources.get(path.parent)
            if parent is not None:
                return parent, f"{parent.key}[{path.resource_instance_id}]"
        return None

    @property
    def observed(self) -> list[LwM2mPath]:
        return sorted(p for p, m in self.resources.items() if m.observe)

    @property
    def mapped(self) -> list[LwM2mPath]:
        return sorted(self.resources)

    @property
    def digest(self) -> str:
        """``document_digest`` of the document (what a reload compares), computed once."""
        return self._digest

    def matches(self, endpoint: str) -> bool:
        return any(p.matches(endpoint) for p in self.endpoints)


@functools.cache
def builtin_default() -> Profile:
    """The profile of devices nothing else claims: today's behaviour (no requests, default
    telemetry keys).

    One instance for the process (a frozen value): it is what ``Catalog.resolve`` returns for
    every device without a profile, i.e. on every Register of most fleets, and building it
    each time hashed its document again (~20 µs) and gave every device's status its own copy
    of the 64-character digest (~110 bytes per registered device)."""
    return Profile(
        name=DEFAULT_PROFILE,
        source="builtin",
        document={"name": DEFAULT_PROFILE, "description": "built in: observe nothing"},
        description="built in: observe nothing",
    )

"""Object models: what an object and its resources look like (DDF semantics, LwM2M Core §7).

``ModelProvider`` is the small lookup the codecs need: "the model of object N as this client
knows it". The registry implements it for the latest versions, and gives per-client views for
the object versions a client registered (``</3303>;ver=1.0``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Protocol

import attrs

from .types import ResourceType


class Operations(enum.Enum):
    NONE = ""  # no access (used by some resources in the registry, and by none-typed ones)
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @classmethod
    def from_name(cls, text: str) -> Operations:
        key = (text or "").strip().upper()
        for member in cls:
            if member.value == key:
                return member
        raise ValueError(f"unknown operations {text!r}, expected R, W, RW, E or empty")

    @property
    def readable(self) -> bool:
        return "R" in self.value

    @property
    def writable(self) -> bool:
        return "W" in self.value

    @property
    def executable(self) -> bool:
        return self is Operations.E


@attrs.frozen
class ResourceModel:
    id: int
    name: str
    operations: Operations
    multiple: bool
    mandatory: bool
    type: ResourceType
    range_enumeration: str = ""
    units: str = ""
    description: str = ""


def _resource_dict(resources: Mapping[int, ResourceModel]) -> dict[int, ResourceModel]:
    return dict(resources)


@attrs.frozen
class ObjectModel:
    id: int
    name: str
    resources: Mapping[int, ResourceModel] = attrs.field(converter=_resource_dict)
    version: str = "1.0"
    lwm2m_version: str = "1.0"
    multiple: bool = True
    mandatory: bool = False
    urn: str = ""
    description: str = ""
    description2: str = ""

    def resource(self, resource_id: int) -> ResourceModel | None:
        return self.resources.get(resource_id)


class ModelProvider(Protocol):
    """What a codec needs from the registry: the model of an object, or ``None`` if unknown."""

    def get_object(self, object_id: int) -> ObjectModel | None: ...


def _model_dict(models: Mapping[int, ObjectModel]) -> dict[int, ObjectModel]:
    return dict(models)


@attrs.frozen
class StaticModels:
    """A ``ModelProvider`` over a fixed set of models (tests, and per-client views)."""

    objects: Mapping[int, ObjectModel] = attrs.field(converter=_model_dict)

    @classmethod
    def of(cls, *models: ObjectModel) -> StaticModels:
        return cls({m.id: m for m in models})

    def get_object(self, object_id: int) -> ObjectModel | None:
        return self.objects.get(object_id)


def resource_model(models: ModelProvider, object_id: int, resource_id: int) -> ResourceModel | None:
    obj = models.get_object(object_id)
    return None if obj is None else obj.resource(resource_id)


def is_multiple(models: ModelProvider) -> IsMultipleFn:
    """An ``is_multiple(object_id, resource_id)`` callback for ``node.build_node``."""

    def check(object_id: int, resource_id: int) -> bool | None:
        res = resource_model(models, object_id, resource_id)
        return None if res is None else res.multiple

    return check


class IsMultipleFn(Protocol):
    def __call__(self, object_id: int, resource_id: int) -> bool | None: ...

"""``GET /leshan/api/objectspecs/{ep}``: the object models a client is served with, in the
JSON of Leshan's ``ObjectModelSerDes``/``ResourceModelSerDes`` (the shape Leshan's UI builds its
object tree from: ``instancetype``, ``resourcedefs``, lower-case ``type``, ``operations``)."""

from __future__ import annotations

from typing import Any

from object_models.model import ObjectModel, ResourceModel
from object_models.types import ResourceType

from ..state import ApiState

JsonDict = dict[str, Any]

_TYPES = {
    ResourceType.CORELNK: "corelink",
    ResourceType.UNSIGNED_INTEGER: "unsigned_integer",
}


def _type(rtype: ResourceType) -> str:
    return _TYPES.get(rtype, rtype.name.lower())


def resource_spec(model: ResourceModel) -> JsonDict:
    return {
        "id": model.id,
        "name": model.name,
        "operations": model.operations.name,
        "instancetype": "multiple" if model.multiple else "single",
        "mandatory": model.mandatory,
        "type": _type(model.type),
        "range": model.range_enumeration,
        "units": model.units,
        "description": model.description,
    }


def object_spec(model: ObjectModel) -> JsonDict:
    return {
        "id": model.id,
        "name": model.name,
        "instancetype": "multiple" if model.multiple else "single",
        "mandatory": model.mandatory,
        "urn": model.urn or f"urn:oma:lwm2m:oma:{model.id}",
        "version": model.version,
        "lwm2mversion": model.lwm2m_version,
        "description": model.description,
        "description2": model.description2,
        "resourcedefs": [resource_spec(r) for _, r in sorted(model.resources.items())],
    }


def object_specs(state: ApiState, endpoint: str) -> list[JsonDict]:
    """Every object the registry knows, in the version this client registered (its declared
    objects first of all), sorted by id, as Leshan's model provider gives them per client."""
    models = state.models(endpoint)
    ids: set[int] = set(state.ops.client(endpoint).object_links.objects)
    listing = getattr(state.registry, "objects", None)
    if callable(listing):
        ids.update(m.id for m in listing())
    result = []
    for object_id in sorted(ids):
        model = models.get_object(object_id)
        if model is not None:
            result.append(object_spec(model))
    return result

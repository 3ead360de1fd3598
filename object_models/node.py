"""LwM2M nodes: object, object instance, resource (single or multiple), resource instance.

Nodes are immutable values (like Leshan's ``LwM2mNode``). A resource carries its
``ResourceType`` so that a node can be encoded without a model at hand. ``flatten`` and
``build_node`` convert between a node and the flat ``(path, type, value)`` list that the
SenML/LwM2M CBOR family uses on the wire; every codec shares them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs

from .errors import CodecError
from .path import LwM2mPath
from .types import ResourceType, Value, guess_type


def _dict(value: Mapping[int, object]) -> dict[int, object]:
    return dict(value)


@attrs.frozen
class LwM2mResourceInstance:
    id: int
    value: Value
    type: ResourceType

    @classmethod
    def new(cls, id: int, value: Value, type: ResourceType | None = None) -> LwM2mResourceInstance:
        return cls(id, value, type if type is not None else guess_type(value))


@attrs.frozen
class LwM2mSingleResource:
    id: int
    value: Value
    type: ResourceType

    @classmethod
    def new(cls, id: int, value: Value, type: ResourceType | None = None) -> LwM2mSingleResource:
        return cls(id, value, type if type is not None else guess_type(value))


@attrs.frozen
class LwM2mMultipleResource:
    id: int
    instances: Mapping[int, LwM2mResourceInstance] = attrs.field(converter=_dict)
    type: ResourceType = ResourceType.STRING

    @classmethod
    def from_values(
        cls, id: int, values: Mapping[int, Value], type: ResourceType | None = None
    ) -> LwM2mMultipleResource:
        if type is None:
            type = guess_type(next(iter(values.values()))) if values else ResourceType.STRING
        return cls(id, {k: LwM2mResourceInstance(k, v, type) for k, v in values.items()}, type)

    @property
    def values(self) -> dict[int, Value]:
        return {k: ri.value for k, ri in self.instances.items()}


LwM2mResource = LwM2mSingleResource | LwM2mMultipleResource


@attrs.frozen
class LwM2mObjectInstance:
    """An object instance; ``id`` is ``None`` in a Create that lets the client pick the id."""

    id: int | None
    resources: Mapping[int, LwM2mResource] = attrs.field(converter=_dict)

    @classmethod
    def of(cls, id: int | None, *resources: LwM2mResource) -> LwM2mObjectInstance:
        return cls(id, {r.id: r for r in resources})


@attrs.frozen
class LwM2mObject:
    id: int
    instances: Mapping[int, LwM2mObjectInstance] = attrs.field(converter=_dict)


LwM2mNode = (
    LwM2mObject
    | LwM2mObjectInstance
    | LwM2mSingleResource
    | LwM2mMultipleResource
    | LwM2mResourceInstance
)


@attrs.frozen
class TimestampedNodes:
    """Values with their time, as SenML carries them in notifications and Send.

    ``entries`` is ordered as received; each holds a timestamp (seconds since the epoch as a
    float, or ``None`` when the payload had no time) and the nodes at that time by path.
    """

    entries: tuple[tuple[float | None, Mapping[LwM2mPath, LwM2mNode]], ...]

    def latest(self) -> dict[LwM2mPath, LwM2mNode]:
        """The most recent node per path (later entries win on equal timestamps)."""
        result: dict[LwM2mPath, tuple[float, LwM2mNode]] = {}
        for ts, nodes in self.entries:
            key = float("-inf") if ts is None else ts
            for path, node in nodes.items():
                if path not in result or key >= result[path][0]:
                    result[path] = (key, node)
        return {p: n for p, (_, n) in result.items()}


def node_depth(node: LwM2mNode) -> int:
    """The path depth a node lives at (1 object … 4 resource instance)."""
    if isinstance(node, LwM2mObject):
        return 1
    if isinstance(node, LwM2mObjectInstance):
        return 2
    if isinstance(node, LwM2mSingleResource | LwM2mMultipleResource):
        return 3
    return 4


def flatten(path: LwM2mPath, node: LwM2mNode) -> Iterator[tuple[LwM2mPath, ResourceType, Value]]:
    """Every leaf value under ``node`` (which lives at ``path``) with its full path.

    Leaves are single resources and resource instances; a multiple resource or an instance
    with nothing in it yields nothing.
    """
    if isinstance(node, LwM2mObject):
        for inst in node.instances.values():
            yield from flatten(path.child(_instance_id(inst, path)), inst)
    elif isinstance(node, LwM2mObjectInstance):
        for res in node.resources.values():
            yield from flatten(path.child(res.id), res)
    elif isinstance(node, LwM2mMultipleResource):
        for ri in node.instances.values():
            yield path.child(ri.id), ri.type, ri.value
    else:
        yield path, node.type, node.value


def _instance_id(inst: LwM2mObjectInstance, where: LwM2mPath) -> int:
    if inst.id is None:
        raise CodecError("object instance without an id inside an object", path=where)
    return inst.id


IsMultiple = Callable[[int, int], bool | None]
"""``is_multiple(object_id, resource_id)`` from the model: True/False, or None when unknown."""


def build_node(
    target: LwM2mPath,
    leaves: Iterable[tuple[LwM2mPath, ResourceType, Value]],
    is_multiple: IsMultiple,
) -> LwM2mNode:
    """Assemble the node at ``target`` from flat leaves (the inverse of ``flatten``).

    Leaves outside ``target`` or shallower than a resource are a ``CodecError``. A leaf at a
    resource path is a single resource unless the model says the resource is multiple; a leaf at
    a resource-instance path always makes its resource multiple. Mixing both for one resource,
    or giving the same path twice, is a ``CodecError``.
    """
    if target.is_root:
        raise CodecError("cannot build a single node at the root path; decode as multi-path")
    singles: dict[tuple[int, int, int], tuple[ResourceType, Value]] = {}
    multiples: dict[tuple[int, int, int], dict[int, tuple[ResourceType, Value]]] = {}
    instance_order: dict[int, None] = {}
    for leaf_path, rtype, value in leaves:
        if not leaf_path.starts_with(target):
            raise CodecError(f"value for {leaf_path} is outside the requested path", path=target)
        if leaf_path.depth < 3:
            raise CodecError("a value needs a resource or resource-instance path", path=leaf_path)
        o, i, r = leaf_path.ids[:3]
        key = (o, i, r)
        instance_order.setdefault(i)
        if leaf_path.is_resource_instance or is_multiple(o, r) is True:
            if key in singles:
                raise CodecError("resource given both as single and as multiple", path=leaf_path)
            if leaf_path.is_resource:
                raise CodecError(
                    "multiple-instance resource given without an instance id", path=leaf_path
                )
            ri = leaf_path.ids[3]
            bucket = multiples.setdefault(key, {})
            if ri in bucket:
                raise CodecError("the same resource instance is given twice", path=leaf_path)
            bucket[ri] = (rtype, value)
        else:
            if key in singles or key in multiples:
                raise CodecError("the same resource is given twice", path=leaf_path)
            singles[key] = (rtype, value)

    resources: dict[int, dict[int, LwM2mResource]] = {i: {} for i in instance_order}
    for (_, i, r), (rtype, value) in singles.items():
        resources[i][r] = LwM2mSingleResource(r, value, rtype)
    for (o, i, r), bucket in multiples.items():
        first_type = next(iter(bucket.values()))[0]
        resources[i][r] = LwM2mMultipleResource(
            r, {ri: LwM2mResourceInstance(ri, v, t) for ri, (t, v) in bucket.items()}, first_type
        )
        del o

    if target.is_resource_instance:
        assert target.resource_id is not None and target.instance_id is not None
        ri_id = target.ids[3]
        res = resources.get(target.instance_id, {}).get(target.resource_id)
        if isinstance(res, LwM2mMultipleResource) and ri_id in res.instances:
            return res.instances[ri_id]
        if isinstance(res, LwM2mSingleResource):
            return LwM2mResourceInstance(ri_id, res.value, res.type)
        raise CodecError("payload holds no value for the resource instance", path=target)
    if target.is_resource:
        assert target.resource_id is not None and target.instance_id is not None
        found = resources.get(target.instance_id, {}).get(target.resource_id)
        if found is None:
            if is_multiple(target.ids[0], target.resource_id) is True:
                return LwM2mMultipleResource(target.resource_id, {}, ResourceType.STRING)
            raise CodecError("payload holds no value for the resource", path=target)
        return found
    if target.is_object_instance:
        return LwM2mObjectInstance(target.instance_id, resources.get(target.ids[1], {}))
    return LwM2mObject(
        target.ids[0], {i: LwM2mObjectInstance(i, res) for i, res in resources.items()}
    )

"""Hypothesis strategies shared by every codec's property tests.

``model_and_node(depth)`` draws an object model and a node that conforms to it, at the given
path depth (1 object, 2 instance, 3 resource, 4 resource instance), so that
``decode(encode(node)) == node`` can be checked for formats that need the model to type values
(TLV, text, CBOR) as well as for self-describing ones; ``multi_path_nodes`` draws several of them
for the multi-path codecs. ``json_values`` and ``cbor_items`` / ``cbor_payloads`` draw arbitrary
documents with SenML/LwM2M-looking labels, keys and tags, as hostile input.

These are slow to generate (milliseconds an example); the full-count runs use the one-seed cases
of ``helpers`` instead (``helpers.random_cases``, built on ``seeds``). This module imports
nothing from ``helpers``, so the dependency runs one way.
"""

from __future__ import annotations

import cbor2
from hypothesis import strategies as st

from object_models.model import ObjectModel, Operations, ResourceModel, StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value

VALUE_TYPES = [t for t in ResourceType if t is not ResourceType.NONE]

ids16 = st.integers(min_value=0, max_value=65534)


def values(rtype: ResourceType) -> st.SearchStrategy[Value]:
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
    if rtype is ResourceType.INTEGER:
        return st.integers(INT64_MIN, INT64_MAX)
    if rtype is ResourceType.UNSIGNED_INTEGER:
        return st.integers(0, UINT64_MAX)
    if rtype is ResourceType.TIME:
        return st.integers(INT64_MIN, INT64_MAX)
    if rtype is ResourceType.FLOAT:
        return st.floats(allow_nan=False, allow_infinity=False)
    if rtype is ResourceType.BOOLEAN:
        return st.booleans()
    if rtype is ResourceType.OPAQUE:
        return st.binary(max_size=40)
    if rtype is ResourceType.OBJLNK:
        return st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535))
    raise AssertionError(rtype)


@st.composite
def resource_models(draw: st.DrawFn, resource_id: int) -> ResourceModel:
    return ResourceModel(
        id=resource_id,
        name=f"Res{resource_id}",
        operations=Operations.RW,
        multiple=draw(st.booleans()),
        mandatory=False,
        type=draw(st.sampled_from(VALUE_TYPES)),
    )


@st.composite
def object_models(draw: st.DrawFn, types: list[ResourceType] | None = None) -> ObjectModel:
    object_id = draw(st.integers(0, 65535))
    rids = draw(st.lists(st.integers(0, 65535), min_size=1, max_size=6, unique=True))
    resources = {}
    for rid in rids:
        model = draw(resource_models(rid))
        if types is not None:
            model = ResourceModel(
                rid,
                model.name,
                model.operations,
                model.multiple,
                False,
                draw(st.sampled_from(types)),
            )
        resources[rid] = model
    return ObjectModel(id=object_id, name="Generated", resources=resources)


@st.composite
def resources_for(draw: st.DrawFn, model: ResourceModel) -> LwM2mResource:
    if model.multiple:
        inst_ids = draw(st.lists(st.integers(0, 65535), min_size=1, max_size=4, unique=True))
        return LwM2mMultipleResource(
            model.id,
            {i: LwM2mResourceInstance(i, draw(values(model.type)), model.type) for i in inst_ids},
            model.type,
        )
    return LwM2mSingleResource(model.id, draw(values(model.type)), model.type)


@st.composite
def instances_for(draw: st.DrawFn, model: ObjectModel, instance_id: int) -> LwM2mObjectInstance:
    chosen = draw(st.lists(st.sampled_from(sorted(model.resources)), min_size=1, unique=True))
    return LwM2mObjectInstance(
        instance_id, {rid: draw(resources_for(model.resources[rid])) for rid in chosen}
    )


@st.composite
def model_and_node(
    draw: st.DrawFn, depth: int, types: list[ResourceType] | None = None
) -> tuple[StaticModels, LwM2mPath, LwM2mNode]:
    """A model, a path of the given depth and a node at that path conforming to the model."""
    model = draw(object_models(types))
    models = StaticModels.of(model)
    if depth == 1:
        inst_ids = draw(st.lists(ids16, min_size=1, max_size=3, unique=True))
        node: LwM2mNode = LwM2mObject(
            model.id, {i: draw(instances_for(model, i)) for i in inst_ids}
        )
        return models, LwM2mPath(model.id), node
    instance_id = draw(ids16)
    if depth == 2:
        return models, LwM2mPath(model.id, instance_id), draw(instances_for(model, instance_id))
    rid = draw(st.sampled_from(sorted(model.resources)))
    resource = draw(resources_for(model.resources[rid]))
    if depth == 3:
        return models, LwM2mPath(model.id, instance_id, rid), resource
    rmodel = model.resources[rid]
    ri_id = draw(st.integers(0, 65535))
    ri = LwM2mResourceInstance(ri_id, draw(values(rmodel.type)), rmodel.type)
    return models, LwM2mPath(model.id, instance_id, rid, ri_id), ri


seeds = st.integers(0, 2**64 - 1)
"""One draw that seeds a whole case (see ``helpers.random_case``)."""


@st.composite
def multi_path_nodes(
    draw: st.DrawFn,
) -> tuple[StaticModels, dict[LwM2mPath, LwM2mNode | None]]:
    """Nodes of up to three objects at mixed depths, with their models (for shrinking; the
    full-count runs use ``helpers.random_multi``)."""
    drawn = draw(
        st.lists(
            st.integers(1, 4).flatmap(model_and_node),
            min_size=1,
            max_size=3,
            unique_by=lambda x: x[1].ids[0],
        )
    )
    objects = {obj.id: obj for m, _, _ in drawn for obj in m.objects.values()}
    nodes: dict[LwM2mPath, LwM2mNode | None] = {path: node for _, path, node in drawn}
    return StaticModels(objects), nodes


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["/3/0/", "/3/0/7/1", "0", "6/0", "66:0", "AQ", "/3/0/9"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["bn", "n", "bt", "t", "v", "vs", "vb", "vd", "vlo", "bv", "u", "x_"])
            | st.text(max_size=3),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
"""Arbitrary JSON with SenML-looking labels and names."""

_TAGS = st.sampled_from([0, 1, 2, 4, 5, 24, 28, 29, 35, 258, 55799])
cbor_items = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from(["/3/0/", "/3/0/7/1", "0", "6/0", "66:0", "vlo", "/3/0/9"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.integers(-6, 9) | st.sampled_from(["vlo", "n", "bn"]), inner, max_size=4
        )
        | st.builds(cbor2.CBORTag, _TAGS, inner)
    ),
    max_leaves=12,
)
"""Arbitrary CBOR with SenML/LwM2M-looking labels, keys and tags."""


def _dumps(item: object) -> bytes:
    try:
        return cbor2.dumps(item)
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return b"\xa0"


cbor_payloads = st.binary(max_size=64) | cbor_items.map(_dumps)

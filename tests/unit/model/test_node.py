"""flatten/build_node: the flat (path, type, value) view every SenML-family codec shares."""

import pytest
from hypothesis import given

from object_models.errors import CodecError
from object_models.model import is_multiple
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    TimestampedNodes,
    build_node,
    flatten,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType
from tests.unit.codecs.strategies import model_and_node


@given(model_and_node(1) | model_and_node(2) | model_and_node(3) | model_and_node(4))
def test_build_node_inverts_flatten(drawn: tuple) -> None:  # type: ignore[type-arg]
    models, path, node = drawn
    rebuilt = build_node(path, flatten(path, node), is_multiple(models))
    assert rebuilt == node


def test_leaf_outside_target_is_refused() -> None:
    leaves = [(LwM2mPath(3, 1, 0), ResourceType.STRING, "x")]
    with pytest.raises(CodecError, match="outside"):
        build_node(LwM2mPath(3, 0), leaves, lambda o, r: None)


def test_same_path_twice_is_refused() -> None:
    leaf = (LwM2mPath(3, 0, 0), ResourceType.STRING, "x")
    with pytest.raises(CodecError, match="twice"):
        build_node(LwM2mPath(3, 0), [leaf, leaf], lambda o, r: None)


def test_resource_instance_paths_make_a_multiple_resource() -> None:
    leaves = [
        (LwM2mPath(3, 0, 7, 0), ResourceType.INTEGER, 3800),
        (LwM2mPath(3, 0, 7, 1), ResourceType.INTEGER, 5000),
    ]
    node = build_node(LwM2mPath(3, 0), leaves, lambda o, r: None)
    assert node == LwM2mObjectInstance.of(
        0,
        LwM2mMultipleResource(
            7,
            {
                0: LwM2mResourceInstance(0, 3800, ResourceType.INTEGER),
                1: LwM2mResourceInstance(1, 5000, ResourceType.INTEGER),
            },
            ResourceType.INTEGER,
        ),
    )


def test_timestamped_latest_keeps_newest() -> None:
    p = LwM2mPath(3303, 0, 5700)
    data = TimestampedNodes(
        (
            (10.0, {p: LwM2mSingleResource.new(5700, 1.0)}),
            (20.0, {p: LwM2mSingleResource.new(5700, 2.0)}),
            (15.0, {p: LwM2mSingleResource.new(5700, 3.0)}),
        )
    )
    assert data.latest()[p] == LwM2mSingleResource.new(5700, 2.0)

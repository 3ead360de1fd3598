"""application/octet-stream (42): one Opaque value, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models.codecs import opaque
from object_models.errors import CodecError, ResponseCode
from object_models.model import StaticModels
from object_models.node import LwM2mMultipleResource, LwM2mResourceInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from .helpers import examples, object_model

T = ResourceType
MODELS = StaticModels.of(
    object_model(
        5,
        "Firmware Update",
        (0, "Package", T.OPAQUE, False),
        (1, "Package URI", T.STRING, False),
        (2, "Blobs", T.OPAQUE, True),
    )
)


def test_firmware_package() -> None:
    node = LwM2mSingleResource(0, b"\x00\xff" * 10, T.OPAQUE)
    assert opaque.encode(node, LwM2mPath(5, 0, 0), MODELS) == b"\x00\xff" * 10
    assert opaque.decode(b"\x00\xff" * 10, LwM2mPath(5, 0, 0), MODELS) == node


def test_resource_instance_and_unknown_resource() -> None:
    assert opaque.decode(b"ab", LwM2mPath(5, 0, 2, 7), MODELS) == (
        LwM2mResourceInstance(7, b"ab", T.OPAQUE)
    )
    assert opaque.decode(b"ab", LwM2mPath(77, 0, 1), MODELS) == (
        LwM2mSingleResource(1, b"ab", T.OPAQUE)
    )


def test_other_types_and_levels_are_refused() -> None:
    for path in (LwM2mPath(5, 0, 1), LwM2mPath(5, 0, 2), LwM2mPath(5, 0)):
        with pytest.raises(CodecError) as info:
            opaque.decode(b"x", path, MODELS)
        assert info.value.code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT
        assert str(path) in str(info.value)
    for node, path in (
        (LwM2mSingleResource(1, "x", T.STRING), LwM2mPath(5, 0, 1)),
        (LwM2mMultipleResource.from_values(2, {0: b"x"}, T.OPAQUE), LwM2mPath(5, 0, 2)),
    ):
        with pytest.raises(CodecError) as info:
            opaque.encode(node, path, MODELS)
        assert info.value.code is ResponseCode.NOT_ACCEPTABLE


@settings(max_examples=examples(0.2), deadline=None)
@given(st.binary(max_size=2048))
def test_roundtrip(payload: bytes) -> None:
    node = opaque.decode(payload, LwM2mPath(5, 0, 0), MODELS)
    assert opaque.encode(node, LwM2mPath(5, 0, 0), MODELS) == payload

"""application/octet-stream (content format 42): the raw bytes of one Opaque value.

LwM2M Core 1.1.1 §7.4.2: used for Read and Write of a single Opaque resource or resource
instance (firmware packages, application blobs). Any other type, or a node that is not a single
value, cannot be carried: 4.06 when we are asked to produce it, 4.15 when we are sent it.
"""

from __future__ import annotations

from ..errors import CodecError, ResponseCode
from ..model import ModelProvider
from ..node import LwM2mNode, LwM2mResourceInstance, LwM2mSingleResource
from ..path import LwM2mPath
from ..types import ResourceType
from .common import check_node_id, check_single_value_path, model_type, single_value_node


def encode(node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
    del models  # the node carries its type
    if (
        not isinstance(node, LwM2mSingleResource | LwM2mResourceInstance)
        or path.depth < 3
        or node.type is not ResourceType.OPAQUE
        or not isinstance(node.value, bytes)
    ):
        raise CodecError(
            "application/octet-stream carries only one Opaque resource or resource instance",
            path=path,
            code=ResponseCode.NOT_ACCEPTABLE,
        )
    check_node_id(node.id, path)
    return node.value


def decode(payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """The bytes as they are; the model must say Opaque (an unknown resource is taken as one)."""
    code = ResponseCode.UNSUPPORTED_CONTENT_FORMAT
    check_single_value_path(path, models, "application/octet-stream", code)
    rtype = model_type(models, path)
    if rtype not in (None, ResourceType.OPAQUE):
        raise CodecError(
            f"application/octet-stream cannot carry a {rtype.value} resource", path=path, code=code
        )
    return single_value_node(path, bytes(payload), ResourceType.OPAQUE)

"""LwM2M CBOR (Content-Format 11544, LwM2M Core 1.2 §7.4.4): vectors, bad input, properties.

The OMA text was not at hand when these were written; the Device vector is the Core spec's Device
instance in the layout our encoder chooses (module docstring of ``lwm2m_cbor``), and the decoding
vectors are the ones another LwM2M 1.2 implementation (Anjay) tests its reader with: compacted,
nested, mixed and indefinite-length keys, null values and decimal fractions.
"""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given

from object_models import codecs
from object_models.codecs import lwm2m_cbor
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, ResponseCode
from object_models.model import StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    TimestampedNodes,
    flatten,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink
from object_models.types import ResourceType as T

from .helpers import (
    CBOR_ALPHABET,
    DEVICE_INSTANCE,
    EXAMPLES,
    OBJ65_INSTANCE,
    SPEC_MODELS,
    Case,
    CodecProperties,
    leaf_node,
    multi,
    random_cases,
    single,
    spec_payloads,
)
from .strategies import cbor_payloads

NO_MODELS = StaticModels({})

DEVICE_ITEM = {
    (3, 0): {
        0: "Open Mobile Alliance",
        1: "Lightweight M2M Client",
        2: "345000123",
        3: "1.0",
        6: {0: 1, 1: 5},
        7: {0: 3800, 1: 5000},
        8: {0: 125, 1: 900},
        9: 100,
        10: 15,
        (11, 0): 0,
        13: cbor2.CBORTag(1, 1367491215),
        14: "+02:00",
        16: "U",
    }
}


def test_device_instance_read() -> None:
    """Core 1.2 §7.4.4: Read /3/0 in LwM2M CBOR, path compacted into the key [3, 0]."""
    payload = lwm2m_cbor.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS)
    assert payload == cbor2.dumps(DEVICE_ITEM)
    assert lwm2m_cbor.decode(payload, LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_INSTANCE


def test_device_instance_without_compaction() -> None:
    """Core 1.2 §7.4.4: the same data nested one id per level, Time as a bare integer."""
    nested = {
        3: {0: {k if isinstance(k, int) else k[0]: v for k, v in DEVICE_ITEM[(3, 0)].items()}}
    }
    nested[3][0][11] = {0: 0}
    nested[3][0][13] = 1367491215
    node = lwm2m_cbor.decode(cbor2.dumps(nested), LwM2mPath(3, 0), SPEC_MODELS)
    assert node == DEVICE_INSTANCE


def test_object_links_and_single_resource() -> None:
    """Core 1.2 §7.4.4: Objlnk values are "o:i" text; a single resource is one compacted key."""
    payload = lwm2m_cbor.encode(OBJ65_INSTANCE, LwM2mPath(65, 0), SPEC_MODELS)
    assert cbor2.loads(payload) == {
        (65, 0): {0: {0: "66:0", 1: "66:1"}, 1: "8613800755500", 2: 305419896}
    }
    node = single(9, 100, T.INTEGER)
    assert lwm2m_cbor.encode(node, LwM2mPath(3, 0, 9), SPEC_MODELS) == bytes.fromhex(
        "a1830300091864"
    )
    link = LwM2mResourceInstance(1, ObjectLink(66, 1), T.OBJLNK)
    assert lwm2m_cbor.encode(link, LwM2mPath(65, 0, 0, 1), SPEC_MODELS) == cbor2.dumps(
        {(65, 0, 0, 1): "66:1"}
    )


@pytest.mark.parametrize(
    "hexdata",
    [
        "a1830d181a01182a",  # {[13, 26, 1]: 42}
        "bf9f0d181a01ff182aff",  # {_ [_ 13, 26, 1]: 42}
        "a10da1181aa101182a",  # {13: {26: {1: 42}}}
        "a1810da181181aa18101182a",  # {[13]: {[26]: {[1]: 42}}}
        "bf9f0dffbf9f181affbf9f01ff182affffff",  # all indefinite
    ],
)
def test_key_forms_decode_alike(hexdata: str) -> None:
    """Core 1.2 §7.4.4 path compaction: every key form names /13/26/1."""
    node = lwm2m_cbor.decode(bytes.fromhex(hexdata), LwM2mPath(13, 26, 1), NO_MODELS)
    assert node == single(1, 42, T.INTEGER)


def test_mixed_keys_null_and_decimal_fraction() -> None:
    """Core 1.2 §7.4.4: keys of different forms in one map, null as a value-less path."""
    mixed = bytes.fromhex("a2820d181aa101182a830d181a0215")  # {[13, 26]: {1: 42}, [13, 26, 2]: 21}
    assert lwm2m_cbor.decode_nodes(mixed, NO_MODELS) == {
        LwM2mPath(13, 26, 1): single(1, 42, T.INTEGER),
        LwM2mPath(13, 26, 2): single(2, 21, T.INTEGER),
    }
    nulls = bytes.fromhex("a1830d181a01a202f60305")  # {[13, 26, 1]: {2: null, 3: 5}}
    assert lwm2m_cbor.decode_nodes(nulls, NO_MODELS) == {
        LwM2mPath(13, 26, 1, 2): None,
        LwM2mPath(13, 26, 1, 3): LwM2mResourceInstance(3, 5, T.INTEGER),
    }
    fraction = bytes.fromhex("a1810da181181aa18101a18102c48220182d")  # 4([-1, 45])
    assert lwm2m_cbor.decode(fraction, LwM2mPath(13, 26, 1, 2), NO_MODELS) == (
        LwM2mResourceInstance(2, 4.5, T.FLOAT)
    )


def test_read_composite_response() -> None:
    """Core 1.2 Read-Composite answered in LwM2M CBOR: one map from the root."""
    nodes: dict[LwM2mPath, LwM2mNode | None] = {
        LwM2mPath(3, 0, 0): single(0, "Open Mobile Alliance", T.STRING),
        LwM2mPath(3, 0, 9): single(9, 95, T.INTEGER),
        LwM2mPath(1, 0, 1): single(1, 86400, T.INTEGER),
    }
    payload = lwm2m_cbor.encode_nodes(nodes, SPEC_MODELS)
    assert cbor2.loads(payload) == {
        (1, 0, 1): 86400,
        (3, 0): {0: "Open Mobile Alliance", 9: 95},
    }
    assert lwm2m_cbor.decode_nodes(payload, SPEC_MODELS, list(nodes)) == nodes
    grouped = lwm2m_cbor.decode_nodes(payload, SPEC_MODELS, [LwM2mPath(3, 0), LwM2mPath(1, 0, 1)])
    assert grouped[LwM2mPath(3, 0)] == LwM2mObjectInstance.of(
        0, single(0, "Open Mobile Alliance", T.STRING), single(9, 95, T.INTEGER)
    )


def test_write_composite_delete_and_multiple() -> None:
    """Write-Composite: values and deletions (null) in one payload."""
    nodes: dict[LwM2mPath, LwM2mNode | None] = {
        LwM2mPath(3, 0, 7): multi(7, {0: 3800, 1: 5000}, T.INTEGER),
        LwM2mPath(3, 0, 8, 1): None,
    }
    payload = lwm2m_cbor.encode_nodes(nodes, SPEC_MODELS)
    assert cbor2.loads(payload) == {(3, 0): {7: {0: 3800, 1: 5000}, (8, 1): None}}
    assert lwm2m_cbor.decode_nodes(payload, SPEC_MODELS, list(nodes)) == nodes


BAD = [
    ("a1830d181a1a0001000005", "/13/26/65536: invalid path"),  # {[13, 26, 65536]: 5}
    ("a1850d181a03040505", "deeper than a resource instance"),  # {[13, 26, 3, 4, 5]: 5}
    ("a10da1181aa101a102a10304", "deeper than a resource instance"),  # {13: {26: {1: {2: {3: 4}}}}}
    ("a10da180181a", "empty array as a path key"),  # {13: {[]: 26}}
    ("a1830dfb3fd0a3d70a3d70a401182a", "is not made of ids"),  # {[13, 0.26, 1]: 42}
    ("a10da16232361801", "is not made of ids"),  # {13: {"26": 1}}
    ("00", "payload must be a map"),
    ("8401020304", "payload must be a map"),
    ("a10da1181a81a101182a", "a value needs a resource"),  # {13: {26: [{1: 42}]}}
    ("a1820d181aa1", "invalid CBOR"),  # cut in the middle
    ("a1830300096131", "/3/0/9: invalid value for a Integer resource: expected an integer"),
    ("a1830300001864", "/3/0/0: invalid value for a String resource: expected str"),
    ("a183030009f6", "record has no value"),
    ("a1830d181a01c2410a", "cannot take tag 2 as a resource value"),
]


@pytest.mark.parametrize(("hexdata", "message"), BAD)
def test_bad_input(hexdata: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        lwm2m_cbor.decode(bytes.fromhex(hexdata), LwM2mPath(3), SPEC_MODELS)


def test_bad_encodings() -> None:
    overlapping: dict[LwM2mPath, LwM2mNode | None] = {
        LwM2mPath(3, 0, 9): single(9, 1, T.INTEGER),
        LwM2mPath(3, 0, 9, 0): None,
    }
    with pytest.raises(CodecError, match="also has children"):
        lwm2m_cbor.encode_nodes(overlapping, SPEC_MODELS)
    with pytest.raises(CodecError, match="/3/0/9: cannot encode as Integer"):
        lwm2m_cbor.encode(single(9, "x", T.STRING), LwM2mPath(3, 0, 9), SPEC_MODELS)


# -- properties -----------------------------------------------------------------------------------


class TestLwm2mCborProperties(CodecProperties):
    module = lwm2m_cbor
    seed_payloads = spec_payloads(lwm2m_cbor)
    alphabet = CBOR_ALPHABET
    structured = cbor_payloads


# -- Send and notifications (decode_timestamped) ------------------------------------------------

SEND_ITEM = {
    (3303, 0, 5700): 25.5,
    (3, 0): {9: 95, 13: cbor2.CBORTag(1, 1700000000), 6: {0: 1, 1: 5}},
}


def test_send_decodes_as_one_entry_without_a_time() -> None:
    """Core 1.2 Send (POST /dp) in LwM2M CBOR: the format has no time field, so every value is
    one entry whose time is None (the server stamps it with the receive time); one node per
    value, like SenML's Send."""
    expected = TimestampedNodes(
        (
            (
                None,
                {
                    LwM2mPath(3303, 0, 5700): single(5700, 25.5, T.FLOAT),
                    LwM2mPath(3, 0, 9): single(9, 95, T.INTEGER),
                    LwM2mPath(3, 0, 13): single(13, 1700000000, T.TIME),
                    LwM2mPath(3, 0, 6, 0): LwM2mResourceInstance(0, 1, T.INTEGER),
                    LwM2mPath(3, 0, 6, 1): LwM2mResourceInstance(1, 5, T.INTEGER),
                },
            ),
        )
    )
    payload = cbor2.dumps(SEND_ITEM)
    assert lwm2m_cbor.decode_timestamped(payload, SPEC_MODELS) == expected
    assert codecs.decode_timestamped(payload, ContentFormat.LWM2M_CBOR, SPEC_MODELS) == expected
    assert codecs.supports(ContentFormat.LWM2M_CBOR, "decode_timestamped")


def test_send_without_models_types_values_by_their_cbor_type() -> None:
    """A Send of a custom object the server has no model for still decodes."""
    payload = cbor2.dumps({(32768, 0): {0: 500, 1: 2.5, 2: "on", 3: 2**64 - 1}})
    [(time, nodes)] = lwm2m_cbor.decode_timestamped(payload, NO_MODELS).entries
    assert time is None
    assert nodes == {
        LwM2mPath(32768, 0, 0): single(0, 500, T.INTEGER),
        LwM2mPath(32768, 0, 1): single(1, 2.5, T.FLOAT),
        LwM2mPath(32768, 0, 2): single(2, "on", T.STRING),
        LwM2mPath(32768, 0, 3): single(3, 2**64 - 1, T.UNSIGNED_INTEGER),
    }


def test_notification_decodes_the_observed_node() -> None:
    """A notification of one observed path: the node at that path, without a time."""
    payload = lwm2m_cbor.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS)
    data = codecs.decode_timestamped(
        payload, ContentFormat.LWM2M_CBOR, SPEC_MODELS, LwM2mPath(3, 0)
    )
    assert data == TimestampedNodes(((None, {LwM2mPath(3, 0): DEVICE_INSTANCE}),))


def test_send_edge_cases() -> None:
    """An empty Send carries nothing; a null (a path without a value) means nothing in a Send
    or a notification and is a 4.00, like a SenML record without a value; a value outside the
    observed path is a 4.00."""
    assert lwm2m_cbor.decode_timestamped(b"", SPEC_MODELS) == TimestampedNodes(())
    assert lwm2m_cbor.decode_timestamped(b"\xa0", SPEC_MODELS) == TimestampedNodes(())
    with pytest.raises(CodecError, match="/3/0/9: record has no value") as info:
        lwm2m_cbor.decode_timestamped(cbor2.dumps({(3, 0, 9): None}), SPEC_MODELS)
    assert info.value.code is ResponseCode.BAD_REQUEST
    with pytest.raises(CodecError, match="outside the requested path") as info:
        lwm2m_cbor.decode_timestamped(cbor2.dumps({(3, 0, 9): 5}), SPEC_MODELS, LwM2mPath(3303, 0))
    assert info.value.code is ResponseCode.BAD_REQUEST


def test_timestamped_encoding_is_refused_with_4_06() -> None:
    """The format cannot carry the times: no encoder that would silently drop them."""
    data = TimestampedNodes(((1700000000.0, {LwM2mPath(3, 0, 9): single(9, 95, T.INTEGER)}),))
    with pytest.raises(CodecError) as info:
        codecs.encode_timestamped(data, ContentFormat.LWM2M_CBOR, SPEC_MODELS)
    assert info.value.code is ResponseCode.NOT_ACCEPTABLE


def test_empty_multiple_resource_without_a_model() -> None:
    """Issue 9 item 7: an empty multiple resource of an object the server has no model for (an
    empty map, or no payload) decodes; a single resource the model knows still needs a value."""
    path = LwM2mPath(32768, 0, 7)
    for payload in (b"", cbor2.dumps({}), cbor2.dumps({(32768, 0, 7): {}})):
        node = lwm2m_cbor.decode(payload, path, NO_MODELS)
        assert node == LwM2mMultipleResource(7, {}, T.STRING)
    assert lwm2m_cbor.decode(b"", LwM2mPath(3, 0, 7), SPEC_MODELS) == LwM2mMultipleResource(
        7, {}, T.INTEGER
    )
    with pytest.raises(CodecError, match="no value for the resource"):
        lwm2m_cbor.decode(b"", LwM2mPath(3, 0, 9), SPEC_MODELS)


class TestLwm2mCborTimestamped:
    """Round trips through the encoders the format has: what ``encode`` writes for one node
    comes back as that node at its path, what ``encode_nodes`` writes for single leaves comes
    back leaf by leaf, always as one entry without a time."""

    @EXAMPLES
    @given(random_cases())
    def test_observed_node(self, drawn: Case) -> None:
        models, path, node = drawn
        payload = lwm2m_cbor.encode(node, path, models)
        expected = TimestampedNodes(((None, {path: node}),))
        assert lwm2m_cbor.decode_timestamped(payload, models, path) == expected

    @EXAMPLES
    @given(random_cases())
    def test_send_leaf_by_leaf(self, drawn: Case) -> None:
        models, path, node = drawn
        leaves: dict[LwM2mPath, LwM2mNode | None] = {
            p: leaf_node(p, rtype, value) for p, rtype, value in flatten(path, node)
        }
        payload = lwm2m_cbor.encode_nodes(leaves, models)
        assert lwm2m_cbor.decode_timestamped(payload, models) == TimestampedNodes(((None, leaves),))

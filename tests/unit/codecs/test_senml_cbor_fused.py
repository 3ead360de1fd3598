"""The fused SenML CBOR reader (``senml_cbor.fast_records``) against the general path.

The fused reader turns the common shape of a pack straight into resolved records and leaves
everything else to the general path (``senml.resolve_general``: bytes -> CBOR items -> text
labels -> records), which also does all the refusing. What must hold, and what these tests
hold on generated and mutated packs:

* whatever the fused reader returns equals what the general path returns for the same bytes;
* it never accepts a payload that the general path refuses;
* ``senml.resolve`` (the fused reader first) and the general path agree on every payload: the
  same records, or both a ``CodecError``.
"""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from object_models.codecs import senml, senml_cbor
from object_models.errors import CodecError
from object_models.path import LwM2mPath

from .helpers import CBOR_ALPHABET


def _outcome(call: object) -> object:
    """The records a resolve gives, or the marker of a refusal (only ``CodecError`` is one)."""
    assert callable(call)
    try:
        return call()
    except CodecError:
        return "refused"


def _agree(payload: bytes) -> None:
    general = _outcome(lambda: senml.resolve_general(payload, senml_cbor.DIALECT))
    fused = senml_cbor.fast_records(payload)
    if fused is not None:
        assert general != "refused", f"fused reader accepted a refused pack {payload.hex()}"
        assert fused == general, payload.hex()
    assert _outcome(lambda: senml.resolve(payload, senml_cbor.DIALECT)) == general


# -- generated packs ------------------------------------------------------------------------------

LABELS = [-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -7, "vlo", "bn", "x_", "n"]
NAMES = st.sampled_from(
    ["/3303/0/", "/3303/0/5700", "5700", "0/1", "/3/0/", "7/0", "/65/0/0/0", "", "/", "x",
     "/3303/00/5700", "/70000/0/1", "/1/2/3/4/5", "é", "/3/0/1/"]
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.floats(width=64),
    st.floats(width=32),
    st.floats(width=16),
    st.sampled_from(
        [0, 0.0, -0.0, 1.7e9, 2**63, -(2**63) - 1, math.nan, math.inf, -math.inf, 1e308]
    ),
)
VALUES = st.one_of(
    NAMES,
    NUMBERS,
    st.booleans(),
    st.none(),
    st.binary(max_size=6),
    st.text(max_size=4),
    st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 4]), st.lists(st.integers(-3, 3), max_size=2)),
    st.lists(st.integers(0, 3), max_size=2),
)


@st.composite
def records(draw: st.DrawFn) -> dict[object, object]:
    """A record that is usually valid (a name, maybe a time, one value field) and sometimes
    has any label with any value."""
    record: dict[object, object] = {}
    if draw(st.booleans()):
        record[-2] = draw(NAMES)
    if draw(st.booleans()):
        record[0] = draw(NAMES)
    if draw(st.integers(0, 3)) == 0:
        record[draw(st.sampled_from([-3, 6]))] = draw(NUMBERS)
    field = draw(st.sampled_from([2, 3, 4, 8, None]))
    if field == 2:
        record[2] = draw(NUMBERS)
    elif field == 3:
        record[3] = draw(st.text(max_size=8))
    elif field == 4:
        record[4] = draw(st.booleans())
    elif field == 8:
        record[8] = draw(st.binary(max_size=8))
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 2)) == 0 else 0):
        record[draw(st.sampled_from(LABELS))] = draw(VALUES)
    return record


packs = st.lists(records(), min_size=0, max_size=4).map(cbor2.dumps)


@given(packs)
def test_generated_packs_read_alike(payload: bytes) -> None:
    _agree(payload)


@given(packs, st.data())
def test_mutated_packs_read_alike(payload: bytes, data: st.DataObject) -> None:
    """A byte changed, inserted or cut: truncations, wrong heads, bad UTF-8, trailing bytes."""
    at = data.draw(st.integers(0, len(payload)))
    action = data.draw(st.sampled_from(["set", "insert", "cut", "truncate"]))
    byte = data.draw(st.sampled_from(list(CBOR_ALPHABET) + list(range(256))))
    if action == "set" and at < len(payload):
        payload = payload[:at] + bytes([byte]) + payload[at + 1 :]
    elif action == "insert":
        payload = payload[:at] + bytes([byte]) + payload[at:]
    elif action == "cut":
        payload = payload[:at] + payload[at + 1 :]
    else:
        payload = payload[:at]
    _agree(payload)


# -- what devices send, and what must be refused ---------------------------------------------------


def test_a_typical_notification_takes_the_fused_path() -> None:
    """The shape devices send for an observed resource (bn + n + v) is read without the
    general path, to the same record."""
    payload = cbor2.dumps([{-2: "/3303/0/", 0: "5700", 2: 21.5}])
    fused = senml_cbor.fast_records(payload)
    assert fused == [senml.Record(LwM2mPath(3303, 0, 5700), None, "v", 21.5)]
    assert fused == senml.resolve_general(payload, senml_cbor.DIALECT)


def test_a_time_series_takes_the_fused_path() -> None:
    payload = cbor2.dumps(
        [
            {-2: "/3303/0/5700", -3: 1_700_000_000, 2: 20.0},
            {6: 10, 2: 20.5},
            {6: -5.5, 4: True, -2: "/3303/0/5850"},
            {3: "text", -2: "/3/0/0", -3: 0},
            {8: b"\x01\x02", -2: "/3/0/", 0: "4"},
        ]
    )
    fused = senml_cbor.fast_records(payload)
    assert fused is not None
    assert fused == senml.resolve_general(payload, senml_cbor.DIALECT)
    assert [r.time for r in fused] == [1.7e9, 1.7e9 + 10, 1.7e9 - 5.5, None, None]


REFUSED = {
    "trailing byte": cbor2.dumps([{-2: "/3303/0/5700", 2: 1}]) + b"\x00",
    "truncated": cbor2.dumps([{-2: "/3303/0/5700", 2: 1.5}])[:-1],
    "duplicate label": bytes.fromhex("81a3" "21662f332f302f30" "0201" "0202"),
    "two value fields": cbor2.dumps([{-2: "/3/0/0", 2: 1, 3: "x"}]),
    "no name": cbor2.dumps([{2: 1}]),
    "not a path": cbor2.dumps([{-2: "/3/x/0", 2: 1}]),
    "NaN value": cbor2.dumps([{-2: "/3/0/0", 2: math.nan}]),
    "infinite time": cbor2.dumps([{-2: "/3/0/0", -3: math.inf, 2: 1}]),
    "time overflow": cbor2.dumps([{-2: "/3/0/0", -3: 1.7e308, 6: 1.7e308, 2: 1}]),
    "boolean as v": cbor2.dumps([{-2: "/3/0/0", 2: True}]),
    "number as vb": cbor2.dumps([{-2: "/3/0/0", 4: 1}]),
    "text as vd": cbor2.dumps([{-2: "/3/0/0", 8: "AQI"}]),
    "bytes as vs": cbor2.dumps([{-2: "/3/0/0", 3: b"x"}]),
    "number as n": cbor2.dumps([{-2: "/3/0/", 0: 0, 2: 1}]),
    "invalid UTF-8 name": bytes.fromhex("81a2" "2163ff2f30" "0201"),
    "sum": cbor2.dumps([{-2: "/3/0/0", 5: 1}]),
    "not an array": cbor2.dumps({-2: "/3/0/0", 2: 1}),
    "record not a map": cbor2.dumps([1]),
}  # fmt: skip


@pytest.mark.parametrize("payload", REFUSED.values(), ids=REFUSED.keys())
def test_both_paths_refuse(payload: bytes) -> None:
    assert senml_cbor.fast_records(payload) is None
    with pytest.raises(CodecError):
        senml.resolve_general(payload, senml_cbor.DIALECT)
    with pytest.raises(CodecError):
        senml.resolve(payload, senml_cbor.DIALECT)


def test_non_minimal_and_indefinite_encodings_go_the_general_way() -> None:
    """Valid CBOR the fused reader does not take (a label in two bytes, an indefinite array)
    is still read, by the general path."""
    non_minimal = (
        bytes.fromhex("81a2") + bytes.fromhex("3801") + cbor2.dumps("/3/0/0") + b"\x02\x01"
    )
    indefinite = (
        bytes.fromhex("9fa2") + bytes.fromhex("21") + cbor2.dumps("/3/0/0") + b"\x02\x01\xff"
    )
    for payload in (non_minimal, indefinite):
        assert senml_cbor.fast_records(payload) is None
        assert senml.resolve(payload, senml_cbor.DIALECT) == [
            senml.Record(LwM2mPath(3, 0, 0), None, "v", 1)
        ]


def test_every_cut_and_byte_of_a_typical_notification_agrees() -> None:
    """The reader's inlined text and double items (bn, n, v of nearly every notification):
    each prefix of the pack, each byte of it replaced by each value, and the pack with its
    strings as invalid UTF-8 give what the general path gives (records or a refusal)."""
    payload = cbor2.dumps([{-2: "/3303/0/", 0: "5700", 2: 21.5}])
    assert payload[payload.index(b"\x02") + 1] == 0xFB  # the value is a double here
    for cut in range(len(payload) + 1):
        _agree(payload[:cut])
    for at in range(len(payload)):
        for value in range(256):
            _agree(payload[:at] + bytes([value]) + payload[at + 1 :])

"""The one-pass Register reader (``_common_register``) against the checked one: for any query
and payload, either the fast reader declines (None) or it gives exactly the request the checked
reader gives; and it does not decline the usual shapes (or every Register would pay both)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lwm2m_server.core.registration import (
    ObjectLinks,
    RegistrationRequest,
    _common_register,
    parse_usual_register,
)
from object_models.errors import Lwm2mError

LINKS = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>'
ObjectLinks.parse(LINKS.decode())  # parsed once before: the fast reader only takes known lists

NAMES = ["ep", "lt", "lwm2m", "b", "Q", "sms", "et", "d", ""]
VALUES = [
    "", "a", "dev-1", "a\x01b", "x" * 255, "x" * 256, "0", "1", "60", "086400", "4294967295",
    "4294967296", "99999999999", "-1", " 5", "1.5", "\u00b2", "\u0663", "1.0", "1.1", "1.2",
    "2.0", "U", "UQ", "S", "SQ", "US", "UQS", "UM", "MU", "UU", "Q", "N", "TSN", "UMHT", "u",
    "\u00a0", "\u2028dev",
]  # fmt: skip


def item() -> st.SearchStrategy[str]:
    named = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES) | st.text(max_size=6))
    return st.one_of(
        named.map(lambda nv: f"{nv[0]}={nv[1]}"),
        st.sampled_from(NAMES),  # a flag (Q) or a bare name
        st.text(max_size=8),
    )


PAYLOADS = st.sampled_from(
    [LINKS, b"", b"   ", b"</1/0>", b"\xff\xfe", b"</1/0>,", LINKS + b" "]
) | st.binary(max_size=12)


def outcome(query: list[str], payload: bytes, content_format: int | None) -> object:
    try:
        return RegistrationRequest.checked(query, payload, content_format)
    except Lwm2mError as exc:
        return ("error", exc.code)


@settings(max_examples=3000)
@given(
    query=st.lists(item(), max_size=6),
    payload=PAYLOADS,
    content_format=st.sampled_from([None, 40, 0, 110]),
)
@example(query=["ep=a", "lt=60", "lwm2m=1.1", "b=U"], payload=LINKS, content_format=40)
@example(query=["ep=a", "Q", "Q"], payload=LINKS, content_format=40)
@example(query=["ep=a", "b=UQ", "Q"], payload=LINKS, content_format=None)
def test_the_fast_reader_gives_the_checked_request_or_declines(
    query: list[str], payload: bytes, content_format: int | None
) -> None:
    fast = _common_register(query, payload, content_format)
    expected = outcome(query, payload, content_format)
    if fast is not None:
        assert fast == expected
        assert fast.object_links is expected.object_links  # type: ignore[union-attr]
    # whatever path it takes, ``parse`` answers as the checked reader does
    try:
        parsed: object = RegistrationRequest.parse(query, payload, content_format)
    except Lwm2mError as exc:
        parsed = ("error", exc.code)
    assert parsed == expected


@pytest.mark.parametrize(
    "query",
    [
        ["ep=hp-0000001", "lt=86400", "lwm2m=1.1", "b=U"],  # the load generator's
        ["ep=dev", "lwm2m=1.1", "b=U", "Q"],  # a 1.1 queue-mode device
        ["ep=dev", "lt=300", "b=UQ"],  # a 1.0 queue-mode device
        ["ep=dev"],  # every default
        ("ep=dev", "lwm2m=1.2", "b=UT", "lt=60"),
    ],
)
def test_the_usual_registers_take_the_fast_reader(query: list[str]) -> None:
    ObjectLinks.parse(LINKS.decode())  # known (again: other tests may have filled the cache)
    fast = _common_register(query, LINKS, 40)
    assert fast is not None
    assert fast == RegistrationRequest.checked(query, LINKS, 40)


@pytest.mark.parametrize(
    "query",
    [["ep=hp-0000001", "lt=86400", "lwm2m=1.1", "b=U"], ["ep=dev", "b=UQ"], ["ep=d", "Q"]],
)
def test_the_fast_reader_s_request_is_the_attrs_value(query: list[str]) -> None:
    """``_common_register`` builds its request by the slots (and ``parse_usual_register`` is
    it): field by field, in ``repr`` and frozenness the request the attrs
    ``__init__`` makes of the same values (its converter's shared empty mapping included)."""
    ObjectLinks.parse(LINKS.decode())
    fast = parse_usual_register(query, LINKS, 40)
    assert fast is not None and type(fast) is RegistrationRequest
    built = RegistrationRequest(*attrs.astuple(fast, recurse=False))
    assert attrs.astuple(fast, recurse=False) == attrs.astuple(built, recurse=False)
    assert fast == built and repr(fast) == repr(built)
    assert fast.additional_attributes is built.additional_attributes  # the shared empty one
    assert fast.sms_number is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.endpoint = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("query", "payload"),
    [
        (["ep=dev", "et=sensor"], LINKS),  # extra attributes: kept by the checked reader
        (["ep=dev", "sms=+123"], LINKS),
        (["ep=dev", "ep=dev"], LINKS),  # twice: the checked reader's 4.00
        (["ep=dev"], b"</9999/0>"),  # an object list not seen before: parsed once there
        ([b"ep=dev"], LINKS),  # bytes query items
    ],
)
def test_other_shapes_go_to_the_checked_reader(query: list[str], payload: bytes) -> None:
    assert _common_register(query, payload, 40) is None


@pytest.mark.parametrize(
    "rest",
    [
        ["lt=86400", "lwm2m=1.1", "b=U"],
        ["lwm2m=1.1", "b=U", "Q"],
        [],
        ["lt=0"],  # refused: the checked reader's 4.00, whatever the endpoint
        ["ep=again"],  # ``ep`` twice
        ["sms=+1"],  # not the usual shape
    ],
)
@pytest.mark.parametrize("endpoint", ["dev-1", "dev-2", "", "a\x01b", "x" * 256, "\u00a0"])
def test_a_known_query_shape_is_read_again_for_each_endpoint(
    rest: list[str], endpoint: str
) -> None:
    """What a query says besides its leading ``ep=`` is kept per distinct rest: a fleet's
    Registers differ in their endpoint only. The endpoint is still checked every time (an
    empty, too long or non-printable one declines), and a rest that declined once declines
    again, for every endpoint."""
    ObjectLinks.parse(LINKS.decode())
    for _ in range(2):  # the second time from the kept shape
        query = [f"ep={endpoint}", *rest]
        fast = _common_register(query, LINKS, 40)
        if fast is not None:
            assert fast == outcome(query, LINKS, 40)
        else:
            expected = outcome(query, LINKS, 40)
            usual = rest in (["lt=86400", "lwm2m=1.1", "b=U"], ["lwm2m=1.1", "b=U", "Q"], [])
            assert not (usual and endpoint in ("dev-1", "dev-2")), expected

"""The Register path's hand-joined JSON texts are the reference encoding's: ``records.
registration_text`` is ``dumps(registration_to_json(...))`` for any registration (and reads back
as the same registration), ``device_state._status_text`` is ``dumps`` of any profile status. A
fast path must never store a different record."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from keystore.resolver import IdentityBinding
from keystore.store.database import dumps
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.store.records import (
    registration_from_json,
    registration_text,
    registration_to_json,
)

LOADGEN_LINKS = (
    '</>;rt="oma.lwm2m";ct="0 112 11542",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4/0>,'
    "</5/0>,</6/0>,</3303/0>,</3303/1>"
)

texts = st.text(max_size=20)  # quotes, backslashes, control characters, non-ASCII included
times = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=0, max_value=2**40),  # an int where a float belongs: reference path
)
links = st.one_of(
    st.sampled_from(["", "</3/0>", LOADGEN_LINKS, '</a"b>;rt="x\\y"']).map(
        lambda t: ObjectLinks.parse(t) if t and not t.startswith('</a"') else ObjectLinks(text=t)
    ),
    st.builds(
        ObjectLinks,
        text=texts,
        objects=st.dictionaries(st.integers(0, 65535), st.none() | texts, max_size=3),
        instances=st.dictionaries(
            st.integers(0, 65535), st.lists(st.integers(0, 65535), max_size=3), max_size=3
        ),
        root_path=texts,
        content_formats=st.frozensets(st.integers(0, 65535), max_size=3),
    ),
)
registrations = st.builds(
    Registration,
    registration_id=texts,
    endpoint=texts,
    address=st.builds(Address, texts, st.integers(0, 65535)),
    lifetime=st.integers(1, 2**32 - 1),
    lwm2m_version=st.sampled_from(["1.0", "1.1", "1.2"]),
    binding=texts,
    sms_number=st.none() | texts,
    queue_mode=st.booleans(),
    object_links=links,
    transport=st.sampled_from(["coap", "coaps"]),
    identity=st.none() | st.builds(IdentityBinding, texts, texts),
    registered_at=times,
    last_update=times,
    additional_attributes=st.dictionaries(texts, texts, max_size=3),
)


def _reference(registration: Registration) -> str | type[Exception]:
    try:
        return dumps(registration_to_json(registration))
    except ValueError:  # a non-finite time: not JSON
        return ValueError


@given(registrations)
def test_the_record_text_is_the_reference_encoding(registration: Registration) -> None:
    expected = _reference(registration)
    if expected is ValueError:
        try:
            registration_text(registration)
        except ValueError:
            return
        raise AssertionError("a non-finite time was written")
    text = registration_text(registration)
    assert text == expected
    assert registration_text(registration) == text  # the object list's cached JSON too


@given(registrations)
def test_the_record_text_reads_back_as_the_registration(registration: Registration) -> None:
    finite = all(math.isfinite(t) for t in (registration.registered_at, registration.last_update))
    if not finite:
        return
    import json

    assert registration_from_json(json.loads(registration_text(registration))) == registration


def test_an_object_list_with_the_same_text_but_other_contents_is_not_taken_from_the_cache() -> None:
    """The object list's JSON is cached by identity: an equal text that another ``ObjectLinks``
    (a stored record read back, a test) carries with different contents gets its own JSON."""
    parsed = ObjectLinks.parse("</3/0>")
    other = ObjectLinks(text="</3/0>", objects={3: "1.1"}, instances={3: (0, 1)})
    first = Registration("a", "ep", Address("127.0.0.1", 1), object_links=parsed)
    second = Registration("a", "ep", Address("127.0.0.1", 1), object_links=other)
    assert registration_text(first) == dumps(registration_to_json(first))
    assert registration_text(second) == dumps(registration_to_json(second))
    assert registration_text(first) != registration_text(second)


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    texts,
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(texts, st.integers(), max_size=2),
)


@given(st.dictionaries(st.one_of(texts, st.integers()), json_leaves, max_size=12))
def test_a_profile_status_is_stored_as_the_reference_encoding(status: dict[object, object]) -> None:
    """The profile status's fast text (``device_state._status_text``) is ``dumps`` of it, and
    what ``dumps`` refuses is refused (``StoreError``)."""
    from keystore.store.errors import StoreError
    from lwm2m_server.store.device_state import _status_text

    try:
        expected = dumps(status)
    except (TypeError, ValueError):
        try:
            _status_text("ep", status)  # type: ignore[arg-type]
        except StoreError:
            return
        raise AssertionError("a status dumps refuses was encoded") from None
    assert _status_text("ep", status) == expected  # type: ignore[arg-type]

"""The Register path's hand-joined JSON texts are the reference encoding's: ``records.
registration_text`` is ``dumps(registration_to_json(..., compact_links=True))`` for any
registration (and reads back as the same registration, as the full form does),
``device_state._status_text`` is ``dumps`` of any profile status. A fast path must never store
a different record."""

from __future__ import annotations

import itertools
import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.resolver import IdentityBinding
from keystore.store.database import dumps
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.store import records
from lwm2m_server.store.records import (
    _registration_checked,
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
        return dumps(registration_to_json(registration, compact_links=True))
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
    # the full form (what the Redis store writes, and sqlite files before schema version 3)
    full = dumps(registration_to_json(registration))
    assert registration_from_json(json.loads(full)) == registration


def test_an_object_list_with_the_same_text_but_other_contents_is_not_taken_from_the_cache() -> None:
    """The object list's JSON is cached by identity: an equal text that another ``ObjectLinks``
    (a stored record read back, a test) carries with different contents gets its own JSON."""
    parsed = ObjectLinks.parse("</3/0>")
    other = ObjectLinks(text="</3/0>", objects={3: "1.1"}, instances={3: (0, 1)})
    first = Registration("a", "ep", Address("127.0.0.1", 1), object_links=parsed)
    second = Registration("a", "ep", Address("127.0.0.1", 1), object_links=other)
    assert registration_text(first) == dumps(registration_to_json(first, compact_links=True))
    assert registration_text(second) == dumps(registration_to_json(second, compact_links=True))
    assert registration_text(first) != registration_text(second)
    assert '"objects"' not in registration_text(first)  # its text says it all: stored alone
    assert '"objects"' in registration_text(second)  # its text does not: stored in full


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


_FIELDS = (
    "id", "endpoint", "address", "lifetime", "lwm2m_version", "binding", "sms_number",
    "queue_mode", "object_links", "transport", "identity", "registered_at", "last_update",
    "additional_attributes",
)  # fmt: skip
_LINK_FIELDS = ("text", "objects", "instances", "root_path", "content_formats")


def _read(record: dict[str, object], *columns: object) -> Registration | str:
    try:
        return registration_from_json(record, *columns)
    except Exception as exc:  # the sqlite reader quarantines whatever a record raises
        return f"{type(exc).__name__}: {exc}"


def _reference_read(record: dict[str, object], *columns: object) -> Registration | str:
    """What the reader did before its fast path and object-list cache: every field checked and
    converted, the touch columns put in by ``attrs.evolve``."""
    try:
        reg = _registration_checked(record)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if not columns or any(c is None for c in columns[1:]):
        return reg
    last_update, lifetime, host, port = columns
    if (reg.last_update, reg.lifetime, reg.address) == (
        last_update,
        lifetime,
        Address(host, port),  # type: ignore[arg-type]
    ):
        return reg
    return attrs.evolve(
        reg,
        last_update=float(last_update),  # type: ignore[arg-type]
        lifetime=int(lifetime),  # type: ignore[call-overload]
        address=Address(str(host), int(port)),  # type: ignore[call-overload]
    )


@given(
    registrations,
    st.sampled_from(_FIELDS + tuple(f"object_links.{f}" for f in _LINK_FIELDS)),
    st.one_of(st.just("keep"), st.just("drop"), json_leaves, st.lists(texts, max_size=2)),
    st.one_of(
        st.just(()),
        st.tuples(
            st.floats(0, 2**40) | st.integers(0, 9),
            st.integers(1, 2**32 - 1),
            texts,
            st.integers(0, 65535),
        ),
    ),
    st.booleans(),
)
def test_the_record_reader_reads_any_record_as_the_checked_reader_does(
    registration: Registration,
    field: str,
    value: object,
    columns: tuple[object, ...],
    compact: bool,
) -> None:
    """The start-up reader (issue 10: restart with 100k registrations in ≤ 3 s) takes a fast
    path for a well-typed record and the object list of one it read before; for any record —
    one field changed to anything JSON holds, or dropped — it gives exactly the registration
    (or the error) of the field-by-field reader, with the sqlite row's touch columns or
    without them, from the compact record or the full one. Read twice, so the second read is
    served from the object-list cache."""
    if not all(math.isfinite(t) for t in (registration.registered_at, registration.last_update)):
        return
    import json

    record = json.loads(dumps(registration_to_json(registration, compact_links=compact)))
    target = record
    if field.startswith("object_links."):
        target, field = record["object_links"], field.split(".", 1)[1]
    if value == "drop" and field not in target:
        return  # the compact object list has no maps to drop
    if value == "drop":
        del target[field]
    elif value != "keep":
        target[field] = value
    expected = _reference_read(json.loads(json.dumps(record)), *columns)
    assert _read(record, *columns) == expected
    assert _read(json.loads(json.dumps(record)), *columns) == expected


def test_a_stored_object_list_with_another_content_than_its_text_gets_its_own_object() -> None:
    """The reader shares one ``ObjectLinks`` per stored object list, the one ``ObjectLinks.parse``
    hands out for its text; a record whose list has the same text but other contents (a hand
    edit, an older writer) is read as it is stored, not as the shared one."""
    import json

    records._links_read.clear()  # what earlier tests read (both caches are bounded)
    parsed = ObjectLinks.parse(LOADGEN_LINKS)
    reg = Registration("a", "ep", Address("127.0.0.1", 1), object_links=parsed)
    full = dumps(registration_to_json(reg))  # the object list in full
    for text in (full, registration_text(reg), full):
        assert registration_from_json(json.loads(text)).object_links is parsed
    record = json.loads(full)
    record["object_links"]["objects"]["3"] = "1.2"
    edited = registration_from_json(record).object_links
    assert edited.objects[3] == "1.2"
    assert edited.text == parsed.text
    for text in (full, registration_text(reg)):
        assert registration_from_json(json.loads(text)).object_links is parsed


@pytest.mark.parametrize("field", _FIELDS + tuple(f"object_links.{f}" for f in _LINK_FIELDS))
@pytest.mark.parametrize("value", ["drop", None, 1, 1.0, True, "1", [], {}, ["h", 1]])
def test_each_field_missing_or_of_another_type_reads_as_the_checked_reader_does(
    field: str, value: object
) -> None:
    """Every field of a record, dropped or replaced, for a registration whose optional fields
    are empty (a missing ``sms_number`` must not read as None) and for one where they are set."""
    import json

    for registration in (
        Registration("a", "ep", Address("127.0.0.1", 1), object_links=ObjectLinks.parse("</3/0>")),
        Registration(
            "b",
            "ep2",
            Address("::1", 2),
            sms_number="+1",
            identity=IdentityBinding("psk", "x"),
            additional_attributes={"k": "v"},
            registered_at=1.5,
            last_update=2.5,
        ),
    ):
        for columns, compact in itertools.product(((), (3.5, 60, "10.0.0.1", 7)), (True, False)):
            record = json.loads(dumps(registration_to_json(registration, compact_links=compact)))
            target, name = record, field
            if field.startswith("object_links."):
                target, name = record["object_links"], field.split(".", 1)[1]
            if value == "drop" and name not in target:
                continue  # the compact object list has no maps to drop
            if value == "drop":
                del target[name]
            else:
                target[name] = value
            expected = _reference_read(json.loads(json.dumps(record)), *columns)
            assert _read(record, *columns) == expected
            assert _read(json.loads(json.dumps(record)), *columns) == expected


def _engine_status_keys() -> tuple[str, ...]:
    from lwm2m_server.profiles.status import DeviceStatus

    return tuple(DeviceStatus("ep").to_json())


PLAIN_KEYS = _engine_status_keys()
"""The profile engine's status keys, in its order: the shape the store's template expects."""


@given(st.tuples(*(json_leaves for _ in PLAIN_KEYS)), st.booleans())
def test_a_status_of_the_engines_shape_is_stored_as_the_reference_encoding(
    values: tuple[object, ...], plain: bool
) -> None:
    """The template of a plain profile status (``DeviceStatus.to_json`` of a plan that sent
    nothing) gives ``dumps``'s text; any value it does not expect there falls through to the
    other paths, which give it too (or refuse what ``dumps`` refuses)."""
    from keystore.store.errors import StoreError
    from lwm2m_server.store.device_state import _status_text

    if plain:  # the engine's usual status, with some of the drawn values in place
        texts_ = tuple(v if isinstance(v, str) else "s" for v in values[:6])
        values = (*texts_, values[6], [], {}, [], [], [])
    status = dict(zip(PLAIN_KEYS, values, strict=True))
    try:
        expected = dumps(status)
    except (TypeError, ValueError):
        with pytest.raises(StoreError):
            _status_text("ep", status)
        return
    assert _status_text("ep", status) == expected


def test_the_engines_status_of_a_plan_that_sent_nothing_is_stored_as_dumps_gives_it() -> None:
    from lwm2m_server.profiles.status import DeviceStatus
    from lwm2m_server.store.device_state import _PLAIN_KEYS, _status_text

    assert _PLAIN_KEYS == PLAIN_KEYS  # the template is the engine's shape (else never used)
    status = DeviceStatus("ep-ü", profile="p", digest="d", chosen_by="default", state="applied")
    for at in (None, 1796604288.042265, 0.1):
        status.applied_at = at
        assert _status_text("ep", status.to_json()) == dumps(status.to_json())


@given(
    st.tuples(*(json_leaves for _ in range(4))),
    st.floats() | json_leaves,
    st.tuples(*(st.text() for _ in range(4))),
    st.booleans(),
)
def test_a_plain_register_status_is_stored_as_dumps_gives_its_json(
    drawn: tuple[object, ...], applied_at: object, texts_: tuple[str, ...], strings: bool
) -> None:
    """``PlainStatus.text`` (the engine's Register of a profile that asks nothing, encoded from
    its atoms by ``plain_status_text``) is ``dumps`` of its ``to_json()``, whatever the atoms
    (any text, non-finite or non-float times, values of other types: those fall through to
    the reference path, which refuses what ``dumps`` refuses)."""
    from keystore.store.errors import StoreError
    from lwm2m_server.profiles.status import PlainStatus

    atoms = texts_ if strings else drawn
    status = PlainStatus(*atoms, applied_at)  # type: ignore[arg-type,call-arg]
    try:
        expected = dumps(status.to_json())
    except (TypeError, ValueError):
        with pytest.raises(StoreError):
            status.text()
        return
    assert status.text() == expected
    assert status.status().to_json() == status.to_json()  # what the engine keeps on a failure


# -- the shape's text (``records._shaped_text``) ---------------------------------------------------

shape_times = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.0, -0.0, 1e-300])
)


@given(
    shape=st.tuples(
        st.sampled_from([LOADGEN_LINKS, "</3/0>"]),
        st.sampled_from([1, 60, 86400, 2**32 - 1]),
        st.sampled_from(["1.0", "1.1", "1.2"]),
        st.sampled_from(["U", "UQ", 'U"\\']),
        st.booleans(),
        st.sampled_from(["coap", "coaps"]),
    ),
    devices=st.lists(
        st.tuples(texts, texts, texts, st.integers(0, 65535), shape_times, shape_times),
        min_size=1,
        max_size=4,
    ),
    same_time=st.booleans(),
)
def test_registrations_of_one_shape_are_each_stored_as_the_reference_encoding(
    shape: tuple[str, int, str, str, bool, str],
    devices: list[tuple[str, str, str, int, float, float]],
    same_time: bool,
) -> None:
    """Registrations of one shape (object list, lifetime, version, binding, queue mode,
    transport; no SMS number, identity or extra attribute) share the part of the record the
    shape makes, and keep their own id, endpoint, address and times: each is ``dumps`` of its
    own record, a Register's one time object (``registered_at is last_update``) included."""
    text, lifetime, version, binding, queue, transport = shape
    object_links = ObjectLinks.parse(text)
    for reg_id, endpoint, host, port, registered_at, last_update in devices:
        if same_time:
            last_update = registered_at  # the same object, as ``Registration.create`` makes
        registration = Registration(
            reg_id, endpoint, Address(host, port), lifetime, version, binding, None, queue,
            object_links, transport, None, registered_at, last_update,
        )  # fmt: skip
        assert registration_text(registration) == _reference(registration)


def test_a_shape_is_not_served_to_an_object_list_with_the_same_text_but_other_contents() -> None:
    """The shape's text is kept per object list *object*, as the object list's own JSON: an
    equal text carried by another ``ObjectLinks`` with other contents gets its own record."""
    parsed = ObjectLinks.parse("</3/0>,</4/0>")
    other = ObjectLinks(text="</3/0>,</4/0>", objects={3: "1.1"}, instances={3: (0, 1)})
    first = Registration("a", "ep", Address("127.0.0.1", 1), 60, object_links=parsed)
    second = Registration("b", "ep", Address("127.0.0.1", 1), 60, object_links=other)
    for registration in (first, second, first, second):
        assert registration_text(registration) == _reference(registration)
    assert '"objects"' not in registration_text(first)
    assert '"objects"' in registration_text(second)


def test_a_field_of_another_type_in_a_known_shape_takes_the_reference_path() -> None:
    """A shape seen before does not make a record whose id or host is not a string: the
    reference path raises (or converts) exactly as before."""
    object_links = ObjectLinks.parse("</3/0>")
    good = Registration("a", "ep", Address("127.0.0.1", 1), 60, object_links=object_links)
    assert registration_text(good) == _reference(good)
    for bad in (
        attrs.evolve(good, registration_id=7),  # type: ignore[arg-type]
        attrs.evolve(good, address=Address(None, 1)),  # type: ignore[arg-type]
    ):
        expected = dumps(registration_to_json(bad, compact_links=True))
        assert registration_text(bad) == expected


@given(
    profile=st.tuples(st.text(max_size=6), st.text(max_size=6), st.text(max_size=6)),
    devices=st.lists(st.tuples(st.text(), st.floats(allow_nan=False, allow_infinity=False))),
)
def test_plain_register_statuses_of_one_profile_are_each_stored_as_dumps_gives_them(
    profile: tuple[str, str, str], devices: list[tuple[str, float]]
) -> None:
    """The part of a plain status its profile makes (name, digest, chosen-by) is kept per
    profile; each device's status keeps its own endpoint and time."""
    from lwm2m_server.profiles.status import PlainStatus

    name, digest, chosen_by = profile
    for endpoint, applied_at in [*devices, *devices]:  # the second round from the kept part
        status = PlainStatus(endpoint, name, digest, chosen_by, applied_at)
        assert status.text() == dumps(status.to_json())

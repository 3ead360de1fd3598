"""CoRE Link Format (RFC 6690) and the LwM2M Register / Discover helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models.codecs.link_format import (
    DiscoveredLink,
    Link,
    RegisteredObjects,
    format_discover,
    format_links,
    parse_attribute,
    parse_content_formats,
    parse_discover,
    parse_links,
    parse_object_links,
)
from object_models.errors import CodecError, InvalidPathError, ResponseCode
from object_models.path import LwM2mPath

from .helpers import examples, mutated


def test_rfc6690_example() -> None:
    # RFC 6690 §5 example (with the spec's line breaks removed).
    text = '</sensors/temp>;if="sensor",</sensors/light>;if="sensor"'
    assert parse_links(text) == [
        Link("/sensors/temp", {"if": "sensor"}),
        Link("/sensors/light", {"if": "sensor"}),
    ]
    assert format_links(parse_links(text)) == text


def test_quoted_strings_escapes_commas_and_bare_params() -> None:
    text = '</a>;title="x, y; \\"z\\" \\\\";obs;ct=40 , </b> ; rt = "r1 r2"'
    assert parse_links(text) == [
        Link("/a", {"title": 'x, y; "z" \\', "obs": None, "ct": "40"}),
        Link("/b", {"rt": "r1 r2"}),
    ]
    again = parse_links(format_links(parse_links(text)))
    assert again == parse_links(text)


def test_empty_and_bytes_input() -> None:
    assert parse_links("") == [] and parse_links("  ") == []
    assert parse_links(b"</1/0>") == [Link("/1/0")]


def test_repeated_param_keeps_the_first() -> None:
    assert parse_links("</a>;x=1;x=2") == [Link("/a", {"x": "1"})]


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("/a", 0),
        ("</a", 1),
        ("</a>;", 5),
        ("</a>x", 4),
        ('</a>;t="x', 9),
        ("</a>,", 5),
        ("</a>;=1", 5),
        ("</a>;x=", 7),
        ("</a>;x=,", 7),
        ("</a b>", 1),
        ("</a>,,</b>", 5),
    ],
)
def test_invalid_documents_give_a_position(text: str, position: int) -> None:
    with pytest.raises(CodecError) as info:
        parse_links(text)
    assert info.value.code is ResponseCode.BAD_REQUEST
    assert f"position {position}:" in str(info.value)


def test_invalid_utf8() -> None:
    with pytest.raises(CodecError, match="UTF-8"):
        parse_links(b'</a>;t="\xff"')


# == Register =====================================================================================
def test_register_payload_lwm2m_1_1() -> None:
    text = (
        '</>;rt="oma.lwm2m";ct="60 110 112 11543",</1>;ver=1.1,</1/0>,</3/0>,</3303>;ver=1.1,'
        "</3303/0>,</3303/1>,</5>"
    )
    assert parse_object_links(text) == RegisteredObjects(
        "/",
        (60, 110, 112, 11543),
        {1: "1.1", 3: None, 3303: "1.1", 5: None},
        {1: (0,), 3: (0,), 3303: (0, 1)},
    )


def test_register_payload_alternate_root_ignores_unknown_links() -> None:
    text = (
        '</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/1/0>,</lwm2m/3/0>,</other/5>,</lwm2m/x>,'
        "</lwm2m/3/0/1>"
    )
    objects = parse_object_links(text)
    assert objects.root_path == "/lwm2m"
    assert objects.content_formats == (11543,)
    assert objects.objects == {1: None, 3: None}
    assert objects.instances == {1: (0,), 3: (0,)}
    assert objects.version(3) == "1.0"


def test_register_payload_without_root_link() -> None:
    assert parse_object_links("</1/0>,</3/0>") == RegisteredObjects(
        "/", (), {1: None, 3: None}, {1: (0,), 3: (0,)}
    )


def test_register_payload_with_bad_attributes() -> None:
    with pytest.raises(CodecError, match="ct"):
        parse_object_links('</>;rt="oma.lwm2m";ct="60 x"')
    with pytest.raises(CodecError, match="ver"):
        parse_object_links("</3>;ver=one")


# == Discover =====================================================================================
def test_discover_response_roundtrip() -> None:
    text = "</3/0>;pmin=10,</3/0/7>;dim=2,</3/0/1>"
    entries = parse_discover(text)
    assert entries == [
        DiscoveredLink(LwM2mPath(3, 0), {"pmin": 10}),
        DiscoveredLink(LwM2mPath(3, 0, 7), {"dim": 2}),
        DiscoveredLink(LwM2mPath(3, 0, 1)),
    ]
    assert format_discover(entries) == text


def test_discover_typed_attributes() -> None:
    text = (
        "</3303/0/5700>;pmin=1;pmax=60;gt=30.5;lt=-5;st=0.5;epmin=2;epmax=90;edge=1;con=0;"
        'hqmax=8,</3303>;ver=1.1;ct="60 110"'
    )
    first, second = parse_discover(text)
    assert first.attributes == {
        "pmin": 1,
        "pmax": 60,
        "gt": 30.5,
        "lt": -5.0,
        "st": 0.5,
        "epmin": 2,
        "epmax": 90,
        "edge": 1,
        "con": 0,
        "hqmax": 8,
    }
    assert second.attributes == {"ver": "1.1", "ct": (60, 110)}
    assert parse_discover(format_discover([first, second])) == [first, second]


def test_bootstrap_discover_root_and_unknown_attributes() -> None:
    entries = parse_discover('</>;lwm2m="1.1",</0/1>;ssid=101;uri="coap://server:5683"')
    assert entries[0] == DiscoveredLink(LwM2mPath(), {"lwm2m": "1.1"})
    assert entries[1].attributes == {"ssid": 101, "uri": "coap://server:5683"}


@pytest.mark.parametrize(
    "text", ["</3/0>;pmin=-1", "</3/0>;gt=abc", "</3/0>;edge=2", "</a/b>", "</3/0>;dim=1.5"]
)
def test_discover_errors(text: str) -> None:
    with pytest.raises(CodecError):
        parse_discover(text)


def test_parse_attribute_without_value() -> None:
    assert parse_attribute("pmin", None) is None


# == properties ===================================================================================
_names = st.sampled_from(["rt", "ct", "ver", "pmin", "if", "title", "obs", "x-y", "a1"])
_values = st.none() | st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_links = st.builds(
    Link,
    st.sampled_from(["/", "/3", "/3/0", "/lwm2m/3/0/1", "/a.b_c-d", "coap://h:5683/x?q=1"]),
    st.dictionaries(_names, _values, max_size=4),
)


@settings(max_examples=examples(0.05), deadline=None)
@given(st.lists(_links, max_size=4))
def test_format_then_parse_roundtrip(links: list[Link]) -> None:
    assert parse_links(format_links(links)) == links


_LINK_SEEDS = [
    b'</>;rt="oma.lwm2m";ct="60 110 112 11543",</1>;ver=1.1,</1/0>,</3/0>,</3303/0>',
    b'</3/0>;pmin=10,</3/0/7>;dim=2,</3/0/1>;gt=20.5;ct="60 110";title="a,\\"b;"',
    b'</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/1/0>',
]


@settings(max_examples=examples(), deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_arbitrary_input_raises_only_codec_error(seed: int) -> None:
    payload = mutated(seed, _LINK_SEEDS, b'<>/;,="\\ ab1.\xff')
    for parse in (parse_links, parse_object_links, parse_discover):
        with contextlib.suppress(CodecError):
            parse(payload)


# == the Register fast path against the reference parser ==========================================
def _reference_object_links(text: str | bytes) -> RegisteredObjects:
    """``parse_object_links`` as it was before its fast path: ``parse_links`` (``Link`` objects)
    and ``LwM2mPath.parse`` per target. The fast path must give the same answers, and the same
    errors, on every input."""
    links = parse_links(text)

    def is_root(link: Link) -> bool:
        return "oma.lwm2m" in (link.params.get("rt") or "").split()

    root_link = next((link for link in links if is_root(link)), None)
    if root_link is None:
        root_link = next((link for link in links if link.target == "/"), None)
    root = "/" if root_link is None else "/" + root_link.target.strip("/")
    formats: tuple[int, ...] = ()
    if root_link is not None and root_link.params.get("ct"):
        formats = parse_content_formats(root_link.params["ct"] or "")
    objects: dict[int, str | None] = {}
    instances: dict[int, list[int]] = {}
    prefix = "" if root == "/" else root
    for link in links:
        if link is root_link or (prefix and not link.target.startswith(prefix + "/")):
            continue
        try:
            path = LwM2mPath.parse(link.target[len(prefix) :])
        except InvalidPathError:
            continue
        if path.depth not in (1, 2):
            continue
        if path.is_object:
            ver = link.params.get("ver")
            objects[path.ids[0]] = None if ver is None else str(parse_attribute("ver", ver))
        else:
            objects.setdefault(path.ids[0], None)
            instances.setdefault(path.ids[0], []).append(path.ids[1])
    return RegisteredObjects(root, formats, objects, {k: tuple(v) for k, v in instances.items()})


def _outcome(parse: Callable[[str], RegisteredObjects], text: str) -> object:
    try:
        return parse(text)
    except CodecError as exc:
        return ("error", exc.message, exc.code)


# documents close to real Register payloads, with every kind of detail the grammar allows
_targets = st.sampled_from(
    ["/", "", "/lwm2m", "lwm2m/", "/1", "/1/0", "3/0", "/3/0/", "/3303/12", "/65535", "/65536",
     "/1/65534", "/1/65535", "/01", "/3/0/1", "//3", "/lwm2m/3/0", "/lwm2m/x", "/a b", "/\x0b3",
     "/3\u00a0", "coap://h/1", "/99999/1", "/3//"]
)  # fmt: skip
_param_names = st.sampled_from(["rt", "ct", "ver", "obs", "x-y", "a1", "ct", "rt"])
_param_values = st.one_of(
    st.none(),
    st.sampled_from(
        ['"oma.lwm2m"', "oma.lwm2m", '"oma.lwm2m x"', "11543", '"60 110 112"', '"60 x"', "1.1",
         "1.10", "one", '""', '"a,\\"b;"', '"\\\\"', '"\\', "70000", '"1\n2"', "a<b=c>"]
    ),
)  # fmt: skip
_spaces = st.sampled_from(["", "", " ", "\t", "\r\n", "\x0b", "\x0c"])


@st.composite
def _documents(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        link = "<" + draw(_targets) + ">"
        for _ in range(draw(st.integers(0, 3))):
            name, value = draw(_param_names), draw(_param_values)
            link += draw(_spaces) + ";" + draw(_spaces) + name
            if value is not None:
                link += draw(_spaces) + "=" + draw(_spaces) + value
        parts.append(link + draw(_spaces))
    separator = draw(st.sampled_from([",", ", ", " ,", ",\n", ";", ",,"]))
    text = draw(_spaces) + separator.join(parts)
    return text + draw(st.sampled_from(["", "", ",", " ", "\n", ">", '"']))


@settings(max_examples=examples(0.3), deadline=None)
@given(_documents())
def test_object_links_fast_path_matches_the_reference(text: str) -> None:
    assert _outcome(parse_object_links, text) == _outcome(_reference_object_links, text)


@settings(max_examples=examples(0.3), deadline=None)
@given(st.text(st.sampled_from('<>/;,="\\ \t\n\x0bab13.0'), max_size=40))
def test_object_links_fast_path_matches_the_reference_on_any_text(text: str) -> None:
    assert _outcome(parse_object_links, text) == _outcome(_reference_object_links, text)


@settings(max_examples=examples(0.3), deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_object_links_fast_path_matches_the_reference_on_mutations(seed: int) -> None:
    text = mutated(seed, _LINK_SEEDS, b'<>/;,="\\ \t\r\nab1.0').decode("utf-8", "replace")
    assert _outcome(parse_object_links, text) == _outcome(_reference_object_links, text)

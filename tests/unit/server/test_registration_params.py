"""Register/Update parameter validation: the right CoAP code for every kind of bad input."""

from __future__ import annotations

import pytest

from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import (
    DEFAULT_LIFETIME,
    ObjectLinks,
    Registration,
    RegistrationRequest,
    UpdateRequest,
    check_binding,
    split_query,
)
from object_models.errors import Lwm2mError, ResponseCode

LINKS = b"</1/0>,</3/0>"
BAD = ResponseCode.BAD_REQUEST


def code_of(fn: object, *args: object, **kwargs: object) -> ResponseCode:
    with pytest.raises(Lwm2mError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value.code


def test_split_query_sequence_and_flags() -> None:
    assert split_query(["ep=a", "lt=60", "Q"]) == {"ep": "a", "lt": "60", "Q": None}
    assert split_query(["ep=a=b"]) == {"ep": "a=b"}
    assert split_query({"ep": "x"}) == {"ep": "x"}


def test_duplicate_parameter_is_bad_request() -> None:
    assert code_of(split_query, ["ep=a", "ep=b"]) is BAD


@pytest.mark.parametrize(
    "query",
    [
        [],  # no ep
        ["ep="],  # empty ep
        ["ep"],  # ep without value
        ["lt=60"],
        ["ep=a\x01b"],  # control character
        ["ep=" + "x" * 1025],
    ],
)
def test_missing_or_bad_endpoint_is_4_00(query: list[str]) -> None:
    assert code_of(RegistrationRequest.parse, query, LINKS) is BAD


@pytest.mark.parametrize("lt", ["-1", "abc", "1.5", "0", "", "99999999999", " 5"])
def test_bad_lifetime_is_4_00(lt: str) -> None:
    assert code_of(RegistrationRequest.parse, ["ep=a", f"lt={lt}"], LINKS) is BAD


@pytest.mark.parametrize("version", ["2.0", "1.3", "abc", "1", "0.9"])
def test_unsupported_version_is_4_12(version: str) -> None:
    code = code_of(RegistrationRequest.parse, ["ep=a", f"lwm2m={version}"], LINKS)
    assert code is ResponseCode.PRECONDITION_FAILED


@pytest.mark.parametrize(
    ("version", "binding"),
    [("1.0", "X"), ("1.0", "T"), ("1.0", "QU"), ("1.1", "UQ"), ("1.1", "UU"), ("1.2", "Z")],
)
def test_unknown_binding_is_4_00(version: str, binding: str) -> None:
    query = ["ep=a", f"lwm2m={version}", f"b={binding}"]
    assert code_of(RegistrationRequest.parse, query, LINKS) is BAD


def test_q_with_value_is_4_00() -> None:
    assert code_of(RegistrationRequest.parse, ["ep=a", "lwm2m=1.1", "Q=1"], LINKS) is BAD


@pytest.mark.parametrize("fmt", [0, 42, 11542, 110])
def test_payload_not_link_format_is_4_15(fmt: int) -> None:
    code = code_of(RegistrationRequest.parse, ["ep=a"], LINKS, fmt)
    assert code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT


def test_oversized_payload_is_4_13() -> None:
    code = code_of(RegistrationRequest.parse, ["ep=a"], b"</3/0>," * 20000)
    assert code is ResponseCode.REQUEST_ENTITY_TOO_LARGE


@pytest.mark.parametrize("payload", [b"", b"  ", b"\xff\xfe"])
def test_empty_or_non_utf8_payload_is_4_00(payload: bytes) -> None:
    assert code_of(RegistrationRequest.parse, ["ep=a"], payload) is BAD


def test_binding_rules_per_version() -> None:
    assert check_binding("UQ", "1.0") is True
    assert check_binding("UQS", "1.0") is True
    assert check_binding("US", "1.0") is False
    assert check_binding("UMHTSN", "1.1") is False
    assert check_binding("T", "1.2") is False


def test_valid_register_defaults() -> None:
    req = RegistrationRequest.parse(["ep=urn:dev:1"], LINKS)
    assert req.endpoint == "urn:dev:1"
    assert req.lifetime == DEFAULT_LIFETIME
    assert req.lwm2m_version == "1.0"
    assert req.binding == "U"
    assert not req.queue_mode
    assert req.object_links.instances == {1: (0,), 3: (0,)}


def test_valid_register_all_params() -> None:
    req = RegistrationRequest.parse(
        ["ep=a", "lt=300", "lwm2m=1.1", "b=UT", "sms=+123", "Q", "et=sensor"],
        b'</>;rt="oma.lwm2m";ct="60 110 112",</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>',
        None,
    )
    assert (req.lifetime, req.lwm2m_version, req.binding, req.sms_number) == (
        300,
        "1.1",
        "UT",
        "+123",
    )
    assert req.queue_mode
    assert req.additional_attributes == {"et": "sensor"}
    assert req.object_links.content_formats == {60, 110, 112}
    assert req.object_links.objects[3303] == "1.1"


def test_queue_mode_1_0_from_binding() -> None:
    assert RegistrationRequest.parse(["ep=a", "b=UQ"], LINKS).queue_mode


def test_update_refuses_bad_values() -> None:
    assert code_of(UpdateRequest.parse, ["lt=-5"]) is BAD
    assert code_of(UpdateRequest.parse, ["b="]) is BAD
    assert code_of(UpdateRequest.parse, ["ep"]) is BAD  # no value
    assert code_of(UpdateRequest.parse, ["lwm2m"]) is BAD


def test_update_refuses_a_changed_ep_or_lwm2m() -> None:
    """Neither can change without a new Register: a different value is a 4.00."""
    reg = Registration("r1", "a", Address("h", 1), lwm2m_version="1.0")
    assert code_of(reg.updated, UpdateRequest.parse(["ep=b"]), now=1.0) is BAD
    assert code_of(reg.updated, UpdateRequest.parse(["lwm2m=1.1"]), now=1.0) is BAD
    assert code_of(reg.updated, UpdateRequest.parse(["lwm2m=9.9"]), now=1.0) is BAD


def test_update_accepts_an_unchanged_ep_and_lwm2m() -> None:
    """Some clients repeat ``lwm2m=1.0`` (or ``ep=``) in every Update: the value is the
    registered one, so nothing changes, and it is not kept as an extra attribute either."""
    reg = Registration("r1", "a", Address("h", 1), lwm2m_version="1.0", lifetime=60)
    new = reg.updated(UpdateRequest.parse(["lwm2m=1.0", "ep=a", "lt=90"]), now=7.0)
    assert (new.endpoint, new.lwm2m_version, new.lifetime) == ("a", "1.0", 90)
    assert new.last_update == 7.0
    assert new.additional_attributes == {}


def test_update_payload_format_checked() -> None:
    code = code_of(UpdateRequest.parse, [], b"</3/0>", 0)
    assert code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT


def test_update_without_params_changes_nothing_but_time() -> None:
    req = UpdateRequest.parse([])
    reg = Registration("r1", "a", Address("h", 1), lifetime=60, last_update=5.0)
    new = reg.updated(req, now=50.0)
    assert new.lifetime == 60
    assert new.last_update == 50.0
    assert new.expires_at == 110.0


def test_update_binding_checked_against_registered_version() -> None:
    reg10 = Registration("r1", "a", Address("h", 1), lwm2m_version="1.0")
    assert reg10.updated(UpdateRequest.parse(["b=UQ"]), now=1.0).queue_mode
    assert not reg10.updated(UpdateRequest.parse(["b=U"]), now=1.0).queue_mode
    assert code_of(reg10.updated, UpdateRequest.parse(["b=T"]), now=1.0) is BAD
    reg11 = Registration("r1", "a", Address("h", 1), lwm2m_version="1.1")
    assert code_of(reg11.updated, UpdateRequest.parse(["b=UQ"]), now=1.0) is BAD
    new = reg11.updated(UpdateRequest.parse(["b=T", "Q", "lt=99", "sms=1"]), now=1.0)
    assert (new.binding, new.queue_mode, new.lifetime, new.sms_number) == ("T", True, 99, "1")


# -- object links -----------------------------------------------------------------------------


def test_object_links_plain() -> None:
    text = "</1/0>,</3/0>,</3303>,</3303/1>,</3303/0>,</3/0/1>"
    links = ObjectLinks.parse(text)
    assert links.text == text
    assert links.root_path == "/"
    assert links.objects == {1: None, 3: None, 3303: None}
    assert links.instances == {1: (0,), 3: (0,), 3303: (1, 0)}


def test_object_links_alternate_root_and_ct() -> None:
    links = ObjectLinks.parse(
        '</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/1/0>,</lwm2m/3>;ver=1.1,</lwm2m/3/0>'
    )
    assert links.root_path == "/lwm2m"
    assert links.content_formats == {11543}
    assert links.objects == {1: None, 3: "1.1"}
    assert links.instances == {1: (0,), 3: (0,)}


def test_object_links_root_slash_and_ct_list() -> None:
    links = ObjectLinks.parse('</>;ct="60 112",</3/0>')
    assert links.root_path == "/"
    assert links.content_formats == {60, 112}


@pytest.mark.parametrize(
    "text", ["</1/0", "</1>;ver=x", '</>;rt="oma.lwm2m";ct=sixty,</3/0>', "</3/0>,,"]
)
def test_malformed_object_list_is_4_00(text: str) -> None:
    assert code_of(RegistrationRequest.parse, ["ep=a"], text.encode()) is BAD


# -- hot-path shortcuts keep the answers ----------------------------------------------------------


def test_an_object_list_is_parsed_once_and_shared() -> None:
    from lwm2m_server.core import registration as module

    text = "</1/0>,</3/0>,</3303/7>"
    first = RegistrationRequest.parse(["ep=a"], text.encode()).object_links
    second = RegistrationRequest.parse(["ep=b"], text.encode()).object_links
    assert second is first  # one value for the fleet that declares the same list
    assert first.instances == {1: (0,), 3: (0,), 3303: (7,)}
    for n in range(module.PARSED_LINKS_CACHE + 5):
        ObjectLinks.parse(f"</{n}/0>")
    assert len(module._PARSED) <= module.PARSED_LINKS_CACHE
    assert ObjectLinks.parse(text) == first  # parsed again once pushed out: the same answer


def test_a_malformed_object_list_is_refused_every_time() -> None:
    for _ in range(2):
        assert code_of(RegistrationRequest.parse, ["ep=a"], b"</1/0>,</3") is BAD


def test_bare_update_refreshes_only_the_lifetime_clock() -> None:
    reg = Registration.create(
        "r1",
        RegistrationRequest.parse(["ep=a", "lt=60", "lwm2m=1.1", "et=x"], LINKS),
        now=10.0,
        address=Address("10.0.0.1", 5683),
    )
    bare = UpdateRequest.parse([], b"")
    assert bare == UpdateRequest()
    later = reg.updated(bare, now=20.0, address=Address("10.0.0.1", 5683))
    assert later.last_update == 20.0 and later.registered_at == 10.0
    assert later.address == reg.address and later.lifetime == 60
    assert later.additional_attributes == {"et": "x"}
    assert later.object_links == reg.object_links and later.lwm2m_version == "1.1"
    moved = reg.updated(
        UpdateRequest.parse(["lt=90", "k=v"], b""), now=30.0, address=Address("10.0.0.2", 1)
    )
    assert moved.address == Address("10.0.0.2", 1) and moved.lifetime == 90
    assert moved.additional_attributes == {"et": "x", "k": "v"}
    assert reg.additional_attributes == {"et": "x"}  # the earlier registration is untouched

"""The downlink building rules behind items 6 and 8 of issue 9, without sockets: no Accept for
a 1.0 client that announced nothing, the format an answer without Content-Format is read in,
and the id an id-less Create picks when the format needs one."""

from __future__ import annotations

import pytest

from lwm2m_runtime.address import Address
from lwm2m_server.coap import formats
from lwm2m_server.coap import requests as rq
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.service import CreatedIds
from object_models.content_format import ContentFormat as CF
from object_models.node import LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry

P = LwM2mPath.parse
MODELS = ModelRegistry.builtin()


def reg(version: str, ct: frozenset[int] = frozenset()) -> Registration:
    links = ObjectLinks(objects={3: "", 3303: ""}, instances={3303: (0, 1)}, content_formats=ct)
    return Registration(
        "id", "ep", Address("127.0.0.1", 5683), lwm2m_version=version, object_links=links
    )


@pytest.mark.parametrize(
    ("version", "ct", "accept"),
    [
        ("1.0", frozenset(), None),
        ("1.0", frozenset({11542}), CF.TLV),  # it told us something: the usual rule
        ("1.1", frozenset(), CF.TLV),
        ("1.2", frozenset({112}), CF.SENML_CBOR),
    ],
)
def test_read_accept(version: str, ct: frozenset[int], accept: int | None) -> None:
    registration = reg(version, ct)
    assert formats.read_accept(registration) == accept
    assert rq.read(registration, P("/3/0"), None).accept == accept
    assert rq.observe(registration, P("/3/0"), None).accept == accept
    assert rq.read(registration, P("/3/0"), CF.JSON).accept == CF.JSON  # forced: as asked


@pytest.mark.parametrize(
    ("path", "content_format", "expected"),
    [
        ("/3/0/0", None, CF.TEXT),
        ("/3/0", None, CF.TLV),
        ("/3", None, CF.TLV),
        ("/3/0", CF.SENML_JSON, CF.SENML_JSON),
    ],
)
def test_answer_format_without_accept(path: str, content_format: int | None, expected: int) -> None:
    request = rq.read(reg("1.0"), P(path), None)
    assert rq.answer_format(request, content_format) == expected


def test_answer_format_falls_back_to_the_accept() -> None:
    request = rq.read(reg("1.1"), P("/3/0/0"), None)
    assert rq.answer_format(request, None) == CF.TLV


def test_create_picks_an_id_neither_listed_nor_taken() -> None:
    instance = LwM2mObjectInstance.of(None, LwM2mSingleResource.new(5700, 1.5))
    r = reg("1.1", frozenset({112}))
    first = rq.create(r, P("/3303"), instance, fmt=CF.SENML_CBOR, models=MODELS)
    assert first.paths == (P("/3303/2"),)
    second = rq.create(r, P("/3303"), instance, fmt=CF.SENML_CBOR, models=MODELS, taken={2, 4})
    assert second.paths == (P("/3303/3"),)
    # TLV bare resources: the client picks, the request names no instance
    assert rq.create(r, P("/3303"), instance, fmt=None, models=MODELS).paths == ()


def test_create_answer_reports_the_chosen_instance() -> None:
    instance = LwM2mObjectInstance.of(None, LwM2mSingleResource.new(5700, 1.5))
    request = rq.create(reg("1.1"), P("/3303"), instance, fmt=CF.SENML_JSON, models=MODELS)
    silent = rq.decode_response(request, rq.RawResponse(rq.CREATED), MODELS)
    assert silent.location == "/3303/2"
    named = rq.RawResponse(rq.CREATED, location_path=("3303", "2"))
    assert rq.decode_response(request, named, MODELS).location == "/3303/2"


def test_created_ids_per_registration_and_object() -> None:
    created = CreatedIds()
    created.add("r1", P("/3303/2"))
    created.add("r1", P("/3303/3"))
    created.add("r1", P("/3303"))  # not an instance: ignored
    created.add("r2", P("/3303/5"))
    assert created.taken("r1", 3303) == {2, 3}
    assert created.taken("r1", 3) == frozenset()
    created.discard("r1", P("/3303/3"))
    assert created.taken("r1", 3303) == {2}
    created.forget("r1")
    assert created.taken("r1", 3303) == frozenset()
    assert created.taken("r2", 3303) == {5}

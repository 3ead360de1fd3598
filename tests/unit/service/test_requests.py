"""Building downlink requests: CoAP shape per operation, content-format choice per client."""

from __future__ import annotations

import pytest

from lwm2m_runtime.address import Address
from lwm2m_server.coap import formats
from lwm2m_server.coap import requests as rq
from lwm2m_server.core.registration import ObjectLinks, Registration
from object_models.content_format import ContentFormat as CF
from object_models.errors import Lwm2mError
from object_models.node import LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry

P = LwM2mPath.parse
MODELS = ModelRegistry.builtin()


def reg(version: str = "1.1", ct: frozenset[int] = frozenset()) -> Registration:
    links = ObjectLinks(objects={3: "", 3303: ""}, instances={3303: (0, 1)}, content_formats=ct)
    return Registration(
        "id", "ep", Address("127.0.0.1", 5683), lwm2m_version=version, object_links=links
    )


@pytest.mark.parametrize(
    ("version", "ct", "single", "composite"),
    [
        ("1.0", frozenset({112}), CF.TLV, None),
        ("1.1", frozenset(), CF.TLV, CF.SENML_CBOR),
        ("1.1", frozenset({110}), CF.TLV, CF.SENML_JSON),
        ("1.1", frozenset({112, 11542}), CF.SENML_CBOR, CF.SENML_CBOR),
        ("1.2", frozenset({112}), CF.SENML_CBOR, CF.SENML_CBOR),
        ("1.2", frozenset({112, 11544}), CF.LWM2M_CBOR, CF.LWM2M_CBOR),
    ],
)
def test_format_rule(version: str, ct: frozenset[int], single: int, composite: int | None) -> None:
    registration = reg(version, ct)
    assert formats.single_path_format(registration) == single
    if composite is None:
        with pytest.raises(Lwm2mError):
            formats.composite_format(registration)
    else:
        assert formats.composite_format(registration) == composite


def test_request_shapes() -> None:
    r = reg("1.1")
    assert rq.read(r, P("/3/0"), None).accept == CF.TLV
    assert rq.read(r, P("/3/0"), CF.SENML_JSON).accept == CF.SENML_JSON
    assert rq.discover(P("/3")).accept == CF.LINK
    wa = rq.write_attributes(P("/3303/0/5700"), {"pmin": "5", "st": None})
    assert (wa.method, wa.query, wa.payload) == ("PUT", ("pmin=5", "st"), b"")
    ex = rq.execute(P("/3/0/4"), "0='x'")
    assert (ex.method, ex.payload, ex.content_format) == ("POST", b"0='x'", CF.TEXT)
    assert rq.execute(P("/3/0/4"), None).content_format is None
    obs = rq.observe(r, P("/3303/0/5700"), None)
    assert (obs.method, obs.observe) == ("GET", 0)
    cancel = rq.cancel(obs, b"tok")
    assert (cancel.observe, cancel.token, cancel.accept) == (1, b"tok", obs.accept)
    fetch = rq.read_composite(r, [P("/3/0/0")], None, observe=0)
    assert (fetch.method, fetch.path, fetch.operation) == (
        "FETCH",
        LwM2mPath(),
        "observe_composite",
    )


def test_write_and_create_encode() -> None:
    r = reg("1.1", frozenset({112}))
    write = rq.write(
        r,
        P("/3/0/14"),
        LwM2mSingleResource.new(14, "+01:00"),
        replace=False,
        fmt=None,
        models=MODELS,
    )
    assert (write.method, write.content_format) == ("POST", CF.SENML_CBOR)
    instance = LwM2mObjectInstance.of(None, LwM2mSingleResource.new(5700, 1.5))
    assert rq.create(r, P("/3303"), instance, fmt=None, models=MODELS).content_format == CF.TLV
    senml = rq.create(r, P("/3303"), instance, fmt=CF.SENML_JSON, models=MODELS)
    assert b"/3303/2/" in senml.payload  # 0 and 1 are listed: the first free id


@pytest.mark.parametrize(
    "make",
    [
        lambda: rq.read(reg(), LwM2mPath(), None),
        lambda: rq.discover(P("/3/0/0/1")),
        lambda: rq.execute(P("/3/0"), None),
        lambda: rq.create(
            reg(), P("/3303/0"), LwM2mObjectInstance.of(None), fmt=None, models=MODELS
        ),
        lambda: rq.write_attributes(P("/3/0"), {}),
        lambda: rq.write_attributes(P("/3/0"), {"p min": "1"}),
        lambda: rq.read_composite(reg(), [], None),
    ],
)
def test_invalid_requests_are_refused_before_sending(make: object) -> None:
    with pytest.raises(Lwm2mError):
        make()  # type: ignore[operator]

"""Device answers the codecs used to reject, read through the HTTP API of the real server from a
hand-built device over loopback CoAP (issue 9 item 7): an empty multiple-instance resource of an
object the server has no model for, and an OMA JSON integer above 2**63-1. Both answered 502
("the device answered garbage") although the device was right; they must read as 200."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from tests.live import Http, loopback_config, running

from ..server import rawcoap as raw

EP = "custom-dev"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    """Without conftest's queue settings (``http`` is conftest's)."""
    async with running(loopback_config(tmp_path / "data")) as srv:
        yield srv


Answer = Callable[[raw.Msg], tuple[int, bytes]]


@pytest.fixture
async def device(server: Lwm2mServer) -> AsyncIterator[Callable[[Answer], Any]]:
    """``await device(answer)``: a registered 1.1 device with custom object 32768 (unknown to
    the server) whose reply to each request is ``answer(request) -> (content format, payload)``."""
    peers: list[raw.RawPeer] = []

    async def make(answer: Answer) -> raw.RawPeer:
        def handle(msg: raw.Msg) -> raw.Msg:
            fmt, payload = answer(msg)
            options = [(raw.CONTENT_FORMAT, raw.uint_bytes(fmt))]
            return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=payload)

        peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), handle)
        peers.append(peer)
        await raw.register(peer, EP, links='</>;ct="60 110 112 11543 11544",</32768/0>')
        return peer

    yield make
    for peer in peers:
        peer.close()


EMPTY_MULTIPLE = [
    (CF.SENML_JSON, b"[]"),
    (CF.SENML_CBOR, b"\x80"),
    (CF.LWM2M_CBOR, b"\xa0"),
    (CF.JSON, b'{"bn":"/32768/0/7/","e":[]}'),
    (CF.TLV, b"\x88\x07\x00"),
]


@pytest.mark.parametrize(("fmt", "payload"), EMPTY_MULTIPLE, ids=lambda v: str(v)[:12])
async def test_read_of_an_empty_multiple_resource_without_a_model(
    http: Http, device: Callable[[Answer], Any], fmt: CF, payload: bytes
) -> None:
    await device(lambda msg: (int(fmt), payload))
    resp = await http.get(f"/api/clients/{EP}/32768/0/7", params={"format": str(int(fmt))})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["content"]["kind"] == "multiResource"
    assert body["content"]["id"] == 7 and body["content"]["values"] == {}


async def test_read_of_an_oma_json_unsigned_above_int64_max(
    http: Http, device: Callable[[Answer], Any]
) -> None:
    payload = b'{"bn":"/32768/0/","e":[{"n":"1","v":18446744073709551615},{"n":"2","v":-3}]}'
    await device(lambda msg: (int(CF.JSON), payload))
    resp = await http.get(f"/api/clients/{EP}/32768/0", params={"format": "11543"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    resources = {r["id"]: r for r in body["content"]["resources"]}
    assert resources[1]["value"] == 18446744073709551615
    assert resources[1]["type"] == "UNSIGNED_INTEGER"
    assert resources[2]["value"] == -3


# Server (/1) instance 0 as bare resource TLVs, without its object instance TLV (Core 1.1.1
# §7.4.3.2 example, unwrapped): Short Server ID 1, Lifetime 86400, Notification Storing, Binding U
SERVER_RESOURCES = bytes.fromhex("C10001C40100015180C10601C10755")
DEVICE_RESOURCES = bytes.fromhex("C800136F70656E20736F757263652064657669636521")  # /3/0/0


async def test_read_of_a_multi_instance_object_as_bare_resources_is_refused(
    server: Lwm2mServer, http: Http, device: Callable[[Answer], Any]
) -> None:
    """Issue 9 item 5: the Server object (/1) is multi-instance, so resource TLVs without their
    instance do not say which instance they are; they were filed under /1/0. Now the device's
    answer is undecodable (the codec's 4.00 ``CodecError``; the API answers 502 "the device
    answered garbage", code 5.00), and nothing is made up."""
    await device(lambda msg: (int(CF.TLV), SERVER_RESOURCES))
    resp = await http.get(f"/api/clients/{EP}/1", params={"format": "tlv"})
    assert resp.status == 502, await resp.text()
    body = await resp.json()
    assert "multi-instance" in body["error"]


async def test_read_of_a_single_instance_object_as_bare_resources_is_instance_0(
    http: Http, device: Callable[[Answer], Any]
) -> None:
    """The Device object (/3) is single-instance: its bare resources can only be /3/0."""
    await device(lambda msg: (int(CF.TLV), DEVICE_RESOURCES))
    resp = await http.get(f"/api/clients/{EP}/3", params={"format": "tlv"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    [instance] = body["content"]["instances"]
    assert instance["id"] == 0
    assert instance["resources"][0]["value"] == "open source device!"

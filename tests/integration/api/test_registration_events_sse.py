"""What an event-stream reader sees of a device's registration life (``GET /api/event``), frame
by frame: the REGISTRATION, UPDATED and DEREGISTRATION data are the client's JSON as ``GET
/api/clients/{ep}`` shows it at that moment, plus ``ep`` first and ``replaced`` / ``reason``
last, in that key order.

Why a test of its own: the bus keeps these payloads unbuilt (``events_bus.RegistrationData``)
and their shape is produced only when a reader reads them; how they are kept may change for
the collector's sake (issue 10), what a reader gets may not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse

from lwm2m_server.service import Lwm2mServer
from tests.live import DeviceFactory, Http, devices, next_sse_event

EP = "sse-life"


@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[DeviceFactory]:
    async with devices(server, EP, lwm2m_version="1.1") as make:
        yield make


async def _client(http: Http) -> dict[str, Any]:
    resp = await http.get(f"/api/clients/{EP}")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def _framed(shown: dict[str, Any], **extra: Any) -> list[tuple[str, Any]]:
    """The event data a reader must get: ``ep``, the API's client JSON, then ``extra``."""
    return [("ep", EP), *shown.items(), *extra.items()]


async def test_registration_events_carry_the_clients_json_in_order(
    http: Http, make_device: DeviceFactory
) -> None:
    stream: ClientResponse = await http.get(f"/api/event?ep={EP}")
    assert stream.status == 200
    await stream.content.readline()  # ": stream open": the subscription exists
    device = await make_device()

    registered = await next_sse_event(stream, "REGISTRATION")
    shown = await _client(http)
    assert list(registered.items()) == _framed(shown, replaced=None)
    first_id = shown["registrationId"]

    await device.update(lifetime=321)
    updated = await next_sse_event(stream, "UPDATED")
    shown = await _client(http)
    assert shown["lifetime"] == 321
    assert list(updated.items()) == _framed(shown)

    await device.register()  # again: the server replaces the registration
    again = await next_sse_event(stream, "REGISTRATION")
    shown = await _client(http)
    assert shown["registrationId"] != first_id
    assert list(again.items()) == _framed(shown, replaced=first_id)

    await device.deregister()
    gone = await next_sse_event(stream, "DEREGISTRATION")
    assert list(gone.items()) == _framed(shown, reason="deregistered")
    stream.close()

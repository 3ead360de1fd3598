"""The demo client's Firmware Update (5) and Software Management (9) objects, end to end: the
real ``lwm2m-server`` in-process with its HTTP API, a registered ``Lwm2mClient``, and the
package served by an independent peer of the test (a tiny aiohttp or aiocoap server), all over
loopback sockets.

The test drives the device only through the server's HTTP API with generic operations (Write
``/5/0/1``, Observe ``/5/0/3`` and ``/5/0/5``, Execute ``/5/0/2``) and asserts what an operator
sees: the State / Update Result notifications on ``/api/event``, the re-registration and the
version the device reports afterwards, the Update Result codes of the failure knobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiocoap
import aiocoap.resource
import pytest
from aiocoap.optiontypes import BlockOption
from aiohttp import ClientResponse, web

from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_client.client import Lwm2mClient
from lwm2m_client.firmware import UpdateSimulation
from lwm2m_client.firmware_image import make_image
from lwm2m_client.transport import local_address
from lwm2m_server.config import QueueSettings
from lwm2m_server.service import Lwm2mServer
from tests.integration.bootstrap import fixtures as bootstrap_fixtures
from tests.integration.bootstrap.fixtures import Factory as BootstrapFactory
from tests.live import DeviceFactory, Http, api_of, devices, listening, loopback_config, running

EP = "fw-dev"
NEW = make_image("pylwm2m-demo", "2.0.0", b"new firmware " * 400)  # ~5 KiB: several blocks
SIMULATION = UpdateSimulation(reboot_delay=0.2, block_timeout=2.0, push_timeout=5.0)
PSK_IDENTITY, PSK_KEY = b"fw-dev-psk", bytes(range(16))


# -- the servers --
@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = loopback_config(
        tmp_path / "data", queue=QueueSettings(awake_time=0.5), request_timeout=5.0
    )
    with SqliteCredentialStore.open(config.database) as store:
        store.put_device(DeviceCredentials.for_psk("fw-dtls", PSK_IDENTITY, PSK_KEY))
    async with running(config) as srv:
        yield srv


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    async with api_of(server, keepalive=0.5) as client:
        yield client


class Packages:
    """The independent download peer: ``/fw/<name>`` over HTTP, and over CoAP (Block2)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.coap_blocks = 0
        self.http_port = 0
        self.coap_port = 0

    def http_uri(self, name: str, *, sha256: str | None = None) -> str:
        return self._uri(f"http://127.0.0.1:{self.http_port}/fw/{name}", name, sha256)

    def coap_uri(self, name: str, *, sha256: str | None = None) -> str:
        return self._uri(f"coap://127.0.0.1:{self.coap_port}/fw/{name}", name, sha256)

    def _uri(self, base: str, name: str, sha256: str | None) -> str:
        digest = sha256 or hashlib.sha256(self.files[name]).hexdigest()
        return f"{base}?sha256={digest}"


class _CoapFile(aiocoap.resource.Resource):  # type: ignore[misc]
    def __init__(self, packages: Packages, name: str) -> None:
        super().__init__()
        self.packages, self.name = packages, name

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        return False  # we slice the blocks ourselves, so each one is a request we can count

    async def render_get(self, request: Any) -> Any:
        self.packages.coap_blocks += 1
        data = self.packages.files[self.name]
        asked = request.opt.block2
        number, szx = (0, 6) if asked is None else (asked.block_number, asked.size_exponent)
        size = 1 << (szx + 4)
        response = aiocoap.Message(payload=data[number * size : (number + 1) * size])
        more = (number + 1) * size < len(data)
        response.opt.block2 = BlockOption.BlockwiseTuple(number, more, szx)
        return response


@pytest.fixture
async def packages() -> AsyncIterator[Packages]:
    found = Packages()
    found.files = {"new.img": NEW, "junk.img": b"not an image at all " * 100}

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in found.files:
            raise web.HTTPNotFound()
        return web.Response(body=found.files[name], content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/fw/{name}", serve)
    async with listening(app) as found.http_port:
        root = aiocoap.resource.Site()
        for name in found.files:
            root.add_resource(["fw", name], _CoapFile(found, name))
        context = await aiocoap.Context.create_server_context(
            root, bind=("127.0.0.1", 0), transports=["udp6"]
        )
        address = local_address(context)
        assert address is not None
        found.coap_port = address[1]
        try:
            yield found
        finally:
            await context.shutdown()


# -- the device and what the operator sees --
@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[DeviceFactory]:
    async with devices(server, EP, update_simulation=SIMULATION) as make:
        yield make


class Events:
    """Everything ``GET /api/event?ep=…`` streams, collected in the background."""

    def __init__(self, stream: ClientResponse) -> None:
        self.stream = stream
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        kind = None
        while True:
            raw = await self.stream.content.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind is not None:
                self.seen.append((kind, json.loads(line.removeprefix("data: "))))
                self._changed.set()

    def values(self, path: str) -> list[Any]:
        """The values notified for ``path``, in order."""
        return [
            point["value"]
            for kind, data in self.seen
            if kind == "NOTIFICATION"
            for point in data.get("points", [])
            if point.get("path") == path
        ]

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.seen if k == kind)

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async def loop() -> None:
            while not check():  # woken by each event, and polled for the device's own state
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"not seen within {timeout}s; events: {self.seen}") from None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.stream.close()


async def _json(resp: ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


@contextlib.asynccontextmanager
async def watching(
    http: Http, endpoint: str = EP, *, paths: tuple[str, ...] = ("/5/0/3", "/5/0/5")
) -> AsyncIterator[Events]:
    """Events of ``endpoint`` with ``paths`` observed through the API."""
    stream = await http.get(f"/api/event?ep={endpoint}")
    assert stream.status == 200
    await stream.content.readline()  # ": stream open"
    events = Events(stream)
    try:
        for path in paths:
            await _json(await http.post(f"/api/clients/{endpoint}{path}/observe"))
        yield events
    finally:
        await events.close()


async def value(http: Http, path: str, endpoint: str = EP) -> Any:
    body = await _json(await http.get(f"/api/clients/{endpoint}{path}"))
    assert body["success"] is True, body
    return body["content"]["value"]


def last(events: Events, path: str) -> Any:
    seen = events.values(path)
    return seen[-1] if seen else None


# -- pull --
@pytest.mark.parametrize("scheme", ["http", "coap"])
async def test_pull_update_reboots_and_reregisters_with_the_new_version(
    http: Http, make_device: DeviceFactory, packages: Packages, scheme: str
) -> None:
    device = await make_device()
    assert await value(http, "/3/0/3") == "0.1.0"
    supported = await _json(await http.get(f"/api/clients/{EP}/5/0/8"))
    assert set(supported["content"]["values"].values()) == {0, 2, 3}  # CoAP, HTTP, HTTPS
    assert await value(http, "/5/0/9") == 2  # push and pull
    uri = packages.http_uri("new.img") if scheme == "http" else packages.coap_uri("new.img")
    async with watching(http) as events:
        written = await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=uri))
        assert written["status"] == "CHANGED"
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
        assert events.values("/5/0/3")[:1] == [1]  # Downloading was visible
        assert await value(http, "/5/0/1") == uri
        if scheme == "coap":
            assert packages.coap_blocks >= len(NEW) // 1024  # block by block (Block2)
        registrations = events.count("REGISTRATION")

        executed = await _json(await http.post(f"/api/clients/{EP}/5/0/2"))
        assert executed["code"] == "2.04"
        await events.wait_for(lambda: 3 in events.values("/5/0/3"))  # Updating
        # the "reboot": a new Register (not an Update) …
        await events.wait_for(lambda: events.count("REGISTRATION") > registrations)
    # … reporting the image's version, and the update's outcome
    assert await value(http, "/3/0/3") == "2.0.0"
    assert await value(http, "/5/0/7") == "2.0.0"
    assert await value(http, "/5/0/6") == "pylwm2m-demo"
    assert await value(http, "/5/0/5") == 1
    assert await value(http, "/5/0/3") == 0
    assert device.registered


async def test_execute_update_outside_downloaded_is_method_not_allowed(
    http: Http, make_device: DeviceFactory
) -> None:
    await make_device()
    refused = await _json(await http.post(f"/api/clients/{EP}/5/0/2"))
    assert refused["success"] is False and refused["code"] == "4.05"
    assert await value(http, "/5/0/3") == 0 and await value(http, "/5/0/5") == 0


@pytest.mark.parametrize(
    ("uri", "result"),
    [
        ("ftp://127.0.0.1/fw/new.img", 9),  # unsupported protocol
        ("not a uri", 7),  # invalid URI
        ("coaps://127.0.0.1:1/fw/new.img", 9),  # CoAPS without DTLS credentials
    ],
)
async def test_unusable_uris_give_the_spec_result(
    http: Http, make_device: DeviceFactory, uri: str, result: int
) -> None:
    await make_device()
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=uri))
        await events.wait_for(lambda: last(events, "/5/0/5") == result)
    assert await value(http, "/5/0/3") == 0


async def test_unknown_package_is_invalid_uri(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device()
    missing = f"http://127.0.0.1:{packages.http_port}/fw/nothing.img"
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=missing))
        await events.wait_for(lambda: last(events, "/5/0/5") == 7)
        assert last(events, "/5/0/3") == 0


async def test_digest_that_differs_from_the_uri_is_an_integrity_failure(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device()
    wrong = packages.http_uri("new.img", sha256="00" * 32)
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=wrong))
        await events.wait_for(lambda: last(events, "/5/0/5") == 5)
        assert last(events, "/5/0/3") == 0
    assert await value(http, "/3/0/3") == "0.1.0"


async def test_unparseable_image_is_unsupported_package_type(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device()
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=packages.coap_uri("junk.img")))
        await events.wait_for(lambda: last(events, "/5/0/5") == 6)
        assert last(events, "/5/0/3") == 0


async def test_reset_with_an_empty_uri_and_writes_refused_while_downloaded(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device()
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=packages.http_uri("new.img")))
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
        again = await _json(
            await http.put(f"/api/clients/{EP}/5/0/1", json=packages.http_uri("new.img"))
        )
        assert again["code"] == "4.05"
        reset = await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=""))
        assert reset["status"] == "CHANGED"
        await events.wait_for(lambda: last(events, "/5/0/3") == 0)
    assert await value(http, "/5/0/5") == 0
    assert (await _json(await http.post(f"/api/clients/{EP}/5/0/2")))["code"] == "4.05"


# -- failure knobs --
async def test_corrupted_download_is_an_integrity_failure(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device(update_simulation=UpdateSimulation(corrupt_download=True))
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=packages.coap_uri("new.img")))
        await events.wait_for(lambda: last(events, "/5/0/5") == 5)
        assert last(events, "/5/0/3") == 0


async def test_a_failing_update_reports_8_and_keeps_the_version(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device(update_simulation=UpdateSimulation(fail_update=True, reboot_delay=0.1))
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=packages.http_uri("new.img")))
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
        registrations = events.count("REGISTRATION")
        assert (await _json(await http.post(f"/api/clients/{EP}/5/0/2")))["code"] == "2.04"
        await events.wait_for(lambda: last(events, "/5/0/5") == 8)
        assert 3 in events.values("/5/0/3")
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)  # the image is still there
        assert events.count("REGISTRATION") == registrations  # no reboot
    assert await value(http, "/3/0/3") == "0.1.0"


async def test_a_device_that_vanishes_mid_download_comes_back_with_connection_lost(
    http: Http, server: Lwm2mServer, make_device: DeviceFactory, packages: Packages
) -> None:
    device = await make_device(
        update_simulation=UpdateSimulation(vanish_after_blocks=2, vanish_for=1.5)
    )
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=packages.coap_uri("new.img")))
        await events.wait_for(lambda: device.outage.active, timeout=5)
        assert packages.coap_blocks == 2  # it stopped asking after two blocks
        # out of reach: the server's requests time out
        silent = await http.get(f"/api/clients/{EP}/5/0/3?timeout=0.5")
        assert silent.status == 504
        # back: the download is lost, the device says so and updates its registration
        await events.wait_for(lambda: last(events, "/5/0/5") == 4)
        assert last(events, "/5/0/3") == 0
        await events.wait_for(lambda: events.count("UPDATED") >= 1)
    assert packages.coap_blocks == 2


async def test_a_device_that_never_comes_back(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    device = await make_device(update_simulation=UpdateSimulation(vanish_after_blocks=1))
    async with watching(http) as events:
        await _json(await http.put(f"/api/clients/{EP}/5/0/1", json=packages.http_uri("new.img")))
        await events.wait_for(lambda: device.outage.active, timeout=5)
        assert (await http.get(f"/api/clients/{EP}/5/0/3?timeout=0.5")).status == 504
        assert last(events, "/5/0/3") == 1  # the last thing the server heard: Downloading


# -- push --
async def test_push_of_a_100_kib_package_with_block1(
    http: Http, make_device: DeviceFactory
) -> None:
    await make_device()
    image = make_image("pylwm2m-demo", "3.1.4", bytes(range(256)) * 400)  # ~100 KiB
    async with watching(http) as events:
        body = base64.b64encode(image).decode()
        written = await _json(await http.put(f"/api/clients/{EP}/5/0/0?timeout=60", json=body))
        assert written["status"] == "CHANGED", written
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
        assert 1 in events.values("/5/0/3")  # Downloading while the blocks arrived
        registrations = events.count("REGISTRATION")
        assert (await _json(await http.post(f"/api/clients/{EP}/5/0/2")))["code"] == "2.04"
        await events.wait_for(lambda: events.count("REGISTRATION") > registrations)
    assert await value(http, "/3/0/3") == "3.1.4"
    assert await value(http, "/5/0/5") == 1


async def test_a_device_that_vanishes_mid_push(http: Http, make_device: DeviceFactory) -> None:
    device = await make_device(update_simulation=UpdateSimulation(vanish_after_blocks=5))
    image = make_image("pylwm2m-demo", "3.1.4", bytes(range(256)) * 100)  # ~25 blocks
    async with watching(http) as events:
        body = base64.b64encode(image).decode()
        pushed = await http.put(f"/api/clients/{EP}/5/0/0?timeout=2", json=body)
        assert pushed.status == 504  # the blocks after the fifth go unanswered
        assert device.outage.active
        assert last(events, "/5/0/3") == 1  # what the server last heard: Downloading


async def test_push_that_is_not_an_image(http: Http, make_device: DeviceFactory) -> None:
    await make_device()
    async with watching(http) as events:
        junk = base64.b64encode(b"\x01" * 3000).decode()
        assert (await _json(await http.put(f"/api/clients/{EP}/5/0/0", json=junk)))["success"]
        await events.wait_for(lambda: last(events, "/5/0/5") == 6)
        assert last(events, "/5/0/3") == 0


# -- DTLS and queue mode ---------------------------------------------------------------------------
async def test_dtls_device_push_and_pull(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    ep = "fw-dtls"
    await make_device(ep, psk=(PSK_IDENTITY, PSK_KEY))
    supported = await _json(await http.get(f"/api/clients/{ep}/5/0/8"))
    assert set(supported["content"]["values"].values()) == {0, 1, 2, 3}  # now CoAPS too
    async with watching(http, ep) as events:
        image = make_image("pylwm2m-demo", "4.0.0", b"\x42" * 20000)
        pushed = await http.put(
            f"/api/clients/{ep}/5/0/0?timeout=30", json=base64.b64encode(image).decode()
        )
        assert (await _json(pushed))["status"] == "CHANGED"
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
        await _json(await http.put(f"/api/clients/{ep}/5/0/1", json=""))
        await events.wait_for(lambda: last(events, "/5/0/3") == 0)
        await _json(await http.put(f"/api/clients/{ep}/5/0/1", json=packages.coap_uri("new.img")))
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
        registrations = events.count("REGISTRATION")
        await _json(await http.post(f"/api/clients/{ep}/5/0/2"))
        await events.wait_for(lambda: events.count("REGISTRATION") > registrations)
    assert await value(http, "/3/0/3", ep) == "2.0.0"


async def test_dtls_device_pulls_coaps_over_its_own_session(
    http: Http, server: Lwm2mServer, make_device: DeviceFactory
) -> None:
    """A ``coaps://`` Package URI on the LwM2M server's address is fetched over the session the
    device registered with (the download server identifies the device by it): no second
    handshake. This server has no package there, so its 4.04 is Update Result 7."""
    ep = "fw-dtls"
    await make_device(ep, psk=(PSK_IDENTITY, PSK_KEY))
    sessions = list(server.dtls.sessions)
    assert len(sessions) == 1
    uri = f"coaps://127.0.0.1:{server.coaps_address.port}/fw/unknown-token?sha256={'0' * 64}"
    async with watching(http, ep) as events:
        await _json(await http.put(f"/api/clients/{ep}/5/0/1", json=uri))
        await events.wait_for(lambda: last(events, "/5/0/5") == 7)
        assert last(events, "/5/0/3") == 0
    assert list(server.dtls.sessions) == sessions


async def test_queue_mode_device_downloads_when_awake(
    http: Http, server: Lwm2mServer, make_device: DeviceFactory, packages: Packages
) -> None:
    ep = "fw-sleepy"
    device = await make_device(ep, queue_mode=True, awake_time=0.3)
    async with watching(http, ep) as events:
        await events.wait_for(lambda: events.count("SLEEPING") >= 1)
        queued = await http.put(f"/api/clients/{ep}/5/0/1", json=packages.http_uri("new.img"))
        assert queued.status == 202
        assert device.firmware is not None and device.get_value("/5/0/3") == 0
        await device.update()  # it wakes up; the server delivers the queued Write
        await events.wait_for(lambda: last(events, "/5/0/3") == 2)
    assert device.get_value("/5/0/3") == 2


# -- object 9 --
async def test_software_install_through_the_api(
    http: Http, make_device: DeviceFactory, packages: Packages
) -> None:
    await make_device()
    assert await value(http, "/9/0/7") == 0  # INITIAL
    async with watching(http, paths=("/9/0/7", "/9/0/9")) as events:
        assert (await _json(await http.post(f"/api/clients/{EP}/9/0/4")))["code"] == "4.05"
        await _json(await http.put(f"/api/clients/{EP}/9/0/3", json=packages.http_uri("new.img")))
        await events.wait_for(lambda: last(events, "/9/0/7") == 3)  # DELIVERED
        assert last(events, "/9/0/9") == 3  # downloaded and verified
        assert (await _json(await http.post(f"/api/clients/{EP}/9/0/4")))["code"] == "2.04"
        await events.wait_for(lambda: last(events, "/9/0/7") == 4)  # INSTALLED
        assert last(events, "/9/0/9") == 2
    assert await value(http, "/9/0/1") == "2.0.0"
    assert await value(http, "/9/0/12") is False
    assert (await _json(await http.post(f"/api/clients/{EP}/9/0/10")))["code"] == "2.04"
    assert await value(http, "/9/0/12") is True


# -- bootstrap --
make_bootstrap = bootstrap_fixtures.make_bootstrap


async def test_a_bootstrapped_device_keeps_its_update_objects(
    http: Http, server: Lwm2mServer, make_bootstrap: BootstrapFactory, packages: Packages
) -> None:
    """Bootstrap-Delete of ``/`` removes every instance but the Device and the bootstrap
    account; objects 5 and 9 are the device's own machinery and come back for the Register."""
    config = {
        "endpoint": "fw-bs",
        "to_delete": ["/"],
        "bootstrap_security": [{"mode": "nosec"}],
        "servers": [{"uri": bootstrap_fixtures.coap_uri(server), "short_server_id": 7,
                     "lifetime": 90, "security": {"mode": "nosec"}}],
    }  # fmt: skip
    bootstrap = await make_bootstrap(config)
    client = Lwm2mClient.from_bootstrap(
        "fw-bs", bootstrap_fixtures.coap_uri(bootstrap), update_objects=True,
        finish_timeout=10.0, attempts=1, auto_update=False, update_simulation=SIMULATION,
    )  # fmt: skip
    async with client:
        shown = await _json(await http.get("/api/clients/fw-bs"))
        assert shown["availableInstances"]["5"] == [0]
        assert shown["availableInstances"]["9"] == [0]
        async with watching(http, "fw-bs") as events:
            uri = packages.http_uri("new.img")
            await _json(await http.put("/api/clients/fw-bs/5/0/1", json=uri))
            await events.wait_for(lambda: last(events, "/5/0/3") == 2)

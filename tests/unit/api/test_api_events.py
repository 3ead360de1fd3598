"""``GET /api/event``: server-sent events over a real HTTP connection."""

from __future__ import annotations

import asyncio
import json

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from lwm2m_server.api.events import format_event
from lwm2m_server.operations import ServerEvent
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]


async def _next_block(resp: ClientResponse, timeout: float = 3.0) -> str:
    """The next SSE block (up to a blank line), comments included."""
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), timeout)
        if not raw:
            raise EOFError("stream ended")
        line = raw.decode().rstrip("\n")
        if line == "":
            return "\n".join(lines)
        lines.append(line)


async def _next_event(resp: ClientResponse) -> tuple[str, dict[str, object]]:
    while True:
        block = await _next_block(resp)
        if block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        return fields["event"], json.loads(fields["data"])


async def _subscribers(ops: FakeOps, count: int) -> None:
    for _ in range(100):
        if len(ops.subscribers) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no subscription")


async def test_events_stream(api: Client, ops: FakeOps) -> None:
    resp = await api.get("/api/event")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert await _next_block(resp) == ": stream open"
    ops.emit("REGISTRATION", "dev-2", {"endpoint": "dev-2", "lifetime": 60})
    ops.notify("dev-1", LwM2mPath(3303, 0, 5700))
    kind, data = await _next_event(resp)
    assert kind == "REGISTRATION" and data == {"ep": "dev-2", "endpoint": "dev-2", "lifetime": 60}
    kind, data = await _next_event(resp)
    assert kind == "NOTIFICATION"
    assert data["res"] == "/3303/0/5700"
    assert data["val"] == {"kind": "singleResource", "id": 5700, "type": "FLOAT", "value": 21.5}
    resp.close()


async def test_events_filter_by_endpoint(api: Client, ops: FakeOps) -> None:
    resp = await api.get("/api/event?ep=dev-1")
    await _next_block(resp)
    ops.emit("UPDATED", "dev-2", {})
    ops.emit("SLEEPING", "dev-1", {})
    kind, data = await _next_event(resp)
    assert (kind, data["ep"]) == ("SLEEPING", "dev-1")
    resp.close()


async def test_keepalive_comments(api: Client) -> None:
    """The fixture's app uses a 0.2 s keep-alive instead of 15 s."""
    resp = await api.get("/api/event")
    assert await _next_block(resp) == ": stream open"
    assert await _next_block(resp, timeout=2) == ": keep-alive"
    resp.close()


async def test_stream_ends_when_the_server_stream_ends(api: Client, ops: FakeOps) -> None:
    resp = await api.get("/api/event")
    await _next_block(resp)
    ops.end_events()
    rest = await asyncio.wait_for(resp.content.read(), 3)
    assert b"event:" not in rest


async def test_disconnect_releases_the_subscription(api: Client, ops: FakeOps) -> None:
    await _subscribers(ops, 1)  # the app's own presence tracker
    resp = await api.get("/api/event")
    await _next_block(resp)
    assert len(ops.subscribers) == 2
    resp.close()
    for _ in range(100):
        ops.emit("UPDATED", "dev-1", {})  # writing to the closed socket ends the handler
        if len(ops.subscribers) == 1:
            break
        await asyncio.sleep(0.02)
    assert len(ops.subscribers) == 1


def test_format_event_is_one_data_line_and_tolerates_raw_values() -> None:
    node = LwM2mSingleResource(0, "a\nb", ResourceType.STRING)
    event = ServerEvent(
        "NOTIFICATION",
        "dev-1",
        {"val": node, "res": LwM2mPath(3, 0, 0), "raw": b"\x00", "tags": {1}},
    )
    text = format_event(event).decode()
    head, data, blank, end = text.split("\n")
    assert head == "event: NOTIFICATION" and blank == "" and end == ""
    payload = json.loads(data.removeprefix("data: "))
    assert payload == {
        "ep": "dev-1",
        "val": {"kind": "singleResource", "id": 0, "type": "STRING", "value": "a\nb"},
        "res": "/3/0/0",
        "raw": "AA==",
        "tags": [1],
    }


async def test_shutdown_with_an_open_stream_is_prompt() -> None:
    """Open event streams are cancelled on shutdown instead of holding the server up."""
    import time

    from aiohttp.test_utils import TestServer

    from lwm2m_server.api import create_app

    ops = FakeOps()
    server = TestServer(create_app(ops, keepalive=30))
    await server.start_server()
    client = TestClient(server)
    await client.start_server()
    resp = await client.get("/api/event")
    await _next_block(resp)
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 5
    assert ops.subscribers == []

"""``GET /api/event``: server-sent events over a real HTTP connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from lwm2m_server.api.events import format_event
from lwm2m_server.events_bus import EventBus
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
    assert ops.subscribers == []  # the app itself follows no stream (presence is a query)
    resp = await api.get("/api/event")
    await _next_block(resp)
    assert len(ops.subscribers) == 1
    resp.close()
    for _ in range(100):
        ops.emit("UPDATED", "dev-1", {})  # writing to the closed socket ends the handler
        if not ops.subscribers:
            break
        await asyncio.sleep(0.02)
    assert ops.subscribers == []


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


# -- ids, resume and GAP (issue 13 item 5) -------------------------------------------------------


async def _frames(resp: ClientResponse, count: int) -> list[dict[str, str]]:
    """The next ``count`` event frames as their fields (id, event, data), comments skipped."""
    found: list[dict[str, str]] = []
    while len(found) < count:
        block = await _next_block(resp)
        if block.startswith(":"):
            continue
        found.append(dict(line.split(": ", 1) for line in block.split("\n")))
    return found


async def test_events_carry_increasing_ids(api: Client, ops: FakeOps) -> None:
    resp = await api.get("/api/event")
    await _next_block(resp)
    sent = [ops.emit("UPDATED", "dev-1", {"n": n}).id for n in range(3)]
    frames = await _frames(resp, 3)
    assert [int(f["id"]) for f in frames] == sent and sent == [sent[0], sent[0] + 1, sent[0] + 2]
    resp.close()


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_after_last_event_id_replays_exactly_the_missed(
    api: Client, ops: FakeOps, how: str
) -> None:
    ids = [ops.emit("UPDATED", f"dev-{n}", {"n": n}).id for n in range(10)]
    last_seen = ids[3]  # the reader got up to the 4th, then its connection dropped
    if how == "header":
        resp = await api.get("/api/event", headers={"Last-Event-ID": str(last_seen)})
    else:
        resp = await api.get(f"/api/event?lastEventId={last_seen}")
    assert resp.status == 200
    frames = await _frames(resp, 6)
    assert [int(f["id"]) for f in frames] == ids[4:]
    assert [json.loads(f["data"])["n"] for f in frames] == list(range(4, 10))
    live = ops.emit("SLEEPING", "dev-1", {}).id  # then the live stream, without a seam
    (frame,) = await _frames(resp, 1)
    assert (int(frame["id"]), frame["event"]) == (live, "SLEEPING")
    resp.close()


async def test_resume_beyond_the_buffer_is_an_explicit_gap(api: Client, ops: FakeOps) -> None:
    ops.bus = EventBus(replay_size=5, first_id=1)
    for n in range(20):
        ops.emit("UPDATED", "dev-1", {"n": n})
    resp = await api.get("/api/event", headers={"Last-Event-ID": "2"})
    gap, *rest = await _frames(resp, 6)
    assert gap["event"] == "GAP" and gap["id"] == "15"
    assert json.loads(gap["data"]) == {"missed": 13, "from": 3, "to": 15}
    assert [int(f["id"]) for f in rest] == [16, 17, 18, 19, 20]
    resp.close()


async def test_a_filtered_stream_still_gets_gaps(api: Client, ops: FakeOps) -> None:
    ops.bus = EventBus(replay_size=2, first_id=1)
    for n in range(6):
        ops.emit("UPDATED", "dev-2" if n % 2 else "dev-1", {"n": n})
    resp = await api.get("/api/event?ep=dev-1&lastEventId=0")
    gap, event = await _frames(resp, 2)
    assert json.loads(gap["data"]) == {"missed": 4, "from": 1, "to": 4}
    assert (event["id"], json.loads(event["data"])["ep"]) == ("5", "dev-1")
    resp.close()


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
async def test_a_last_event_id_that_is_not_an_id_is_400(
    api: Client, ops: FakeOps, value: str
) -> None:
    resp = await api.get("/api/event", headers={"Last-Event-ID": value})
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "4.00" and "Last-Event-ID" in body["error"]
    assert ops.subscribers == []


async def test_20000_events_to_a_slow_http_reader_every_event_or_a_gap(
    api: Client, ops: FakeOps
) -> None:
    """The acceptance line over a real HTTP connection: 20,000 events while the reader does not
    read (its socket buffers fill, the writer stalls), then it reads everything: each id
    arrives exactly once, as an event or inside a GAP's range, in order."""
    ops.bus = EventBus(replay_size=2000, first_id=1)
    resp = await api.get("/api/event")
    await _next_block(resp)
    for n in range(20_000):
        ops.emit("UPDATED", f"dev-{n % 50}", {"n": n, "pad": "x" * 200})
        if n % 1000 == 999:
            await asyncio.sleep(0)  # the writer gets loop turns, as between datagrams
    received, missed, seen = 0, 0, 0
    while seen < 20_000:
        (frame,) = await _frames(resp, 1)
        data = json.loads(frame["data"])
        if frame["event"] == "GAP":
            assert data["from"] == seen + 1 and data["to"] == seen + data["missed"]
            missed += data["missed"]
            seen = data["to"]
        else:
            assert int(frame["id"]) == seen + 1 and data["n"] == seen
            received += 1
            seen += 1
        assert int(frame["id"]) == seen
    assert missed > 0 and received + missed == 20_000
    resp.close()


async def test_the_leshan_dialect_has_ids_resume_and_gap(api: Client, ops: FakeOps) -> None:
    ops.bus = EventBus(replay_size=3, first_id=1)
    for _ in range(6):
        ops.emit("SLEEPING", "dev-1", {})
    resp = await api.get("/leshan/api/event", headers={"Last-Event-ID": "1"})
    gap, *rest = await _frames(resp, 4)
    assert gap["event"] == "GAP" and json.loads(gap["data"]) == {"missed": 2, "from": 2, "to": 3}
    assert [(f["id"], f["event"], json.loads(f["data"])) for f in rest] == [
        (str(n), "SLEEPING", {"ep": "dev-1"}) for n in (4, 5, 6)
    ]
    resp.close()

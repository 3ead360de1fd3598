"""Registrations, observations, telemetry, health and error shapes over real HTTP."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from object_models.path import LwM2mPath

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]


async def test_list_clients(api: Client, ops: FakeOps) -> None:
    ops.add_client("dev-0", queue_mode=True)
    resp = await api.get("/api/clients")
    assert resp.status == 200
    body = await resp.json()
    assert [c["endpoint"] for c in body] == ["dev-0", "dev-1"]
    assert body[1]["registrationId"] == "reg-dev-1"
    assert body[1]["lwM2mVersion"] == "1.1"
    assert body[1]["availableInstances"] == {"1": [0], "3": [0], "3303": [0]}
    assert body[0]["queuemode"] is True


async def test_show_client_and_unknown_client(api: Client) -> None:
    resp = await api.get("/api/clients/dev-1")
    assert resp.status == 200
    assert (await resp.json())["endpoint"] == "dev-1"
    resp = await api.get("/api/clients/nope")
    assert resp.status == 404
    assert await resp.json() == {"error": "no client registered as 'nope'", "code": "4.04"}


async def test_unknown_client_is_404_for_every_operation(api: Client) -> None:
    for method, url in [
        ("GET", "/api/clients/nope/3/0"),
        ("PUT", "/api/clients/nope/3/0/14"),
        ("POST", "/api/clients/nope/3/0/4"),
        ("DELETE", "/api/clients/nope/3303/0"),
        ("POST", "/api/clients/nope/3/0/observe"),
        ("GET", "/api/clients/nope/3/0/discover"),
        ("GET", "/api/clients/nope/composite?paths=/3/0/0"),
        ("GET", "/api/clients/nope/observations"),
        ("GET", "/api/clients/nope/telemetry"),
    ]:
        resp = await api.request(method, url, data=b"not even json")
        assert resp.status == 404, (method, url)
        assert (await resp.json())["code"] == "4.04"


async def test_sleeping_flag_is_the_servers_state_not_the_streams(
    api: Client, ops: FakeOps
) -> None:
    """Issue 13 item 5: the flag is ``ops.is_sleeping`` (the server's queue-mode state), so a
    lost or absent event cannot make it wrong, and no event subscriber is needed for it."""
    ops.add_client("sleepy", queue_mode=True)
    ops.sleeping["sleepy"] = False
    assert (await (await api.get("/api/clients/sleepy")).json())["sleeping"] is False
    ops.sleeping["sleepy"] = True  # the server says so; no SLEEPING event was published
    assert (await (await api.get("/api/clients/sleepy")).json())["sleeping"] is True
    listed = {c["endpoint"]: c for c in await (await api.get("/api/clients")).json()}
    assert listed["sleepy"]["sleeping"] is True and "sleeping" not in listed["dev-1"]
    ops.emit("AWAKE", "sleepy", {})  # an event alone changes nothing
    assert (await (await api.get("/api/clients/sleepy")).json())["sleeping"] is True
    assert ops.subscribers == []


async def test_observations(api: Client, ops: FakeOps) -> None:
    ops.observed["dev-1"] = [(LwM2mPath(3303, 0, 5700),), (LwM2mPath(3, 0, 9), LwM2mPath(1, 0, 1))]
    body = await (await api.get("/api/clients/dev-1/observations")).json()
    assert body == {
        "endpoint": "dev-1",
        "observations": [
            {"paths": ["/3303/0/5700"], "composite": False},
            {"paths": ["/3/0/9", "/1/0/1"], "composite": True},
        ],
    }


async def test_telemetry_latest_and_history(api: Client, ops: FakeOps) -> None:
    ops.record("dev-1", LwM2mPath(3303, 0, 5700), ts=1000.0)
    ops.trees["dev-1"][3303][0][5700] = ops.trees["dev-1"][3303][0][5700].__class__(
        5700,
        22.0,
        ops.trees["dev-1"][3303][0][5700].type,  # type: ignore[union-attr]
    )
    ops.record("dev-1", LwM2mPath(3303, 0, 5700), ts=2000.0)
    ops.record("dev-1", LwM2mPath(3, 0, 9), ts=2000.0)

    latest = await (await api.get("/api/clients/dev-1/telemetry")).json()
    assert latest["mode"] == "latest"
    assert [(p["path"], p["value"]) for p in latest["points"]] == [
        ("/3/0/9", 87),
        ("/3303/0/5700", 22.0),
    ]

    history = await (
        await api.get("/api/clients/dev-1/telemetry?key=sensorValue&since=1970-01-01T00:00:00Z")
    ).json()
    assert history["mode"] == "history"
    assert [p["value"] for p in history["points"]] == [21.5, 22.0]
    assert ops.calls[-1] == ("telemetry_history", "dev-1", "sensorValue", 0, None, 1000)

    limited = await (await api.get("/api/clients/dev-1/telemetry?since=1500000&limit=1")).json()
    assert len(limited["points"]) == 1 and limited["points"][0]["ts"] == 2_000_000


async def test_telemetry_bad_parameters(api: Client) -> None:
    for query in ("since=yesterday", "limit=0", "limit=abc", "until=12:00"):
        resp = await api.get(f"/api/clients/dev-1/telemetry?{query}")
        assert resp.status == 400, query
        assert (await resp.json())["code"] == "4.00"


async def test_health(api: Client) -> None:
    resp = await api.get("/api/health")
    assert await resp.json() == {
        "status": "ok",
        "clients": 1,
        "quarantined": 0,
        "limits": {"register_rate": 0},
    }


async def test_unknown_route_and_method_are_json(api: Client) -> None:
    resp = await api.get("/api/nothing")
    assert resp.status == 404
    assert (await resp.json())["code"] == "4.04"
    resp = await api.delete("/api/clients")
    assert resp.status == 405
    assert (await resp.json())["code"] == "4.05"
    assert "GET" in resp.headers["Allow"]


async def test_fixed_routes_with_other_methods_are_405(api: Client) -> None:
    for method, url, allowed in [
        ("PUT", "/api/clients/dev-1/observations", "GET"),
        ("POST", "/api/clients/dev-1/telemetry", "GET"),
        ("DELETE", "/api/clients/dev-1/composite", "GET, PUT"),
        ("GET", "/api/clients/dev-1/composite/observe", "POST, DELETE"),
        ("PUT", "/api/clients/dev-1/3/0/observe", "POST, DELETE"),
        ("POST", "/api/clients/dev-1/3/0/discover", "GET"),
        ("GET", "/api/clients/nope/3/0/attributes", "PUT"),
    ]:
        resp = await api.request(method, url)
        assert resp.status == 405, (method, url)
        assert set(resp.headers["Allow"].split(",")) == set(allowed.split(", "))
        assert (await resp.json())["code"] == "4.05"

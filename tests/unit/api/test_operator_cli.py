"""The operator CLI against a live API: an in-process aiohttp server on a loopback port in front
of the in-memory device. The CLI is synchronous (urllib), so it runs in a worker thread while the
event loop serves it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from lwm2m_server import operator_cli
from lwm2m_server.api import create_app
from object_models.path import LwM2mPath

from .fake_ops import FakeOps


class Cli:
    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(operator_cli.main, [*argv, "--api", self.url])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
async def cli(ops: FakeOps, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Cli]:
    async with TestServer(create_app(ops, keepalive=0.2)) as server:
        yield Cli(str(server.make_url("")).rstrip("/"), capsys)


async def test_clients_table_and_json(cli: Cli, ops: FakeOps) -> None:
    ops.add_client("sleepy", queue_mode=True)
    code, out, _ = await cli("clients")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ENDPOINT",
        "ADDRESS",
        "LWM2M",
        "BINDING",
        "LIFETIME",
        "LAST",
        "UPDATE",
        "MODE",
    ]
    assert lines[1].startswith("dev-1 ") and "300 s" in lines[1] and lines[1].endswith("-")
    assert lines[2].startswith("sleepy") and lines[2].endswith("queue")
    code, out, _ = await cli("clients", "--json")
    assert [c["endpoint"] for c in json.loads(out)] == ["dev-1", "sleepy"]


async def test_show(cli: Cli) -> None:
    code, out, _ = await cli("show", "dev-1")
    assert code == 0
    assert "registration id  reg-dev-1" in out
    assert "lwm2m version    1.1" in out
    assert any(line.split()[:3] == ["/3", "Device", "1.2"] for line in out.splitlines())
    code, _, err = await cli("show", "ghost")
    assert code == 1 and "no client registered as 'ghost'" in err and "HTTP 404" in err


async def test_read_instance_tree_with_names_and_units(cli: Cli) -> None:
    code, out, _ = await cli("read", "dev-1", "/3/0")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "/3/0  Device"
    assert lines[1].split() == ["0", "Manufacturer", "Acme"]
    battery = next(line for line in lines if "Battery Level" in line)
    assert battery.split() == ["9", "Battery", "Level", "87", "/100"]
    power = lines.index(next(line for line in lines if "Available Power Sources" in line))
    assert lines[power + 1].split() == ["[0]", "1"] and lines[power + 2].split() == ["[1]", "5"]
    assert any("Current Time" in line and "2023-11-14T22:13:20Z" in line for line in lines)


async def test_read_resource_and_json(cli: Cli) -> None:
    _, out, _ = await cli("read", "dev-1", "/3303/0/5700")
    assert out.split() == ["/3303/0/5700", "Sensor", "Value", "21.5"]
    _, out, _ = await cli("read", "dev-1", "3303/0/5700", "--json", "--format", "senml-json")
    body = json.loads(out)
    assert body["content"]["value"] == 21.5 and body["contentFormat"] == "senml-json"


async def test_read_several_paths_is_composite(cli: Cli) -> None:
    code, out, _ = await cli("read", "dev-1", "/3/0/0", "/3303/0/5700", "/3/0/99")
    assert code == 0
    assert "/3/0/0  Manufacturer  Acme" in out
    assert "/3/0/99  (no value)" in out


async def test_device_error_exits_1(cli: Cli) -> None:
    code, out, err = await cli("read", "dev-1", "/3/9")
    assert code == 1 and out == ""
    assert "the device answered NOT_FOUND (4.04): /3/9 not found" in err


async def test_usage_errors_exit_2(cli: Cli) -> None:
    code, _, err = await cli("read", "dev-1", "/3/x")
    assert code == 2 and "invalid LwM2M path" in err
    code, _, err = await cli("create", "dev-1", "/3303", "{not json")
    assert code == 2 and "not valid JSON" in err
    code, _, err = await cli("attributes", "dev-1", "/3/0", "=5")
    assert code == 2
    code, _, _ = await cli("read")
    assert code == 2
    code, _, _ = await cli("bogus")
    assert code == 2


async def test_unreachable_api_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(operator_cli.main, ["clients", "--api", "http://127.0.0.1:9"])
    assert code == 1
    assert "cannot reach the API" in capsys.readouterr().err


async def test_write_text_values_take_the_resource_type(cli: Cli, ops: FakeOps) -> None:
    code, out, _ = await cli("write", "dev-1", "/1/0/1", "600")
    assert (code, out.strip()) == (0, "CHANGED (2.04)")
    code, out, _ = await cli("write", "dev-1", "/3/0/15", "42")  # a string resource
    assert code == 0
    assert ops.trees["dev-1"][3][0][15].value == "42"  # type: ignore[union-attr]
    code, _, err = await cli("write", "dev-1", "/1/0/1", "soon")
    assert code == 1 and "/1/0/1" in err and "HTTP 400" in err


async def test_write_json_instance_partial(cli: Cli, ops: FakeOps) -> None:
    code, _, _ = await cli("write", "dev-1", "/3/0", '{"14": "+03:00"}', "--partial")
    assert code == 0
    assert ops.calls[-1][4] is False
    assert ops.trees["dev-1"][3][0][0].value == "Acme"  # type: ignore[union-attr]


async def test_execute_create_delete(cli: Cli, ops: FakeOps) -> None:
    code, out, _ = await cli("execute", "dev-1", "/3/0/4", "0='now'")
    assert code == 0 and ops.executed == [("dev-1", "/3/0/4", "0='now'")]
    code, out, _ = await cli(
        "create", "dev-1", "/3303", '{"id": 7, "resources": [{"id": 5700, "value": 3}]}'
    )
    assert (code, out.strip()) == (0, "CREATED (2.01) at /3303/7")
    code, out, _ = await cli("delete", "dev-1", "/3303/7")
    assert (code, out.strip()) == (0, "DELETED (2.02)")


async def test_discover_and_attributes(cli: Cli, ops: FakeOps) -> None:
    code, out, _ = await cli("attributes", "dev-1", "/3/0", "pmin=10", "pmax=60", "gt=")
    assert code == 0
    assert ops.calls[-1][3] == {"pmin": "10", "pmax": "60", "gt": None}
    code, out, _ = await cli("discover", "dev-1", "/3/0")
    lines = out.splitlines()
    assert lines[0].split() == ["/3/0", "pmin=10;pmax=60"]
    assert any(line.split() == ["/3/0/6", "dim=2"] for line in lines)


async def test_observe_cancel(cli: Cli, ops: FakeOps) -> None:
    code, out, _ = await cli("observe", "dev-1", "/3303/0/5700")
    assert code == 0 and out.splitlines()[0] == "observing /3303/0/5700 on dev-1"
    code, out, _ = await cli("cancel", "dev-1", "/3303/0/5700", "--passive")
    assert code == 0 and ops.calls[-1][3] is False
    code, _, err = await cli("cancel", "dev-1", "/3303/0/5700")
    assert code == 1 and "NOT_FOUND" in err


async def test_queued_exits_0(cli: Cli, ops: FakeOps) -> None:
    ops.asleep.add("dev-1")
    code, out, _ = await cli("read", "dev-1", "/3/0")
    assert code == 0 and out.startswith("queued: dev-1 is sleeping")


async def test_timeout_exits_1(cli: Cli, ops: FakeOps) -> None:
    ops.silent.add("dev-1")
    code, _, err = await cli("read", "dev-1", "/3/0", "--timeout", "0.2")
    assert code == 1 and "timeout" in err and "HTTP 504" in err


async def test_telemetry(cli: Cli, ops: FakeOps) -> None:
    code, out, _ = await cli("telemetry", "dev-1")
    assert (code, out.strip()) == (0, "no telemetry")
    ops.record("dev-1", LwM2mPath(3303, 0, 5700), ts=1_700_000_000.0)
    code, out, _ = await cli(
        "telemetry", "dev-1", "--key", "sensorValue", "--since", "2023-01-01T00:00:00Z"
    )
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PATH", "KEY", "VALUE"]
    assert lines[1].split() == ["2023-11-14T22:13:20Z", "/3303/0/5700", "sensorValue", "21.5"]
    assert ops.calls[-1][3] == 1_672_531_200_000


async def _emit_when_subscribed(
    ops: FakeOps, count: int, *events: tuple[str, str, dict[str, object]]
) -> None:
    for _ in range(300):
        if len(ops.subscribers) >= count:
            break
        await asyncio.sleep(0.01)
    for kind, ep, data in events:
        ops.emit(kind, ep, data)


async def test_events_follow(cli: Cli, ops: FakeOps) -> None:
    feeder = asyncio.create_task(
        _emit_when_subscribed(
            ops,
            1,
            ("UPDATED", "dev-2", {}),
            (
                "REGISTRATION",
                "dev-1",
                {"address": "127.0.0.1:5", "lwM2mVersion": "1.1", "lifetime": 60},
            ),
            (
                "NOTIFICATION",
                "dev-1",
                {
                    "res": "/3303/0/5700",
                    "val": {"kind": "singleResource", "id": 5700, "type": "FLOAT", "value": 22.5},
                },
            ),
        )
    )
    code, out, _ = await cli("events", "--ep", "dev-1", "--count", "2")
    await feeder
    assert code == 0
    first, second = out.splitlines()
    assert first.split()[1:] == [
        "REGISTRATION",
        "dev-1",
        "127.0.0.1:5",
        "lwm2m",
        "1.1",
        "lifetime",
        "60",
        "s",
    ]
    assert second.split()[1:] == ["NOTIFICATION", "dev-1", "/3303/0/5700", "=", "22.5"]


async def test_events_json_lines(cli: Cli, ops: FakeOps) -> None:
    feeder = asyncio.create_task(_emit_when_subscribed(ops, 1, ("SLEEPING", "dev-1", {})))
    _, out, _ = await cli("events", "--count", "1", "--json")
    await feeder
    assert json.loads(out) == {"event": "SLEEPING", "data": {"ep": "dev-1"}}


async def test_observe_follow_prints_notifications(cli: Cli, ops: FakeOps) -> None:
    async def notify() -> None:
        await _emit_when_subscribed(ops, 1)
        ops.notify("dev-1", LwM2mPath(3, 0, 9))  # another path: filtered out
        ops.notify("dev-1", LwM2mPath(3303, 0, 5700))

    feeder = asyncio.create_task(notify())
    code, out, _ = await cli("observe", "dev-1", "/3303/0/5700", "--follow", "--count", "1")
    await feeder
    assert code == 0
    assert out.splitlines()[-1].split()[1:] == [
        "NOTIFICATION",
        "dev-1",
        "/3303/0/5700",
        "=",
        "21.5",
    ]


def test_register_commands_on_a_foreign_parser() -> None:
    """The main CLI owns the parser; our commands only add subparsers and set ``func``."""
    import argparse

    parser = argparse.ArgumentParser(prog="lwm2m-server")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve")
    operator_cli.register_commands(sub)
    args = parser.parse_args(["read", "dev-1", "/3/0", "--timeout", "2", "--json"])
    assert callable(args.func) and args.paths == ["/3/0"] and args.timeout == 2.0 and args.json
    assert args.api == operator_cli.DEFAULT_API or args.api.startswith("http")


def test_event_summaries_for_both_notification_shapes() -> None:
    summary = operator_cli._event_summary
    points = {
        "paths": ["/3303/0/5700"],
        "points": [{"path": "/3303/0/5700", "value": 25.0, "type": "FLOAT"}],
    }
    assert summary("NOTIFICATION", points) == "/3303/0/5700 = 25.0"
    composite = {
        "kind": "composite",
        "val": {"/3/0/9": {"kind": "singleResource", "id": 9, "type": "INTEGER", "value": 80}},
    }
    assert summary("NOTIFICATION", composite) == "/3/0/9 = 80"
    reg = {"address": "1.2.3.4:5", "lwM2mVersion": "1.2", "lifetime": 60, "reason": "expired"}
    assert summary("DEREGISTRATION", reg) == "1.2.3.4:5 lwm2m 1.2 lifetime 60 s (expired)"
    assert summary("SLEEPING", {"ep": "x", "since": 5.5}) == "since 00:00:05.500"
    assert summary("SEND", {"ep": "x", "other": 1}) == '{"other":1}'
    opaque = {"points": [{"path": "/9/0/1", "value": "AQI=", "type": "OPAQUE"}]}
    assert summary("SEND", opaque) == "/9/0/1 = 0x0102"


async def test_clients_follows_every_page(cli: Cli, ops: FakeOps) -> None:
    """``lwm2m-server clients`` prints every client even when the API needs several pages."""
    for i in range(2, 8):
        ops.add_client(f"dev-{i}")
    code, out, _ = await cli("clients", "--page-size", "2", "--json")
    assert code == 0
    assert [c["endpoint"] for c in json.loads(out)] == [f"dev-{i}" for i in range(1, 8)]
    code, out, _ = await cli("clients", "--page-size", "3")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == [f"dev-{i}" for i in range(1, 8)]
    code, _, err = await cli("clients", "--page-size", "0")
    assert code == 2 and "outside 1..10000" in err

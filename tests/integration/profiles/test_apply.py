"""Acceptance: a temperature-sensor profile (3303 + Device) applied to a real client, in each
observe strategy and each on-connect mode; re-applied when pmin changes; after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from lwm2m_server.service import Lwm2mServer

from .conftest import ClientFactory, ServerFactory, settled, write_profile

WA = ("write_attributes", ("/3303/0/5700",), ("pmax=60", "pmin=1"))


@pytest.mark.parametrize(
    ("strategy", "observes"),
    [
        ("single", [("observe", ("/3/0/9",), ()), ("observe", ("/3303/0/5700",), ())]),
        ("composite_all", [("observe_composite", ("/3/0/9", "/3303/0/5700"), ())]),
        (
            "composite_by_object",
            [
                ("observe_composite", ("/3/0/9",), ()),
                ("observe_composite", ("/3303/0/5700",), ()),
            ],
        ),
    ],
)
async def test_observe_strategies(
    make_server: ServerFactory,
    make_client: ClientFactory,
    profiles_dir: Path,
    strategy: str,
    observes: list[object],
) -> None:
    write_profile(profiles_dir, observe_strategy=strategy, endpoints=["temp-*"])
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    assert recorder.take() == [WA, *observes]
    observed = sorted(tuple(str(p) for p in paths) for paths in server.observations("temp-1"))
    assert observed == sorted(o[1] for o in observes)  # type: ignore[index]
    status = server.profiles.status("temp-1")  # type: ignore[union-attr]
    assert status["problems"] == []
    assert (status["profile"], status["chosenBy"], status["state"]) == (
        "temperature-sensor",
        "pattern",
        "applied",
    )
    # notifications arrive under the profile's keys, with the model's types
    client.set_value("/3303/0/5700", 30.5)
    await _eventually(lambda: _latest(server, "temperature") == 30.5)


@pytest.mark.parametrize(
    ("mode", "reads"),
    [
        ("observe_only", []),
        ("read_all", [("read", ("/3",), ()), ("read", ("/3303",), ())]),
        (
            "read_mapped",
            [
                ("read", ("/3/0/0",), ()),
                ("read", ("/3/0/9",), ()),
                ("read", ("/3/0/14",), ()),
                ("read", ("/3303/0/5700",), ()),
                ("read", ("/3303/0/5701",), ()),
            ],
        ),
    ],
)
async def test_on_connect_modes(
    make_server: ServerFactory,
    make_client: ClientFactory,
    profiles_dir: Path,
    mode: str,
    reads: list[object],
) -> None:
    write_profile(profiles_dir, on_connect=mode, endpoints=["temp-*"])
    server = await make_server()
    _, recorder = await make_client(server)
    await settled(server)
    single = [("observe", ("/3/0/9",), ()), ("observe", ("/3303/0/5700",), ())]
    assert recorder.take() == [*reads, WA, *single]
    assert server.profiles is not None
    attributes = {k: p.value for k, p in server.profiles.attributes("temp-1").items()}
    latest = {p.key: (p.value, p.type.value) for p in server.telemetry_latest("temp-1").values()}
    if mode == "observe_only":  # only the Observe answers: telemetry, no attribute read
        assert attributes == {}
        assert latest["temperature"] == (21.5, "Float")
        assert latest["batteryLevel"] == (100, "Integer")
    else:
        assert attributes == {"manufacturer": "pylwm2m", "units": "Cel", "utcOffset": "+00:00"}
        assert latest["temperature"] == (21.5, "Float")
        assert latest["batteryLevel"] == (100, "Integer")
        assert "units" not in latest and "manufacturer" not in latest  # attributes, not series
    if mode == "read_all":  # unmapped values keep their default keys
        assert "modelNumber" in latest


async def test_changing_pmin_rewrites_attributes_only(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    doc = write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    _, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    doc["resources"]["/3303/0/5700"]["attributes"] = {"pmin": 5, "pmax": 60}
    write_profile(profiles_dir, **doc)
    assert await server.reload_models() == []
    await settled(server)
    assert recorder.take() == [("write_attributes", ("/3303/0/5700",), ("pmax=60", "pmin=5"))]
    assert server.profiles is not None
    status = server.profiles.status("temp-1")
    assert status["attributesWritten"] == {"/3303/0/5700": {"pmin": "5", "pmax": "60"}}
    # nothing changed: a reload sends nothing
    await server.reload_models()
    await settled(server)
    assert recorder.take() == []


async def test_observed_again_after_a_server_restart(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    first = await make_server()
    port = first.coap_address.port
    client, recorder = await make_client(first)
    await settled(first)
    recorder.take()
    await first.stop()
    second = await make_server(coap_port=port)
    await settled(second)
    assert recorder.take() == [
        WA,
        ("observe", ("/3/0/9",), ()),
        ("observe", ("/3303/0/5700",), ()),
    ]
    assert len(second.observations("temp-1")) == 2  # replaced, not doubled
    client.set_value("/3303/0/5700", 25.25)
    await _eventually(lambda: _latest(second, "temperature") == 25.25)


async def test_re_register_applies_again_and_update_only_fills_gaps(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    await client.update()
    await settled(server)
    assert recorder.take() == []  # an Update with everything in place sends nothing
    await client.register()  # re-Register: the old observations are gone
    await settled(server)
    assert [r[0] for r in recorder.take()] == ["write_attributes", "observe", "observe"]
    assert len(server.observations("temp-1")) == 2


def _latest(server: Lwm2mServer, key: str) -> object:
    return next((p.value for p in server.telemetry_latest("temp-1").values() if p.key == key), None)


async def _eventually(check: object, timeout: float = 5.0) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_queue_mode_client_after_restart_waits_until_it_speaks(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    first = await make_server()
    port = first.coap_address.port
    client, recorder = await make_client(first, queue_mode=True, awake_time=30)
    await settled(first)
    assert [r[0] for r in recorder.take()] == ["write_attributes", "observe", "observe"]
    await first.stop()
    second = await make_server(coap_port=port)
    await settled(second)
    assert recorder.take() == []  # it may be asleep: nothing is queued for it yet
    await client.update()  # it speaks: now it is applied
    await settled(second)
    assert [r[0] for r in recorder.take()] == ["write_attributes", "observe", "observe"]

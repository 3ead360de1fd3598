"""Bad input is recorded per device and shown in the status; the rest of the profile applies."""

from __future__ import annotations

from pathlib import Path

from .conftest import ClientFactory, ServerFactory, settled, write_profile


async def test_unregistered_objects_refused_observes_and_wrong_types(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    write_profile(
        profiles_dir,
        endpoints=["temp-*"],
        on_connect="read_mapped",
        resources={
            "/3303/0/5700": {"key": "temperature", "observe": True, "type": "integer"},
            "/3304/0/5700": {"key": "humidity", "observe": True},  # not on the device
            "/3303/0/5750": {"key": "application", "observe": True},  # no value: 4.04
            "/3/0/9": {"key": "batteryLevel", "observe": True},
        },
    )
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    assert server.profiles is not None
    status = server.profiles.status("temp-1")
    assert status["state"] == "partial"
    problems = {(p["operation"], tuple(p["paths"])): p for p in status["problems"]}
    assert ("map", ("/3304/0/5700",)) in problems
    assert problems[("observe", ("/3303/0/5750",))]["code"] == "4.04"
    assert problems[("read", ("/3303/0/5750",))]["code"] == "4.04"
    # the rest still applied
    observed = sorted(str(paths[0]) for paths in server.observations("temp-1"))
    assert observed == ["/3/0/9", "/3303/0/5700"]
    # 21.5 is not an integer: not stored, recorded with the reason
    assert [p["key"] for p in status["valueProblems"]][:1] == ["temperature"]
    assert "Integer" in status["valueProblems"][0]["message"]
    keys = {p.key for p in server.telemetry_latest("temp-1").values()}
    assert "batteryLevel" in keys and "temperature" not in keys
    client.set_value("/3303/0/5700", 22.0)  # an integral float converts exactly
    for _ in range(200):
        latest = {p.key: p for p in server.telemetry_latest("temp-1").values()}
        if "temperature" in latest:
            break
        await __import__("asyncio").sleep(0.02)
    assert latest["temperature"].value == 22 and latest["temperature"].type.value == "Integer"
    assert recorder.take()[0][0] == "read"


async def test_a_broken_profile_file_keeps_the_stored_version(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    await make_client(server)
    await settled(server)
    (profiles_dir / "temperature-sensor.yaml").write_text(
        "name: temperature-sensor\nresources:\n  /3/0/4: {key: reboot, observe: true}\n"
    )
    errors = await server.reload_models()
    assert len(errors) == 1
    assert "temperature-sensor.yaml" in errors[0] and "/3/0/4" in errors[0]
    assert "executable" in errors[0]
    assert server.profiles is not None
    profile = server.profiles.catalog.get("temperature-sensor")
    assert profile is not None and "/3/0/4" not in {str(p) for p in profile.resources}

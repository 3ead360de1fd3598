"""A profile reload (SIGHUP, ``POST /api/profiles/reload``) re-applies a profile only where its
document changed. The temperature profile names its object versions with integer keys
(``objects: {3303: "1.1"}``), which the store keeps as JSON (string keys): compared as read, the
stored and the file's documents always differed, so every reload re-applied the profile to
every device using it (re-observing what the operator had cancelled, among others)."""

from __future__ import annotations

from pathlib import Path

from lwm2m_server.profiles.engine import ProfileEngine
from object_models.path import LwM2mPath

from .conftest import ClientFactory, ServerFactory, settled, write_profile


async def test_an_unchanged_reload_sends_nothing_and_a_changed_one_does(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    doc = write_profile(profiles_dir, endpoints=["temp-*"])
    assert isinstance(next(iter(doc["objects"])), int)
    server = await make_server()
    _, recorder = await make_client(server)
    await settled(server)
    assert ("observe", ("/3/0/9",), ()) in recorder.take()
    # the operator stops one of the profile's observations; an unchanged reload keeps it so
    await server.cancel_observation("temp-1", LwM2mPath.parse("/3/0/9"))
    recorder.take()
    engine = server.profiles
    assert isinstance(engine, ProfileEngine)
    for _ in range(2):  # the second compares with what the first stored
        assert await server.reload_models() == []
        await settled(server)
        assert recorder.take() == []
        assert engine.status("temp-1")["reason"] == "register"
    assert engine.reload().changed == ()  # POST /api/profiles/reload

    doc["resources"]["/3303/0/5700"]["attributes"] = {"pmin": 2, "pmax": 60}
    write_profile(profiles_dir, **doc)
    assert await server.reload_models() == []
    await settled(server)
    sent = recorder.take()
    assert ("write_attributes", ("/3303/0/5700",), ("pmin=2",)) in sent
    assert engine.status("temp-1")["reason"] == "profile"

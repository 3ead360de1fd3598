"""A profile reload (SIGHUP, ``POST /api/profiles/reload``) re-applies a profile only where its
document changed. The temperature profile names its object versions with integer keys
(``objects: {3303: "1.1"}``), which the store keeps as JSON (string keys): compared as read, the
stored and the file's documents always differed, so every reload re-applied the profile to
every device using it (re-observing what the operator had cancelled, among others)."""

from __future__ import annotations

import json
from pathlib import Path

from lwm2m_server.profiles.engine import ProfileEngine
from lwm2m_server.profiles.model import document_digest
from object_models.path import LwM2mPath

from .conftest import (
    TEMPERATURE_PROFILE,
    ClientFactory,
    ServerFactory,
    settled,
    write_profile,
)


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
    assert ("write_attributes", ("/3303/0/5700",), ("pmax=60", "pmin=2")) in sent
    assert engine.status("temp-1")["reason"] == "profile"


async def test_storing_an_api_profile_again_unchanged_sends_nothing(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    engine = server.profiles
    assert isinstance(engine, ProfileEngine)
    doc = {**TEMPERATURE_PROFILE, "name": "api-temp", "endpoints": ["temp-*"]}
    engine.put_profile("api-temp", doc)
    _, recorder = await make_client(server)
    await settled(server)
    await server.cancel_observation("temp-1", LwM2mPath.parse("/3/0/9"))
    recorder.take()
    engine.put_profile("api-temp", {**doc, "objects": {"3": "1.2", "3303": "1.1"}})
    await settled(server)
    assert recorder.take() == []
    assert engine.status("temp-1")["reason"] == "register"


def test_the_digest_normalises_what_the_store_changes() -> None:
    stored = json.loads(json.dumps(TEMPERATURE_PROFILE))
    assert stored != TEMPERATURE_PROFILE  # integer keys became strings
    assert document_digest(stored) == document_digest(TEMPERATURE_PROFILE)
    assert document_digest({**stored, "description": "x"}) != document_digest(stored)

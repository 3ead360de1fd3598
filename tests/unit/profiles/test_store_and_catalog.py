"""The sqlite profile store, and the catalog: folder reloads, API changes, which profile a
device gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import yaml

from keystore.config_error import ConfigError
from keystore.store.errors import StoreError
from keystore.store.profiles import SqliteProfileStore, StoredProfile
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.profiles.catalog import Catalog, ProfileConflict
from lwm2m_server.store.device_state import SqliteDeviceStateStore
from lwm2m_server.store.sqlite import SqliteStore
from object_models.types import ResourceType
from tests.store_engines import Engine

from .helpers import BOOTSTRAP, REGISTRY, RESOURCES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteProfileStore]:
    base = SqliteStore(tmp_path / "s.sqlite")
    yield SqliteProfileStore(base)
    base.close()


def test_store_round_trips(engine: Engine) -> None:
    store = engine.profiles()
    assert store.put_profile(StoredProfile("a", {"name": "a", "x": [1]}, "api", 1.0)) is None
    old = store.put_profile(StoredProfile("a", {"name": "a"}, "api", 2.0))
    assert old is not None and old.document == {"name": "a", "x": [1]}
    assert [p.name for p in store.profiles()] == ["a"]
    store.assign("dev-1", "a")
    assert store.assignments() == {"dev-1": "a"}
    store.assign("dev-1", None)
    assert store.assignments() == {}
    with pytest.raises(StoreError):
        store.put_profile(StoredProfile("b", {"bytes": b"x"}, "api", 1.0))
    assert store.remove_profile("a") is not None and store.get_profile("a") is None
    store.put_profile(StoredProfile("c", {"name": "c"}, "api", 3.0))
    # a second store object on the same data (a restart, another process) sees everything
    again = engine.profiles()
    assert [p.name for p in again.profiles()] == ["c"]
    assert again.get_profile("c") == store.get_profile("c")
    store.assign("dev-2", "c")
    assert again.assignments() == {"dev-2": "c"}


def test_store_in_the_server_file(tmp_path: Path) -> None:
    """The sqlite tables live in the server's file: a second open sees everything."""
    base = SqliteStore(tmp_path / "s.sqlite")
    SqliteProfileStore(base).put_profile(StoredProfile("c", {"name": "c"}, "api", 3.0))
    SqliteDeviceStateStore(base).put_status("dev-1", {"state": "applied"})
    base.close()
    again = SqliteStore(tmp_path / "s.sqlite")
    assert [p.name for p in SqliteProfileStore(again).profiles()] == ["c"]
    assert SqliteDeviceStateStore(again).status("dev-1") == {"state": "applied"}
    again.close()


def test_device_state_round_trips(engine: Engine) -> None:
    state = engine.device_state()
    point = TelemetryPoint("dev-1", "/3/0/0", "manufacturer", 5, "Acme", ResourceType.STRING)
    older = TelemetryPoint("dev-1", "/3/0/0", "manufacturer", 1, "Old", ResourceType.STRING)
    state.put_attributes([point, older])
    assert state.attributes("dev-1")["manufacturer"].value == "Acme"
    state.put_status("dev-1", {"state": "applied"})
    assert state.status("dev-1") == {"state": "applied"}
    with pytest.raises(StoreError):
        state.put_status("dev-1", {"bytes": b"x"})
    with pytest.raises(StoreError, match="nothing written"):
        state.put_attributes([attrs.evolve(point, ts_ms=9, value="New"), "not a point"])  # type: ignore[list-item]
    # a second store object on the same data (a restart, another process) sees everything
    again = engine.device_state()
    assert again.status("dev-1") == {"state": "applied"}
    assert again.attributes("dev-1")["manufacturer"] == point
    assert again.status("dev-2") is None and again.attributes("dev-2") == {}
    # newest wins across writers, whatever order they arrive in; endpoints stay apart
    newer = attrs.evolve(point, ts_ms=7, value="Newer")
    again.put_attributes([newer, attrs.evolve(point, endpoint="dev-2")])
    state.put_attributes([attrs.evolve(point, ts_ms=6, value="Late")])
    assert state.attributes("dev-1") == {"manufacturer": newer}
    assert state.attributes("dev-2")["manufacturer"].value == "Acme"


def test_device_statuses_are_stored_together(engine: Engine) -> None:
    """``put_statuses`` (the engine's batch of a loop iteration) is ``put_status`` for each,
    devices in any slot; a status that is not JSON stops the batch before anything is written."""
    state = engine.device_state()
    state.put_status("dev-1", {"state": "applying"})
    state.put_statuses([("dev-1", {"state": "applied"}), ("a{b}c", {"state": "partial"})])
    again = engine.device_state()
    assert again.status("dev-1") == {"state": "applied"}
    assert again.status("a{b}c") == {"state": "partial"}
    with pytest.raises(StoreError):
        state.put_statuses([("dev-3", {"state": "x"}), ("dev-4", {"bytes": b"x"})])
    assert again.status("dev-3") is None and again.status("dev-4") is None
    state.put_statuses([])


def test_assignments_and_statuses_of_many_devices_in_one_read(engine: Engine) -> None:
    """``assignments_of`` / ``statuses`` (the profile engine's reads for the Registers of a
    loop iteration) answer what ``assignment`` / ``status`` answer for each device, more devices
    than one sqlite statement takes included; devices without one are left out."""
    profiles = engine.profiles()
    profiles.put_profile(StoredProfile("p", {"name": "p"}, "api", 1.0))
    state = engine.device_state()
    endpoints = [f"dev-{n}" for n in range(1200)] + ["a{b}c"]
    for endpoint in endpoints[::7]:
        profiles.assign(endpoint, "p")
    state.put_statuses([(ep, {"state": ep}) for ep in endpoints[::5]])
    again_profiles, again_state = engine.profiles(), engine.device_state()
    assert again_profiles.assignments_of(endpoints) == {ep: "p" for ep in endpoints[::7]}
    assert again_state.statuses(endpoints) == {ep: {"state": ep} for ep in endpoints[::5]}
    assert again_profiles.assignments_of([]) == {} and again_state.statuses([]) == {}


def doc(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "resources": RESOURCES, **extra}


def test_resolution_order(store: SqliteProfileStore) -> None:
    catalog = Catalog(store, REGISTRY)
    catalog.put(doc("sensors", endpoints=["temp-*"]), "sensors")
    catalog.put(doc("regex", endpoints=["re:^dev-[0-9]+$"]), "regex")
    catalog.put(doc("other"), "other")
    assert catalog.resolve("temp-1")[0].name == "sensors"
    assert catalog.resolve("dev-42") == (catalog.get("regex"), "pattern")
    assert catalog.resolve("dev-x")[1] == "default"
    assert catalog.resolve("dev-x")[0].name == "default"  # the built-in one
    catalog.assign("temp-1", "other")
    assert catalog.resolve("temp-1") == (catalog.get("other"), "assigned")
    with pytest.raises(Exception, match="no profile"):
        catalog.assign("temp-1", "missing")
    # a fresh catalog over the same store knows the same
    fresh = Catalog(store, REGISTRY)
    fresh.load()
    assert fresh.resolve("temp-1")[0].name == "other"
    with pytest.raises(ConfigError):
        catalog.put({"name": "x", "resources": {"/3/0/4": {"observe": True}}}, "x")
    with pytest.raises(ConfigError, match="URL"):
        catalog.put({"name": "y"}, "z")


def test_folder_reload(store: SqliteProfileStore, tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(doc("a")))
    (folder / "b.json").write_text('{"resources": {}}')  # name from the file
    (folder / "notes.txt").write_text("ignored")
    catalog = Catalog(store, REGISTRY, folder)
    result = catalog.reload_folder()
    assert sorted(result.changed) == ["a", "b"] and result.errors == ()
    assert catalog.reload_folder().changed == ()  # nothing changed
    with pytest.raises(ProfileConflict):
        catalog.put(doc("a"), "a")
    with pytest.raises(ProfileConflict):
        catalog.remove("a")
    (folder / "a.yaml").write_text("name: a\nresources: {/3/0/99: {}}\n")
    (folder / "b.json").unlink()
    result = catalog.reload_folder()
    assert result.removed == ("b",)
    assert [(e.source, e.key) for e in result.errors] == [
        (str(folder / "a.yaml"), "resources./3/0/99")
    ]
    profile = catalog.get("a")
    assert profile is not None and len(profile.resources) == len(RESOURCES)  # kept
    (folder / "a.yaml").write_text(yaml.safe_dump(doc("a")))
    (folder / "c.yaml").write_text("name: a\n")
    assert "also in" in catalog.reload_folder().errors[-1].reason


def test_bootstrap_sections_for_the_bootstrap_server(store: SqliteProfileStore) -> None:
    from bootstrap_server.profiles import bootstrap_configs
    from keystore.bootstrap_config.model import ConfigKind

    section = BOOTSTRAP
    Catalog(store, REGISTRY).put(doc("fleet", bootstrap=section), "fleet")
    configs, errors = bootstrap_configs(store, REGISTRY)
    assert errors == []
    assert [(c.kind, c.name) for c in configs] == [(ConfigKind.PROFILE, "fleet")]
    assert configs[0].servers[0].uri == "coaps://lwm2m.example:5684"


@pytest.mark.parametrize("endpoint", ["capteur-é-😀", "a{b}c", "}", "{", "%7B"])
def test_device_state_of_any_endpoint_name(engine: Engine, endpoint: str) -> None:
    """Endpoint names that look like Redis hash tags stay apart (``a{b}c`` is not ``b``)."""
    state = engine.device_state()
    point = TelemetryPoint(endpoint, "/3/0/0", "manufacturer", 5, "Acme", ResourceType.STRING)
    state.put_attributes([point])
    state.put_status(endpoint, {"state": "applied"})
    assert state.attributes(endpoint) == {"manufacturer": point}
    assert state.status(endpoint) == {"state": "applied"}
    for other in ("b", "%7B", "{", "%"):
        if other != endpoint:
            assert state.attributes(other) == {} and state.status(other) is None

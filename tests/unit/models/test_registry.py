"""ModelRegistry: versions, per-client views, user folders, conflicts, broken files, reload."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from object_models.model import ModelProvider
from object_models.registry import BUILTIN, ModelRegistry, version_key

from .conftest import WriteModel, sample_object

DDF_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<LWM2M>
  <Object ObjectType="MODefinition">
    <Name>{name}</Name>
    <Description1></Description1>
    <ObjectID>{id}</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:{id}</ObjectURN>
    <LWM2MVersion>1.1</LWM2MVersion>
    <ObjectVersion>{version}</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="0"><Name>V</Name><Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>Integer</Type><RangeEnumeration/><Units/><Description/></Item>
    </Resources>
    <Description2/>
  </Object>
</LWM2M>
"""


def test_version_key_compares_numerically() -> None:
    assert version_key("1.10") > version_key("1.2")  # type: ignore[operator]
    assert version_key("2.0") == (2, 0)
    assert version_key("v1") is None and version_key("1.x") is None


def test_latest_by_default_and_exact_versions() -> None:
    registry = ModelRegistry.builtin()
    assert registry.versions(3303) == ["1.0", "1.1"]
    latest = registry.get(3303)
    assert latest is not None and latest.version == "1.1"
    assert registry.get_object(3303) == latest
    old = registry.get(3303, "1.0")
    assert old is not None and old.version == "1.0" and old != latest
    assert registry.get(3303, "9.9") is None
    assert registry.get(3303, "garbage") is None
    assert registry.get(65000) is None and registry.get_object(65000) is None
    assert registry.versions(65000) == []


def test_objects_and_entries_are_sorted() -> None:
    registry = ModelRegistry.builtin()
    ids = [m.id for m in registry.objects()]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == len(registry)
    keys = [entry.key for entry in registry.entries()]
    assert keys == sorted(keys)
    assert 3 in registry and 65000 not in registry


def test_latest_compares_versions_numerically(write_model: WriteModel, tmp_path: Path) -> None:
    for version in ("1.2", "1.10", "1.9"):
        write_model(f"v{version}.json", sample_object(version=version))
    registry = ModelRegistry([tmp_path / "models"])
    assert registry.versions(42000) == ["1.2", "1.9", "1.10"]
    latest = registry.get(42000)
    assert latest is not None and latest.version == "1.10"


def test_for_client_uses_the_registered_versions() -> None:
    registry = ModelRegistry.builtin()
    client = registry.for_client({3303: "1.0", 3: "7.7"})
    provider: ModelProvider = client
    temperature = provider.get_object(3303)
    assert temperature is not None and temperature.version == "1.0"
    device = provider.get_object(3)  # unknown version -> latest
    assert device is not None and device == registry.get(3)
    humidity = provider.get_object(3304)  # not registered with a version -> latest
    assert humidity is not None and humidity == registry.get(3304)
    assert provider.get_object(65000) is None


def test_user_folder_adds_and_overrides(write_model: WriteModel, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    write_model("mine.json", sample_object())
    override = sample_object(id=3303, version="1.1", name="My Temperature")
    write_model("temperature.json", override)
    (folder / "thing.xml").write_text(DDF_TEMPLATE.format(id=42001, name="Xml", version="2.0"))
    (folder / "notes.txt").write_text("not a model")
    (folder / ".hidden.json").write_text("{broken")
    (folder / "sub").mkdir()
    write_model("deeper.json", sample_object(id=42002), folder=folder / "sub")

    registry = ModelRegistry([folder])
    assert registry.errors == ()
    mine = registry.entry(42000)
    assert mine is not None and mine.origin == str(folder / "mine.json")
    assert mine.field == "objects[0]" and mine.line == 3
    xml = registry.entry(42001)
    assert xml is not None and xml.model.version == "2.0" and xml.origin.endswith("thing.xml")
    replaced = registry.entry(3303, "1.1")
    assert replaced is not None and replaced.model.name == "My Temperature"
    assert replaced.origin == str(folder / "temperature.json") and not replaced.is_builtin
    untouched = registry.entry(3303, "1.0")
    assert untouched is not None and untouched.origin == BUILTIN
    assert 42002 not in registry  # not recursive
    assert registry.get(3) == ModelRegistry.builtin().get(3)


def test_without_builtins(write_model: WriteModel, tmp_path: Path) -> None:
    write_model("mine.json", sample_object())
    registry = ModelRegistry([tmp_path / "models"], include_builtin=False)
    assert [m.id for m in registry.objects()] == [42000]


def test_same_id_and_version_in_two_user_files_names_both(
    write_model: WriteModel, tmp_path: Path
) -> None:
    first = write_model("a.json", sample_object(name="First"))
    second = write_model("b.json", sample_object(name="Second"), sample_object(id=42003))
    registry = ModelRegistry([tmp_path / "models"])
    (error,) = registry.errors
    assert error.file == str(second) and str(first) in error.reason
    assert error.field == "objects[0]" and error.line == 3
    assert "object 42000 version 1.0" in error.reason
    kept = registry.get(42000)
    assert kept is not None and kept.name == "First"
    assert 42003 in registry  # the rest of the second file still loads


def test_conflict_across_folders_is_reported(write_model: WriteModel, tmp_path: Path) -> None:
    first = write_model("x.json", sample_object(), folder=tmp_path / "one")
    second = write_model("x.json", sample_object(), folder=tmp_path / "two")
    registry = ModelRegistry([tmp_path / "one", tmp_path / "two"])
    (error,) = registry.errors
    assert error.file == str(second) and str(first) in error.reason


def test_broken_file_is_reported_and_others_still_load(
    write_model: WriteModel, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    write_model("good.json", sample_object())
    bad = sample_object(id=42001)
    bad["resources"][1]["type"] = "Text"
    broken = write_model("broken.json", bad)
    (folder / "broken.xml").write_text("<LWM2M><Object>")
    (folder / "zz.xml").write_text(DDF_TEMPLATE.format(id=42005, name="Z", version="1.0"))
    registry = ModelRegistry([folder, tmp_path / "does-not-exist"])
    errors = {e.file: e for e in registry.errors}
    assert set(errors) == {
        str(broken),
        str(folder / "broken.xml"),
        str(tmp_path / "does-not-exist"),
    }
    assert errors[str(broken)].field == "objects[0].resources[1].type"
    assert "got 'Text'" in errors[str(broken)].reason
    assert errors[str(tmp_path / "does-not-exist")].reason.endswith("no such directory")
    assert 42000 in registry and 42005 in registry and 42001 not in registry
    assert registry.get(3) is not None


def test_reload_picks_up_new_files(write_model: WriteModel, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    registry = ModelRegistry([folder])
    assert 42000 not in registry
    write_model("new.json", sample_object())
    assert registry.reload() == []
    assert 42000 in registry
    (folder / "new.json").unlink()
    assert registry.reload() == []
    assert 42000 not in registry


def test_failed_reload_keeps_the_previous_state(write_model: WriteModel, tmp_path: Path) -> None:
    path = write_model("mine.json", sample_object(name="Good"))
    registry = ModelRegistry([tmp_path / "models"])
    client = registry.for_client({42000: "1.0"})
    path.write_text(json.dumps({"objects": [sample_object(name="Newer")]})[:-5])  # truncated
    write_model("other.json", sample_object(id=42004))
    errors = registry.reload()
    assert [e.file for e in errors] == [str(path)] and "invalid JSON" in errors[0].reason
    model = client.get_object(42000)
    assert model is not None and model.name == "Good"
    assert 42004 not in registry  # all or nothing
    assert registry.errors == ()

    errors = registry.reload(keep_on_error=False)  # apply what loads
    assert len(errors) == 1 and registry.errors == tuple(errors)
    assert 42000 not in registry and 42004 in registry

    write_model("mine.json", sample_object(name="Fixed"))
    assert registry.reload() == []
    fixed = client.get_object(42000)  # views read through to the registry
    assert fixed is not None and fixed.name == "Fixed"


def test_reload_while_reading_from_other_threads(write_model: WriteModel, tmp_path: Path) -> None:
    write_model("mine.json", sample_object())
    registry = ModelRegistry([tmp_path / "models"])
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            if registry.get(42000) is None or registry.get(3) is None:
                problems.append("model vanished during reload")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(10):
            assert registry.reload() == []
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert problems == []


def test_conflict_between_ddf_files_has_the_object_line(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("a.xml", "b.xml"):
        (folder / name).write_text(DDF_TEMPLATE.format(id=42006, name=name, version="1.0"))
    registry = ModelRegistry([folder])
    (error,) = registry.errors
    assert (error.file, error.field, error.line) == (str(folder / "b.xml"), "Object[0]", 3)
    assert str(folder / "a.xml") in error.reason


def _uncached(registry: ModelRegistry, versions: dict[int, str], object_id: int) -> object:
    """``ClientModels.get_object`` as it was before its memo: the reference it must equal."""
    version = versions.get(object_id)
    if version is not None:
        exact = registry.get(object_id, version)
        if exact is not None:
            return exact
    return registry.get_object(object_id)


_SHIPPED = ModelRegistry.builtin()
_BUILTIN_IDS = sorted({m.id for m in _SHIPPED.objects()})


@settings(max_examples=200, deadline=None)
@given(
    versions=st.dictionaries(
        st.sampled_from(_BUILTIN_IDS) | st.integers(0, 70000),
        st.sampled_from(["1.0", "1.1", "1.2", "2.0", "7.7", "x", ""]),
        max_size=6,
    ),
    lookups=st.lists(st.sampled_from(_BUILTIN_IDS) | st.integers(0, 70000), max_size=120),
)
def test_a_client_view_answers_as_the_registry_does_lookup_after_lookup(
    versions: dict[int, str], lookups: list[int]
) -> None:
    """The view remembers its answers; each one, asked once or many times (past the memo's
    size too), is the registry's answer for the client's version, else the latest."""
    client = _SHIPPED.for_client(versions)
    for object_id in lookups + lookups:
        assert client.get_object(object_id) is _uncached(_SHIPPED, versions, object_id)


def test_a_client_view_sees_a_reload_after_remembering(
    write_model: WriteModel, tmp_path: Path
) -> None:
    """An answer remembered before a reload is not given after it: the client's version
    disappears (the latest is given), comes back, then the object goes away altogether."""
    write_model("v1.json", sample_object(name="One"))
    write_model("v2.json", sample_object(name="Two", version="2.0"))
    registry = ModelRegistry([tmp_path / "models"])
    client = registry.for_client({42000: "1.0"})
    names = []
    for change in ("start", "drop v1", "restore v1", "drop all"):
        if change == "drop v1":
            (tmp_path / "models" / "v1.json").unlink()
        elif change == "restore v1":
            write_model("v1.json", sample_object(name="One"))
        elif change == "drop all":
            (tmp_path / "models" / "v1.json").unlink()
            (tmp_path / "models" / "v2.json").unlink()
        if change != "start":
            assert registry.reload() == []
        for _ in range(2):  # the second one is the remembered answer
            model = client.get_object(42000)
            assert model is _uncached(registry, {42000: "1.0"}, 42000)
        names.append(None if model is None else model.name)
    assert names == ["One", "Two", "One", None]

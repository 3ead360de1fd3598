"""The shipped models: complete, equal to their DDF sources, licences kept, fast to load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from object_models import json_models
from object_models.ddf import load_ddf
from object_models.registry import BUILTIN, ModelRegistry, builtin_entries

from .conftest import DDF_DIR, REPO, needs_registry

BUILTIN_DIR = REPO / "object_models" / "builtin"
BUILTIN_FILES = sorted(BUILTIN_DIR.glob("*.json"))


def test_builtin_registry_holds_the_oma_registry() -> None:
    registry = ModelRegistry.builtin()
    assert len(registry) >= 320
    assert len(registry.entries()) >= 420
    assert not registry.errors
    for object_id, name in [(0, "LWM2M Security"), (1, "LwM2M Server"), (3, "Device"),
                            (5, "Firmware Update"), (3303, "Temperature")]:  # fmt: skip
        model = registry.get(object_id)
        assert model is not None and model.name == name
    assert 10244 not in registry and 3443 not in registry  # left out: no licence notice
    assert all(entry.origin == BUILTIN and entry.source for entry in registry.entries())


def test_builtin_constructor_is_cached() -> None:
    assert ModelRegistry.builtin() is ModelRegistry.builtin()


def test_licence_files_are_shipped() -> None:
    licence = (BUILTIN_DIR / "LICENSE").read_text("utf-8")
    assert "BSD 3-Clause" in licence and "Apache License" in licence and "MIT" in licence
    readme = (BUILTIN_DIR / "README.md").read_text("utf-8")
    assert "LICENSE" in readme and "10244" in readme
    assert (BUILTIN_DIR / "FILES.tsv").read_text("utf-8").startswith("file\tlicense\tcopyright")


@pytest.mark.parametrize("path", BUILTIN_FILES, ids=[p.name for p in BUILTIN_FILES])
def test_builtin_file_follows_the_schema(path: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    jsonschema.validate(document, json_models.schema())
    for item in json_models.load(path):  # our own checks too
        assert item.model.id == int(path.stem)
        assert {"file", "license", "copyright", "sha256"} <= set(item.source)


@needs_registry
def test_each_builtin_model_equals_its_source_ddf() -> None:
    licences = {}
    for line in (DDF_DIR / "FILES.tsv").read_text("utf-8").splitlines()[1:]:
        file, licence, holder, digest = line.split("\t")
        licences[file] = (licence, holder.strip(), digest)
    entries = builtin_entries()
    assert len(entries) == 422
    for entry in entries:
        source = entry.source
        (expected,) = load_ddf(DDF_DIR / source["file"])
        assert entry.model == expected, source["file"]
        assert (source["license"], source["copyright"], source["sha256"]) == licences[
            source["file"]
        ]


@needs_registry
def test_every_registry_version_is_built_in() -> None:
    registry = ModelRegistry.builtin()
    for path in sorted((DDF_DIR / "version_history").glob("*.xml")):
        object_id, _, version = path.stem.partition("-")
        assert registry.get(int(object_id), version.replace("_", ".")) is not None, path.name


@needs_registry
def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate_builtin_models.py"), "--check",
         "--ddf-dir", str(DDF_DIR)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

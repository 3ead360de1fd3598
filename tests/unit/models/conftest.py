"""Shared fixtures for the object-model tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
DDF_DIR = REPO.parent / "shared" / "lwm2m-registry" / "ddf"
NOT_OBJECTS = {"DDF.xml", "Common.xml"}


def registry_ddf_files() -> list[Path]:
    """Every object DDF of the OMA registry copy (latest and version_history)."""
    if not DDF_DIR.is_dir():
        return []
    latest = sorted(p for p in DDF_DIR.glob("*.xml") if p.name not in NOT_OBJECTS)
    return latest + sorted((DDF_DIR / "version_history").glob("*.xml"))


needs_registry = pytest.mark.skipif(
    not DDF_DIR.is_dir(),
    reason=f"OMA registry DDF copy not found at {DDF_DIR} (expected next to the repository)",
)


def sample_object(**changes: Any) -> dict[str, Any]:
    """A small valid object in the JSON model format (object 42000, version 1.0)."""
    obj: dict[str, Any] = {
        "id": 42000,
        "name": "Test Sensor",
        "version": "1.0",
        "lwm2mVersion": "1.1",
        "multiple": True,
        "mandatory": False,
        "urn": "urn:oma:lwm2m:x:42000",
        "description": "A sensor for tests.",
        "resources": [
            {"id": 0, "name": "Value", "operations": "R", "type": "Float", "mandatory": True},
            {"id": 1, "name": "Label", "operations": "RW", "type": "String"},
            {"id": 2, "name": "Reset", "operations": "E", "type": "none"},
            {"id": 3, "name": "Samples", "operations": "R", "type": "Integer", "multiple": True,
             "range": "0..100", "units": "%"},
        ],
    }  # fmt: skip
    obj.update(changes)
    return obj


WriteModel = Callable[..., Path]


@pytest.fixture
def write_model(tmp_path: Path) -> WriteModel:
    """``write_model(name, *objects, folder=...)`` writes a ``{"objects": [...]}`` file."""

    def write(name: str, *objects: dict[str, Any], folder: Path | None = None) -> Path:
        target = (folder or tmp_path / "models") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"objects": list(objects)}, indent=2), encoding="utf-8")
        return target

    return write

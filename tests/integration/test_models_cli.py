"""``lwm2m-models`` run as a real process: list, show, convert and the exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DDF_DIR = REPO.parent / "shared" / "lwm2m-registry" / "ddf"

MODEL: dict[str, Any] = {
    "id": 42000,
    "name": "Dropped In",
    "version": "1.3",
    "resources": [
        {"id": 0, "name": "Level", "operations": "R", "type": "Integer", "units": "%"},
        {"id": 1, "name": "Reset", "operations": "E", "type": "none"},
    ],
}


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "object_models", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def write(path: Path, *objects: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"objects": list(objects)}, indent=2), encoding="utf-8")
    return path


def test_list_shows_builtins(tmp_path: Path) -> None:
    result = run("list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "VERSION", "NAME", "SOURCE"]
    assert any(line.split()[:3] == ["3303", "1.0", "Temperature"] for line in lines)
    assert len(lines) > 420
    assert result.stderr == ""


def test_list_shows_a_dropped_in_model(tmp_path: Path) -> None:
    path = write(tmp_path / "models" / "mine.json", MODEL)
    result = run("list", "--models-dir", tmp_path / "models", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("42000 ")]
    assert "1.3" in line and "Dropped In" in line and str(path) in line

    as_json = run("list", "--models-dir", tmp_path / "models", "--json", cwd=tmp_path)
    assert as_json.returncode == 0
    rows = json.loads(as_json.stdout)
    assert {"id": 42000, "version": "1.3", "source": str(path)}.items() <= next(
        r for r in rows if r["id"] == 42000
    ).items()
    assert any(r["id"] == 3 and r["source"] == "builtin" for r in rows)


def test_broken_file_is_reported_and_the_rest_listed(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    write(folder / "good.json", MODEL)
    broken_model = {**MODEL, "id": 42001, "resources": [{**MODEL["resources"][0], "type": "Flot"}]}
    broken = write(folder / "broken.json", broken_model)
    result = run("list", "--models-dir", folder, cwd=tmp_path)
    assert result.returncode == 1
    (message,) = result.stderr.splitlines()
    assert message.startswith(f"{broken}:")
    assert "objects[0].resources[0].type" in message and "'Flot'" in message
    assert any(line.startswith("42000 ") for line in result.stdout.splitlines())
    assert not any(line.startswith("42001 ") for line in result.stdout.splitlines())
    assert any(line.startswith("3303 ") for line in result.stdout.splitlines())


def test_show_latest(tmp_path: Path) -> None:
    result = run("show", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Object 3: Device")
    assert "1.2 (LwM2M 1.1)" in out and "BSD-3-Clause" in out
    header = next(line for line in out.splitlines() if line.startswith("ID "))
    assert header.split() == ["ID", "NAME", "OPS", "INSTANCES", "MANDATORY", "TYPE", "UNITS",
                              "RANGE"]  # fmt: skip
    reboot = next(line for line in out.splitlines() if line.startswith("4 "))
    assert reboot.split() == ["4", "Reboot", "E", "single", "yes", "none"]


def test_show_exact_version(tmp_path: Path) -> None:
    result = run("show", "3303:1.0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Temperature" in result.stdout
    assert "1.0 (LwM2M 1.0)" in result.stdout and "Other versions: 1.1" in result.stdout
    assert any(
        line.split()[:3] == ["5700", "Sensor", "Value"] for line in result.stdout.splitlines()
    )


def test_show_json_is_a_loadable_model_file(tmp_path: Path) -> None:
    result = run("show", "3303:1.1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "copy.json").write_text(result.stdout)
    listed = run("list", "--models-dir", tmp_path / "models", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert any(
        "copy.json" in line and line.startswith("3303 ") for line in listed.stdout.splitlines()
    )


def test_show_user_model_and_descriptions(tmp_path: Path) -> None:
    write(tmp_path / "models" / "mine.json", MODEL)
    result = run("show", "42000", "--models-dir", tmp_path / "models", "-d", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Object 42000: Dropped In" in result.stdout and "mine.json" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "65000"], "unknown object 65000"),
        (["show", "3303:9.9"], "has no version 9.9 (known: 1.0, 1.1)"),
        (["show", "three"], "expected ID or ID:VERSION"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["convert", "missing.xml"], "no such file"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.skipif(not DDF_DIR.is_dir(), reason=f"no OMA registry copy at {DDF_DIR}")
def test_convert_registry_ddf(tmp_path: Path) -> None:
    out = tmp_path / "converted"
    result = run("convert", DDF_DIR / "version_history" / "3303-1_0.xml", DDF_DIR / "3.xml",
                 "-o", out, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["3-1.2.json", "3303-1.0.json"]
    document = json.loads((out / "3303-1.0.json").read_text("utf-8"))
    (obj,) = document["objects"]
    assert (obj["id"], obj["version"], obj["name"]) == (3303, "1.0", "Temperature")
    assert obj["source"] == {"file": "3303-1_0.xml",
                             "copyright": "Copyright 2019 Open Mobile Alliance."}  # fmt: skip
    # the converted files are a models folder: they override the built-ins
    listed = run("list", "--models-dir", out, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.split()[:2] == ["3303", "1.0"])
    assert line.endswith("3303-1.0.json")


def test_convert_own_ddf_and_report_broken_one(tmp_path: Path) -> None:
    good = tmp_path / "thing.xml"
    good.write_text(
        "<LWM2M><Object ObjectType='MODefinition'><Name>Thing</Name><ObjectID>42010</ObjectID>"
        "<ObjectVersion>2.1</ObjectVersion><MultipleInstances>Single</MultipleInstances>"
        "<Mandatory>Optional</Mandatory><Resources><Item ID='1'><Name>On</Name>"
        "<Operations>RW</Operations><MultipleInstances>Single</MultipleInstances>"
        "<Mandatory>Mandatory</Mandatory><Type>Boolean</Type></Item></Resources>"
        "</Object></LWM2M>"
    )
    bad = tmp_path / "evil.xml"
    bad.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<LWM2M>&a;</LWM2M>')
    result = run("convert", good, bad, "-o", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "out" / "42010-2.1.json").is_file()
    assert result.stderr.startswith(f"{bad}:2: ") and "refused" in result.stderr


# the console script of the environment running the tests (``.venv/bin`` is not on PATH when
# pytest is started as ``.venv/bin/python -m pytest``)
SCRIPT = Path(sys.executable).with_name("lwm2m-models")
CONSOLE_SCRIPT = str(SCRIPT) if SCRIPT.exists() else shutil.which("lwm2m-models")


@pytest.mark.skipif(CONSOLE_SCRIPT is None, reason="run `pip install -e .` first")
def test_console_script(tmp_path: Path) -> None:
    assert CONSOLE_SCRIPT is not None
    result = subprocess.run(
        [CONSOLE_SCRIPT, "show", "3303"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Object 3303: Temperature")

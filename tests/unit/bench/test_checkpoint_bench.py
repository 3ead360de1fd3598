"""A tiny run of ``bench/checkpoint.py`` (commit stalls and CPU per row of the group-commit
store), so it keeps working: both loads, one JSON line each with its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("load", ["telemetry", "register"])
def test_the_checkpoint_bench_reports_its_figures(load: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "checkpoint.py"), "--load", load, "--rows", "640"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    line = json.loads(out)
    assert line["bench"] == "checkpoint" and line["load"] == load and line["rows"] == 640
    assert line["autocheckpoint"] == 2500 and line["thread_pages"] == 1000
    assert set(line["commit_ms"]) == {"0.5", "0.99", "0.999", "max"}
    assert line["loop_cpu_us_per_row"] > 0 and line["wal_largest_pages"] > 0

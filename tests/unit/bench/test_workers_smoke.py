"""A tiny run of ``bench/workers.py`` (issue 12's benchmark): sqlite, one worker on Redis and
``--workers 2`` on Redis each answer every Register and Update of the C load generator, and the
ratios come out. No figure is asserted to be fast: only that it was measured."""

from __future__ import annotations

import json

import pytest

from bench import workers


def test_tiny_run_measures_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert workers.main(["--clients", "200", "--updates", "400"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    skipped = [line["skipped"] for line in lines if "skipped" in line]
    if skipped:
        pytest.skip(f"cannot run here: {skipped[0]}")
    rates = {(line["variant"], line["figure"]): line for line in lines if "variant" in line}
    for variant in ("sqlite-1", "redis-1", "redis-2"):
        for figure, count in (("register_per_s", 200), ("update_per_s", 400)):
            line = rates[(variant, figure)]
            assert line["ok"] == count and line["errors"] == 0, json.dumps(line)
            assert isinstance(line["value"], float) and line["value"] > 0
    names = {line["figure"] for line in lines}
    assert {"update_ratio_redis_to_sqlite", "update_ratio_2_workers_to_1"} <= names
    assert "redis_bytes_per_registration" in names

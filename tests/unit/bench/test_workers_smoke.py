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


def test_tiny_run_says_where_the_cores_went_and_how_the_workers_shared_the_clients(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The ``processes`` line of each Redis variant has a CPU figure for every process that
    worked during the Update phase (each worker apart, Redis, the generator), and the
    ``spread`` line of ``--workers 2`` counts every client at one of the two workers (from the
    holder records) and the group commits of both."""
    assert (
        workers.main(["--clients", "300", "--updates", "600", "--variants", "redis-1,redis-2"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    skipped = [line["skipped"] for line in lines if "skipped" in line]
    if skipped:
        pytest.skip(f"cannot run here: {skipped[0]}")
    found = {(line["variant"], line["figure"]): line for line in lines if "variant" in line}
    one = found[("redis-1", "processes")]["value"]
    two = found[("redis-2", "processes")]["value"]
    assert {"server", "redis", "loadgen"} <= set(one), one
    assert {"supervisor", "worker0", "worker1", "redis", "loadgen"} <= set(two), two
    for name in ("server", "redis", "loadgen"):
        figures = one[name]  # clock ticks (10 ms): a tiny run may read 0 for a light process
        assert figures["cpu_us_per_update"] >= 0 and figures["cores_busy"] >= 0, (name, figures)
        assert figures["cpu_us_per_update"] == pytest.approx(
            figures["user_us_per_update"] + figures["sys_us_per_update"], abs=0.11
        )
        assert {"voluntary_switches", "involuntary_switches", "migrations"} <= set(figures)
    assert one["server"]["cpu_us_per_update"] > 0, one  # 600 Updates take more than a tick
    assert two["worker0"]["cpu_us_per_update"] + two["worker1"]["cpu_us_per_update"] > 0
    spread = found[("redis-2", "spread")]["value"]
    assert set(spread["clients"]) == {"worker0", "worker1"}, spread
    assert sum(spread["clients"].values()) == 300
    assert 0.5 <= spread["max_share"] <= 1.0
    # worker 0's own counters come from its /metrics, the rest is the others': the snapshots
    # are ms apart and the Update phase of this tiny run lasts a fraction of a second, so only
    # the bookkeeping is exact here, not the split
    assert 0 <= spread["updates"]["worker0"] <= 600
    assert spread["updates"]["worker0"] + spread["updates"]["others"] == 600
    assert spread["commits"]["worker0"] >= 0 and spread["commits"]["others"] >= 0
    assert spread["updates_per_commit"]["all"] > 0
    assert found[("redis-1", "spread")]["value"]["clients"] == {"server": 300}


def test_rounds_alternate_the_variants_and_summarise_each_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--rounds 2``: the variants run twice, the second round in the reverse order, each
    round prints its own ratio, then the median and range over the rounds."""
    argv = ["--clients", "200", "--updates", "400", "--rounds", "2"]
    assert workers.main([*argv, "--variants", "sqlite-1,redis-1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    skipped = [line["skipped"] for line in lines if "skipped" in line]
    if skipped:
        pytest.skip(f"cannot run here: {skipped[0]}")
    runs = [(line["round"], line["variant"]) for line in lines if line["figure"] == "update_per_s"]
    assert runs == [(0, "sqlite-1"), (0, "redis-1"), (1, "redis-1"), (1, "sqlite-1")]
    assert all(
        line["ok"] == 400 and line["errors"] == 0
        for line in lines
        if line["figure"] == "update_per_s"
    )
    per_round = [line for line in lines if line["figure"] == "update_ratio_redis_to_sqlite"]
    assert [line["round"] for line in per_round] == [0, 1]
    (summary,) = [
        line for line in lines if line["figure"] == "update_ratio_redis_to_sqlite_over_rounds"
    ]
    # the round's own line keeps its three decimals, the summary four
    assert summary["per_round"] == [pytest.approx(line["value"], abs=1e-3) for line in per_round]
    assert summary["n"] == 2 and summary["min"] <= summary["median"] <= summary["max"]
    assert summary["rounds"] == 2 and "round" not in summary
    names = {(line["figure"], line.get("variant")) for line in lines}
    assert ("update_per_s_over_rounds", "redis-1") in names
    assert ("update_cpu_ratio_redis_to_sqlite_over_rounds", None) in names

"""A tiny run of ``bench/server_load.py`` (50 clients) against the real server, so the issue-10
benchmark keeps working while the server changes: the C tools build outside the repository,
every figure comes out with its target, and the restart really finds every registration.
No figure is asserted to be fast (no timing assertions): only that it was measured."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench import server_load
from bench.load import blast


@pytest.fixture
def tiny() -> server_load.Config:
    return server_load.Config(
        clients=[50],
        window=8,
        sockets=8,
        updates=100,
        echo_requests=500,
        loadgen_timeout=60.0,
        restart_timeout=60.0,
        startup_timeout=60.0,
        notify_clients=10,
        notifications=200,
        notify_seconds=0.3,
        reads=20,
        echo_burst_s=0.05,
    )


def _figures(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(line["figure"]): line for line in lines}


def test_tiny_run_measures_every_figure(tiny: server_load.Config) -> None:
    try:
        lines = server_load.run(tiny)
    except server_load.CannotRun as exc:
        pytest.skip(f"benchmark not runnable here: {exc}")
    figures = _figures(lines)

    register, update = figures["register_per_s"], figures["update_per_s"]
    assert (register["ok"], register["errors"], register["timeouts"]) == (50, 0, 0)
    assert (update["ok"], update["errors"], update["timeouts"]) == (100, 0, 0)
    for line in (update, figures["server_cpu_us_per_update"]):
        assert line["update_cycles"] == 2 and "whole cycles" in line["update_pattern"]
    for line in (register, update):
        assert line["generator"] == "lwm2m-loadgen"
        assert line["ceiling"] == figures["echo_ceiling_per_s"]["value"] > 0
        assert isinstance(line["ratio"], float) and line["ratio"] > 0
        assert isinstance(line["meets_target_ratio"], bool)
    for name in ("server_cpu_us_per_register", "server_cpu_us_per_update"):
        assert figures[name]["value"] is not None and figures[name]["ceiling"] is not None
    assert figures["rss_bytes_per_client"]["registered"] == 50

    notifications = figures["notifications_con_persisted_per_s"]
    assert notifications["generator"] == blast.GENERATOR_NAME
    # the generator's own CPU per notification is reported beside the server's
    assert notifications["generator_cpu_us_per_op"] > 0 and notifications["cpu_us_per_op"] > 0
    assert notifications["observed"] == 5, "at most a tenth of the clients are observed"
    assert notifications["persisted"] == notifications["sent"] > 0

    # 50 from the C generator + 5 from the Python one (+ the restart probe's own Register)
    for name in ("restart_first_register_s", "restart_list_all_s"):
        restart = figures[name]
        assert restart["value"] is not None, restart
        assert restart["registrations"] == 55
    assert figures["restart_list_all_s"]["listed"] >= 55
    assert figures["restart_list_all_s"]["api_up_s"] is not None
    assert figures["restart_first_register_s"]["server_cpu_s_at_first_register"] > 0

    # paired echoes: a burst before Register, between the phases and after Update (the
    # generator waited between its phases), each phase's rate over the mean of its two bursts
    bursts = [line for line in lines if line["figure"] == "echo_burst_per_s"]
    assert [b["position"] for b in bursts] == list(server_load.BURSTS)
    assert all(b["value"] > 0 and b["echo_cpu_us_per_datagram"] > 0 for b in bursts), bursts
    for phase, first, second in server_load.PAIRS:
        pair = figures[f"{phase}_ratio_to_echo_paired"]
        echoes = {b["position"]: b["value"] for b in bursts}
        assert (pair["echo_before"], pair["echo_after"]) == (echoes[first], echoes[second])
        expected = figures[f"{phase}_per_s"]["value"] / ((echoes[first] + echoes[second]) / 2)
        # the line's value is rounded like every figure's (4 decimals), the field to 5
        assert pair["ratio_to_echo_paired"] == pytest.approx(expected, rel=1e-3, abs=1e-5)
        assert pair["value"] == pytest.approx(expected, abs=1e-4)
        assert isinstance(pair["unsteady"], bool) and pair["cpu_ratio_to_echo_paired"] > 0
    assert figures["run_info"]["paired_echoes"] is True

    for line in lines:
        if "target" in line:
            assert isinstance(line["meets_target"], bool), line
        if line["figure"] not in ("run_info", "echo_ceiling_per_s"):
            assert line["generator"], line
    assert figures["run_info"]["clients"] == [50]


def test_without_echo_bursts_the_generator_runs_its_phases_back_to_back(
    tiny: server_load.Config,
) -> None:
    """``--echo-burst-s 0``: the run as before session 9 (no bursts, no paired lines), every
    earlier figure still measured."""
    tiny.echo_burst_s = 0.0
    tiny.notify_clients = 0
    try:
        lines = server_load.run(tiny)
    except server_load.CannotRun as exc:
        pytest.skip(f"benchmark not runnable here: {exc}")
    figures = _figures(lines)
    assert not [line for line in lines if "paired" in line["figure"] or "burst" in line["figure"]]
    assert figures["register_per_s"]["ok"] == 50 and figures["update_per_s"]["ok"] == 100
    assert figures["run_info"]["paired_echoes"] is False


def test_tools_are_built_outside_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C sources are an instrument, not part of the project: binaries go to the cache."""
    src = server_load.loadgen_source(server_load.Config())
    if not (src / "lwm2m-loadgen.c").is_file():
        pytest.skip(f"no lwm2m-loadgen sources at {src}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        loadgen, udpecho = server_load.build_tools(src)
    except server_load.CannotRun as exc:
        pytest.skip(str(exc))
    for binary in (loadgen, udpecho):
        assert binary.is_relative_to(tmp_path) and os.access(binary, os.X_OK)
        assert not binary.resolve().is_relative_to(server_load.REPO)
    shim = server_load.build_pause_shim()  # the generator's pause between phases
    assert shim is not None and shim.is_relative_to(tmp_path) and shim.is_file()


def test_source_folder_can_be_overridden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LWM2M_LOADGEN_SRC", str(tmp_path))
    assert server_load.loadgen_source(server_load.Config()) == tmp_path
    explicit = tmp_path / "elsewhere"
    assert server_load.loadgen_source(server_load.Config(loadgen_src=explicit)) == explicit
    with pytest.raises(server_load.CannotRun, match="not found"):
        server_load.build_tools(tmp_path)


def test_the_update_count_is_whole_cycles_over_the_clients_at_every_size() -> None:
    """The same access pattern at 1k and 100k (each client in turn), never an evenly spaced
    subset: ``-U`` below N would update every (N/U)-th client only, a costlier pattern that
    made the flatness figure compare unlike runs (docs/performance.md, Session 8)."""
    assert [server_load.update_count(20_000, n) for n in (1_000, 10_000, 100_000)] == [
        20_000,
        20_000,
        100_000,
    ]
    assert server_load.update_count(20_001, 10_000) == 30_000
    assert server_load.update_count(100, 50) == 100
    assert server_load.update_count(0, 50) == 50
    assert server_load.update_pattern(100_000, 100_000)["update_cycles"] == 1


def test_flatness_is_the_worst_deviation_from_the_smallest_count() -> None:
    lines: list[dict[str, Any]] = [
        {"figure": "update_per_s", "clients": 1000, "value": 1000.0},
        {"figure": "update_per_s", "clients": 10000, "value": 900.0},
        {"figure": "update_per_s", "clients": 100000, "value": 700.0},
    ]
    for line in lines:
        line.update(server_load.update_pattern(100_000, int(line["clients"])))
    (flat,) = server_load.flatness(lines)
    assert flat["figure"] == "update_per_s_flatness"
    assert flat["update_pattern"] == lines[0]["update_pattern"]  # how the rates were made
    assert flat["value"] == pytest.approx(0.3)
    assert flat["target"] == 0.15 and flat["meets_target"] is False


def test_flatness_compares_each_count_s_best_run() -> None:
    """With ``--repeat`` every count is run several times; a run slowed by the host (the
    noise only slows) must not decide the figure: each count's best rate is compared."""
    lines: list[dict[str, Any]] = [
        {"figure": "register_per_s", "clients": 1000, "value": 700.0, "repeat": 0},
        {"figure": "register_per_s", "clients": 1000, "value": 1000.0, "repeat": 1},
        {"figure": "register_per_s", "clients": 100000, "value": 950.0, "repeat": 0},
        {"figure": "register_per_s", "clients": 100000, "value": 800.0, "repeat": 1},
    ]
    (flat,) = server_load.flatness(lines)
    assert flat["rates"] == {"1000": 1000.0, "100000": 950.0}
    assert flat["value"] == pytest.approx(0.05)
    assert flat["runs_per_count"] == 2 and flat["meets_target"] is True


def test_repeat_is_an_option() -> None:
    assert server_load.parse_args(["--repeat", "3"]).repeat == 3
    assert server_load.parse_args([]).repeat == 1

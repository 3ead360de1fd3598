"""The arithmetic behind the benchmarks' steadier figures (``bench/load/paired.py``) and how
``bench/server_load.py`` and ``bench/workers.py`` group their lines into them: paired ratios to
the echo bursts around a phase, the unsteady flag, medians and ranges over repeats and rounds,
the alternated order of ``--rounds``. Pure functions: no process is started here."""

from __future__ import annotations

from typing import Any

import pytest

from bench import server_load, workers
from bench.load import paired


def test_a_paired_ratio_divides_the_rate_by_the_mean_of_its_two_echoes() -> None:
    pair = paired.paired_ratio(12_000.0, 190_000.0, 210_000.0)
    assert pair["ratio_to_echo_paired"] == pytest.approx(0.06)
    assert pair["echo_mean"] == 200_000.0
    assert pair["echo_spread"] == pytest.approx(0.1)
    assert pair["unsteady"] is False
    assert (pair["echo_before"], pair["echo_after"]) == (190_000.0, 210_000.0)


def test_a_pair_whose_echoes_differ_by_more_than_the_bound_is_unsteady() -> None:
    assert paired.paired_ratio(10.0, 100.0, 130.0, unsteady_over=0.15)["unsteady"] is True
    assert paired.paired_ratio(10.0, 100.0, 110.0, unsteady_over=0.15)["unsteady"] is False
    # the bound is on the spread relative to the mean, whichever echo is the larger
    assert paired.spread(130.0, 100.0) == paired.spread(100.0, 130.0)


@pytest.mark.parametrize(
    ("rate", "before", "after"),
    [(None, 1.0, 1.0), (0.0, 1.0, 1.0), (5.0, None, 1.0), (5.0, 1.0, 0.0)],
)
def test_a_missing_figure_gives_no_ratio(
    rate: float | None, before: float | None, after: float | None
) -> None:
    assert paired.paired_ratio(rate, before, after)["ratio_to_echo_paired"] is None


def test_the_cpu_companion_divides_by_the_mean_echo_cost() -> None:
    assert paired.cost_ratio(40.0, 3.0, 5.0) == 10.0
    assert paired.cost_ratio(None, 3.0, 5.0) is None
    assert paired.cost_ratio(40.0, None, 5.0) is None


def test_a_summary_is_the_median_and_range_of_the_values_present() -> None:
    stats = paired.summary([0.05, None, 0.07, 0.06, 0.10])
    assert stats == {"median": 0.065, "min": 0.05, "max": 0.1, "spread": 0.7692, "n": 4}
    assert paired.summary([None, None]) is None
    assert paired.summary([]) is None


def test_flatness_of_medians_resists_one_slow_run() -> None:
    """One run of 100k slowed by a neighbour moves the best-of flatness not at all and the
    median's little; a count whose runs are all lower shows."""
    flat = paired.flatness_of_medians(
        {1000: [0.10, 0.11, 0.10], 100_000: [0.10, 0.05, 0.10], 10_000: [0.09, 0.09, None]}
    )
    assert flat == {"value": 0.1, "medians": {"1000": 0.1, "10000": 0.09, "100000": 0.1}}
    assert paired.flatness_of_medians({1000: [0.1]}) is None


def test_rounds_alternate_their_order_so_no_variant_always_runs_first() -> None:
    variants = ["sqlite-1", "redis-1", "redis-2"]
    orders = [paired.round_order(variants, k) for k in range(4)]
    assert orders[0] == orders[2] == variants
    assert orders[1] == orders[3] == ["redis-2", "redis-1", "sqlite-1"]
    firsts = [order[0] for order in orders]
    assert firsts.count("sqlite-1") == firsts.count("redis-2") == 2


def test_a_round_s_ratios_come_from_its_own_rates() -> None:
    ratios = paired.round_ratios({"sqlite-1": 10_000.0, "redis-1": 8_000.0, "redis-2": 14_000.0})
    assert ratios == {"update_ratio_redis_to_sqlite": 0.8, "update_ratio_2_workers_to_1": 1.75}
    partial = paired.round_ratios({"redis-1": 8_000.0, "redis-2": None})
    assert partial == {"update_ratio_redis_to_sqlite": None, "update_ratio_2_workers_to_1": None}


def test_workers_prints_the_median_and_range_over_rounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    per_round: list[dict[str, float | None]] = [
        {"sqlite-1": 10_000.0, "redis-1": 8_000.0, "redis-2": 13_000.0},
        {"sqlite-1": 12_000.0, "redis-1": 9_000.0, "redis-2": 16_200.0},
        {"sqlite-1": 9_000.0, "redis-1": 6_000.0, "redis-2": 12_000.0},
    ]
    workers.rounds_figures(per_round, {"clients": 10, "rounds": 3})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = {(line["figure"], line.get("variant")): line for line in lines}
    scale = found[("update_ratio_2_workers_to_1_over_rounds", None)]
    assert scale["per_round"] == [1.625, 1.8, 2.0]
    assert (scale["median"], scale["min"], scale["max"], scale["n"]) == (1.8, 1.625, 2.0, 3)
    assert scale["value"] == 1.8 and scale["meets_target"] is True and scale["target"] == 1.7
    redis = found[("update_ratio_redis_to_sqlite_over_rounds", None)]
    assert redis["per_round"] == [0.8, 0.75, pytest.approx(0.6667)]
    assert redis["value"] == 0.75 and redis["meets_target"] is True
    assert found[("update_per_s_over_rounds", "sqlite-1")]["value"] == 10_000.0


def _run(
    clients: int, repeat: int, rate: float, echo: float, before: float, after: float
) -> list[dict[str, Any]]:
    """The lines of one run of one count that ``over_repeats``/``paired_flatness`` read."""
    pair = paired.paired_ratio(rate, before, after)
    return [
        {"figure": "echo_ceiling_per_s", "clients": clients, "value": echo, "repeat": repeat},
        {
            "figure": "update_per_s",
            "clients": clients,
            "value": rate,
            "ratio": rate / echo,
            "repeat": repeat,
        },
        {"figure": "server_cpu_us_per_update", "clients": clients, "value": 40.0, "repeat": repeat},
        {
            "figure": "update_ratio_to_echo_paired",
            "clients": clients,
            "value": pair["ratio_to_echo_paired"],
            "unsteady": pair["unsteady"],
            "cpu_ratio_to_echo_paired": 10.0,
            "repeat": repeat,
        },
    ]


def test_server_load_summarises_each_count_over_its_repeats() -> None:
    lines = [
        *_run(1000, 0, 20_000.0, 200_000.0, 200_000.0, 200_000.0),  # ratio 0.1
        *_run(1000, 1, 15_000.0, 200_000.0, 140_000.0, 160_000.0),  # 0.1, load fell with it
        *_run(1000, 2, 22_000.0, 200_000.0, 150_000.0, 250_000.0),  # 0.11, unsteady
    ]
    (line,) = [x for x in server_load.over_repeats(lines) if x["figure"] == "update_over_repeats"]
    assert line["clients"] == 1000 and line["runs"] == 3
    assert line["rate"]["median"] == 20_000.0 and line["rate"]["spread"] == pytest.approx(0.35)
    assert line["ratio_to_echo_paired"]["median"] == pytest.approx(0.1)
    assert line["ratio_to_echo_paired"]["spread"] == pytest.approx(0.1)
    assert line["ratio_to_echo_paired_steady"]["n"] == 2
    assert line["unsteady_pairs"] == 1
    assert line["ratio_single_echo"]["min"] == pytest.approx(0.075)
    assert line["value"] == pytest.approx(0.1) and line["meets_target_ratio"] is False


def test_server_load_prints_no_summary_of_a_single_run() -> None:
    assert list(server_load.over_repeats(_run(1000, 0, 1.0, 2.0, 2.0, 2.0))) == []


def test_paired_flatness_compares_the_median_paired_ratios() -> None:
    lines = [
        *_run(1000, 0, 20_000.0, 200_000.0, 200_000.0, 200_000.0),
        *_run(100_000, 0, 12_000.0, 200_000.0, 150_000.0, 150_000.0),
    ]
    flats = {line["figure"]: line for line in server_load.paired_flatness(lines)}
    flat = flats["update_ratio_paired_flatness"]
    assert flat["value"] == pytest.approx(0.2)
    assert flat["medians"] == {"1000": 0.1, "100000": 0.08}
    assert flat["target"] == 0.15 and flat["meets_target"] is False


def test_echo_bursts_last_about_the_configured_time_at_the_ceiling_s_rate() -> None:
    cfg = server_load.Config(echo_burst_s=1.5)
    assert server_load.burst_requests(cfg, 200_000.0) == 300_000
    assert server_load.burst_requests(cfg, None) == 225_000
    assert server_load.burst_requests(server_load.Config(echo_burst_s=0.01), 100_000.0) == 5_000


def test_the_pairing_options_are_options() -> None:
    cfg = server_load.parse_args(["--echo-burst-s", "0", "--unsteady-over", "0.2"])
    assert (cfg.echo_burst_s, cfg.unsteady_over) == (0.0, 0.2)
    assert server_load.parse_args([]).echo_burst_s > 0


def test_workers_cpu_companion_is_the_ratio_of_the_one_core_bounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Redis ÷ sqlite in CPU terms: sqlite's server CPU per Update ÷ Redis's, per round."""
    import json

    cpu: list[dict[str, float | None]] = [
        {"sqlite-1": 40.0, "redis-1": 50.0, "redis-2": 48.0},
        {"sqlite-1": 45.0, "redis-1": 50.0, "redis-2": None},
        {"sqlite-1": 44.0, "redis-1": None, "redis-2": 50.0},
    ]
    workers.cpu_ratio_figure(cpu, {"rounds": 3})
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["figure"] == "update_cpu_ratio_redis_to_sqlite_over_rounds"
    assert line["per_round"] == [0.8, 0.9, None]
    assert line["value"] == pytest.approx(0.85) and line["n"] == 2
    assert line["meets_target"] is True


def test_the_cores_bound_on_two_workers_is_cores_over_their_total_cpu_per_one_worker_s_rate() -> (
    None
):
    # 2 cores at 50 µs of total CPU per Update allow 40,000 Updates/s: 1.6 times 25,000
    assert paired.cores_bound_of_two_workers(25_000.0, 50.0, 2) == 1.6
    assert paired.cores_bound_of_two_workers(20_000.0, 50.0, 2) == 2.0
    for missing in [(None, 50.0, 2), (25_000.0, None, 2), (0.0, 50.0, 2), (25_000.0, 50.0, 0)]:
        assert paired.cores_bound_of_two_workers(*missing) is None


def test_workers_prints_the_cores_bound_beside_the_measured_ratio(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setattr(workers.os, "cpu_count", lambda: 2)
    results: dict[str, dict[str, Any]] = {
        "redis-1": {"update": {"rate": 20_000.0, "cpu_us_per_update": {"total": 45.0}}},
        "redis-2": {
            "update": {
                "rate": 30_000.0,
                "cpu_us_per_update": {"total": 62.5},
                "cores_busy": {"server": 1.4, "redis": 0.2, "loadgen": 0.2},
            }
        },
    }
    assert workers.ratio_figures(results, {"clients": 10}) == 1.6
    lines = {
        line["figure"]: line for line in map(json.loads, capsys.readouterr().out.split("\n")[:-1])
    }
    bound = lines["update_ratio_2_workers_to_1_cores_bound"]
    assert (bound["value"], bound["measured"], bound["share_of_bound"]) == (1.6, 1.5, 0.938)
    assert bound["cores_busy"] == 1.8
    assert lines["update_ratio_2_workers_to_1"]["value"] == 1.5
    workers.rounds_figures([], {"rounds": 3}, [], [1.6, None, 1.5, 1.7])
    (over,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert over["figure"] == "update_ratio_2_workers_to_1_cores_bound_over_rounds"
    assert (over["value"], over["n"]) == (1.6, 3)


def test_each_phase_is_paired_with_the_bursts_around_it() -> None:
    """Register with the bursts before it and between the phases, Update with the one between
    and the one after; the server's exact CPU over the phase (carried by the burst after it)
    is preferred to the generator's tick count."""
    bursts = {
        "before_register": {"rate": 100_000.0, "echo_cpu_us_per_datagram": 4.0},
        "after_register": {
            "rate": 120_000.0,
            "echo_cpu_us_per_datagram": 4.0,
            "server_cpu_s_phase": 0.8,
        },
        "after_update": {
            "rate": 140_000.0,
            "echo_cpu_us_per_datagram": 5.0,
            "server_cpu_s_phase": 0.9,
        },
    }
    phases = {
        "register": {"rate": 6_600.0, "ok": 10_000, "server_cpu_s": 0.79},
        "update": {"rate": 19_500.0, "ok": 20_000, "server_cpu_s": 0.91},
    }
    cfg = server_load.Config()
    lines = list(server_load.paired_figures(cfg, phases, bursts, {"clients": 10_000}))
    found = {line["figure"]: line for line in lines}
    assert [line["position"] for line in lines if line["figure"] == "echo_burst_per_s"] == [
        "before_register",
        "after_register",
        "after_update",
    ]
    register = found["register_ratio_to_echo_paired"]
    assert (register["echo_before"], register["echo_after"]) == (100_000.0, 120_000.0)
    assert register["value"] == pytest.approx(0.06)
    assert register["meets_target_ratio"] is True  # 6 % of the echo
    assert register["server_cpu_us_per_message"] == 80.0  # 0.8 s / 10k, not the 0.79 ticks
    assert register["server_cpu_us_per_message_ticks"] == 79.0
    assert register["cpu_ratio_to_echo_paired"] == 20.0
    assert register["ratio_to_echo_by_cpu"] == 0.05
    assert register["meets_target_ratio_by_cpu"] is False
    update = found["update_ratio_to_echo_paired"]
    assert (update["echo_before"], update["echo_after"]) == (120_000.0, 140_000.0)
    assert update["value"] == pytest.approx(0.15)
    assert update["cpu_ratio_to_echo_paired"] == 10.0  # 45 µs / mean(4, 5)
    assert update["unsteady"] is False  # 15 % apart, under the 25 % bound


def test_a_phase_that_did_not_run_has_a_missing_paired_line() -> None:
    lines = list(server_load.paired_figures(server_load.Config(), {}, {}, {"clients": 1}))
    found = {line["figure"]: line for line in lines}
    assert found["update_ratio_to_echo_paired"]["missing"] is True
    assert found["update_ratio_to_echo_paired"]["value"] is None

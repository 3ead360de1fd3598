"""Figures that the shared VM's noise moves less: ratios of a phase to echo bursts measured right
before and right after it, and summaries (median and range) over repeated runs or rounds.

Why: on the 2-core VM the same code's Register rate at 100k clients moved 9.2k-12.8k/s minute
to minute and the C echo 145k-246k/s (docs/performance.md, "Full run at the end of session 8").
A ratio of a phase to an echo measured minutes before it is mostly that noise; echo bursts
just before and just after the phase see about the same machine load as the phase, so the
ratio to their mean cancels part of it (the difference between the two bursts is reported, and
a large one flagged ``unsteady``). A median over several runs then resists the one run that a
neighbour slowed down, where the best run (the old ``--repeat``) only ever picks the luckiest
one. What each figure's spread was, measured: docs/performance.md, "Session 9: steadier
figures" (in short: the CPU ratio moves least, then the paired ratio's median; a single run's
paired ratio still moves by ±20-30 % here).

Pure functions only (no I/O), so that they are tested as such
(``tests/unit/bench/test_paired_figures.py``); ``bench/server_load.py`` and
``bench/workers.py`` print what they return.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

UNSTEADY_SPREAD = 0.25
"""A pair whose two echo bursts differ by more than this fraction of their mean is flagged
``unsteady``. In 48 pairs of session 9 (10k and 100k clients, load 1.5-5.4) the two bursts
around a phase differed by a median of 14 %; 30 % of the pairs differed by more than 25 %,
mostly when the echo switched between its two modes (~115k and ~235k/s on this VM at the same
CPU per datagram: the generator and ``udpecho`` on one core or on two). The flag is
information, not a filter: a steady pair's ratio was no closer to its series' median than an
unsteady one's (median deviation 15 % below 10 % spread, 13 % above 25 %), so the summaries
keep every pair and give the steady ones apart (docs/performance.md, "Session 9: steadier
figures")."""


def spread(a: float, b: float) -> float:
    """|a - b| relative to their mean (0 for two zeros)."""
    mean = (a + b) / 2
    return abs(a - b) / mean if mean > 0 else 0.0


def paired_ratio(
    rate: float | None,
    echo_before: float | None,
    echo_after: float | None,
    unsteady_over: float = UNSTEADY_SPREAD,
) -> dict[str, Any]:
    """``rate`` ÷ the mean of the echo bursts around it, with both echoes, their spread and
    whether the pair is unsteady. ``ratio_to_echo_paired`` is None when a figure is missing
    or zero (a phase that did not run, an echo that answered nothing)."""
    result: dict[str, Any] = {
        "ratio_to_echo_paired": None,
        "echo_before": echo_before,
        "echo_after": echo_after,
        "echo_mean": None,
        "echo_spread": None,
        "unsteady": None,
        "unsteady_over": unsteady_over,
    }
    if not echo_before or not echo_after or echo_before <= 0 or echo_after <= 0:
        return result
    mean = (echo_before + echo_after) / 2
    result["echo_mean"] = round(mean, 1)
    result["echo_spread"] = round(spread(echo_before, echo_after), 4)
    result["unsteady"] = result["echo_spread"] > unsteady_over
    if rate is not None and rate > 0:
        result["ratio_to_echo_paired"] = round(rate / mean, 5)
    return result


def cost_ratio(
    cost: float | None, cost_before: float | None, cost_after: float | None
) -> float | None:
    """A per-message cost ÷ the mean of two reference costs (CPU µs per Update ÷ the echo's
    CPU µs per datagram around it); None when any is missing or zero. Higher is costlier."""
    if not cost or not cost_before or not cost_after:
        return None
    mean = (cost_before + cost_after) / 2
    return round(cost / mean, 3) if mean > 0 and cost > 0 else None


def summary(values: Iterable[float | None]) -> dict[str, Any] | None:
    """Median, min, max, the range relative to the median (``spread``) and how many values, of
    the values that are not None; None when there are none."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    median = statistics.median(present)
    low, high = min(present), max(present)
    return {
        "median": _round(median),
        "min": _round(low),
        "max": _round(high),
        "spread": round((high - low) / median, 4) if median > 0 else None,
        "n": len(present),
    }


def _round(value: float) -> float:
    return round(value, 5) if abs(value) < 10 else round(value, 1)


def flatness_of_medians(by_count: Mapping[int, Sequence[float | None]]) -> dict[str, Any] | None:
    """Issue 10's flatness (±15 % from 1k to 100k) on the medians: the largest
    |median(N) / median(smallest N) - 1| over the client counts, with the medians; None with
    fewer than two counts that have a value."""
    medians: dict[int, float] = {}
    for count, values in by_count.items():
        present = [float(v) for v in values if v is not None]
        if present:
            medians[count] = statistics.median(present)
    if len(medians) < 2:
        return None
    base = medians[min(medians)]
    if base <= 0:
        return None
    worst = max(abs(value / base - 1) for value in medians.values())
    return {
        "value": round(worst, 4),
        "medians": {str(k): _round(v) for k, v in sorted(medians.items())},
    }


def round_order(variants: Sequence[str], round_index: int) -> list[str]:
    """The variants' order in round ``round_index``: as given in even rounds, reversed in odd
    ones (A B C, C B A, A B C, ...). A variant that always ran first would always meet the
    machine as the previous round left it; alternating the direction puts every variant as
    often early as late, and each round's adjacent runs stay adjacent."""
    order = list(variants)
    return order if round_index % 2 == 0 else order[::-1]


RATIOS = (
    ("update_ratio_redis_to_sqlite", "redis-1", "sqlite-1", 0.7),
    ("update_ratio_2_workers_to_1", "redis-2", "redis-1", 1.7),
)
"""Issue 12's ratios: (figure, numerator variant, denominator variant, goal)."""


def round_ratios(rates: Mapping[str, float | None]) -> dict[str, float | None]:
    """Issue 12's ratios of one round, from that round's Update rates per variant (None where a
    variant did not run or answered nothing)."""
    result: dict[str, float | None] = {}
    for name, top, bottom, _goal in RATIOS:
        a, b = rates.get(top), rates.get(bottom)
        result[name] = round(a / b, 4) if a and b and a > 0 and b > 0 else None
    return result


def cores_bound_of_two_workers(
    one_worker_rate: float | None, two_workers_total_cpu_us: float | None, cores: int
) -> float | None:
    """The largest ``2 workers ÷ 1`` Update-rate ratio this machine's cores allow, from one
    round's own figures: ``cores`` busy all the time at the two-worker run's total CPU per
    Update (every worker and the supervisor, ``redis-server`` and the load generator) give at
    most ``cores * 1e6 / total`` Updates/s, divided by the one-worker rate.

    Why: on a 2-core machine the two workers share the cores with Redis and the generator, so
    the ratio cannot pass this bound whatever the server does; a measured ratio near it says
    the workers scale as far as the cores let them, one far under it says time is lost
    elsewhere (an uneven spread, waits, scheduling). None when a figure is missing."""
    if not one_worker_rate or not two_workers_total_cpu_us or cores <= 0:
        return None
    if one_worker_rate <= 0 or two_workers_total_cpu_us <= 0:
        return None
    return round(cores * 1e6 / two_workers_total_cpu_us / one_worker_rate, 4)

"""Which CPU each worker of ``worker_cpu_affinity`` gets (``affinity_plan``) and what the
setting accepts: the plan the supervisor pins by (the pinning itself is tested over real
processes in tests/integration/server/test_worker_affinity.py)."""

from __future__ import annotations

import pytest

from lwm2m_runtime.settings import ConfigError
from lwm2m_server.cluster.workers import affinity_plan, parse_cpu_list
from lwm2m_server.config import load_config


def test_off_leaves_the_workers_to_the_scheduler() -> None:
    assert affinity_plan("off", 4, {0, 1, 2, 3}) is None
    assert load_config(env={}).worker_cpu_affinity == "off"


def test_auto_gives_worker_i_the_i_th_allowed_cpu_round_robin() -> None:
    assert affinity_plan("auto", 2, {0, 1, 2, 3}) == [0, 1]
    assert affinity_plan("AUTO", 3, {4, 6}) == [4, 6, 4]  # a container's set, wrapped
    assert affinity_plan("auto", 1, {3, 5}) == [3]


def test_a_list_is_taken_in_its_order_round_robin() -> None:
    assert affinity_plan("2-3", 4, {0, 1, 2, 3}) == [2, 3, 2, 3]
    assert affinity_plan("3,1", 2, {0, 1, 2, 3}) == [3, 1]


def test_a_cpu_this_process_may_not_use_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"CPU 5 is not available to this process \(it may use 0,1\)"
    ):
        affinity_plan("1,5", 2, {0, 1})


@pytest.mark.parametrize(
    ("text", "cpus"), [("0", [0]), ("0,2-4", [0, 2, 3, 4]), (" 1 , 1-2 ", [1, 2])]
)
def test_cpu_lists_read_as_taskset_reads_them(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "1.5"])
def test_what_is_not_a_cpu_list_is_refused_by_the_configuration(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_list(text)
    with pytest.raises(ConfigError, match="worker_cpu_affinity"):
        load_config(env={"LWM2M_SERVER_WORKER_CPU_AFFINITY": text})


def test_the_setting_comes_from_the_environment_and_the_command_line() -> None:
    assert (
        load_config(env={"LWM2M_SERVER_WORKER_CPU_AFFINITY": "auto"}).worker_cpu_affinity == "auto"
    )
    config = load_config(env={}, overrides={"worker_cpu_affinity": "0-1"})
    assert config.worker_cpu_affinity == "0-1"

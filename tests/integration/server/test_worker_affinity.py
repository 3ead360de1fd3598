"""``worker_cpu_affinity`` (docs/cluster.md, "CPU affinity"): with ``--workers 2`` and ``auto``
each worker runs on one CPU of its own (the i-th of those the server may use), a restarted
worker is pinned again, the one-process server pins itself; a CPU the server may not use is
refused at start naming the setting. The affinity is read where the kernel keeps it
(``/proc/<pid>/status``, every thread)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from ..processes import ServerProcess, redis_env, run_to_exit

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's"
)


def allowed_cpus(pid: int) -> set[int]:
    """The CPUs each thread of ``pid`` may run on (all threads must agree)."""
    found: set[frozenset[int]] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.add(frozenset(os.sched_getaffinity(int(task.name))))
    assert len(found) == 1, f"threads of {pid} disagree: {found}"
    return set(next(iter(found)))


def ready_workers(log: str) -> dict[int, tuple[int, int]]:
    """worker index → (pid, CPU) from the supervisor's ``ready`` lines (the last of each)."""
    found = {}
    for index, pid, cpu in re.findall(r"worker (\d+) \(pid (\d+)\) ready on CPU (\d+)", log):
        found[int(index)] = (int(pid), int(cpu))
    return found


async def wait_for(what: str, server: ServerProcess, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while what not in server.log():
        assert server.alive(), server.log()
        assert asyncio.get_running_loop().time() < deadline, server.log()
        await asyncio.sleep(0.1)


async def test_auto_pins_each_worker_to_its_cpu_and_a_restarted_one_again(
    tmp_path: Path, redis_url: str
) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server = ServerProcess(
        tmp_path,
        tmp_path / "server.log",
        extra_args=["--workers", "2", "--worker-cpu-affinity", "auto"],
    )
    server.env.update(redis_env(redis_url))
    server.start()
    try:
        await wait_for("2 workers running", server)
        workers = ready_workers(server.log())
        assert sorted(workers) == [0, 1], server.log()
        for index, (pid, cpu) in workers.items():
            assert cpu == cpus[index % len(cpus)]
            assert allowed_cpus(pid) == {cpu}, (index, pid)
        assert server.proc is not None
        assert allowed_cpus(server.proc.pid) == set(cpus), "the supervisor is not pinned"

        old_pid, cpu = workers[1]
        os.kill(old_pid, signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 30
        while ready_workers(server.log())[1][0] == old_pid:
            assert server.alive(), server.log()
            assert asyncio.get_running_loop().time() < deadline, server.log()
            await asyncio.sleep(0.1)
        new_pid, new_cpu = ready_workers(server.log())[1]
        assert new_cpu == cpu and allowed_cpus(new_pid) == {cpu}
    finally:
        assert server.stop() == 0, server.log()


async def test_one_process_pins_itself_to_the_first_listed_cpu(tmp_path: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    server = ServerProcess(
        tmp_path, tmp_path / "server.log", extra_args=["--worker-cpu-affinity", str(cpu)]
    )
    server.start()
    try:
        assert server.proc is not None
        assert allowed_cpus(server.proc.pid) == {cpu}  # its threads (API, store) too
    finally:
        assert server.stop() == 0, server.log()


def test_a_cpu_the_server_may_not_use_is_refused_at_start(tmp_path: Path) -> None:
    missing = max(os.sched_getaffinity(0)) + 1
    done = run_to_exit(tmp_path, env={"LWM2M_SERVER_WORKER_CPU_AFFINITY": f"0,{missing}"})
    assert done.returncode == 2, done.stderr
    assert f"worker_cpu_affinity '0,{missing}': CPU {missing} is not available" in done.stderr


def test_a_malformed_cpu_list_is_refused_naming_the_setting(tmp_path: Path) -> None:
    done = run_to_exit(tmp_path, "--worker-cpu-affinity", "1-x")
    assert done.returncode == 2, done.stderr
    assert "--worker-cpu-affinity" in done.stderr and "'1-x' is not a CPU number" in done.stderr

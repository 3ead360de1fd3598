"""CI smoke run of the fuzzing harnesses (``fuzz/``, docs/reliability.md "Fuzzing").

Each target runs for a fixed number of inputs (seconds, not minutes) in its own process, from
its generated seeds, so that a harness that no longer imports, a seed layout that drifted from
its harness, or a regression that the seeds alone reach fails CI. The long runs that find new
bugs are run by hand (``python -m fuzz all --seconds 600``); no timing is asserted here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fuzz import ROOT, TARGETS

RUNS = 2000
"""Inputs per target: about a second each on this machine, seeds included."""


def test_every_target_has_a_harness_and_seeds() -> None:
    from fuzz.seeds import GENERATORS

    assert set(GENERATORS) == set(TARGETS)
    for target in TARGETS:
        assert (ROOT / "targets" / f"{target}.py").is_file(), target


needs_atheris = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (wheels exist for Linux x86_64; pip install -e '.[test]')",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fuzz.seeds import write

    root = tmp_path_factory.mktemp("corpus")
    counts = write(list(TARGETS), root)
    assert all(counts.values()), counts
    return root


@needs_atheris
@pytest.mark.parametrize("target", list(TARGETS))
def test_target_runs_clean(target: str, corpus: Path, tmp_path: Path) -> None:
    from fuzz.__main__ import run_target

    # a fixed libFuzzer seed: CI explores the same inputs every run, so a red smoke test is a
    # regression, never the luck of a random mutation (that is what the long runs are for:
    # `python -m fuzz all`, random seeds; docs/reliability.md)
    result = run_target(
        target, seconds=None, runs=RUNS, corpus=corpus, crashes=tmp_path, extra=["-seed=1"]
    )
    log = (tmp_path / f"{target}.log").read_text(errors="replace")
    assert result.clean, f"{target} exited {result.returncode}:\n{log[-4000:]}"
    assert result.execs is not None and result.execs >= RUNS // 2, log[-2000:]

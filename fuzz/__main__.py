"""``python -m fuzz TARGET|all [--seconds N | --runs N]``: run fuzz targets and report.

Each target runs in its own process (``python -m fuzz.run``; atheris sets libFuzzer up once per
process and a finding ends it). Its corpus folder ``fuzz/corpus/<target>/`` is seeded first when
empty (``fuzz.seeds``); committed vectors of the test-suite are read as extra seed folders; what
libFuzzer saves on a finding lands in ``fuzz/crashes/<target>/`` and the full log in
``fuzz/crashes/<target>.log``. The summary gives executions, execs/s, coverage (libFuzzer's
``cov``/``ft`` counters over the instrumented package) and findings; the exit status is 1 when any
target found something. Anything after ``--`` goes to libFuzzer as is (e.g. ``-max_len=8192``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import CORPUS, CRASHES, EXTRA_SEEDS, REPO, TARGETS

TIMEOUT_PER_INPUT = 10
"""Seconds one input may take before libFuzzer calls it a hang (a finding: item 2 of issue 11
is about decodes that freeze the loop)."""
MAX_LEN = 4096
"""libFuzzer's input size cap: a CoAP datagram over UDP is at most this large here."""
MAX_LEN_BY_TARGET = {"model_json": 65536, "model_ddf": 65536}
"""Model files are larger than datagrams: a cap of 4096 would truncate every seed."""


@dataclass
class Result:
    target: str
    returncode: int
    seconds: float
    execs: int | None
    execs_per_s: int | None
    cov: int | None
    ft: int | None
    corpus: str | None
    artifacts: list[Path]

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and not self.artifacts


_STAT = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\S+)", re.M)
_FINAL = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)


def run_target(
    target: str,
    *,
    seconds: float | None,
    runs: int | None,
    corpus: Path = CORPUS,
    crashes: Path = CRASHES,
    extra: list[str] | None = None,
) -> Result:
    """Run one target to completion (time or run budget) and parse libFuzzer's statistics."""
    folder = corpus / target
    if not folder.is_dir() or not any(folder.iterdir()):
        from .seeds import write

        write([target], corpus)
    artifacts = crashes / target
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    budget = [f"-runs={runs}"] if runs is not None else [f"-max_total_time={int(seconds or 60)}"]
    cmd = [
        sys.executable,
        "-m",
        "fuzz.run",
        target,
        *budget,
        f"-timeout={TIMEOUT_PER_INPUT}",
        f"-max_len={MAX_LEN_BY_TARGET.get(target, MAX_LEN)}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        *(extra or []),
        str(folder),
        *(str(p) for p in EXTRA_SEEDS.get(target, []) if p.is_dir()),
    ]
    log = crashes / f"{target}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    stats = _STAT.findall(text)
    final = dict(_FINAL.findall(text))
    last = stats[-1] if stats else None
    return Result(
        target=target,
        returncode=proc.returncode,
        seconds=elapsed,
        execs=int(final["number_of_executed_units"])
        if "number_of_executed_units" in final
        else None,
        execs_per_s=int(final["average_exec_per_sec"]) if "average_exec_per_sec" in final else None,
        cov=int(last[1]) if last else None,
        ft=int(last[2]) if last else None,
        corpus=last[3] if last else None,
        artifacts=sorted(set(artifacts.iterdir()) - before),
    )


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def report(results: list[Result]) -> str:
    lines = [
        f"{'target':18} {'secs':>6} {'execs':>10} {'exec/s':>7} {'cov':>6} {'ft':>6} "
        f"{'corpus':>12}  findings"
    ]
    for r in results:
        found = (
            "none"
            if r.clean
            else f"exit {r.returncode}: "
            + " ".join(
                str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in r.artifacts
            )
        )
        lines.append(
            f"{r.target:18} {r.seconds:6.0f} {_fmt(r.execs):>10} {_fmt(r.execs_per_s):>7} "
            f"{_fmt(r.cov):>6} {_fmt(r.ft):>6} {_fmt(r.corpus):>12}  {found}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("target", choices=[*TARGETS, "all", "list"])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="time per target (default 60)")
    budget.add_argument("--runs", type=int, help="executions per target instead of a time")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="corpus root")
    parser.add_argument("--crashes", type=Path, default=CRASHES, help="findings and logs root")
    args = parser.parse_args(argv)
    if args.target == "list":
        for name, what in TARGETS.items():
            print(f"{name:18} {what}")
        return 0
    targets = list(TARGETS) if args.target == "all" else [args.target]
    results = []
    for target in targets:
        result = run_target(
            target,
            seconds=args.seconds,
            runs=args.runs,
            corpus=args.corpus,
            crashes=args.crashes,
            extra=extra,
        )
        results.append(result)
        print(report([result]).splitlines()[-1], flush=True)
    print()
    print(report(results))
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

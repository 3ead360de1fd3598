"""Run one target in this process: ``python -m fuzz.run TARGET [libFuzzer flags and dirs]``.

Why a module of its own: atheris can set up libFuzzer once per process, and a finding ends the
process; ``python -m fuzz`` therefore starts one of these per target and reads its statistics.
Flags are libFuzzer's (``-runs=N``, ``-max_total_time=S``, ``-artifact_prefix=DIR/``, then
corpus folders, the first one written to).
"""

from __future__ import annotations

import importlib
import sys

import atheris

from . import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(
            f"usage: python -m fuzz.run TARGET [libFuzzer args]; targets: {', '.join(TARGETS)}"
        )
    target = importlib.import_module(f"fuzz.targets.{argv[1]}")
    atheris.Setup([argv[0], *argv[2:]], target.TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

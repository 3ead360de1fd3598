"""How long the built-in object-model registry takes to load (the start-up cost every server
and CLI pays), measured in fresh interpreters, beside a baseline from the same run: reading the
same JSON files with the stdlib ``json`` module and doing nothing with them.

Usage: ``python bench/models_load.py [--quick]`` — one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_REGISTRY = (
    "import time; t = time.perf_counter();"
    "from object_models.registry import ModelRegistry;"
    "r = ModelRegistry(include_builtin=True);"
    "print(time.perf_counter() - t, len(r))"
)
_BASELINE = (
    "import time; t = time.perf_counter();"
    "import json, pathlib;"
    "d = pathlib.Path('object_models/builtin');"
    "n = [json.loads(p.read_text('utf-8')) for p in sorted(d.glob('*.json'))];"
    "print(time.perf_counter() - t, len(n))"
)


def _timed(code: str, runs: int) -> tuple[float, int]:
    """Median seconds over ``runs`` fresh interpreters, and the count the snippet printed."""
    samples = []
    count = 0
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
        samples.append(float(out[0]))
        count = int(out[1])
    return statistics.median(samples), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 11")
    args = parser.parse_args(argv)
    runs = 3 if args.quick else 11
    registry_s, objects = _timed(_REGISTRY, runs)
    baseline_s, files = _timed(_BASELINE, runs)
    print(json.dumps({
        "bench": "models", "figure": "builtin_registry_load_s", "value": round(registry_s, 4),
        "objects": objects, "baseline_json_read_s": round(baseline_s, 4), "files": files,
        "ratio_to_baseline": round(registry_s / baseline_s, 2),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

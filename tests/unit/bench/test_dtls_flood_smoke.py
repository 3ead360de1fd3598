"""A tiny run of ``bench/dtls_flood.py`` (real server, flooding and client processes over
loopback), so the issue-11 flood benchmark keeps working while the DTLS layer changes: every
figure comes out, the flood reached the server and was answered or counted. No figure is
asserted to be fast (no timing assertions): only that it was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_tiny_run_measures_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "bench/dtls_flood.py", "--quick", "--seconds", "1", "--rate", "500",
         "--concurrency", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    figures = {line["figure"]: line for line in lines}
    assert set(figures) == {"handshakes_per_s_unloaded", "handshakes_per_s_flooded", "flood_ratio"}
    assert all(line["bench"] == "dtls_flood" for line in lines)
    unloaded, flooded = figures["handshakes_per_s_unloaded"], figures["handshakes_per_s_flooded"]
    assert unloaded["done"] > 0 and flooded["done"] > 0
    assert flooded["flood_sent_per_s"] > 0
    # the server saw the flood: each ClientHello answered or dropped over the budget
    assert flooded["server_hvr_per_s"] + flooded["server_hello_overload_per_s"] > 0
    assert figures["flood_ratio"]["target"] == 0.5

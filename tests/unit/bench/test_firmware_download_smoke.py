"""A tiny run of ``bench/firmware_download.py`` (the real server and the echo ceiling in their own
processes, the generator here), so the issue-14 download benchmark keeps working: every figure
comes out and every device got the package with the right SHA-256. No figure is asserted to be
fast (no timing assertions): only that it was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_tiny_run_serves_every_device_and_measures_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "bench/firmware_download.py", "--devices", "3", "--size", "20000"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    figures = {line["figure"]: line for line in lines}
    assert set(figures) == {"coap_block2", "udp_echo_ceiling", "ratio"}
    coap = figures["coap_block2"]
    assert coap["devices_served"] == 3 and coap["errors"] == 0
    assert coap["blocks_per_s"] > 0 and coap["server_cpu_s_per_mb"] is not None
    assert figures["udp_echo_ceiling"]["mb_per_s"] > 0

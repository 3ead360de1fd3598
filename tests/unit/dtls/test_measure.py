"""The measuring helpers work and the idle-memory budget (4 KB per session) holds."""

from __future__ import annotations

import json

import pytest

from keystore.dtls import measure


@pytest.mark.parametrize("mode", ["psk-ccm8", "x509-ccm8"])
def test_idle_memory_budget(mode: str) -> None:
    result = measure.idle_bytes_per_session(mode, n=60)
    assert 0 < int(result["tracemalloc"]) <= 4096  # type: ignore[call-overload]


@pytest.mark.slow
def test_handshake_rate_and_cli_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert float(measure.handshakes_per_second("psk-ccm8-resumed", n=3)["value"]) > 0  # type: ignore[arg-type]
    measure.main(["--quick", "--mode", "psk-cbc"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["metric"] for line in lines] == ["handshakes_per_second", "idle_bytes_per_session"]

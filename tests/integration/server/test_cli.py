"""``lwm2m-server`` as a command: configuration errors exit 2 with a precise message, a real
process logs where it listens, reloads models on SIGHUP and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from lwm2m_server.cli import main

from .test_persistence import ServerProcess


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--coap-port", "99999"], "--coap-port: coap_port: port 99999 is out of range"),
        (["serve", "--log-level", "chatty"], "log_level: 'chatty' is not one of"),
    ],
)
def test_bad_flags_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("coap_port: 5683\nqueue:\n  max_per_clent: 3\n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "queue.max_per_clent" in err and "unknown key" in err


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-such-flag"]) == 2
    assert main(["--help"]) == 0
    assert "serve" in capsys.readouterr().out


def test_process_logs_reloads_and_stops(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    process = ServerProcess(tmp_path, tmp_path / "server.log")
    process.env["LWM2M_SERVER_MODELS_DIRS"] = str(models)
    process.start()
    try:
        log = process.log_file.read_text()
        assert f"CoAP listening on udp 127.0.0.1:{process.coap_port}" in log
        assert f"HTTP API on http://127.0.0.1:{process.http_port}" in log
        assert "open registration is on" in log
        assert process.proc is not None
        process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "object models reloaded" not in process.log_file.read_text():
            assert time.monotonic() < deadline, process.log_file.read_text()
            time.sleep(0.05)
    finally:
        assert process.stop() == 0
    assert "stopped" in process.log_file.read_text()

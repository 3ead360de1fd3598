"""Every command-line tool stops quietly when the reader of its output goes away
(``lwm2m-models list | head -1``): no BrokenPipeError traceback on stderr, exit status 0.

The tools run as real processes from the installed console scripts. Two ways to break the pipe:
a real shell pipeline into ``head -1`` (what users type), and a pipe whose read end is closed
before the tool starts, so that its very first write fails whatever the timing (a pipeline
only breaks if the tool still writes after ``head`` has exited)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():  # pragma: no cover - installed without console scripts
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed")
        return found
    return str(path)


class FakeApi(BaseHTTPRequestHandler):
    """Answers every GET with a long JSON list: what the operator commands (``lwm2m-server
    clients``, ``lwm2m-bootstrap configs list``) print with ``--json``."""

    BODY = json.dumps([{"endpoint": f"dev-{i}", "lifetime": 300} for i in range(3000)]).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def commands(tmp: Path, api: str = "") -> dict[str, list[str]]:
    return {
        "models-list": [tool("lwm2m-models"), "list"],
        "server-clients": [tool("lwm2m-server"), "clients", "--json", "--api", api],
        "bootstrap-configs": [tool("lwm2m-bootstrap"), "configs", "list", "--json", "--api", api],
        "keystore-device-list": [tool("lwm2m-keystore"), "--data-dir", str(tmp), "device", "list"],
        "keystore-help": [tool("lwm2m-keystore"), "--help"],
        "server-help": [tool("lwm2m-server"), "--help"],
        "bootstrap-help": [tool("lwm2m-bootstrap"), "--help"],
        "client-help": [tool("lwm2m-client"), "--help"],
    }


NAMES = list(commands(Path("/nonexistent")))


def assert_quiet(result: subprocess.CompletedProcess[bytes]) -> None:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert result.returncode == 0, err


@pytest.mark.parametrize("name", NAMES)
def test_reader_gone_before_the_first_write(name: str, tmp_path: Path, api: str) -> None:
    argv = commands(tmp_path, api)[name]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(write_end)
    assert_quiet(result)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for pipefail")
def test_models_list_piped_to_head(tmp_path: Path) -> None:
    """The pipeline a user types; ``pipefail`` makes the tool's own exit status count."""
    line = f"{tool('lwm2m-models')} list | head -1"
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {line}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert_quiet(result)
    assert len(result.stdout.splitlines()) == 1

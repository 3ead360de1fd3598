"""A listener port already taken: both servers exit 1 with a line naming the listener and the
port that is taken, not always the CoAP one (issue 11, item 7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def taken() -> Iterator[int]:
    """A UDP port held by someone else for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(module: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWM2M_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            "--data-dir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            *flags,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["lwm2m_server", "bootstrap_server"])
@pytest.mark.parametrize("listener", ["CoAP", "CoAPs"])
def test_the_taken_port_is_named(tmp_path: Path, taken: int, module: str, listener: str) -> None:
    # the other listener on a fixed free port too: it was bound, then closed by the failed start,
    # and must not be named
    coap, coaps = (
        (str(taken), str(free_port())) if listener == "CoAP" else (str(free_port()), str(taken))
    )
    done = run(module, tmp_path, "--coap-port", coap, "--coaps-port", coaps)
    assert done.returncode == 1, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "cannot listen" in x]
    assert line.endswith(
        f"cannot listen on {listener} udp 127.0.0.1:{taken}: Address already in use"
    ), line
    assert "Traceback" not in done.stderr

"""``lwm2m-server`` with a bad file in its models folder (issue 11, item 3): it starts, serves,
and says in one log line which file was refused and why; a SIGHUP reload that meets a bad file
names it, keeps the previous models and keeps serving. The server runs as a real process
(``python -m lwm2m_server``), as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from lwm2m_client.client import Lwm2mClient
from tests.auth import HEADERS, SERVER_ENV

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "unit" / "models" / "vectors"


class Process:
    def __init__(self, tmp_path: Path, models: Path) -> None:
        self.log_file = tmp_path / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LWM2M_SERVER_")}
        env["PYTHONPATH"] = str(REPO)
        env.update(SERVER_ENV)
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lwm2m_server", "--data-dir", str(tmp_path / "data"),
                 "--host", "127.0.0.1", "--coap-port", "0", "--coaps-port", "0",
                 "--http-port", "0", "--models-dir", str(models), "--log-level", "INFO"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            )  # fmt: skip
        self.coap_port = 0
        self.http_port = 0

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    async def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first match of ``pattern`` in the log, once it is there (the process must not
        have exited meanwhile)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            match = re.search(pattern, self.log)
            if match:
                return match
            assert self.proc.poll() is None, f"the server exited:\n{self.log}"
            assert asyncio.get_running_loop().time() < deadline, f"no {pattern!r} in:\n{self.log}"
            await asyncio.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A user folder with one good DDF (object 33034) and one JSON model whose id has 5,000
    digits (it used to stop the server with a ValueError traceback)."""
    folder = tmp_path / "models"
    folder.mkdir()
    seed = (VECTORS / "seeds" / "3303.xml").read_bytes()
    (folder / "good.xml").write_bytes(
        seed.replace(b"<ObjectID>3303</ObjectID>", b"<ObjectID>33034</ObjectID>")
    )
    shutil.copy(VECTORS / "json-object-id-5000-digits.json", folder / "huge-id.json")
    return folder


@pytest.fixture
def process(tmp_path: Path, models: Path) -> Iterator[Process]:
    proc = Process(tmp_path, models)
    yield proc
    proc.stop()


async def clients(http: aiohttp.ClientSession, process: Process) -> list[str]:
    async with http.get(f"http://127.0.0.1:{process.http_port}/api/clients") as response:
        assert response.status == 200
        return [c["endpoint"] for c in await response.json()]


async def test_bad_model_file_is_skipped_named_and_the_server_serves(
    process: Process, models: Path
) -> None:
    process.coap_port = int((await process.wait_for_log(r"CoAP listening on udp \S+:(\d+)"))[1])
    process.http_port = int((await process.wait_for_log(r"HTTP API on http://[^:]+:(\d+)"))[1])
    bad = str(models / "huge-id.json")
    lines = [line for line in process.log.splitlines() if bad in line]
    assert len(lines) == 1, process.log  # one line per bad file
    assert "ERROR" in lines[0] and f"{bad}:5: objects[0].id: an integer of 5000 digits" in lines[0]
    assert "Traceback" not in process.log and "good.xml" not in process.log

    client = Lwm2mClient("after-bad-model", f"coap://127.0.0.1:{process.coap_port}",
                         auto_update=False)  # fmt: skip
    await client.start()
    try:
        await client.register()
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout, headers=HEADERS) as http:
            assert await clients(http, process) == ["after-bad-model"]

            # SIGHUP with a second bad file: both named, previous models kept, still serving
            shutil.copy(VECTORS / "ddf-unknown-encoding.xml", models / "klingon.xml")
            process.proc.send_signal(signal.SIGHUP)
            await process.wait_for_log(r"object models not reloaded \(2 problems above\)")
            log = process.log
            assert re.search(
                rf"model reload: {re.escape(str(models / 'klingon.xml'))}:1: xml@encoding: "
                r"the XML declaration names encoding 'x-klingon'", log
            ), log  # fmt: skip
            assert f"model reload: {bad}:5: objects[0].id" in log
            assert "Traceback" not in log
            assert await clients(http, process) == ["after-bad-model"]

            # the operator removes both: the next SIGHUP loads what is there
            (models / "klingon.xml").unlink()
            (models / "huge-id.json").unlink()
            process.proc.send_signal(signal.SIGHUP)
            await process.wait_for_log(r"object models reloaded from")
            await client.update()
            assert await clients(http, process) == ["after-bad-model"]
    finally:
        await client.stop()
    assert process.stop() == 0
    assert "Traceback" not in process.log

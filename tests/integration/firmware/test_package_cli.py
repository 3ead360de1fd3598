"""``lwm2m-server packages …`` against a real server's HTTP API (the operator's view)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from lwm2m_server import operator_cli
from tests.auth import token_env

from .conftest import Running


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with token_env():
        code = await asyncio.to_thread(operator_cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_add_list_show_delete(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "fw-1.2.bin"
    image.write_bytes(b"\x7fELF" + bytes(5000))
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    api = ("--api", running.http)
    code, out, err = await _run(
        capsys, "packages", "add", str(image), "--type", "firmware", "--name", "tracker",
        "--version", "1.2", "--profile", "trackers", *api,
    )  # fmt: skip
    assert code == 0, err
    assert f"added: {sha}" in out and "profile:  trackers" in out
    code, out, _ = await _run(
        capsys, "packages", "add", str(image), "--type", "software", "--name", "x",
        "--version", "9", *api,
    )  # fmt: skip
    assert code == 0 and "already there (same bytes)" in out
    code, out, _ = await _run(capsys, "packages", "list", *api)
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["ID", "KIND", "NAME", "VERSION"]
    assert row.split()[:4] == [sha[:12], "firmware", "tracker", "1.2"]
    code, out, _ = await _run(capsys, "packages", "show", sha[:12], "--json", *api)
    assert code == 0 and json.loads(out)["size"] == 5004
    assert running.server.packages is not None
    running.server.packages.add_in_use(lambda pid: "campaign spring-rollout")
    code, _, err = await _run(capsys, "packages", "delete", sha[:8], *api)
    assert code == 1 and "campaign spring-rollout" in err and "409" in err


async def test_usage_errors(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = ("--api", running.http)
    code, _, err = await _run(
        capsys, "packages", "add", str(tmp_path / "missing.bin"), "--type", "firmware",
        "--name", "a", "--version", "1", *api,
    )  # fmt: skip
    assert code == 2 and "cannot read" in err
    code, _, _ = await _run(capsys, "packages", "add", "x", "--type", "bios", *api)
    assert code == 2
    code, _, err = await _run(capsys, "packages", "show", "ab" * 32, *api)
    assert code == 1 and "404" in err

"""``lwm2m-server campaigns …`` against the live campaign API (the CLI is synchronous: it runs
in a worker thread while the event loop serves it)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from lwm2m_server import operator_cli
from lwm2m_server.firmware.campaign_cli import progress_line
from lwm2m_server.firmware.contracts import JobState

from .test_campaigns import PACKAGE, FakeUpdates, until


class Cli:
    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(operator_cli.main, [*argv, "--api", self.url])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(campaign_server: TestServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(str(campaign_server.make_url("")).rstrip("/"), capsys)


async def test_create_list_show_pause_resume_cancel(cli: Cli, updates: FakeUpdates) -> None:
    code, out, err = await cli(
        "campaigns", "create", "--match", "meter-1*", "--package", PACKAGE,
        "--max-concurrent", "2", "--rate", "600", "--failure-threshold", "0.3", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    cid = created["id"]
    assert created["total"] == 10 and created["ratePerMinute"] == 600
    await until(lambda: len(updates.running()) == 2)
    code, out, _ = await cli("campaigns", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert out.splitlines()[1].split()[:3] == [cid, "-", "running"]
    updates.finish("meter-10", JobState.FAILED, result=8)
    code, out, _ = await cli("campaigns", "show", cid, "--status", "failed")
    assert code == 0
    assert out.splitlines()[0].startswith(f"{cid} running")
    assert out.splitlines()[2].split()[:4] == ["meter-10", "failed", "failed", "8"]
    code, out, _ = await cli("campaigns", "pause", cid)
    assert code == 0 and f"{cid} paused" in out
    code, out, _ = await cli("campaigns", "resume", cid)
    assert code == 0 and f"{cid} running" in out
    code, out, _ = await cli("campaigns", "cancel", cid)
    assert code == 0 and f"{cid} cancelled" in out
    code, _, err = await cli("campaigns", "resume", cid)
    assert code == 1 and "is cancelled" in err and "HTTP 409" in err


async def test_create_needs_one_target(cli: Cli) -> None:
    code, _, err = await cli("campaigns", "create", "--package", PACKAGE)
    assert code == 2 and "one target" in err
    code, _, err = await cli("campaigns", "create", "--profile", "ghost")
    assert code == 1 and "no profile 'ghost'" in err


async def test_watch_prints_progress_until_the_end(cli: Cli, updates: FakeUpdates) -> None:
    """Not a terminal (captured): one plain line per change, exit 0 once completed."""
    code, out, _ = await cli(
        "campaigns", "create", "--endpoints", "meter-01,meter-02", "--package", PACKAGE, "--json"
    )
    cid = json.loads(out)["id"]
    watch = asyncio.create_task(cli("campaigns", "watch", cid, "--interval", "0.05"))
    await until(lambda: len(updates.running()) == 2)
    updates.finish("meter-01", JobState.SUCCEEDED)
    updates.finish("meter-02", JobState.SUCCEEDED)
    code, out, _ = await watch
    assert code == 0
    lines = out.splitlines()
    assert lines[-1].startswith(f"{cid} completed") and "2/2" in lines[-1]
    assert len(lines) == len(set(lines))  # a line per change, not per poll


async def test_watch_of_an_aborted_campaign_exits_1_with_the_reason(
    cli: Cli, updates: FakeUpdates
) -> None:
    code, out, _ = await cli(
        "campaigns", "create", "--endpoints", "meter-01,meter-02,meter-03", "--package",
        PACKAGE, "--failure-threshold", "0.4", "--min-sample", "2", "--max-concurrent", "2",
        "--json",
    )  # fmt: skip
    cid = json.loads(out)["id"]
    await until(lambda: len(updates.running()) == 2)
    updates.finish("meter-01", JobState.FAILED)
    updates.finish("meter-02", JobState.SUCCEEDED)
    code, out, _ = await cli("campaigns", "watch", cid)
    assert code == 1
    assert "aborted: failure ratio 50%" in out


def test_progress_line_redraws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    campaign: dict[str, Any] = {
        "id": "c-1",
        "state": "running",
        "total": 4,
        "counts": {"succeeded": 1, "failed": 1, "running": 1, "pending": 1, "cancelled": 0},
    }
    line = progress_line(campaign, width=8)
    assert line == (
        "c-1 running   [####....] 2/4  ok 1  failed 1  running 1  pending 1  cancelled 0"
    )

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from lwm2m_server.firmware import campaign_cli

    out = Tty()
    monkeypatch.setattr(campaign_cli, "_out", lambda: out)
    answers = iter([{**campaign}, {**campaign, "state": "completed"}])

    class Api:
        def call(self, *args: Any, **kw: Any) -> tuple[int, Any]:
            return 200, next(answers)

    monkeypatch.setattr(campaign_cli, "_api", lambda args: Api())
    monkeypatch.setattr(campaign_cli.time, "sleep", lambda s: None)
    args = operator_cli.argparse.Namespace(id="c-1", interval=0.05, json=False)
    assert campaign_cli.cmd_watch(args) == 0
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 2 and text.endswith("\n")
    assert text.count("\n") == 1  # one line redrawn in place


def test_events_show_a_campaign_as_its_progress_line() -> None:
    data = {
        "ep": "",
        "event": "state",
        "id": "c-1",
        "state": "aborted",
        "reason": "failure ratio 50%",
        "total": 2,
        "counts": {"succeeded": 1, "failed": 1, "running": 0, "pending": 0, "cancelled": 0},
    }
    line = operator_cli._event_summary("CAMPAIGN", data)
    assert line.startswith("state: c-1 aborted ") and line.endswith("(failure ratio 50%)")

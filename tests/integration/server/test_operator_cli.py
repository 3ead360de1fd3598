"""The operator CLI (``lwm2m-server read …``) against a real server, its HTTP API and a real
device: values a device may legitimately report must print, never crash the command."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer

from lwm2m_server import operator_cli
from lwm2m_server.api import create_app
from lwm2m_server.service import Lwm2mServer

from .conftest import ClientFactory

FAR_FUTURE = 2**62
"""A Time no ``datetime`` can hold (a device with a broken RTC, or a test value)."""


async def test_read_of_a_time_outside_the_calendar_prints_the_number(
    server: Lwm2mServer, make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await make_client("far-clock", lwm2m_version="1.1")
    client.set_value("/3/0/13", FAR_FUTURE)
    app = create_app(server, registry=server.registry, keepalive=0.5)
    async with TestServer(app) as web:
        url = str(web.make_url("")).rstrip("/")
        capsys.readouterr()
        single = await asyncio.to_thread(
            operator_cli.main, ["read", "far-clock", "/3/0/13", "--api", url]
        )
        single_out = capsys.readouterr().out
        tree = await asyncio.to_thread(
            operator_cli.main, ["read", "far-clock", "/3/0", "--api", url]
        )
        tree_out, tree_err = capsys.readouterr()
    assert single == 0, single_out
    assert f"{FAR_FUTURE} (seconds since 1970, outside the calendar range)" in single_out
    assert tree == 0 and "Traceback" not in tree_err
    current_time = next(line for line in tree_out.splitlines() if "Current Time" in line)
    assert str(FAR_FUTURE) in current_time

"""The real ``lwm2m-server`` process: SIGHUP re-reads the profiles folder (with the models)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import yaml

from tests.auth import HEADERS
from tests.integration.server.test_persistence import ServerProcess

from .conftest import TEMPERATURE_PROFILE


async def test_sighup_reloads_profile_files(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    process = ServerProcess(tmp_path, tmp_path / "server.log")
    process.env["LWM2M_SERVER_PROFILES_DIR"] = str(folder)
    process.start()
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:

            async def names() -> list[str]:
                async with http.get(f"{process.api}/profiles") as response:
                    assert response.status == 200
                    return [p["name"] for p in (await response.json())["profiles"]]

            assert await names() == ["default"]
            (folder / "t.yaml").write_text(yaml.safe_dump(TEMPERATURE_PROFILE))
            assert process.proc is not None
            process.proc.send_signal(signal.SIGHUP)
            for _ in range(250):
                if "temperature-sensor" in await names():
                    break
                await asyncio.sleep(0.02)
            assert await names() == ["default", "temperature-sensor"]
    finally:
        assert process.stop() == 0

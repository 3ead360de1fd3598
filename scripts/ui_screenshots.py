"""Screenshots of the web UI's main pages for the docs (docs/ui/*.png, shown in the README).

Starts a real server (in-process, free ports, a throw-away data folder), registers a few demo
devices (``lwm2m_client``), logs in with headless Chromium (Debian's ``chromium`` through
Playwright, as the browser tests do) and captures the clients list, a client page with live
values and a telemetry chart, and the events log:

    .venv/bin/python scripts/ui_screenshots.py [--out docs/ui]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright, expect

from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import QueueSettings, ServerConfig
from lwm2m_server.service import Lwm2mServer

TOKEN = "screenshot-admin-token-0123456789abcdef"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


async def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        config = ServerConfig(
            host="127.0.0.1",
            coap_port=0,
            coaps_port=0,
            http_port=0,
            data_dir=Path(data),
            api_auth=ApiAuthSettings(admin_token=TOKEN),
            queue=QueueSettings(awake_time=1.0),
        )
        server = Lwm2mServer(config)
        await server.start()
        runner = web.AppRunner(create_server_app(server))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}/"
        uri = f"coap://127.0.0.1:{server.coap_address.port}"
        devices = [
            Lwm2mClient("boiler-room-1", uri, auto_update=False, lwm2m_version="1.1"),
            Lwm2mClient("meter-0042", uri, auto_update=False, lwm2m_version="1.2"),
            Lwm2mClient("tracker-7", uri, auto_update=False, queue_mode=True),
        ]
        try:
            for device in devices:
                await device.start()
                await device.register()
            await shoot(base, devices[0], out)
        finally:
            for device in devices:
                with contextlib.suppress(Exception):
                    await device.stop()
            await runner.cleanup()
            await server.stop()


async def shoot(base: str, device: Lwm2mClient, out: Path) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 1000})
        await page.goto(base)
        await page.fill("#token", TOKEN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#live")).to_have_text("live")
        await expect(page.locator('#clients-body tr[data-ep="tracker-7"] .presence')).to_have_text(
            "sleeping", timeout=10_000
        )
        await page.screenshot(path=str(out / "clients.png"))

        await page.click("text=boiler-room-1")
        sensor = page.locator('details[data-object="3303"]')
        await sensor.locator("summary").click()
        await sensor.locator('button[data-op=Observe][data-path="/3303/0/5700"]').click()
        await expect(sensor.locator('td.value[data-path="/3303/0/5700"]')).to_have_text("21.5")
        for value in (21.9, 22.4, 22.1, 23.3, 23.6, 23.2, 24.1):
            device.set_value("/3303/0/5700", value)
            await expect(sensor.locator('td.value[data-path="/3303/0/5700"]')).to_have_text(
                str(value)
            )
        await page.locator('details[data-object="3"] summary').click()
        await page.locator('button[data-op=Read][data-path="/3/0"]').click()
        await expect(page.locator('td.value[data-path="/3/0/0"]')).to_have_text("pylwm2m")
        await page.wait_for_timeout(1200)  # let the "new value" highlight fade for the picture
        await page.screenshot(path=str(out / "client.png"))
        await page.click("text=Events")
        await page.screenshot(path=str(out / "events.png"))
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/ui"))
    asyncio.run(run(parser.parse_args().out))


if __name__ == "__main__":
    main()

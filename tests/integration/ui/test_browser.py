"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright): log in
with a token, see a real ``lwm2m_client`` device in the clients list, open its page, read a
resource, write one (the device's value changes), observe one and see a notification's value
appear on the page; then log out.

Skipped only when ``/usr/bin/chromium`` (or the ``playwright`` package) is missing; CI installs
both (``scripts/test.sh``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN
from tests.live import Http

from .conftest import ClientFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 10_000

async_playwright: Any
try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None

pytestmark = [
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(async_playwright is None, reason="the playwright package is not installed"),
]


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            tab = await context.new_page()
            tab.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on(
                "console",
                lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else 0,
            )
            yield tab
            # no uncaught JavaScript error, and nothing the page's own CSP had to block
            assert errors == [], errors
        finally:
            await browser.close()


def base(http: Http) -> str:
    return str(http.make_url("/"))


async def log_in(page: Any, http: Http) -> None:
    await page.goto(base(http))
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#who")).to_have_text("config-admin (admin)")
    await expect(page.locator("#live")).to_have_text("live")  # the event stream is open


async def test_read_write_observe_in_the_browser(
    server: Lwm2mServer, http: Http, make_device: ClientFactory, page: Any
) -> None:
    await page.goto(base(http))
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token", "not-a-token-" * 3)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("Unknown token.")
    await log_in(page, http)
    # the cookie is HttpOnly: the page's scripts cannot read it
    assert await page.evaluate("document.cookie") == ""

    device = await make_device("ui-dev")
    row = page.locator('#clients-body tr[data-ep="ui-dev"]')  # arrives by the event stream
    await expect(row).to_contain_text("registered")
    await expect(row).to_contain_text("none (NoSec)")
    await row.locator("a").click()
    await expect(page.locator("#client-info")).to_contain_text("1.1, binding U")

    # the object tree from the models: names, units, types
    device_object = page.locator('details[data-object="3"]')
    await device_object.locator("summary").click()
    battery = device_object.locator('tr[data-path="/3/0/9"]')
    await expect(battery).to_contain_text("Battery Level")
    await expect(battery).to_contain_text("/100")
    await expect(battery).to_contain_text("INTEGER")

    # Read
    await device_object.locator('tr[data-path="/3/0/0"] button[data-op=Read]').click()
    await expect(device_object.locator('td.value[data-path="/3/0/0"]')).to_have_text("pylwm2m")

    # Write: the device's value changes
    await device_object.locator('tr[data-path="/3/0/14"] button[data-op=Write]').click()
    await device_object.locator(".write-input").fill("+03:00")
    await device_object.locator(".write-form button[type=submit]").click()
    await expect(page.locator("#result")).to_contain_text('"status": "CHANGED"')
    assert device.get_value("/3/0/14") == "+03:00"

    # Observe: a new value on the device shows up on the page by itself
    sensor = page.locator('details[data-object="3303"]')
    await sensor.locator("summary").click()
    await sensor.locator('tr[data-path="/3303/0/5700"] button[data-op=Observe]').click()
    cell = sensor.locator('td.value[data-path="/3303/0/5700"]')
    await expect(cell).to_have_text("21.5")
    await expect(sensor.locator('button[data-op=Observe][data-path="/3303/0/5700"]')).to_have_text(
        "Cancel obs"
    )
    device.set_value("/3303/0/5700", 42.25)
    await expect(cell).to_have_text("42.25")
    await expect(page.locator("#event-log")).to_contain_text("/3303/0/5700 = 42.25")
    await expect(page.locator("#chart-key")).to_have_value("sensorValue")
    # an Update refreshes the registration details but keeps the tree as the user left it
    await sensor.evaluate("el => { el.dataset.mark = 'kept'; }")
    await device.update()
    await expect(page.locator("#event-log")).to_contain_text("UPDATED ui-dev")

    # Execute, Write-Attributes (their arguments are asked for in a dialog) and Discover
    page.once("dialog", lambda dialog: dialog.accept(""))
    await sensor.locator('button[data-op=Execute][data-path="/3303/0/5605"]').click()
    await expect(page.locator("#result")).to_contain_text("Execute /3303/0/5605")
    await expect(page.locator("#result")).to_contain_text('"status": "CHANGED"')
    page.once("dialog", lambda dialog: dialog.accept("pmin=2&pmax=30"))
    await sensor.locator('button[data-op=Attributes][data-path="/3303/0/5700"]').click()
    await expect(page.locator("#result")).to_contain_text("Attributes /3303/0/5700")
    await expect(page.locator("#result")).to_contain_text('"status": "CHANGED"')
    await sensor.locator('button[data-op=Discover][data-path="/3303/0/5700"]').click()
    await expect(page.locator("#result")).to_contain_text('"pmin": "2"')

    # Read-Composite
    await page.fill("#composite-paths", "/3/0/14,/3303/0/5700")
    await page.click("#composite-form button[type=submit]")
    await expect(page.locator("#result")).to_contain_text('"/3/0/14"')
    await expect(page.locator('details[data-object="3303"][data-mark="kept"][open]')).to_have_count(
        1
    )  # (after the composite's device round trip: a rebuild would have happened by now)
    await expect(cell).to_have_text("42.25")

    # logout ends the session server-side
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert (await page.request.get(base(http) + "api/clients")).status == 401


async def test_live_state_of_a_queue_mode_client(
    http: Http, make_device: ClientFactory, page: Any
) -> None:
    await log_in(page, http)
    device = await make_device("ui-sleepy", queue_mode=True)
    row = page.locator('#clients-body tr[data-ep="ui-sleepy"]')
    await expect(row).to_contain_text("U (Q)")
    # the server's awake window (0.5 s here) ends: SLEEPING on the stream, shown in the list
    await expect(row.locator(".presence")).to_have_text("sleeping")
    await device.update()
    await page.click("text=Events")
    log = page.locator("#event-log")
    await expect(log).to_contain_text("UPDATED ui-sleepy")
    await expect(log).to_contain_text("SLEEPING ui-sleepy")
    await page.click("text=Profiles")
    await expect(page.locator("#profiles")).to_be_visible()
    await page.click("text=Bootstrap")  # this server is pointed at no bootstrap server
    await expect(page.locator("#view")).to_contain_text("No bootstrap server is configured")


async def test_a_client_that_registers_while_the_list_loads_stays_listed(
    http: Http, make_device: ClientFactory, page: Any
) -> None:
    """The list page subscribes to the event stream, then loads ``/api/clients``; a device that
    registers after the server answered the list and before the page got the answer arrives
    by the stream only, and must not vanish when the (older) list lands."""
    await log_in(page, http)
    await make_device("ui-early")
    await expect(page.locator('#clients-body tr[data-ep="ui-early"]')).to_be_visible()
    fetched, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Any) -> None:
        response = await route.fetch()  # the list as the server has it now: no ui-late
        clients = await response.json()
        # a marker row that only this (held) answer carries: once it shows, the load is done
        clients.append({**clients[0], "endpoint": "ui-marker", "registrationId": "marker"})
        fetched.set()
        await release.wait()
        await route.fulfill(response=response, json=clients)

    await page.route("**/api/clients?limit=1000*", hold)
    await page.click("text=Events")
    await page.click("text=Clients")  # the list page loads the list again: held above
    await fetched.wait()
    await make_device("ui-late")
    late = page.locator('#clients-body tr[data-ep="ui-late"]')
    await expect(late).to_be_visible()  # by the stream, drawn from what the page knew
    release.set()
    await expect(page.locator('#clients-body tr[data-ep="ui-marker"]')).to_be_visible()
    await expect(late).to_contain_text("registered")
    await page.unroute("**/api/clients?limit=1000*")

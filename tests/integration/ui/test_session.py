"""Browser sessions over real HTTP (``lwm2m_runtime.http_auth``): a token swapped for an HttpOnly,
SameSite=Strict cookie that authenticates like the token (event stream included); changes made
with the cookie need the CSRF header; logout and revocation end the session; the UI's files
and ``GET /api/models`` are served."""

from __future__ import annotations

import asyncio

from aiohttp import ClientResponse, CookieJar
from aiohttp.test_utils import TestClient

from keystore.api_tokens import ApiToken, Role, SqliteApiTokenStore, digest
from lwm2m_runtime.http_auth import SESSION_COOKIE
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS
from tests.live import Http, api_of

from .conftest import ClientFactory

CSRF = {"X-Requested-With": "test"}
READ_TOKEN = "read-only-token-for-the-ui-tests-01234"


async def login(http: Http, token: str = ADMIN_TOKEN) -> ClientResponse:
    return await http.post("/api/session", headers={"Authorization": f"Bearer {token}", **CSRF})


async def test_login_sets_a_strict_httponly_cookie_that_authenticates(http: Http) -> None:
    assert (await http.get("/api/clients")).status == 401
    answer = await login(http)
    assert answer.status == 200, await answer.text()
    assert await answer.json() == {"name": "config-admin", "role": "admin", "auth": True}
    cookie = answer.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert ADMIN_TOKEN not in cookie.value  # an opaque id, not the token
    # the cookie jar now sends it: no Authorization header from here on
    assert (await http.get("/api/clients")).status == 200
    me = await http.get("/api/session")
    assert (await me.json())["name"] == "config-admin"


async def test_login_refuses_unknown_tokens_and_wants_the_csrf_header(http: Http) -> None:
    assert (await http.post("/api/session")).status == 401
    unknown = await http.post("/api/session", headers={"Authorization": "Bearer x" * 30, **CSRF})
    assert unknown.status == 401
    no_csrf = await http.post("/api/session", headers=HEADERS)
    assert no_csrf.status == 403
    assert "X-Requested-With" in (await no_csrf.json())["error"]
    assert SESSION_COOKIE not in no_csrf.cookies
    assert (await http.get("/api/clients")).status == 401


async def test_cookie_changes_need_the_csrf_header(http: Http, make_device: ClientFactory) -> None:
    device = await make_device("ui-csrf")
    await login(http)
    url = "/api/clients/ui-csrf/3/0/14"
    forged = await http.put(url, json="+05:00")  # what a cross-site form could send
    assert forged.status == 403
    assert device.get_value("/3/0/14") != "+05:00"
    allowed = await http.put(url, json="+05:00", headers=CSRF)
    assert allowed.status == 200, await allowed.text()
    assert device.get_value("/3/0/14") == "+05:00"
    audit = await (await http.get("/api/audit?limit=2")).json()
    assert [(e["principal"], e["status"]) for e in audit] == [
        ("config-admin", 200),
        ("config-admin", 403),
    ]


async def test_a_read_token_session_reads_but_cannot_write(
    server: Lwm2mServer, http: Http, make_device: ClientFactory
) -> None:
    SqliteApiTokenStore(server.store).put_token(ApiToken("viewer", Role.READ, digest(READ_TOKEN)))
    await make_device("ui-read")
    answer = await login(http, READ_TOKEN)
    assert (await answer.json())["role"] == "read"
    assert (await http.get("/api/clients/ui-read")).status == 200
    write = await http.put("/api/clients/ui-read/3/0/14", json="+01:00", headers=CSRF)
    assert write.status == 403


async def test_logout_and_revocation_end_the_session(server: Lwm2mServer, http: Http) -> None:
    tokens = SqliteApiTokenStore(server.store)
    tokens.put_token(ApiToken("viewer", Role.READ, digest(READ_TOKEN)))
    await login(http, READ_TOKEN)
    assert (await http.get("/api/clients")).status == 200
    tokens.remove_token("viewer")
    assert (await http.get("/api/clients")).status == 401  # revoked: the session too

    tokens.put_token(ApiToken("viewer", Role.READ, digest(READ_TOKEN)))
    session = await login(http, READ_TOKEN)
    stolen = {SESSION_COOKIE: session.cookies[SESSION_COOKIE].value}
    assert (await http.delete("/api/session")).status == 403  # logout wants the header too
    out = await http.delete("/api/session", headers=CSRF)
    assert out.status == 200
    assert (await http.get("/api/clients")).status == 401
    # a copy of the cookie taken before the logout is dead as well
    async with TestClient(http.server, cookie_jar=CookieJar(unsafe=True)) as other:
        assert (await other.get("/api/clients", cookies=stolen)).status == 401


async def test_the_event_stream_accepts_the_cookie(http: Http, make_device: ClientFactory) -> None:
    await login(http)
    stream = await http.get("/api/event")
    assert stream.status == 200
    assert await stream.content.readline() == b": stream open\n"
    await make_device("ui-sse")

    async def registration() -> str:
        while True:
            line = (await stream.content.readline()).decode()
            if line.startswith("event: "):
                return line.strip()

    assert await asyncio.wait_for(registration(), 5) == "event: REGISTRATION"
    stream.close()


async def test_the_page_and_its_assets_are_served_without_a_token(http: Http) -> None:
    page = await http.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert 'src="/ui/app.js"' in await page.text()
    script = await http.get("/ui/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert (await http.get("/ui/style.css")).content_type == "text/css"
    assert (await http.get("/ui/nothing.js")).status == 404
    assert (await http.get("/ui/..%2fapi%2fapp.py")).status == 404


async def test_models_of_a_client(http: Http, make_device: ClientFactory) -> None:
    await make_device("ui-models")
    assert (await http.get("/api/models?ep=ui-models")).status == 401
    answer = await http.get("/api/models?ep=ui-models", headers=HEADERS)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    objects = {o["id"]: o for o in body["objects"]}
    assert {3, 3303} <= objects.keys()
    temperature = {r["id"]: r for r in objects[3303]["resources"]}[5700]
    assert temperature["name"] == "Sensor Value"
    assert temperature["type"] == "FLOAT" and temperature["operations"] == "R"
    units = {r["id"]: r for r in objects[3]["resources"]}[9]["units"]
    assert units == "/100"  # the registry's text for percent
    by_ids = await (await http.get("/api/models?ids=3303,65000", headers=HEADERS)).json()
    assert [o["id"] for o in by_ids["objects"]] == [3303] and by_ids["unknown"] == [65000]
    assert (await http.get("/api/models?ep=nobody", headers=HEADERS)).status == 404
    assert (await http.get("/api/models", headers=HEADERS)).status == 400
    assert (await http.get("/api/models?ids=x", headers=HEADERS)).status == 400


async def test_with_authentication_off_the_page_needs_no_login(server: Lwm2mServer) -> None:
    """``api_auth.enabled: false`` (a local development setup): the UI asks ``GET /api/session``
    and is told there is nothing to log in to."""
    async with api_of(server) as open_http:
        me = await open_http.get("/api/session")
        assert await me.json() == {"name": "anonymous", "role": "admin", "auth": False}
        login = await open_http.post("/api/session", headers=CSRF)
        assert login.status == 200 and SESSION_COOKIE not in login.cookies
        assert (await open_http.get("/")).status == 200


async def test_the_cookie_is_secure_behind_a_tls_proxy(http: Http) -> None:
    plain = await login(http)
    assert not plain.cookies[SESSION_COOKIE]["secure"]
    proxied = await http.post(
        "/api/session",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Forwarded-Proto": "https", **CSRF},
    )
    assert proxied.cookies[SESSION_COOKIE]["secure"] is True

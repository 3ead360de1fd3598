"""The bootstrap server's provisioning state and sessions, read through the LwM2M server's API
(``GET /api/bootstrap/devices``, ``/sessions``, ``/sessions/active``, ``/configs``): the web UI
and an operator see both servers from one origin and one login.

The bootstrap server is a separate process with its own API (8081 by default), so these routes
forward the GET to ``bootstrap_api.url`` and return its answer unchanged. They only read: changes
stay on the bootstrap server's own API (and its audit log). The LwM2M server authenticates to it
with ``bootstrap_api.token``, or, when none is configured, with a read token named
``lwm2m-server-view`` it puts in the keystore the two servers share at start (a new secret each
start, kept in memory only) — so pointing ``bootstrap_api.url`` at a bootstrap server on the same
data folder is all the configuration needed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import attrs
from aiohttp import web

from keystore.api_tokens import ApiToken, ApiTokenStore, Role, digest, new_secret
from lwm2m_runtime.http_errors import error_response

from ..config import BootstrapApiSettings

log = logging.getLogger(__name__)

VIEW_TOKEN_NAME = "lwm2m-server-view"
ROUTES = ("devices", "sessions", "sessions/active", "configs")
"""What may be read through (the bootstrap API's GET routes that list things)."""
TIMEOUT = 10.0


@attrs.define
class BootstrapView:
    url: str
    token: str
    session: aiohttp.ClientSession | None = None


VIEW = web.AppKey("bootstrap_view", BootstrapView)


def view_token(settings: BootstrapApiSettings, tokens: ApiTokenStore | None) -> str:
    """The token to send: the configured one, else a fresh read token in the shared keystore
    (replacing the previous start's, so at most one such token exists)."""
    if settings.token or tokens is None:
        return settings.token
    secret = new_secret()
    tokens.put_token(ApiToken(VIEW_TOKEN_NAME, Role.READ, digest(secret)))
    return secret


def add_bootstrap_view(app: web.Application, view: BootstrapView) -> None:
    app[VIEW] = view
    app.cleanup_ctx.append(_client_session)
    for route in ROUTES:
        app.router.add_route("GET", f"/api/bootstrap/{route}", forward)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    view = app[VIEW]
    view.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
    yield
    await view.session.close()


async def forward(request: web.Request) -> web.StreamResponse:
    view = request.app[VIEW]
    if not view.url or view.session is None:
        return error_response(
            404,
            {
                "error": "no bootstrap server is configured (bootstrap_api.url)",
                "code": "4.04",
            },
        )
    target = view.url.rstrip("/") + request.path
    headers = {"Accept": "application/json"}
    if view.token:
        headers["Authorization"] = f"Bearer {view.token}"
    try:
        async with view.session.get(target, params=request.query, headers=headers) as answer:
            body = await answer.read()
            kind = answer.headers.get("Content-Type", "application/json")
            return web.Response(status=answer.status, body=body, headers={"Content-Type": kind})
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("bootstrap API %s unreachable: %s", view.url, exc)
        return error_response(
            502, {"error": f"the bootstrap API at {view.url} is unreachable: {exc}", "code": "5.02"}
        )

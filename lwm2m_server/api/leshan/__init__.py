"""The Leshan dialect of the HTTP API (``/leshan/api/...``): see ``routes`` and
docs/http-api.md, "Leshan dialect"."""

from __future__ import annotations

from aiohttp import web

from keystore.store.credentials import CredentialStore

from . import security
from .routes import PREFIX, add_routes, leshan_errors

__all__ = ["PREFIX", "add_leshan_routes"]


def add_leshan_routes(app: web.Application, credentials: CredentialStore | None = None) -> None:
    """Mount every Leshan-dialect route on ``app``; ``credentials`` backs ``/security`` (without
    it those routes answer 404: the test double has no keystore)."""
    if credentials is not None:
        app[security.CREDENTIALS] = credentials
    sec = PREFIX + "/api/security"
    add_routes(
        app,
        [
            ("GET", sec + "/clients", leshan_errors(security.list_security)),
            ("PUT", sec + "/clients", leshan_errors(security.put_security)),
            ("PUT", sec + "/clients/", leshan_errors(security.put_security)),
            ("GET", sec + "/clients/{ep}", leshan_errors(security.show_security)),
            ("DELETE", sec + "/clients/{ep}", leshan_errors(security.delete_security)),
            ("GET", sec + "/server", leshan_errors(security.server_security)),
            ("GET", PREFIX + "/api/server/security", leshan_errors(security.server_security)),
        ],
    )

"""The web UI: static files served by the LwM2M server's HTTP API (``GET /`` and ``/ui/{name}``),
plus the two small routes only the UI needed (``/api/session`` and ``/api/models``).

Plain HTML, CSS and ES modules in ``static/`` shipped as package data: nothing to build at
install, nothing fetched from the internet by the browser (an operator network often has no
internet, and a CDN script on a page that can reboot devices would be a supply-chain hole). The
page talks only to the documented API (docs/http-api.md) with a session cookie
(``lwm2m_runtime.http_auth``), so everything it does a script can do too.

Only the files listed in ``static/`` when the server starts are served, by name: no path from
the URL ever reaches the file system.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_auth import Authenticator, add_session_routes
from object_models.model import ObjectModel

from ..api.state import STATE
from ..json_nodes import type_name

__all__ = ["mount"]

_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    # the page loads nothing from elsewhere and is never framed (clickjacking of Execute)
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
UI_FILES = web.AppKey("ui_files", dict)


def _load_files() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        if item.is_file() and not item.name.startswith("."):
            suffix = "." + item.name.rsplit(".", 1)[-1]
            kind = _TYPES.get(suffix) or mimetypes.guess_type(item.name)[0] or "text/plain"
            files[item.name] = (item.read_bytes(), kind)
    return files


def mount(app: web.Application, auth: Authenticator | None) -> None:
    """Add the UI routes to the API application ``create_app`` built."""
    app[UI_FILES] = _load_files()
    add_session_routes(app, auth)
    app.router.add_route("GET", "/api/models", models)
    app.router.add_route("GET", "/", index)
    app.router.add_route("GET", "/ui/{name}", asset)


def _file(request: web.Request, name: str) -> web.Response:
    files: dict[str, tuple[bytes, str]] = request.app[UI_FILES]
    found = files.get(name)
    if found is None:
        raise web.HTTPNotFound(reason=f"no UI file {name!r}")
    body, kind = found
    charset = "utf-8" if kind.startswith("text/") or kind.endswith("+xml") else None
    return web.Response(body=body, content_type=kind, charset=charset, headers=_HEADERS)


async def index(request: web.Request) -> web.Response:
    return _file(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    return _file(request, request.match_info["name"])


# -- GET /api/models ---------------------------------------------------------------------------


def model_json(model: ObjectModel) -> dict[str, Any]:
    """An object model as the UI (and any script) needs it to label values: names, units,
    types and operations."""
    return {
        "id": model.id,
        "name": model.name,
        "version": model.version,
        "multiple": model.multiple,
        "mandatory": model.mandatory,
        "description": model.description,
        "resources": [
            {
                "id": r.id,
                "name": r.name,
                "operations": r.operations.value,
                "multiple": r.multiple,
                "mandatory": r.mandatory,
                "type": type_name(r.type),
                "units": r.units,
                "rangeEnumeration": r.range_enumeration,
                "description": r.description,
            }
            for r in sorted(model.resources.values(), key=lambda r: r.id)
        ],
    }


async def models(request: web.Request) -> web.Response:
    """``GET /api/models?ep=EP`` the models of the objects a client registered, in the versions
    it announced; ``?ids=3,3303`` those objects (with ``ep``: in the client's versions). Objects
    without a model are listed in ``unknown``."""
    state = request.app[STATE]
    ep = request.query.get("ep")
    provider = state.registry
    ids: list[int] = []
    if ep:
        reg = state.ops.client(ep)  # 404 for an unknown client
        provider = state.models(ep)
        ids = sorted({int(o) for o in reg.supported_objects} | set(reg.object_links.instances))
    if "ids" in request.query:
        try:
            ids = sorted({int(i) for i in request.query["ids"].split(",") if i.strip()})
        except ValueError:
            raise web.HTTPBadRequest(reason="ids is a comma-separated list of object ids") from None
    if not ep and "ids" not in request.query:
        raise web.HTTPBadRequest(reason="give ep (a client's objects) or ids (object ids)")
    objects, unknown = [], []
    for object_id in ids:
        model = provider.get_object(object_id)
        if model is None:
            unknown.append(object_id)
        else:
            objects.append(model_json(model))
    return web.json_response({"endpoint": ep, "objects": objects, "unknown": unknown})

"""``create_app``: the HTTP API of the LwM2M server as an aiohttp application;
``create_server_app``: the same, built the way ``lwm2m-server`` builds it over the running server.

The application only needs a ``ServerOperations`` (the running server, or any test double),
which keeps the API free of CoAP and sockets and lets ``lwm2m_server.cli`` mount it next to
the CoAP listeners. Routes (see ``docs/http-api.md`` and ``GET /api/openapi.json``):

    GET    /api/health                               liveness and the number of clients
    GET    /api/openapi.json                         this API as an OpenAPI 3.1 document
    GET    /api/event[?ep=]                          server-sent events
    GET    /api/clients[?limit=&cursor=]             registrations, a page at a time
    GET    /api/clients/{ep}                         one registration
    GET    /api/clients/{ep}/observations            the client's observations
    GET    /api/clients/{ep}/telemetry               latest values / history
    GET    /api/clients/{ep}/composite?paths=        Read-Composite
    PUT    /api/clients/{ep}/composite               Write-Composite
    POST   /api/clients/{ep}/composite/observe       Observe-Composite
    DELETE /api/clients/{ep}/composite/observe       Cancel Observe-Composite
    POST   /api/clients/{ep}/{path}/observe          Observe
    DELETE /api/clients/{ep}/{path}/observe          Cancel Observation
    GET    /api/clients/{ep}/{path}/discover         Discover
    PUT    /api/clients/{ep}/{path}/attributes       Write-Attributes
    GET    /api/clients/{ep}/{path}                  Read
    PUT    /api/clients/{ep}/{path}[?replace=false]  Write (replace / partial update)
    POST   /api/clients/{ep}/{path}                  Execute (resource) / Create (object)
    DELETE /api/clients/{ep}/{path}                  Delete

and, when ``ops`` runs a profile engine (the real server always does; ``api/profiles.py``):

    GET    /api/profiles                             every profile
    POST   /api/profiles/reload                      re-read the profiles folder
    GET    /api/profiles/{name}                      one profile
    PUT    /api/profiles/{name}                      create or replace
    DELETE /api/profiles/{name}                      remove
    GET    /api/clients/{ep}/attributes              mapped attribute values
    PUT    /api/clients/{ep}/attributes/{key}        Write the attribute's resource
    GET    /api/clients/{ep}/profile-status          how applying the profile went
    PUT    /api/clients/{ep}/profile                 assign a profile
    POST   /api/clients/{ep}/profile/apply           apply it again now
    GET    /api/clients/{ep}/timeseries              telemetry in ThingsBoard's shape

and, when ``ops`` runs an update job manager (``api/firmware.py``; docs/firmware.md):

    POST   /api/clients/{ep}/firmware                start an update job
    GET    /api/clients/{ep}/firmware                the endpoint's job
    DELETE /api/clients/{ep}/firmware                cancel it
    GET    /api/firmware/jobs[?campaign=]            every job

and, when ``ops`` has a package library and download server (``api/packages.py``):

    GET    /api/packages                             firmware/software packages
    POST   /api/packages?kind=&name=&version=        upload one (body: the bytes)
    GET    /api/packages/{id}                        one package
    DELETE /api/packages/{id}                        delete an unused one
    GET    /fw/{token}                               a device's download (no bearer token)

and the same operations in the Leshan demo server's dialect under ``/leshan/api/...``
(``api/leshan``; docs/http-api.md, "Leshan dialect"), plus ``/leshan/api/objectspecs/{ep}``,
``/leshan/api/security/clients[/{ep}]``, ``/leshan/api/security/server``,
``/leshan/api/server/endpoint`` and ``/leshan/api/server/security``.

aiohttp tries resources in the order they are added, so the fixed suffixes come before the
catch-all ``{path}`` routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from keystore.store.credentials import CredentialStore
from lwm2m_runtime.http_auth import (
    AuditLog,
    Authenticator,
    add_audit_route,
    configured_tokens,
    ensure_first_admin,
    make_auth_middleware,
)
from object_models.model import ModelProvider

from ..metrics import add_metrics_route
from ..operations import ServerOperations
from . import campaigns, clients, composite, device, events, firmware, packages, profiles
from .bootstrap_view import BootstrapView, add_bootstrap_view, view_token
from .durability import Settling, durable_writes_middleware
from .errors import error_middleware
from .leshan import add_leshan_routes
from .listing import ClientPages, pages_of
from .openapi import openapi_document
from .params import DEFAULT_TIMEOUT
from .state import STATE, ApiState

if TYPE_CHECKING:
    from ..service import Lwm2mServer

log = logging.getLogger(__name__)

_CLIENT = "/api/clients/{ep}"
_FIXED = (
    r"(?!(?:observations|telemetry|composite|composite/observe|attributes(?:/[^/]+)?"
    r"|profile|profile/apply|profile-status|timeseries|firmware)/?$)"
)
_SUFFIXED = r"(?!.*/(?:observe|discover|attributes)/?$)"
_PATH = _CLIENT + "/{path:" + _FIXED + _SUFFIXED + ".*}"
"""The LwM2M path routes, excluding the fixed routes' URLs: otherwise ``PUT .../observations``
would be a Write to the path "observations" (a 400) instead of a 405, and the ``Allow`` header
aiohttp computes from every matching route would list methods that do not exist there."""
_PATH_SUFFIXED = _CLIENT + r"/{path:(?!composite/?$).*}"


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(
    ops: ServerOperations,
    *,
    registry: ModelProvider | None = None,
    keepalive: float = 15.0,
    default_timeout: float = DEFAULT_TIMEOUT,
    pages: ClientPages | None = None,
    auth: tuple[Authenticator, AuditLog] | None = None,
    credentials: CredentialStore | None = None,
    durable: Settling | None = None,
) -> web.Application:
    """The API over ``ops``.

    ``registry`` provides object models when ``ops.models_for`` has none (default: the
    built-in OMA models); ``keepalive`` is the SSE comment interval in seconds;
    ``default_timeout`` the device timeout when a request gives no ``?timeout=``;
    ``pages`` the sorted index ``GET /api/clients`` pages through (``api/listing.py``);
    ``auth`` the token check and audit log (``lwm2m_runtime.http_auth``; None: an open API,
    for tests over a test double); ``credentials`` the keystore behind the Leshan dialect's
    ``/leshan/api/security`` routes; ``durable`` the store whose pending writes a changing
    request commits before it is answered (``api/durability.py``; the server's sqlite store).
    """
    if registry is None:
        from object_models.registry import ModelRegistry

        registry = ModelRegistry.builtin()
    middlewares = [error_middleware]
    if durable is not None:  # outside the error mapping: a failed commit overrides a success
        middlewares.insert(0, durable_writes_middleware(durable))
    if auth is not None:
        # outermost: audits the final status; /fw/ downloads carry their own credential
        middlewares.insert(0, make_auth_middleware(*auth, public_prefixes=("/fw/",)))
    app = web.Application(middlewares=middlewares)
    app[STATE] = ApiState(
        ops=ops,
        registry=registry,
        keepalive=keepalive,
        default_timeout=default_timeout,
        pages=pages_of(ops, pages),
    )
    app.on_shutdown.append(events.close_streams)

    add = app.router.add_route
    add("GET", "/api/health", clients.health)
    add("GET", "/api/openapi.json", _openapi)
    if auth is not None:
        add_audit_route(app, auth[1])
    add("GET", "/api/event", events.event_stream)
    add("GET", "/api/clients", clients.list_clients)
    add("GET", _CLIENT, clients.show_client)
    add("GET", _CLIENT + "/observations", clients.observations)
    add("GET", _CLIENT + "/telemetry", clients.telemetry)
    profiles.add_routes(app, ops)  # device profiles (docs/profiles.md), before the {path} routes
    campaigns.add_routes(app, ops)  # update campaigns (docs/firmware.md), when ops runs them
    firmware.add_routes(app, ops)  # update jobs (docs/firmware.md), before the {path} routes

    packages.add_routes(app, ops)  # firmware packages and GET /fw/{token} (docs/firmware.md)
    add("POST", _CLIENT + "/composite/observe", composite.observe)
    add("DELETE", _CLIENT + "/composite/observe", composite.cancel_observe)
    add("GET", _CLIENT + "/composite", composite.read)
    add("PUT", _CLIENT + "/composite", composite.write)
    add("POST", _PATH_SUFFIXED + "/observe", device.observe)
    add("DELETE", _PATH_SUFFIXED + "/observe", device.cancel_observe)
    add("GET", _PATH_SUFFIXED + "/discover", device.discover)
    add("PUT", _PATH_SUFFIXED + "/attributes", device.write_attributes)
    add("GET", _PATH, device.read)
    add("PUT", _PATH, device.write)
    add("POST", _PATH, device.post)
    add("DELETE", _PATH, device.delete)
    add_leshan_routes(app, credentials)  # the same operations in Leshan's dialect (api/leshan)
    from ..ui import mount  # here: the UI module imports the API's state

    mount(app, auth[0] if auth is not None else None)  # GET /, /ui/*, /api/session, /api/models
    return app


def create_server_app(server: Lwm2mServer) -> web.Application:
    """The API as ``lwm2m-server`` serves it: over the started server (so with its profile
    engine and routes), its model registry, its configured request timeout and, when the
    service keeps a ``SortedRegistrationBook``, that book as the client listing's index."""
    book = server.core.registrations
    pages: ClientPages | None = book if isinstance(book, ClientPages) else None
    if server.config.store.engine == "redis":
        # other nodes register devices this cache has never seen: the listing asks the store
        from ..store.redis import RedisClientPages, RedisStore

        if isinstance(server.stores.core, RedisStore):
            pages = RedisClientPages(server.stores.core)
    app = create_app(
        server,
        registry=server.registry,
        default_timeout=server.config.request_timeout,
        pages=pages,
        auth=server_auth(server),
        credentials=server.stores.credentials,  # the keystore of store.engine
        durable=server.store,
    )
    app[READINESS] = server.readiness
    add_metrics_route(app, server)  # GET /metrics (lwm2m_server/metrics.py)
    bootstrap = server.config.bootstrap_api
    token = ""
    if bootstrap.url:
        token = view_token(bootstrap, server.stores.api_tokens)
        server.store.commit()  # the view token is in the shared keystore before it is used
    add_bootstrap_view(app, BootstrapView(bootstrap.url, token))
    app.router.add_route("GET", "/api/ready", _ready)
    return app


READINESS: web.AppKey[Callable[[], dict[str, str]]] = web.AppKey("readiness")


async def _ready(request: web.Request) -> web.Response:
    """``GET /api/ready``: 200 when every check is ok, else 503 (an orchestrator's readiness
    probe: stop routing devices here until the store answers again)."""
    checks = request.app[READINESS]()
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


def server_auth(server: Lwm2mServer) -> tuple[Authenticator, AuditLog]:
    """Tokens from the keystore (the server's sqlite file or Redis, ``store.engine``) and the
    configuration; the audit log in the server's sqlite file (per node), on its connection; the
    first admin token made if none exists."""
    settings = server.config.api_auth
    if not settings.enabled:
        log.warning(
            "API authentication is OFF (api_auth.enabled: false): anyone who reaches "
            "%s://%s:%d can read and command every device; for a local development setup only",
            "https" if server.config.http_tls.cert is not None else "http",
            server.config.http_host,
            server.config.http_port,
        )
    store = server.store  # the audit log stays in this node's sqlite file (docs/cluster.md)
    tokens = server.stores.api_tokens
    authenticator = Authenticator(
        tokens,
        configured_tokens(settings.admin_token, settings.read_token),
        enabled=settings.enabled,
    )
    ensure_first_admin(authenticator, tokens, server.config.token_file, commit=store.commit)
    return authenticator, AuditLog(store)

"""The bootstrap server's HTTP API (aiohttp, port 8081): configurations, devices, sessions, and
server-initiated bootstrap. Errors use the LwM2M server's middleware (``{"error", "code"}``);
a configuration error adds ``source``, ``key`` and ``reason``.

| route                                              | does                                   |
|----------------------------------------------------|----------------------------------------|
| ``GET /api/bootstrap/configs``                     | every config, summarised (no secrets)  |
| ``GET /api/bootstrap/configs/{kind}/{name}``       | one config, summarised                 |
| ``PUT /api/bootstrap/configs/{kind}/{name}``       | add/replace (JSON body = config file)  |
| ``DELETE /api/bootstrap/configs/{kind}/{name}``    | remove (its file too)                  |
| ``POST /api/bootstrap/configs/reload``             | re-read the folder and the profiles    |
| ``GET /api/bootstrap/devices``                     | provisioning records, provisionState   |
| ``POST /api/bootstrap/devices/import?profile=``    | CSV body ``endpoint[,profile]``        |
| ``DELETE /api/bootstrap/devices/{endpoint}``       | forget a record                        |
| ``GET /api/bootstrap/sessions?endpoint=&limit=``   | finished sessions, newest first        |
| ``GET /api/bootstrap/sessions/active``             | running sessions and their step        |
| ``POST /api/bootstrap/clients/{endpoint}/bootstrap`` | server-initiated bootstrap (202)     |
| ``GET /api/health``, ``GET /api/ready``            | liveness, readiness (no token)         |
| ``GET /api/openapi.json``, ``GET /api/audit``      | this API described; the audit log      |
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from keystore.bootstrap_config.model import BootstrapConfig
from keystore.config_error import ConfigError
from keystore.modes import SecurityMode
from keystore.store.database import SqliteDatabase
from keystore.store.engines import api_token_store
from lwm2m_runtime.address import Address
from lwm2m_runtime.http_auth import (
    AuditLog,
    Authenticator,
    add_audit_route,
    configured_tokens,
    ensure_first_admin,
    make_auth_middleware,
)
from lwm2m_runtime.http_errors import ApiError, make_error_middleware

from .core.provisioning import CsvImportError
from .openapi import openapi_document
from .service import BootstrapServer, ConfigErrors

log = logging.getLogger(__name__)

SERVER_KEY = web.AppKey("bootstrap_server", BootstrapServer)


def describe_config(config: BootstrapConfig) -> dict[str, Any]:
    """What an operator needs to see; keys and secrets never leave the server."""
    return {
        "kind": config.kind.value,
        "name": config.name,
        "source": config.source,
        "bootstrapSecurity": [c.mode.label for c in config.bootstrap],
        "strategy": None if config.provisioning is None else config.provisioning.strategy.value,
        "servers": [
            {"uri": s.uri, "shortServerId": s.short_server_id, "lifetime": s.lifetime,
             "binding": s.binding, "securityMode": s.security.mode.label,
             "generate": s.security.generate, "oscore": s.oscore is not None}
            for s in config.servers
        ],
        "toDelete": [str(p) for p in config.to_delete],
        "acls": len(config.acls),
        "objects": sorted(str(p) for p in config.objects),
        "contentFormat": config.content_format,
        "bootstrapRead": config.bootstrap_read,
        "nosec": config.allows(SecurityMode.NOSEC),
    }  # fmt: skip


def _config_error(exc: ConfigError) -> web.Response:
    body: dict[str, Any] = {"error": str(exc), "code": "4.00", "source": exc.source,
                            "key": exc.key, "reason": exc.reason}  # fmt: skip
    if isinstance(exc, ConfigErrors):
        body["errors"] = [str(e) for e in exc.errors]
    return web.json_response(body, status=400)


@web.middleware
async def _config_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except ConfigError as exc:
        return _config_error(exc)
    except CsvImportError as exc:
        raise ApiError(400, exc.message) from None
    return response


def _server(request: web.Request) -> BootstrapServer:
    return request.app[SERVER_KEY]


def _config(request: web.Request) -> BootstrapConfig:
    kind, name = request.match_info["kind"], request.match_info["name"]
    config = _server(request).catalog.configs.get((kind, name))
    if config is None:
        raise ApiError(404, f"no {kind} configuration {name!r}")
    return config


async def health(request: web.Request) -> web.Response:
    """Liveness (no token): the process runs; how many configurations and running sessions."""
    server = _server(request)
    return web.json_response(
        {
            "status": "ok",
            "configs": len(server.catalog.configs),
            "active_sessions": len(server.manager.active()),
        }
    )


async def ready(request: web.Request) -> web.Response:
    """Readiness (no token): 200 when every check is ok, else 503."""
    checks = _server(request).readiness()
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def list_configs(request: web.Request) -> web.Response:
    return web.json_response([describe_config(c) for c in _server(request).catalog.all()])


async def show_config(request: web.Request) -> web.Response:
    return web.json_response(describe_config(_config(request)))


async def put_config(request: web.Request) -> web.Response:
    try:
        document = await request.json()
    except ValueError:
        raise ApiError(400, "the body must be a JSON configuration document") from None
    kind, name = request.match_info["kind"], request.match_info["name"]
    existed = (kind, name) in _server(request).catalog.configs
    config = _server(request).put_config(document, kind, name)
    return web.json_response(describe_config(config), status=200 if existed else 201)


async def delete_config(request: web.Request) -> web.Response:
    config = _config(request)
    _server(request).remove_config(config.kind.value, config.name)
    return web.Response(status=204)


async def reload_configs(request: web.Request) -> web.Response:
    errors = _server(request).reload_configs()
    if errors:
        raise ConfigErrors(errors)
    return web.json_response({"configs": len(_server(request).catalog.configs)})


def _device_json(record: Any) -> dict[str, Any]:
    return {"endpoint": record.endpoint, "profile": record.profile,
            "provisionState": record.state.value, "reason": record.reason,
            "updated": record.updated, "origin": record.origin}  # fmt: skip


async def list_devices(request: web.Request) -> web.Response:
    return web.json_response([_device_json(r) for r in _server(request).store.devices()])


async def import_devices(request: web.Request) -> web.Response:
    text = await request.text()
    profile = request.query.get("profile") or None
    records = _server(request).import_devices(
        text, profile=profile, source=request.query.get("source", "CSV")
    )
    return web.json_response({"imported": len(records)})


async def delete_device(request: web.Request) -> web.Response:
    if _server(request).store.remove_device(request.match_info["endpoint"]) is None:
        raise ApiError(404, f"no device {request.match_info['endpoint']!r}")
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    endpoint = request.query.get("endpoint") or None
    return web.json_response(_server(request).store.sessions(endpoint, limit))


async def active_sessions(request: web.Request) -> web.Response:
    now = _server(request).clock()
    return web.json_response([
        {"id": s.session_id, "endpoint": s.endpoint, "initiatedBy": s.initiated_by,
         "running": now - s.started,
         "step": None if s.current is None else s.current.describe(),
         "attempt": None if s.current is None else s.current.attempt}
        for s in _server(request).manager.active()
    ])  # fmt: skip


async def trigger(request: web.Request) -> web.Response:
    body: dict[str, Any] = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, 'the body is {"address": "host:port"} or empty') from None
    address = None
    if body.get("address"):
        host, _, port = str(body["address"]).rpartition(":")
        if not host or not port.isdigit():
            raise ApiError(400, "address must be host:port")
        address = Address(host.strip("[]"), int(port))
    session = _server(request).start_bootstrap(request.match_info["endpoint"], address)
    return web.json_response({"session": session.session_id}, status=202)


def create_app(server: BootstrapServer) -> web.Application:
    """The bootstrap API over the started ``server``: bearer tokens from the shared keystore
    (the LwM2M server's tokens work here too) and the configuration; the audit log in the
    bootstrap server's own sqlite file (``lwm2m_runtime.http_auth``)."""
    settings = server.config.api_auth
    if not settings.enabled:
        log.warning(
            "API authentication is OFF (api_auth.enabled: false): anyone who reaches "
            "http://%s:%d can change bootstrap configurations; for local development only",
            server.config.http_host,
            server.config.http_port,
        )
    tokens = api_token_store(server.keystore)
    authenticator = Authenticator(
        tokens,
        configured_tokens(settings.admin_token, settings.read_token),
        enabled=settings.enabled,
    )
    ensure_first_admin(authenticator, tokens, server.config.token_file)
    audit_db = SqliteDatabase(server.config.database)
    audit = AuditLog(audit_db)
    app = web.Application(
        middlewares=[make_auth_middleware(authenticator, audit), make_error_middleware(),
                     _config_errors]
    )  # fmt: skip

    async def close_audit(_app: web.Application) -> None:
        audit_db.close()

    app.on_cleanup.append(close_audit)
    add_audit_route(app, audit)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/ready", ready)
    app.router.add_get("/api/openapi.json", openapi)
    app[SERVER_KEY] = server
    base = "/api/bootstrap"
    app.router.add_get(f"{base}/configs", list_configs)
    app.router.add_post(f"{base}/configs/reload", reload_configs)
    app.router.add_get(f"{base}/configs/{{kind}}/{{name}}", show_config)
    app.router.add_put(f"{base}/configs/{{kind}}/{{name}}", put_config)
    app.router.add_delete(f"{base}/configs/{{kind}}/{{name}}", delete_config)
    app.router.add_get(f"{base}/devices", list_devices)
    app.router.add_post(f"{base}/devices/import", import_devices)
    app.router.add_delete(f"{base}/devices/{{endpoint}}", delete_device)
    app.router.add_get(f"{base}/sessions", list_sessions)
    app.router.add_get(f"{base}/sessions/active", active_sessions)
    app.router.add_post(f"{base}/clients/{{endpoint}}/bootstrap", trigger)
    return app

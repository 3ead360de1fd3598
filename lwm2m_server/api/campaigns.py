"""Firmware/software update campaigns over HTTP (docs/firmware.md, "Campaigns"):

    POST   /api/campaigns                    create (and start) a campaign → 201
    GET    /api/campaigns                    every campaign with its progress counts
    GET    /api/campaigns/{id}[?offset=&limit=&status=]
                                             one campaign and a page of its devices' outcomes
    POST   /api/campaigns/{id}/pause         stop starting devices (running jobs go on)
    POST   /api/campaigns/{id}/resume
    POST   /api/campaigns/{id}/cancel        cancel the pending devices and the running jobs

Mounted when the operations object runs campaigns (``ops.campaigns``, a
``firmware.campaigns.CampaignManager``: the real server does once its firmware job manager
runs). Writes need an admin token like every other write route (``lwm2m_runtime.http_auth``).
Errors are ``{"error": msg, "code": "4.xx"}``: 400 bad body (naming the key), 404 unknown
campaign/profile/package, 409 an action the campaign's state does not allow.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import error_response

from ..firmware.campaigns import (
    Campaign,
    CampaignError,
    CampaignManager,
    DeviceStatus,
    campaign_to_json,
    profile_setting_of,
    spec_from_request,
)
from ..operations import ServerOperations
from . import params

MANAGER: web.AppKey[CampaignManager] = web.AppKey("lwm2m_campaigns", CampaignManager)
OPS: web.AppKey[Any] = web.AppKey("lwm2m_campaign_ops", object)
MAX_DEVICES_PAGE = 1000

Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application, ops: ServerOperations) -> None:
    """Mount the routes if ``ops`` runs campaigns."""
    manager = getattr(ops, "campaigns", None)
    if not isinstance(manager, CampaignManager):
        return
    app[MANAGER] = manager
    app[OPS] = ops
    add = app.router.add_route
    add("POST", "/api/campaigns", _refusals(create))
    add("GET", "/api/campaigns", _refusals(list_campaigns))
    add("GET", "/api/campaigns/{id}", _refusals(show))
    for action in ("pause", "resume", "cancel"):
        add("POST", "/api/campaigns/{id}/" + action, _refusals(_action(action)))


def _refusals(handler: Handler) -> Handler:
    """``CampaignError`` → its status and ``{"error", "code"}`` (as the other API errors)."""

    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except CampaignError as exc:
            return error_response(exc.status, {"error": exc.message, "code": exc.code})

    return run


def _manager(request: web.Request) -> CampaignManager:
    return request.app[MANAGER]


async def create(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CampaignError(400, f"the body is not JSON: {exc}") from None
    ops = request.app[OPS]
    spec = spec_from_request(
        body,
        packages=getattr(ops, "packages", None),
        profile_setting=profile_setting_of(ops),
    )
    campaign = _manager(request).create(spec)
    return web.json_response(campaign_to_json(campaign), status=201)


async def list_campaigns(request: web.Request) -> web.Response:
    items = [campaign_to_json(c) for c in _manager(request).campaigns()]
    return web.json_response({"campaigns": items})


def _page(campaign: Campaign, request: web.Request) -> dict[str, Any]:
    query = request.query
    offset = params.integer(query, "offset", 0, 0, 1 << 31)
    limit = params.integer(query, "limit", 100, 1, MAX_DEVICES_PAGE)
    status = query.get("status")
    devices = list(campaign.devices.values())
    if status:
        try:
            wanted = DeviceStatus(status)
        except ValueError:
            choices = ", ".join(s.value for s in DeviceStatus)
            raise CampaignError(400, f"status must be one of {choices}") from None
        devices = [d for d in devices if d.status is wanted]
    page = devices[offset : offset + limit]
    return {
        "devices": [d.to_json() for d in page],
        "offset": offset,
        "limit": limit,
        "matched": len(devices),
        "nextOffset": offset + limit if offset + limit < len(devices) else None,
    }


async def show(request: web.Request) -> web.Response:
    campaign = _manager(request).get(request.match_info["id"])
    return web.json_response({**campaign_to_json(campaign), **_page(campaign, request)})


def _action(name: str) -> Handler:
    async def act(request: web.Request) -> web.Response:
        manager = _manager(request)
        campaign_id = request.match_info["id"]
        # on a cluster the node running the campaign carries it out (docs/firmware.md,
        # "Campaigns in a cluster"): 202 when it did not within the lease
        campaign, done = await manager.act(name, campaign_id)
        return web.json_response(campaign_to_json(campaign), status=200 if done else 202)

    act.__name__ = name
    return act

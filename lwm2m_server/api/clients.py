"""Registrations, observations, telemetry and health: what the server knows without asking a
device, so none of these handlers waits on the network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from keystore.store.errors import StoreUnavailable
from object_models.path import LwM2mPath

from ..core.registration import Registration
from ..json_nodes import registration_to_json, telemetry_to_json
from . import listing, params
from .responses import format_name
from .state import ApiState, client_of, state_of

MAX_HISTORY = 10_000
"""The largest ``?limit=`` of a history: like a client-list page (``listing.MAX_PAGE``), one
response must not hold the event loop the CoAP listeners share (issue 11); page older points
with ``until=`` the oldest ``ts`` received."""


def _registration(state: ApiState, reg: Registration) -> dict[str, Any]:
    return registration_to_json(reg, sleeping=state.sleeping(reg))


def _page_json(rows: list[tuple[Registration, bool | None]]) -> bytes:
    """A page as JSON bytes; registrations are immutable, so this is safe off the loop."""
    page = [registration_to_json(reg, sleeping=sleeping) for reg, sleeping in rows]
    return json.dumps(page).encode()


async def list_clients(request: web.Request) -> web.Response:
    """One page of registrations in endpoint order (``api/listing.py``): a plain JSON list,
    with the next page in the ``Link``/``X-Next-Cursor`` headers when there may be more."""
    state = state_of(request)
    limit = listing.page_limit(request.query)
    after = listing.decode_cursor(request.query)
    regs = state.pages.clients_page(after, limit)
    rows = [(r, state.sleeping(r)) for r in regs]
    # rendering costs ~0.1 ms per registration: in a worker thread, the loop keeps its turns
    # (the GIL is handed back every few ms) instead of serving no CoAP for a whole page
    body = await asyncio.to_thread(_page_json, rows)
    resp = web.Response(body=body, content_type="application/json")
    resp.headers["X-Total-Count"] = str(state.pages.client_count())
    if len(regs) == limit:
        cursor = listing.encode_cursor(regs[-1].endpoint)
        query = {k: v for k, v in request.query.items() if k not in ("cursor", "limit")}
        query.update(limit=str(limit), cursor=cursor)
        resp.headers["X-Next-Cursor"] = cursor
        resp.headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
    return resp


async def show_client(request: web.Request) -> web.Response:
    state = state_of(request)
    reg = state.ops.client(request.match_info["ep"])
    return web.json_response(_registration(state, reg))


def _observation_json(item: object) -> dict[str, Any]:
    """One observation: the contract gives path sequences; the service may hand out richer
    ``Observation`` records (token, format, last notification), which are reported too."""
    paths: Sequence[LwM2mPath] = getattr(item, "paths", None) or item  # type: ignore[assignment]
    result: dict[str, Any] = {"paths": [str(p) for p in paths]}
    composite = getattr(item, "composite", None)
    result["composite"] = bool(composite) if composite is not None else len(paths) > 1
    for attr, key in (("active", "active"), ("last_notification", "lastNotification")):
        value = getattr(item, attr, None)
        if value is not None:
            result[key] = value
    fmt = getattr(item, "content_format", None)
    if isinstance(fmt, int):
        result["contentFormat"] = format_name(fmt)
    return result


async def observations(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    items = [_observation_json(o) for o in state.ops.observations(ep)]
    return web.json_response({"endpoint": ep, "observations": items})


_HISTORY_PARAMS = ("key", "since", "until", "limit")


async def telemetry(request: web.Request) -> web.Response:
    """Latest value per path; with any of ``key``/``since``/``until``/``limit`` the history."""
    state, ep = client_of(request)
    query = request.query
    if not any(name in query for name in _HISTORY_PARAMS):
        latest = state.ops.telemetry_latest(ep)
        points = [telemetry_to_json(p) for _, p in sorted(latest.items())]
        return web.json_response({"endpoint": ep, "mode": "latest", "points": points})
    key = query.get("key") or None
    since = params.epoch_ms(query, "since")
    until = params.epoch_ms(query, "until")
    limit = params.integer(query, "limit", 1000, 1, MAX_HISTORY)
    history = state.ops.telemetry_history(ep, key=key, since_ms=since, until_ms=until, limit=limit)
    return web.json_response(
        {"endpoint": ep, "mode": "history", "points": [telemetry_to_json(p) for p in history]}
    )


async def health(request: web.Request) -> web.Response:
    """Liveness: 200 while the process serves, with what it can count. On a shared store that
    is down (Redis: the count is the store's) the report says so (``"status": "degraded"``,
    ``"clients": null``, ``store``) instead of failing: the process is alive, and restarting
    it would not bring Redis back; ``/api/ready`` is the check that fails (503)."""
    state = state_of(request)
    body: dict[str, object] = {"status": "ok"}
    try:
        body["clients"] = state.pages.client_count()
    except StoreUnavailable as exc:
        body.update(status="degraded", clients=None, store={"up": False, "error": exc.message})
    body["quarantined"] = state.ops.quarantined()
    body["limits"] = dict(state.ops.limit_counters())
    cluster = getattr(state.ops, "cluster", None)  # a node of a cluster on Redis
    if cluster is not None:
        body["cluster"] = cluster.figures()
    return web.json_response(body)

"""Device profiles over HTTP (docs/profiles.md): the profiles themselves, which profile a device
uses and how applying it went, the device's mapped attributes (writing one writes the resource),
and telemetry in ThingsBoard's shape.

    GET    /api/profiles                          every profile, with the devices using it
    GET    /api/profiles/{name}                   one profile: its document and summary
    PUT    /api/profiles/{name}                   create or replace (JSON; a 400 names the key)
    DELETE /api/profiles/{name}                   remove (devices fall back to pattern/default)
    POST   /api/profiles/reload                   re-read the profiles folder (like SIGHUP)
    GET    /api/clients/{ep}/attributes           mapped attribute values {key: value}
    PUT    /api/clients/{ep}/attributes/{key}     Write the resource the attribute maps to
    GET    /api/clients/{ep}/profile-status       profile, requests sent, problems per device
    PUT    /api/clients/{ep}/profile              assign a profile ({"profile": name|null})
    POST   /api/clients/{ep}/profile/apply        apply the profile again now (reads included)
    GET    /api/clients/{ep}/timeseries?keys=&startTs=&endTs=&limit=
                                                  {key: [{"ts": ms, "value": v}, …]}

The routes exist when the operations object runs a profile engine (``ops.profiles``), which the
real server always does; test doubles without one get the rest of the API unchanged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from keystore.config_error import ConfigError
from lwm2m_runtime.http_errors import ApiError, bad_request
from object_models.errors import Lwm2mError, ResponseCode

from ..json_nodes import value_to_jsonable
from ..operations import ServerOperations
from ..profiles.engine import ProfileEngine
from ..profiles.model import Profile
from . import params
from .listing import MAX_PAGE
from .responses import render
from .state import client_of, request_timeout, state_of

ENGINE: web.AppKey[ProfileEngine] = web.AppKey("lwm2m_profiles", ProfileEngine)
MAX_POINTS = 10_000


def add_routes(app: web.Application, ops: ServerOperations) -> None:
    """Mount the routes if ``ops`` has a profile engine; call before the ``{path}`` routes."""
    engine = getattr(ops, "profiles", None)
    if not isinstance(engine, ProfileEngine):
        return
    app[ENGINE] = engine
    add = app.router.add_route
    add("GET", "/api/profiles", list_profiles)
    add("POST", "/api/profiles/reload", reload_profiles)
    add("GET", "/api/profiles/{name}", show_profile)
    add("PUT", "/api/profiles/{name}", put_profile)
    add("DELETE", "/api/profiles/{name}", delete_profile)
    client = "/api/clients/{ep}"
    add("GET", client + "/attributes", attributes)
    add("PUT", client + "/attributes/{key}", write_attribute)
    add("GET", client + "/profile-status", profile_status)
    add("PUT", client + "/profile", assign_profile)
    add("POST", client + "/profile/apply", apply_profile)
    add("GET", client + "/timeseries", timeseries)


def _engine(request: web.Request) -> ProfileEngine:
    return request.app[ENGINE]


def summary(profile: Profile, devices: list[str]) -> dict[str, Any]:
    return {
        "name": profile.name,
        "source": profile.source,
        "description": profile.description,
        "observeStrategy": profile.observe_strategy.value,
        "onConnect": profile.on_connect.value,
        "objects": {str(o): v for o, v in sorted(profile.objects.items())},
        "endpoints": [p.text for p in profile.endpoints],
        "resources": {
            str(path): {
                "key": m.key,
                "kind": m.kind.value,
                "observe": m.observe,
                "attributes": m.attributes.query(),
            }
            for path, m in sorted(profile.resources.items())
        },
        "bootstrap": profile.bootstrap is not None,
        "firmware": {k.value: s.to_json() for k, s in profile.firmware.items()},
        "devices": devices,
    }


_YIELD_EVERY = 2000
"""Endpoints resolved between two turns given back to the event loop (see ``_users``)."""


async def _users(request: web.Request) -> dict[str, list[str]]:
    """The connected endpoints by the profile each resolves to, in endpoint order.

    With 100k clients this is the one profile route that touches every client: each endpoint
    is resolved once (not once per profile), from the API's sorted client index page by page,
    and the loop gets a turn every ``_YIELD_EVERY`` endpoints, so CoAP is never stalled for
    the whole walk (issue 11)."""
    state = state_of(request)
    catalog = _engine(request).catalog
    users: dict[str, list[str]] = {}
    after: str | None = None
    while page := state.pages.clients_page(after, MAX_PAGE):
        for i, reg in enumerate(page):
            users.setdefault(catalog.resolve(reg.endpoint)[0].name, []).append(reg.endpoint)
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
        if len(page) < MAX_PAGE:
            break
        after = page[-1].endpoint
        await asyncio.sleep(0)
    return users


async def list_profiles(request: web.Request) -> web.Response:
    engine = _engine(request)
    users = await _users(request)
    items = [summary(p, users.get(p.name, [])) for p in engine.catalog.profiles()]
    errors = [str(e) for e in engine.catalog.errors]
    return web.json_response({"profiles": items, "errors": errors})


def _profile(request: web.Request) -> Profile:
    name = request.match_info["name"]
    profile = _engine(request).catalog.get(name)
    if profile is None:
        raise ApiError(404, f"no profile {name!r}", code=ResponseCode.NOT_FOUND)
    return profile


async def show_profile(request: web.Request) -> web.Response:
    profile = _profile(request)
    users = (await _users(request)).get(profile.name, [])
    return web.json_response({**summary(profile, users), "document": dict(profile.document)})


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None


async def put_profile(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = request.match_info["name"]
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise bad_request("the body must be a profile document (a JSON object)")
    existed = engine.catalog.get(name) is not None
    try:
        profile = engine.put_profile(name, body)
    except ConfigError as exc:
        raise bad_request(str(exc)) from None
    users = (await _users(request)).get(profile.name, [])
    return web.json_response(summary(profile, users), status=200 if existed else 201)


async def delete_profile(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = request.match_info["name"]
    if engine.remove_profile(name) is None:
        raise ApiError(404, f"no stored profile {name!r}", code=ResponseCode.NOT_FOUND)
    return web.json_response({"deleted": name})


async def reload_profiles(request: web.Request) -> web.Response:
    result = _engine(request).reload()
    return web.json_response(
        {
            "changed": list(result.changed),
            "removed": list(result.removed),
            "errors": [str(e) for e in result.errors],
        },
        status=200 if not result.errors else 422,
    )


async def attributes(request: web.Request) -> web.Response:
    _, ep = client_of(request)
    found = _engine(request).attributes(ep)
    return web.json_response(
        {
            "endpoint": ep,
            "attributes": {k: value_to_jsonable(p.value) for k, p in found.items()},
            "updated": {k: p.ts_ms for k, p in found.items()},
        }
    )


async def write_attribute(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    key = request.match_info["key"]
    value = await _json_body(request)
    timeout = request_timeout(request, state)
    engine = _engine(request)
    response = await state.call(
        engine.write_attribute(ep, key, value, timeout=timeout), timeout, f"Write of {key}"
    )
    return render(response, endpoint=ep, target=key)


async def profile_status(request: web.Request) -> web.Response:
    _, ep = client_of(request)
    return web.json_response(_engine(request).status(ep))


async def assign_profile(request: web.Request) -> web.Response:
    ep = request.match_info["ep"]
    body = await _json_body(request)
    if not isinstance(body, dict) or "profile" not in body:
        raise bad_request('expected {"profile": "name"} (or null to remove the assignment)')
    name = body["profile"]
    if name is not None and not isinstance(name, str):
        raise bad_request("profile must be a name or null")
    engine = _engine(request)
    engine.assign(ep, name)
    profile, chosen_by = engine.catalog.resolve(ep)
    return web.json_response({"endpoint": ep, "profile": profile.name, "chosenBy": chosen_by})


async def apply_profile(request: web.Request) -> web.Response:
    """Apply now and answer the status once done (or when the wait runs out: the status then
    says ``applying``). A Register meanwhile supersedes it; the status tells which ran."""
    state, ep = client_of(request)
    engine = _engine(request)
    task = engine.apply_now(ep)
    await asyncio.wait([task], timeout=request_timeout(request, state) * 4)
    return web.json_response(engine.status(ep))


async def timeseries(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    query = request.query
    keys = [k for k in (query.get("keys") or "").split(",") if k]
    start = params.epoch_ms(query, "startTs")
    end = params.epoch_ms(query, "endTs")
    limit = params.integer(query, "limit", 100, 1, MAX_POINTS)
    latest = state.ops.telemetry_latest(ep)
    if not keys:
        keys = sorted({p.key for p in latest.values()})
    result: dict[str, list[dict[str, Any]]] = {}
    if start is None and end is None:
        by_key = {p.key: p for p in latest.values()}
        by_key.update({p.path: p for p in latest.values()})
        for key in keys:
            point = by_key.get(key)
            if point is not None:
                result[key] = [{"ts": point.ts_ms, "value": value_to_jsonable(point.value)}]
        return web.json_response(result)
    if start is not None and end is not None and end < start:
        raise bad_request("endTs is before startTs")
    for key in keys:
        try:
            points = state.ops.telemetry_history(
                ep, key=key, since_ms=start, until_ms=end, limit=limit
            )
        except Lwm2mError as exc:
            raise bad_request(exc.message) from None
        if points:
            result[key] = [{"ts": p.ts_ms, "value": value_to_jsonable(p.value)} for p in points]
    return web.json_response(result)

"""Firmware/software update jobs over HTTP (docs/firmware.md, "Update jobs"):

    POST   /api/clients/{ep}/firmware     start a job: {"package": id, "strategy": "push|
                                          pull_coap|pull_http|auto", "instance": n}; 201
    GET    /api/clients/{ep}/firmware     the endpoint's job (the running one, or the last)
    DELETE /api/clients/{ep}/firmware     cancel it
    GET    /api/firmware/jobs?campaign=   every job, or a campaign's

The routes exist when the operations object runs a job manager (``ops.firmware``), which the
real server always does; test doubles without one get the rest of the API unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import ApiError, bad_request
from object_models.errors import ResponseCode

from ..firmware.contracts import FirmwareUpdates, Strategy
from ..firmware.manager import job_to_json
from ..operations import ServerOperations

MANAGER: web.AppKey[FirmwareUpdates] = web.AppKey("lwm2m_firmware")


def add_routes(app: web.Application, ops: ServerOperations) -> None:
    """Mount the routes if ``ops`` has a job manager; call before the ``{path}`` routes."""
    manager = getattr(ops, "firmware", None)
    if manager is None:
        return
    app[MANAGER] = manager
    add = app.router.add_route
    add("POST", "/api/clients/{ep}/firmware", start_job)
    add("GET", "/api/clients/{ep}/firmware", show_job)
    add("DELETE", "/api/clients/{ep}/firmware", cancel_job)
    add("GET", "/api/firmware/jobs", list_jobs)


def _manager(request: web.Request) -> FirmwareUpdates:
    return request.app[MANAGER]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request('the body is a JSON object: {"package": "<id>", "strategy": "auto"}')
    unknown = sorted(set(body) - {"package", "strategy", "instance"})
    if unknown:
        raise bad_request(f"unknown key(s) {', '.join(unknown)}: use package, strategy, instance")
    return body


async def start_job(request: web.Request) -> web.Response:
    body = await _body(request)
    package = body.get("package")
    if not isinstance(package, str) or not package:
        raise bad_request('"package" (the package id) is required')
    strategy_text = body.get("strategy", "auto")
    try:
        strategy = Strategy(strategy_text)
    except ValueError:
        names = ", ".join(s.value for s in Strategy)
        raise bad_request(f"strategy {strategy_text!r} is not one of {names}") from None
    instance = body.get("instance")
    if instance is not None and (isinstance(instance, bool) or not isinstance(instance, int)):
        raise bad_request('"instance" is an object instance id (an integer)')
    view = await _manager(request).start(
        request.match_info["ep"], package, strategy=strategy, instance=instance
    )
    return web.json_response(job_to_json(view), status=201)


def _no_job(endpoint: str) -> ApiError:
    return ApiError(404, f"no update job for {endpoint!r}", code=ResponseCode.NOT_FOUND)


async def show_job(request: web.Request) -> web.Response:
    endpoint = request.match_info["ep"]
    view = _manager(request).job(endpoint)
    if view is None:
        raise _no_job(endpoint)
    return web.json_response(job_to_json(view))


async def cancel_job(request: web.Request) -> web.Response:
    endpoint = request.match_info["ep"]
    view = await _manager(request).cancel(endpoint)
    if view is None:
        raise _no_job(endpoint)
    return web.json_response(job_to_json(view))


async def list_jobs(request: web.Request) -> web.Response:
    campaign = request.query.get("campaign") or None
    views = _manager(request).jobs(campaign)
    return web.json_response({"jobs": [job_to_json(v) for v in views]})

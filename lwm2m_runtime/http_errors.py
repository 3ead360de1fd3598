"""Every failure of a server's HTTP API as JSON ``{"error": "...", "code": "4.04"}``.

One middleware turns exceptions into responses so that handlers only raise: operations raise
typed errors carrying a CoAP code, and the mapping to HTTP lives here, shared by both servers'
APIs (each server adds the statuses of its own error types with ``make_error_middleware``; the
LwM2M server's are in ``lwm2m_server.api.errors``):

| raised                                | HTTP | body                                       |
|---------------------------------------|------|--------------------------------------------|
| what the server's ``render`` maps     | its  | its own (e.g. 404 unknown client, 504)     |
| ``ApiError``                          | its  | ``{"error": msg, "code": …}``              |
| ``StoreUnavailable`` (Redis down)     | 503  | with ``Retry-After``; the outage is logged  |
|                                       |      | once by the store                          |
| other ``Lwm2mError`` (bad path/value) | 4xx  | status from the CoAP code, 400 by default  |
| aiohttp ``HTTPException`` (no route)  | same | ``{"error": reason, "code": …}``           |
| anything else                         | 500  | ``{"error": "internal error: …"}``, logged |

``code`` is always the CoAP code in dotted form, so scripts can tell a 4.04 for an unknown
client from a 4.04 a device answered (the latter is an HTTP 200 with ``"status":"NOT_FOUND"``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from keystore.store.errors import StoreUnavailable
from object_models.errors import Lwm2mError, ResponseCode

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Render = Callable[[Lwm2mError], web.Response | None]
"""A server's own error types → their response (``None``: not one of them, use the default)."""

_BY_CODE = {
    ResponseCode.BAD_REQUEST: 400,
    ResponseCode.UNAUTHORIZED: 401,
    ResponseCode.FORBIDDEN: 403,
    ResponseCode.NOT_FOUND: 404,
    ResponseCode.METHOD_NOT_ALLOWED: 405,
    ResponseCode.NOT_ACCEPTABLE: 406,
    ResponseCode.CONFLICT: 409,
    ResponseCode.PRECONDITION_FAILED: 412,
    ResponseCode.REQUEST_ENTITY_TOO_LARGE: 413,
    ResponseCode.UNSUPPORTED_CONTENT_FORMAT: 415,
    ResponseCode.TOO_MANY_REQUESTS: 429,
    ResponseCode.INTERNAL_SERVER_ERROR: 500,
    ResponseCode.SERVICE_UNAVAILABLE: 503,
    ResponseCode.GATEWAY_TIMEOUT: 504,
}


class ApiError(Lwm2mError):
    """A request the API itself refuses, with an explicit HTTP status."""

    def __init__(self, status: int, message: str, *, code: ResponseCode | None = None) -> None:
        super().__init__(message, code=code or ResponseCode.BAD_REQUEST)
        self.status = status


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def dotted(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


def _http_to_coap(status: int) -> str:
    """HTTP 404 → ``4.04``: HTTP and CoAP share the class/detail numbering for the common
    codes, and a code in every error body keeps the shape uniform."""
    return f"{status // 100}.{status % 100:02d}"


def error_response(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status)


def _for_lwm2m_error(exc: Lwm2mError) -> web.Response:
    code = dotted(exc.code)
    if isinstance(exc, ApiError):
        return error_response(exc.status, {"error": exc.message, "code": code})
    status = _BY_CODE.get(exc.code, 500 if exc.code >> 5 == 5 else 400)
    response = error_response(status, {"error": exc.message, "code": code})
    if isinstance(exc, StoreUnavailable):  # RFC 9110 §10.2.3: when to try again
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def make_error_middleware(render: Render | None = None) -> Middleware:
    """The API's error middleware; ``render`` maps the server's own error types first."""

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Lwm2mError as exc:
            special = render(exc) if render is not None else None
            return special if special is not None else _for_lwm2m_error(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = exc.headers.get("Allow")
            message = exc.reason
            if exc.status == 404:
                message = f"no such route: {request.method} {request.path}"
            elif exc.status == 405 and allow:
                message = f"{request.method} is not allowed on {request.path} (allowed: {allow})"
            response = error_response(
                exc.status, {"error": message, "code": _http_to_coap(exc.status)}
            )
            if allow:
                response.headers["Allow"] = allow
            return response
        except Exception as exc:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return error_response(
                500, {"error": f"internal error: {type(exc).__name__}: {exc}", "code": "5.00"}
            )

    return error_middleware

"""The LwM2M server's own error types on its HTTP API; the rest of the mapping (``ApiError``,
other ``Lwm2mError``, aiohttp's exceptions, anything unexpected) is the runtime's
(``lwm2m_runtime.http_errors``), shared with the bootstrap server:

| raised                                | HTTP | body                                       |
|---------------------------------------|------|--------------------------------------------|
| ``UnknownClientError``                | 404  | ``{"error": msg, "code": "4.04"}``         |
| ``DeviceTimeoutError``                | 504  | ``{"error": "timeout", "message": msg, …}``|
| ``DeviceAnswerError`` (garbage reply) | 502  | ``{"error": msg, "code": "5.00"}``         |
| ``QueueFullError``                    | 503  | ``{"error": msg, "code": "5.03"}``         |
| ``ObservationLimitError``             | 409  | ``{"error": msg, "code": "4.09"}``         |

A 4.04 a device answered is not an error here: it is an HTTP 200 with ``"status":"NOT_FOUND"``
(see ``responses``).
"""

from __future__ import annotations

from aiohttp import web

from lwm2m_runtime.http_errors import dotted, error_response, make_error_middleware
from object_models.errors import Lwm2mError

from ..core.queue import QueueFullError
from ..operations import (
    DeviceAnswerError,
    DeviceTimeoutError,
    ObservationLimitError,
    UnknownClientError,
)


def server_error(exc: Lwm2mError) -> web.Response | None:
    code = dotted(exc.code)
    if isinstance(exc, UnknownClientError):
        return error_response(404, {"error": exc.message, "code": code})
    if isinstance(exc, DeviceTimeoutError):
        return error_response(504, {"error": "timeout", "message": exc.message, "code": "5.04"})
    if isinstance(exc, DeviceAnswerError):
        return error_response(502, {"error": exc.message, "code": code})
    if isinstance(exc, QueueFullError):
        return error_response(503, {"error": exc.message, "code": code})
    if isinstance(exc, ObservationLimitError):
        return error_response(409, {"error": exc.message, "code": "4.09"})
    return None


error_middleware = make_error_middleware(server_error)

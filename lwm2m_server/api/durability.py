"""An HTTP API change is answered only once it is durable: ``durable_writes_middleware``.

Why: the server's sqlite store groups the writes of a loop iteration into one transaction and
commits it one loop turn later (``SqliteStore``, group commit), which is right for device
traffic (the CoAP driver commits, then replies) but would let an API handler's answer leave
before its write is committed, and a commit that fails (a full disk, an I/O error) would never
reach the operator who was told 201. So after a handler of a method that changes something
returns, the open group is committed at once; when that commit, or any group while the handler
ran, was rolled back, the answer becomes 503 with Retry-After (nothing the handler did may be
assumed stored), never the handler's success.

Reads (GET, HEAD, OPTIONS) pass untouched: their only write is the audit log, which the
auth middleware writes after the answer on purpose (losing an audit line to a full disk must
not fail a read).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from lwm2m_runtime.http_errors import Handler

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Settling(Protocol):
    def settle(self) -> bool: ...

    @property
    def failed_commits(self) -> int: ...


def durable_writes_middleware(store: Settling) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware over ``store`` (the server's ``SqliteStore``)."""

    @web.middleware
    async def durable_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in _READS:
            return await handler(request)
        before = store.failed_commits
        response = await handler(request)
        if store.settle() and store.failed_commits == before:
            return response
        return web.json_response(
            {
                "error": "the server's store could not commit this change (a full disk or an "
                "I/O error): nothing of it may be assumed stored; retry",
                "code": "5.03",
            },
            status=503,
            headers={"Retry-After": "1"},
        )

    return durable_writes

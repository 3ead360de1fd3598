"""One adapter between an HTTP request and a device operation, for both dialects of the API.

The native routes (``api/device.py``, ``api/composite.py``) and the Leshan-compatible ones
(``api/leshan/routes.py``) run a device operation the same way: check the client is registered,
read ``?timeout=``, run the operation under that timeout, turn the answer into HTTP. What differs
is only how the timeout is written (Leshan's UI sends ``null`` for "the server's default"), what
an answer and a queued request look like, which format parameter of a composite request wins, and
how errors are answered (the native app's middleware; ``leshan_errors`` around each Leshan
handler). A ``Dialect`` names those differences, so that the handlers are written once
(``device.DeviceHandlers``, ``composite.CompositeHandlers``) and built once per dialect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

import attrs
from aiohttp import web

from object_models.path import LwM2mPath

from ..operations import DeviceResponse, ServerOperations
from . import params
from .responses import render
from .state import ApiState, client_of


@attrs.frozen
class Dialect:
    timeout: Callable[[Mapping[str, str], float], float]
    """``?timeout=`` → seconds, given the server's default."""
    reply: Callable[[DeviceResponse, str, str | None], web.Response]
    """The answer (or the queued request) for endpoint and target as HTTP."""
    composite_formats: tuple[str, ...]
    """The query names of a composite request's content format, the first given wins."""
    composite_target: bool
    """Whether a composite answer names its paths as the target (native) or none (Leshan)."""

    def seconds(self, request: web.Request, state: ApiState) -> float:
        return self.timeout(request.query, state.default_timeout)

    async def answer(
        self,
        state: ApiState,
        endpoint: str,
        target: str | None,
        operation: Awaitable[DeviceResponse],
        seconds: float,
        what: str,
    ) -> web.Response:
        """Run ``operation`` (at most ``seconds``, ``what`` names it in a timeout's message) and
        answer as this dialect does."""
        resp = await state.call(operation, seconds, what)
        return self.reply(resp, endpoint, target)


@attrs.frozen
class Call:
    """One request to a registered client, its timeout read: what every handler runs its
    operation with."""

    dialect: Dialect
    state: ApiState
    endpoint: str
    timeout: float

    @classmethod
    def of(cls, dialect: Dialect, request: web.Request, state: ApiState, endpoint: str) -> Call:
        """The call once the client is known (``client_of``) and the URL parsed: the timeout
        is read last, as the handlers always did."""
        return cls(dialect, state, endpoint, dialect.seconds(request, state))

    @property
    def ops(self) -> ServerOperations:
        return self.state.ops

    async def on_path(
        self, verb: str, path: LwM2mPath, operation: Awaitable[DeviceResponse]
    ) -> web.Response:
        """Run the operation ``verb`` on ``path`` and answer in the dialect."""
        return await self.dialect.answer(
            self.state, self.endpoint, str(path), operation, self.timeout, f"{verb} {path}"
        )

    async def on_paths(
        self, verb: str, paths: Iterable[LwM2mPath], operation: Awaitable[DeviceResponse]
    ) -> web.Response:
        """Run the composite operation ``verb`` on ``paths`` and answer in the dialect."""
        label = ",".join(str(p) for p in paths)
        target = label if self.dialect.composite_target else None
        return await self.dialect.answer(
            self.state, self.endpoint, target, operation, self.timeout, f"{verb} {label}"
        )


def _native_reply(resp: DeviceResponse, endpoint: str, target: str | None) -> web.Response:
    return render(resp, endpoint=endpoint, target=target or "")


NATIVE = Dialect(
    timeout=params.timeout,
    reply=_native_reply,
    composite_formats=("format", "nodeformat"),
    composite_target=True,
)
"""The native API (``/api/...``): docs/http-api.md."""

__all__ = ["NATIVE", "Call", "Dialect", "client_of"]

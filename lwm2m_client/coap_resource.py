"""The one aiocoap resource that serves every LwM2M path of the client.

LwM2M paths (/3/0/1, /3303/0, …) are data, not a fixed resource tree, so instead of an
``aiocoap.resource.Site`` with one resource per path this single resource is installed as the
context's ``serversite``: aiocoap then hands it every request with the full ``uri_path``
(that is what ``PathCapable`` promises), and it translates to and from
``management.Request``/``Response``.

Observe is delegated to aiocoap on purpose: by inheriting ``aiocoap.resource.ObservableResource``
the library keeps the token, numbers the notifications (Observe option 0, 1, 2, …), matches a
RST or a GET with Observe=1 on the same token to the observation, and re-renders the original
request for each notification (so a notification has the Accept, and for Observe-Composite the
FETCH body, of the request that started it). This resource only tells ``observe.Observations``
which observation a rendering belongs to.

aiocoap quirks that shape this file (aiocoap 0.4.17):

- ``add_observation`` runs *before* the first ``render``; an observation accepted there whose
  first response is an error is ended by aiocoap itself, which calls our cancellation callback.
- Notifications re-render the *same* request object, so ``id(request)`` identifies the
  observation while aiocoap holds it (we drop the entry in the cancellation callback).
- Cancellation by GET with Observe=1 works only on the token of the observation (RFC 7641
  §3.6); a deregistration with a fresh token is served as a plain Read and the old
  observation lives on until a RST.
- Notifications do not go through block-wise: a notification larger than one block is sent
  whole (aiocoap warns); Reads do use block-wise (Block2) as needed.
- aiocoap has no type hints; the subclassing below needs ``type: ignore[misc]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from object_models.content_format import ContentFormat
from object_models.errors import InvalidPathError, Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from .management import DeviceManagement, Request, Response
from .observe import Observation, Observations

log = logging.getLogger(__name__)

RequestLogger = Callable[[Request, Response], None]
Block1Listener = Callable[[LwM2mPath, int, bool], None]
"""``listener(path, block number, more)`` for each Block1 block of a request, before aiocoap
has reassembled the body (the firmware objects see a push start and count its blocks)."""


def to_request(message: Any) -> Request:
    """aiocoap request → ``management.Request`` (4.04 for a path that is not an LwM2M path)."""
    segments = [s for s in message.opt.uri_path if s != ""]
    try:
        path = LwM2mPath.parse("/" + "/".join(segments))
    except InvalidPathError as exc:
        raise Lwm2mError(f"not an LwM2M path: {exc}", code=ResponseCode.NOT_FOUND) from None
    cf = message.opt.content_format
    accept = message.opt.accept
    return Request(
        method=message.code.name.upper(),
        path=path,
        query=tuple(message.opt.uri_query),
        content_format=None if cf is None else int(cf),
        accept=None if accept is None else int(accept),
        payload=bytes(message.payload),
        observe=message.opt.observe,
    )


def to_message(response: Response) -> Any:
    kwargs: dict[str, Any] = {"code": Code(response.code), "payload": response.payload}
    if response.content_format is not None:
        kwargs["content_format"] = response.content_format
    if response.location_path:
        kwargs["location_path"] = response.location_path
    return aiocoap.Message(**kwargs)


class Lwm2mResource(aiocoap.resource.ObservableResource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """The client's whole CoAP server side."""

    def __init__(
        self,
        management: DeviceManagement,
        observations: Observations,
        *,
        on_request: RequestLogger | None = None,
        on_block1: Block1Listener | None = None,
    ) -> None:
        super().__init__()
        self.management = management
        self.observations = observations
        self.on_request = on_request
        self.on_block1 = on_block1
        self._by_request: dict[int, Observation] = {}

    async def add_observation(self, request: Any, serverobservation: Any) -> None:
        """Accept GET (not Discover) and FETCH observations; aiocoap does the rest."""
        try:
            req = to_request(request)
        except Lwm2mError:
            return  # not accepted: the render answers with the error
        if req.method == "GET" and req.accept != ContentFormat.LINK and not req.path.is_root:
            paths = [req.path]
            composite = False
        elif req.method == "FETCH" and req.path.is_root:
            try:
                paths = self.management.composite_paths(req)
            except Lwm2mError:
                return
            composite = True
        else:
            return
        obs = self.observations.add(paths, serverobservation.trigger, composite=composite)
        key = id(request)
        self._by_request[key] = obs

        def cancelled() -> None:
            self.observations.remove(obs)
            self._by_request.pop(key, None)

        serverobservation.accept(cancelled)

    async def render_to_pipe(self, pipe: Any) -> Any:
        """aiocoap reassembles Block1 requests before ``render``; peek at each block first."""
        block1 = pipe.request.opt.block1
        if self.on_block1 is not None and block1 is not None:
            try:
                path = to_request(pipe.request).path
            except Lwm2mError:
                pass
            else:
                try:
                    self.on_block1(path, block1.block_number, bool(block1.more))
                except Exception:  # a listener must never break the transfer
                    log.exception("Block1 listener failed")
        return await super().render_to_pipe(pipe)

    async def render(self, request: Any) -> Any:
        try:
            req = to_request(request)
        except Lwm2mError as exc:
            return to_message(Response.error(exc))
        response = await self.management.handle(req)
        obs = self._by_request.get(id(request))
        if obs is not None and 0x40 <= response.code < 0x60:
            self.observations.sent(obs)
        if self.on_request is not None:
            try:
                self.on_request(req, response)
            except Exception:  # a logging hook must never break the answer
                log.exception("request logger failed")
        return to_message(response)

    def get_link_description(self) -> Any:
        return None  # LwM2M does not use /.well-known/core

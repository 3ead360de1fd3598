"""Sending a ``DownlinkRequest`` through the server's aiocoap context.

Requests go to the address the client registered from, below its alternate root path
(``</lwm2m>;rt="oma.lwm2m"`` → ``/lwm2m/3/0``), from the same socket that serves ``/rd``.
A request that gets no answer within ``timeout`` seconds is abandoned and reported as
``DeviceTimeoutError``; so are network-level failures (RST to our CON, retransmissions
exhausted, ICMP unreachable): for the caller they all mean "the device did not answer".

Abandoned means abandoned on the wire too (``transport.Exchanges``): its CON is no longer
retransmitted and a copy still waiting in the per-device backlog (NSTART=1) is never sent, so
one request the device dropped holds the next ones back for at most its own timeout.

Block-wise answers (RFC 7959): ordinary requests go through aiocoap's block-wise layer. An
Observe (and its cancel) must be sent as one plain message (its token is the observation's),
so its first answer may be block 0 of several: ``complete`` fetches the rest with GETs (FETCH
for composite) carrying Block2 num=1, 2, … and the request's other options but no Observe
(RFC 7959 §2.4, §3.4), and returns the assembled answer. Notifications are completed the same
way (``complete``, called by the server for a notification whose Block2 says more=1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiocoap
import aiocoap.error
import attrs
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from ..core.registration import Registration
from ..operations import DeviceAnswerError, DeviceTimeoutError
from .requests import Block, DownlinkRequest, RawResponse
from .transport import Exchanges, TokenPolicy, release_request, uri_base

log = logging.getLogger(__name__)

MAX_BLOCKWISE_BODY = 1 << 20
"""The largest block-wise answer assembled (1 MiB): more is a device error (502), not memory
the server gives away."""

_METHODS = {
    "GET": Code.GET,
    "PUT": Code.PUT,
    "POST": Code.POST,
    "DELETE": Code.DELETE,
    "FETCH": Code.FETCH,
    "IPATCH": Code.iPATCH,
}


def build_message(registration: Registration, request: DownlinkRequest) -> Any:
    scheme = "coaps" if registration.transport == "coaps" else "coap"
    message = aiocoap.Message(
        code=_METHODS[request.method],
        uri=uri_base(registration.address, scheme),
        payload=request.payload,
    )
    root = [s for s in registration.object_links.root_path.split("/") if s]
    message.opt.uri_path = tuple(root + [str(i) for i in request.path.ids])
    if request.query:
        message.opt.uri_query = request.query
    if request.content_format is not None:
        message.opt.content_format = request.content_format
    if request.accept is not None:
        message.opt.accept = request.accept
    if request.observe is not None:
        message.opt.observe = request.observe
    return message


def raw_response(message: Any) -> RawResponse:
    """An aiocoap response (or notification) as a ``RawResponse``."""
    cf = message.opt.content_format
    block2 = message.opt.block2
    etags = message.opt.etags
    return RawResponse(
        code=int(message.code),
        payload=bytes(message.payload),
        content_format=None if cf is None else int(cf),
        location_path=tuple(message.opt.location_path),
        observe=message.opt.observe,
        token=bytes(message.token or b""),
        block2=(
            None
            if block2 is None
            else Block(int(block2.block_number), bool(block2.more), int(block2.size_exponent))
        ),
        etag=bytes(etags[0]) if etags else None,
    )


class Downlink:
    """Sends requests from ``context``; ``tokens`` and ``exchanges`` are the context's installed
    ``TokenPolicy`` and ``Exchanges``."""

    def __init__(
        self, context: Any, tokens: TokenPolicy, exchanges: Exchanges | None = None
    ) -> None:
        self.context = context
        self.tokens = tokens
        self.exchanges = exchanges or Exchanges()

    async def send(
        self,
        registration: Registration,
        request: DownlinkRequest,
        timeout: float,
        *,
        on_observe: Callable[[RawResponse], None] | None = None,
    ) -> RawResponse:
        """Send and wait for the (whole) answer, within ``timeout`` for all of it.

        For an Observe that the device accepts, ``on_observe(raw)`` runs in the response
        future's done-callback and aiocoap's request is then released (``release_request``),
        so later notifications go by token to the server's notification hook, the same path as
        after a restart. A done-callback, not the code after ``await``: it runs in the loop
        iteration right after the response, before the next datagram is read, so even an
        immediate first notification finds the observation indexed. When that first answer is
        block 0 of several, ``on_observe`` gets it with ``raw.partial`` set and ``send``
        returns the assembled answer (or raises) after fetching the other blocks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = await self._exchange(registration, request, timeout, on_observe=on_observe)
        if not first.partial:
            return first
        return await self.complete(registration, request, first, deadline - loop.time())

    async def complete(
        self,
        registration: Registration,
        request: DownlinkRequest,
        first: RawResponse,
        timeout: float,
    ) -> RawResponse:
        """The whole answer whose first block is ``first`` (an answer to ``request`` or a
        notification of the observation ``request`` started). Block ``n`` is asked with
        ``request``'s method, path, Accept and body, Block2 ``n`` and no Observe (RFC 7959 §3.4:
        the rest of a notification is fetched with plain requests), one after the other, all
        within ``timeout``. A device error on a later block is returned as the answer; a
        transfer that does not add up raises ``DeviceAnswerError``."""
        if first.block2 is None or not first.block2.more:
            return first
        if first.block2.num != 0:
            raise DeviceAnswerError(
                f"{registration.endpoint!r} started a block-wise answer to "
                f"{request.describe()} with block {first.block2.num}, not 0"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        follow_up = attrs.evolve(request, observe=None, token=None)
        body = bytearray(first.payload)
        block = first.block2
        while block.more:
            if len(body) % block.size:
                raise DeviceAnswerError(
                    f"{registration.endpoint!r} sent a block of {len(body)} bytes that is not a "
                    f"whole number of {block.size}-byte blocks ({request.describe()})"
                )
            wanted = Block(len(body) // block.size, False, block.szx)
            raw = await self._exchange(
                registration, follow_up, deadline - loop.time(), block2=wanted
            )
            if not raw.success:
                log.info(
                    "%s answered block %d of %s with %d.%02d",
                    registration.endpoint,
                    wanted.num,
                    request.describe(),
                    raw.code >> 5,
                    raw.code & 0x1F,
                )
                return raw
            if raw.block2 is None:
                # the device sent the whole representation after all (RFC 7959 §2.2 allows a
                # server to ignore Block2 in a request): that is the answer
                return attrs.evolve(first, payload=raw.payload, block2=None)
            if first.etag is not None and raw.etag is not None and raw.etag != first.etag:
                # RFC 7959 §2.4: the representation changed between blocks; the pieces do not
                # belong together (for a notification, the next one brings the new value)
                raise DeviceAnswerError(
                    f"{registration.endpoint!r} changed the representation of "
                    f"{request.describe()} during the block-wise transfer (ETag)"
                )
            if raw.block2.num * raw.block2.size != len(body):
                raise DeviceAnswerError(
                    f"{registration.endpoint!r} answered block {wanted.num} of "
                    f"{request.describe()} with block {raw.block2.num} (size {raw.block2.size})"
                )
            body += raw.payload
            if len(body) > MAX_BLOCKWISE_BODY:
                raise DeviceAnswerError(
                    f"{registration.endpoint!r}'s block-wise answer to {request.describe()} is "
                    f"larger than {MAX_BLOCKWISE_BODY} bytes"
                )
            block = raw.block2
        return attrs.evolve(first, payload=bytes(body), block2=None)

    async def _exchange(
        self,
        registration: Registration,
        request: DownlinkRequest,
        timeout: float,
        *,
        on_observe: Callable[[RawResponse], None] | None = None,
        block2: Block | None = None,
    ) -> RawResponse:
        """One request, one answer (aiocoap assembles the blocks of ordinary requests)."""
        message = build_message(registration, request)
        # Observations, their cancels and our own Block2 follow-ups need the token of the
        # *first* message and no block-wise wrapper around it; other requests get aiocoap's
        # block-wise handling.
        plain = request.observe is not None or block2 is not None
        if block2 is not None:
            message.opt.block2 = BlockOption.BlockwiseTuple(block2.num, False, block2.szx)
        if request.token is not None:
            self.tokens.force(message, request.token)
        with self.exchanges.track() as sent:
            pending = self.context.request(message, handle_blockwise=not plain)
        if request.observe == 0:
            pending.response.add_done_callback(
                lambda future: self._accepted(future, pending, on_observe)
            )
        try:
            response = await asyncio.wait_for(pending.response, max(timeout, 0.0))
        except TimeoutError:
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} did not answer {request.describe()} within "
                f"{timeout:g} s"
            ) from None
        except aiocoap.error.Error as exc:
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} unreachable for {request.describe()}: {exc}"
            ) from None
        finally:
            self.tokens.discard(message)
            # answered, timed out or cancelled: nothing of this request stays on the wire
            # (its CON retransmissions, a copy in the backlog) to hold back the next ones
            self.exchanges.abandon(sent)
        return raw_response(response)

    @staticmethod
    def _accepted(
        future: Any, pending: Any, on_observe: Callable[[RawResponse], None] | None
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        raw = raw_response(future.result())
        if not raw.success or raw.observe is None:
            return  # not observable: aiocoap ends its request itself
        try:
            if on_observe is not None:
                on_observe(raw)
        except Exception:
            log.exception("keeping the new observation failed")
        finally:
            release_request(pending)

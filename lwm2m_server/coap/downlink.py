"""Sending a ``DownlinkRequest`` through the runtime's ``CoapServer`` and tracking the
observations the device accepted.

Requests go to the peer the client registered (or last updated) from, below its alternate root
path (``</lwm2m>;rt="oma.lwm2m"`` → ``/lwm2m/3/0``), from the same socket that serves ``/rd``:
over NoSec the socket address the Register came from, over CoAPs the DTLS session it came in
(the only way back through the device's NAT, and the only session an answer is accepted from:
the CoAP layer matches answers by token **and** peer). After a restart the remote is found
again from the registration's address (``CoapServer.resolve``; for CoAPs the restored session
with that address).

A request that gets no answer within ``timeout`` seconds is given up and reported as
``DeviceTimeoutError``; so are network-level failures (RST to our CON, retransmissions
exhausted, the DTLS session closed): for the caller they all mean "the device did not answer".
Giving up cancels the request in the CoAP layer, which frees its NSTART slot at once: a request
the device dropped holds the next ones back for at most its own timeout.

Block-wise answers (RFC 7959) are followed by the CoAP layer, for ordinary answers, for the
first answer of an Observe and for notifications alike (Block2 follow-ups without Observe,
RFC 7959 §2.4/§3.4); it refuses a transfer whose ETag changes or that grows past 1 MiB
(``Parameters.max_block2_body``) — a ``DeviceAnswerError`` here — and a block the device
answers with an error code is that error as the answer.

Observations: the first answer of an accepted Observe is handed to ``on_observe`` inside the
loop iteration that read it (before any later datagram), so the observation is indexed before
its first notification can arrive. Its handle stays alive in the CoAP layer (notifications come
as ``Notification`` events); ``Observations`` maps tokens to those handles so that cancelling,
adopting after a restart and forgetting are one call each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from keystore.coaps.sessions import Session
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import (
    Code,
    FailureReason,
    Message,
    Notification,
    RequestHandle,
    UnknownNotification,
)
from lwm2m_runtime.driver import RequestError
from lwm2m_runtime.server import CoapServer

from ..core.registration import Registration
from ..operations import DeviceAnswerError, DeviceTimeoutError
from .requests import DownlinkRequest, RawResponse

log = logging.getLogger(__name__)

Remote = Hashable
"""A NoSec socket address or a DTLS ``Session`` (``IncomingRequest.remote``)."""

_METHODS = {
    "GET": Code.GET,
    "PUT": Code.PUT,
    "POST": Code.POST,
    "DELETE": Code.DELETE,
    "FETCH": Code.FETCH,
    "IPATCH": Code.IPATCH,
}


def build_message(registration: Registration, request: DownlinkRequest) -> Message:
    root = [s for s in registration.object_links.root_path.split("/") if s]
    return Message.request(
        _METHODS[request.method],
        root + [str(i) for i in request.path.ids],
        query=request.query,
        payload=request.payload,
        token=request.token or b"",
        content_format=request.content_format,
        accept=request.accept,
        observe=request.observe,
    )


def raw_response(message: Message) -> RawResponse:
    """A CoAP answer (or notification) as a ``RawResponse`` (whole: the layer assembled it)."""
    etag = message.etag
    return RawResponse(
        code=message.code,
        payload=message.payload,
        content_format=message.content_format,
        location_path=tuple(message.location_path),
        observe=message.observe,
        token=message.token,
        etag=etag,
    )


@dataclass(slots=True)
class _Live:
    handle: RequestHandle
    registration_id: str


class Observations:
    """The CoAP layer's handles of our live observations, by token and by registration."""

    def __init__(self, coap: CoapServer) -> None:
        self.coap = coap
        self._by_token: dict[bytes, _Live] = {}
        self._by_registration: dict[str, set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def handle(self, token: bytes) -> RequestHandle | None:
        live = self._by_token.get(token)
        return None if live is None else live.handle

    def keep(self, token: bytes, handle: RequestHandle, registration_id: str) -> None:
        """``handle`` now carries the observation ``token`` (a new one, or one adopted from a
        notification after a restart or an address change): a handle it had before on
        another peer is forgotten, so notifications from there are unknown again."""
        previous = self._by_token.get(token)
        if previous is not None and previous.handle is not handle:
            self.forget(token, reactive=False)
        self._by_token[token] = _Live(handle, registration_id)
        self._by_registration.setdefault(registration_id, set()).add(token)

    def forget(self, token: bytes, *, reactive: bool = True) -> None:
        """Stop tracking ``token``. ``reactive``: its next notification gets RST (RFC 7641
        §3.6), which ends the observation on the device; otherwise the layer just forgets it."""
        live = self._by_token.pop(token, None)
        if live is None:
            return
        tokens = self._by_registration.get(live.registration_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._by_registration[live.registration_id]
        self._cancel(live.handle, reactive=reactive)

    def leave(self, registration_id: str, remote: Remote) -> None:
        """The registration moved to ``remote``: forget its handles on other peers in the layer
        (no RST sent; the uplink refuses their notifications from now on)."""
        for token in list(self._by_registration.get(registration_id, ())):
            live = self._by_token[token]
            if live.handle.peer != remote:
                self.forget(token, reactive=False)

    def forget_registration(self, registration_id: str) -> None:
        """The registration ended: its observations end with it (RST to the next
        notification of each)."""
        for token in list(self._by_registration.get(registration_id, ())):
            self.forget(token)

    def _cancel(self, handle: RequestHandle, *, reactive: bool = False) -> None:
        try:
            driver = self.coap.driver(handle.peer)
        except ConnectionError:
            return  # the listener is closed: nothing to cancel
        if reactive:
            driver.endpoint.cancel_observe(handle)
        else:
            driver.endpoint.cancel(handle)
        driver.kick()

    def adopt(
        self, event: UnknownNotification, registration_id: str, request: Message | None
    ) -> RequestHandle:
        """ACK an unknown notification and make its observation a live one on its peer."""
        driver = self.coap.driver(event.peer)
        handle = driver.endpoint.accept_notification(event, request)
        driver.kick()
        self.keep(event.message.token, handle, registration_id)
        return handle

    def acknowledge(self, event: UnknownNotification) -> None:
        """ACK an unknown notification that ended its observation: nothing to adopt."""
        driver = self.coap.driver(event.peer)
        driver.endpoint.cancel(driver.endpoint.accept_notification(event))
        driver.kick()

    def drop(self, handle: RequestHandle, *, reactive: bool = True) -> None:
        """Stop observing through ``handle`` (a notification on it was refused or ended the
        observation); the token's tracking goes too if it was this handle."""
        live = self._by_token.get(handle.token)
        if live is not None and live.handle is handle:
            self.forget(handle.token, reactive=reactive)
        else:
            self._cancel(handle, reactive=reactive)

    def withhold(self, event: Notification | UnknownNotification) -> bool:
        """Leave a notification the store refused unanswered (no ACK, no RST): the device
        retransmits it and the observation lives on (``Endpoint.withhold_notification``).
        False when its ACK cannot be taken back (a block-wise value: its first block was
        acknowledged when the rest was fetched)."""
        peer = event.peer if isinstance(event, UnknownNotification) else event.handle.peer
        try:
            driver = self.coap.driver(peer)
        except ConnectionError:
            return False
        return driver.endpoint.withhold_notification(event)

    def reject(self, event: UnknownNotification, *, answer: bool = True) -> None:
        """RST an unknown notification (``answer=False``: say nothing, e.g. to a NON from a
        stranger, or while the device should retransmit)."""
        if not answer:
            return
        driver = self.coap.driver(event.peer)
        driver.endpoint.reject_notification(event)
        driver.kick()


class Downlink:
    """Sends requests to registered devices through ``coap``."""

    def __init__(self, coap: CoapServer) -> None:
        self.coap = coap
        self.observations = Observations(coap)
        self._remotes: dict[str, tuple[Address, str, Remote]] = {}

    # -- where a device is ------------------------------------------------------------------
    def remember(self, registration: Registration, remote: Remote) -> None:
        """The peer ``registration`` last spoke from (Register/Update): downlinks go there, and
        its live observations move with it (a notification from the old peer is a stranger's
        now; the first one from the new peer is adopted there)."""
        registration_id = registration.registration_id
        known = self._remotes.get(registration_id)
        if known is not None and known[2] != remote:
            self.observations.leave(registration_id, remote)
        self._remotes[registration_id] = (registration.address, registration.transport, remote)

    def forget(self, registration_id: str) -> None:
        self._remotes.pop(registration_id, None)
        self.observations.forget_registration(registration_id)

    async def remote_of(self, registration: Registration) -> Remote:
        known = self._remotes.get(registration.registration_id)
        if known is not None:
            address, transport, remote = known
            if (
                address == registration.address
                and transport == registration.transport
                and not (isinstance(remote, Session) and remote.closed)
            ):
                return remote
        address = registration.address
        remote = await self.coap.resolve(
            address.host, address.port, secure=registration.transport == "coaps"
        )
        self._remotes[registration.registration_id] = (address, registration.transport, remote)
        return remote

    # -- requests ---------------------------------------------------------------------------
    async def send(
        self,
        registration: Registration,
        request: DownlinkRequest,
        timeout: float,
        *,
        on_observe: Callable[[RawResponse], None] | None = None,
    ) -> RawResponse:
        """Send and wait for the (whole) answer, within ``timeout`` for all of it.

        For an Observe the device accepts (2.xx with Observe), ``on_observe(raw)`` runs as soon
        as the answer is in (see the module docstring) and the observation's handle is kept."""

        def observed(handle: RequestHandle, message: Message) -> None:
            if message.observe is None or not 64 <= message.code < 96:
                return  # not observable: the layer ended it already
            self.observations.keep(handle.token, handle, registration.registration_id)
            if on_observe is not None:
                on_observe(raw_response(message))

        try:
            remote = await self.remote_of(registration)
            if request.token is not None:
                # an active cancel reuses the observation's token (RFC 7641 §3.6): the layer
                # must not hold the token for the live observation any more
                self.observations.forget(request.token, reactive=False)
            response = await self.coap.request(
                remote,
                build_message(registration, request),
                max(timeout, 0.0),
                on_response=observed if request.observe == 0 else None,
            )
        except TimeoutError:
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} did not answer {request.describe()} within "
                f"{timeout:g} s"
            ) from None
        except RequestError as exc:
            if exc.reason is FailureReason.BLOCK_TRANSFER:
                raise DeviceAnswerError(
                    f"{registration.endpoint!r}'s block-wise answer to {request.describe()} "
                    f"does not add up: {exc.detail}"
                ) from None
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} unreachable for {request.describe()}: {exc}"
            ) from None
        except (ConnectionError, OSError) as exc:
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} unreachable for {request.describe()}: {exc}"
            ) from None
        return raw_response(response)

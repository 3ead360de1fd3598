"""Queue mode simulation: a device that sleeps between its own transmissions.

LwM2M queue mode (Core §6.5) means the client is reachable only for a while (at least CoAP's
MAX_TRANSMIT_WAIT, 93 s by default) after it sent something; the server must hold its requests
until the client shows up again (typically with an Update). To test the server's queue, this
client really goes deaf: while "sleeping" every incoming request is dropped *before* aiocoap's
message layer sees it, so there is no ACK, no response and no entry in the deduplication cache
(the server's retransmissions are dropped too, and a retransmission after waking is answered).

Any datagram the client sends (request, response, notification, ACK) keeps it awake for
``awake_time`` seconds from then on.

The gate is installed by wrapping two methods of aiocoap's per-transport ``MessageManager``
instance (``dispatch_message`` for incoming, ``message_interface.send`` for outgoing). These are
aiocoap internals (0.4.x): ``install`` checks for them and raises a clear error if a future
aiocoap moves them, rather than silently not sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

log = logging.getLogger(__name__)

DEFAULT_AWAKE_TIME = 93.0
"""CoAP MAX_TRANSMIT_WAIT with default transmission parameters (RFC 7252 §4.8.2)."""


class SleepGate:
    """Drops incoming requests while the device sleeps; sending wakes it up."""

    def __init__(
        self,
        awake_time: float = DEFAULT_AWAKE_TIME,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.awake_time = awake_time
        self.enabled = enabled
        self.clock = clock
        self._awake_until = 0.0
        self.dropped = 0

    @property
    def awake(self) -> bool:
        return not self.enabled or self.clock() < self._awake_until

    def wake(self) -> None:
        """Stay reachable for ``awake_time`` seconds from now."""
        self._awake_until = self.clock() + self.awake_time

    def sleep(self) -> None:
        """Fall asleep at once (tests; a device that just finished its work)."""
        self._awake_until = 0.0

    def install(self, context: Any) -> None:
        """Wrap every UDP message manager of an aiocoap ``Context``."""
        for manager in message_managers(context, "queue mode"):
            gate_messages(manager, self._let_in, self._sending)

    def _let_in(self, message: Any) -> bool:
        is_ping = message.code == Code.EMPTY and message.mtype == Type.CON
        if self.enabled and (message.code.is_request() or is_ping) and not self.awake:
            self.dropped += 1
            log.info("sleeping: dropped %s from %s", message.code, message.remote)
            return False
        return True

    def _sending(self, _message: Any) -> bool:
        if self.enabled:
            self.wake()
        return True


def message_managers(context: Any, what: str) -> list[Any]:
    """Every aiocoap ``MessageManager`` of ``context`` (udp6 and our CoAPs); a clear error
    naming ``what`` needs them when this aiocoap keeps them elsewhere, rather than a
    simulation that silently does nothing."""
    managers = [
        interface.token_interface
        for interface in getattr(context, "request_interfaces", [])
        if hasattr(getattr(interface, "token_interface", None), "dispatch_message")
    ]
    if not managers:
        raise RuntimeError(
            f"{what}: no aiocoap MessageManager found on the context; this aiocoap "
            "version is not supported by lwm2m_client"
        )
    return managers


def gate_messages(
    manager: Any, receive: Callable[[Any], bool], send: Callable[[Any], bool]
) -> None:
    """Below aiocoap's message layer of ``manager``: an incoming message reaches it only when
    ``receive(message)`` says so, an outgoing one leaves only when ``send(message)`` does (a
    dropped one was never there: no ACK, no deduplication entry, no retransmission state)."""
    dispatch = manager.dispatch_message
    interface = manager.message_interface
    transmit = interface.send

    def gated_dispatch(message: Any) -> None:
        if receive(message):
            dispatch(message)

    def gated_send(message: Any) -> None:
        if send(message):
            transmit(message)

    manager.dispatch_message = gated_dispatch
    interface.send = gated_send

"""A device that drops off the network: the "disappears mid-download" simulation.

While the outage lasts every datagram in either direction is dropped below aiocoap's message
layer (like ``queue_mode.SleepGate``, whose wrapping this mirrors): no ACK, no response, no
retransmission of our own, no Update. The server sees exactly what it sees when a device loses
coverage. Unlike queue mode, sending does not end it; only time does (or never).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


class Outage:
    def __init__(self) -> None:
        self._back: asyncio.Event | None = None
        self.dropped = 0

    @property
    def active(self) -> bool:
        return self._back is not None and not self._back.is_set()

    def begin(self) -> asyncio.Event:
        """Silent from now on; the event is set when ``end`` is called."""
        if self._back is None or self._back.is_set():
            self._back = asyncio.Event()
            log.info("simulation: the device is out of reach")
        return self._back

    def end(self) -> None:
        if self._back is not None and not self._back.is_set():
            log.info("simulation: the device is back (dropped %d datagrams)", self.dropped)
            self._back.set()

    def install(self, context: Any) -> None:
        """Wrap every message manager of an aiocoap ``Context`` (udp6 and our CoAPs)."""
        managers = [
            interface.token_interface
            for interface in getattr(context, "request_interfaces", [])
            if hasattr(getattr(interface, "token_interface", None), "dispatch_message")
        ]
        if not managers:
            raise RuntimeError("outage simulation: no aiocoap MessageManager on the context")
        for manager in managers:
            self._wrap(manager)

    def _wrap(self, manager: Any) -> None:
        dispatch = manager.dispatch_message
        interface = manager.message_interface
        send = interface.send

        def gated_dispatch(message: Any) -> None:
            if self.active:
                self.dropped += 1
                return
            dispatch(message)

        def gated_send(message: Any) -> None:
            if self.active:
                self.dropped += 1
                return
            send(message)

        manager.dispatch_message = gated_dispatch
        interface.send = gated_send

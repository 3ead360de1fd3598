"""A device that drops off the network: the "disappears mid-download" simulation.

While the outage lasts every datagram in either direction is dropped below aiocoap's message
layer (with ``queue_mode.SleepGate``'s wrapping, ``gate_messages``): no ACK, no response, no
retransmission of our own, no Update. The server sees exactly what it sees when a device loses
coverage. Unlike queue mode, sending does not end it; only time does (or never).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .queue_mode import gate_messages, message_managers

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
        for manager in message_managers(context, "outage simulation"):
            gate_messages(manager, self._passes, self._passes)

    def _passes(self, _message: Any) -> bool:
        """Nothing passes in either direction while the outage lasts."""
        if self.active:
            self.dropped += 1
            return False
        return True

"""The ``UpdateHost`` of a real ``Lwm2mClient``: how objects 5 and 9 reach the network.

Downloads go over the client's own aiocoap context when the Package URI has the scheme the
client registered with, so a ``coaps://`` package is fetched over the device's own DTLS
credentials (and over the very session it registered with when the package is on the LwM2M
server's address); the queue-mode and outage gates see those datagrams too, so a sleeping or
vanished device downloads nothing. A ``coap://`` package for a ``coaps://`` client goes
through a plain context opened for it. ``coaps://`` is offered only when the client has DTLS
credentials, and ``http``/``https`` through aiohttp always (``https`` verified against the
system's trust store or the client's ``ca_file``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiocoap

from .firmware import UpdateSimulation
from .package_download import BlockHook, DownloadError, DownloadFailure, fetch, https_context

if TYPE_CHECKING:
    from .client import Lwm2mClient

log = logging.getLogger(__name__)


class ClientUpdateHost:
    def __init__(
        self,
        client: Lwm2mClient,
        simulation: UpdateSimulation,
        *,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client = client
        self.simulation = simulation
        self._plain: Any = None
        self._tls = https_context(ca_file)  # read now: a bad file fails at construction

    @property
    def schemes(self) -> tuple[str, ...]:
        secure = ("coaps",) if self.client.dtls is not None else ()
        return ("coap", *secure, "http", "https")

    async def fetch(self, uri: str, on_block: BlockHook) -> bytes:
        return await fetch(
            uri,
            supported=self.schemes,
            coap_context=self._context_for,
            block_timeout=self.simulation.block_timeout,
            on_block=on_block,
            tls=self._tls,
        )

    async def _context_for(self, scheme: str) -> Any:
        client = self.client
        if scheme == client.server.scheme:
            if client.context is None:
                raise DownloadError(DownloadFailure.CONNECTION_LOST, "the client is stopped")
            return client.context
        if scheme == "coap":
            if self._plain is None:
                self._plain = await aiocoap.Context.create_client_context()
            return self._plain
        raise DownloadError(DownloadFailure.UNSUPPORTED_PROTOCOL, f"no credentials for {scheme}")

    def vanish(self, duration: float | None) -> asyncio.Task[None]:
        back = self.client.outage.begin()

        async def come_back() -> None:
            if duration is None:
                await back.wait()  # never, unless someone ends the outage by hand
                return
            await asyncio.sleep(duration)
            self.client.outage.end()
            if self.client.registered:
                await self.client.update_quietly()

        return asyncio.get_running_loop().create_task(come_back())

    async def reboot(self, apply: Callable[[], None]) -> None:
        await self.client.reboot(self.simulation.reboot_delay, apply)

    async def announce_objects(self) -> None:
        if self.client.registered:
            await self.client.update_quietly(objects=True)

    async def close(self) -> None:
        if self._plain is not None:
            context, self._plain = self._plain, None
            await context.shutdown()

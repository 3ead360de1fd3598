"""Building the update job manager for a running ``Lwm2mServer``, so the service needs one call
(``create_manager(self)``) and knows nothing of jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .manager import FirmwareManager, registration_transport, settings_from

if TYPE_CHECKING:
    from ..service import Lwm2mServer


def create_manager(server: Lwm2mServer) -> FirmwareManager:
    return FirmwareManager(
        server,
        server.stores.firmware_jobs,
        # the package library and the download server, when the server has them
        packages=getattr(server, "packages", None),
        downloads=getattr(server, "downloads", None),
        listen=server.bus.listen,
        publish=server.bus.publish,
        settings=settings_from(server.config.firmware),
        clock=server.clock,
        transport=registration_transport(server),
    )

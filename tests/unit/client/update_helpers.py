"""A fake ``UpdateHost`` and request helpers: objects 5 and 9 driven in memory through
``DeviceManagement`` (the same code path a server's request takes), no sockets."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from lwm2m_client.attributes import AttributeStore
from lwm2m_client.device import build_default_tree
from lwm2m_client.management import DeviceManagement, Request, Response
from lwm2m_client.models import default_models
from lwm2m_client.objects import ObjectTree
from lwm2m_client.package_download import BlockHook, DownloadError
from object_models.content_format import ContentFormat
from object_models.path import LwM2mPath

CHANGED, METHOD_NOT_ALLOWED = 0x44, 0x85


class FakeHost:
    """Serves ``packages[uri]`` (bytes, or a ``DownloadError`` to raise) in ``blocks`` pieces."""

    schemes = ("coap", "coaps", "http", "https")

    def __init__(self) -> None:
        self.packages: dict[str, bytes | DownloadError] = {}
        self.blocks = 4
        self.hold: asyncio.Event | None = None
        """When set to an unset event, downloads wait for it (a download in progress)."""
        self.fetched: list[str] = []
        self.vanished: list[float | None] = []
        self.back: asyncio.Future[None] | None = None
        self.reboots = 0
        self.announced = 0

    async def fetch(self, uri: str, on_block: BlockHook) -> bytes:
        self.fetched.append(uri)
        if self.hold is not None:
            await self.hold.wait()
        found = self.packages[uri]
        if isinstance(found, DownloadError):
            raise found
        for number in range(1, self.blocks + 1):
            await on_block(number)
        return found

    def vanish(self, duration: float | None) -> asyncio.Future[None]:
        self.vanished.append(duration)
        self.back = asyncio.get_running_loop().create_future()
        return self.back

    async def reboot(self, apply: Callable[[], None]) -> None:
        self.reboots += 1
        apply()

    async def announce_objects(self) -> None:
        self.announced += 1


def tree() -> ObjectTree:
    return build_default_tree(
        default_models(), endpoint="unit", server_uri="coap://127.0.0.1", lifetime=60
    )


def management(objects: ObjectTree) -> DeviceManagement:
    return DeviceManagement(objects, AttributeStore())


def uri_with_digest(base: str, data: bytes) -> str:
    return f"{base}?sha256={hashlib.sha256(data).hexdigest()}"


async def write_text(dm: DeviceManagement, path: str, text: str) -> Response:
    return await dm.handle(
        Request("PUT", LwM2mPath.parse(path), content_format=ContentFormat.TEXT,
                payload=text.encode())
    )  # fmt: skip


async def write_opaque(dm: DeviceManagement, path: str, data: bytes) -> Response:
    return await dm.handle(
        Request("PUT", LwM2mPath.parse(path), content_format=ContentFormat.OPAQUE, payload=data)
    )


async def execute(dm: DeviceManagement, path: str, args: str = "") -> Response:
    return await dm.handle(Request("POST", LwM2mPath.parse(path), payload=args.encode()))


def recorder(objects: ObjectTree, *paths: str) -> list[tuple[str, Any]]:
    """(path, value) of every change of ``paths``, in order."""
    seen: list[tuple[str, Any]] = []
    wanted = {LwM2mPath.parse(p) for p in paths}

    def listen(changed: Any) -> None:
        for path in changed:
            if path in wanted:
                seen.append((str(path), objects.get_value(path)))

    objects.add_listener(listen)
    return seen

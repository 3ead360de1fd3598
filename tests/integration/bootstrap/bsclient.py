"""A device's bootstrap side over real sockets, for the integration tests.

``FakeClient`` (the unit tests' in-memory client) keeps the objects; this puts it behind an
aiocoap server context on an ephemeral loopback port that also sends the Bootstrap-Request, so
the bootstrap server's downlink reaches the socket the request came from, as with a device.
What ``lwm2m_client`` would need to do this itself is listed in docs/bootstrap.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from bootstrap_server.core.session import Request, Step
from object_models.path import LwM2mPath
from tests.unit.bootstrap.fake_client import FakeClient


def _request(message: Any) -> Request:
    segments = list(message.opt.uri_path)
    method = message.code.name
    if segments == ["bs"]:
        return Request(0, Step.FINISH, "POST", None)
    path = LwM2mPath.from_ids(*(int(s) for s in segments))
    step = {"GET": Step.READ, "DELETE": Step.DELETE, "PUT": Step.WRITE}.get(method, Step.WRITE)
    if method == "GET" and path.is_root:
        step = Step.DISCOVER
    cf, accept = message.opt.content_format, message.opt.accept
    return Request(
        0,
        step,
        method,
        path,
        bytes(message.payload),
        None if cf is None else int(cf),
        None if accept is None else int(accept),
    )


class _Site(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    def __init__(self, owner: BootstrapTestClient) -> None:
        super().__init__()
        self.owner = owner

    async def render(self, request: Any) -> Any:
        reply = self.owner.fake.handle(_request(request))
        if self.owner.fake.finished:
            self.owner.done.set()
        message = aiocoap.Message(code=Code(reply.code), payload=reply.payload)
        if reply.content_format is not None:
            message.opt.content_format = reply.content_format
        return message

    def get_link_description(self) -> Any:
        return None


class BootstrapTestClient:
    def __init__(self, endpoint: str, fake: FakeClient | None = None) -> None:
        self.endpoint = endpoint
        self.fake = fake or FakeClient()
        self.done = asyncio.Event()
        self.context: Any = None

    async def __aenter__(self) -> BootstrapTestClient:
        self.context = await aiocoap.Context.create_server_context(
            _Site(self), bind=("127.0.0.1", 0), transports=["udp6"])  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.context.shutdown()

    async def request(self, uri: str, method: Any, path: str, query: list[str],
                      accept: int | None = None) -> Any:  # fmt: skip
        message = aiocoap.Message(code=method, uri=f"{uri}/{path}")
        message.opt.uri_query = query
        if accept is not None:
            message.opt.accept = accept
        return await asyncio.wait_for(self.context.request(message).response, 10)

    async def bootstrap(self, uri: str, *, pct: int | None = None, wait: float = 10.0) -> Any:
        """Bootstrap-Request, then wait for Bootstrap-Finish; returns the /bs answer."""
        query = [f"ep={self.endpoint}"] + ([f"pct={pct}"] if pct is not None else [])
        self.done.clear()
        answer = await self.request(uri, Code.POST, "bs", query)
        if answer.code == Code.CHANGED:
            await asyncio.wait_for(self.done.wait(), wait)
        return answer

    async def pack(self, uri: str, accept: int | None = None) -> Any:
        return await self.request(uri, Code.GET, "bspack", [f"ep={self.endpoint}"], accept)

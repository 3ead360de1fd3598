"""A tiny LwM2M server on aiocoap, just enough to drive ``lwm2m_client`` over real sockets.

It accepts Register (``POST /rd``), Update (``POST /rd/<id>``), De-register (``DELETE /rd/<id>``)
and Send (``POST /dp``), records each as an ``Uplink`` on a queue, and sends downlink requests to
the address the Register came from — exactly what a real server does, so the client's "same
socket for uplink and downlink" property is exercised. ``raw_socket()`` gives a bare UDP socket
for the tests that need control over tokens and message types (Observe cancellation by
Observe=1 on the same token, or by RST), which aiocoap's client API does not expose.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import aiocoap
import aiocoap.resource
import attrs
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type


@attrs.define
class Uplink:
    kind: str  # register, update, deregister, send
    path: tuple[str, ...]
    query: tuple[str, ...]
    content_format: int | None
    payload: bytes
    remote: Any

    @property
    def params(self) -> dict[str, str | None]:
        result: dict[str, str | None] = {}
        for item in self.query:
            key, sep, value = item.partition("=")
            result[key] = value if sep else None
        return result


class _Root(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    def __init__(self, server: FakeLwm2mServer) -> None:
        super().__init__()
        self.server = server

    async def render(self, request: Any) -> Any:
        return self.server._handle(request)


class FakeLwm2mServer:
    def __init__(self) -> None:
        self.context: Any = None
        self.uplinks: asyncio.Queue[Uplink] = asyncio.Queue()
        self.registrations: dict[str, Uplink] = {}
        self.remote: Any = None  # where the last Register/Update came from
        self.update_code = Code.CHANGED
        self.send_code = Code.CHANGED
        self._ids = itertools.count(1)

    async def start(self) -> None:
        self.context = await aiocoap.Context.create_server_context(
            _Root(self), bind=("127.0.0.1", 0), transports=["udp6"]
        )

    async def stop(self) -> None:
        if self.context is not None:
            await self.context.shutdown()

    @property
    def port(self) -> int:
        manager = self.context.request_interfaces[0].token_interface
        return int(manager.message_interface.transport.get_extra_info("socket").getsockname()[1])

    @property
    def uri(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    # -- uplink ---------------------------------------------------------------------------------
    def _handle(self, request: Any) -> Any:
        path = tuple(request.opt.uri_path)
        cf = request.opt.content_format
        uplink = Uplink(
            kind="?",
            path=path,
            query=tuple(request.opt.uri_query),
            content_format=None if cf is None else int(cf),
            payload=bytes(request.payload),
            remote=request.remote,
        )
        response: Any
        if path == ("rd",) and request.code == Code.POST:
            uplink.kind = "register"
            reg_id = f"r{next(self._ids)}"
            self.registrations[reg_id] = uplink
            self.remote = request.remote
            response = aiocoap.Message(code=Code.CREATED, location_path=("rd", reg_id))
        elif len(path) == 2 and path[0] == "rd" and request.code == Code.POST:
            uplink.kind = "update"
            self.remote = request.remote
            known = path[1] in self.registrations
            code = self.update_code if known else Code.NOT_FOUND
            response = aiocoap.Message(code=code)
        elif len(path) == 2 and path[0] == "rd" and request.code == Code.DELETE:
            uplink.kind = "deregister"
            known = self.registrations.pop(path[1], None) is not None
            response = aiocoap.Message(code=Code.DELETED if known else Code.NOT_FOUND)
        elif path == ("dp",) and request.code == Code.POST:
            uplink.kind = "send"
            response = aiocoap.Message(code=self.send_code)
        else:
            response = aiocoap.Message(code=Code.NOT_FOUND)
        self.uplinks.put_nowait(uplink)
        return response

    async def next_uplink(self, kind: str | None = None, timeout: float = 5.0) -> Uplink:
        """The next uplink (of ``kind``, skipping others)."""
        async with asyncio.timeout(timeout):
            while True:
                uplink = await self.uplinks.get()
                if kind is None or uplink.kind == kind:
                    return uplink

    # -- downlink -------------------------------------------------------------------------------
    def message(
        self,
        code: Any,
        path: str,
        *,
        accept: int | None = None,
        content_format: int | None = None,
        payload: bytes = b"",
        query: tuple[str, ...] = (),
        observe: int | None = None,
        reliable: bool = True,
    ) -> Any:
        kwargs: dict[str, Any] = {
            "code": code,
            "uri_path": tuple(s for s in path.split("/") if s),
            "payload": payload,
        }
        if accept is not None:
            kwargs["accept"] = accept
        if content_format is not None:
            kwargs["content_format"] = content_format
        if query:
            kwargs["uri_query"] = query
        if observe is not None:
            kwargs["observe"] = observe
        if not reliable:
            kwargs["transport_tuning"] = aiocoap.Unreliable  # NON: no retransmissions
        msg = aiocoap.Message(**kwargs)
        msg.remote = self.remote
        return msg

    async def request(self, code: Any, path: str, *, timeout: float = 5.0, **kwargs: Any) -> Any:
        """Send a downlink request to the registered client and return the response."""
        async with asyncio.timeout(timeout):
            return await self.context.request(self.message(code, path, **kwargs)).response

    def observe(self, path: str, **kwargs: Any) -> Any:
        """Start an observation; returns aiocoap's request (``.response``, ``.observation``)."""
        return self.context.request(self.message(Code.GET, path, observe=0, **kwargs))

    # -- raw socket for token-level tests -------------------------------------------------------
    def raw_socket(self) -> RawCoap:
        return RawCoap(self.remote.sockaddr[0], self.remote.sockaddr[1])


class RawCoap:
    """A plain UDP socket speaking single CoAP messages (encode/decode via aiocoap.Message)."""

    def __init__(self, host: str, port: int) -> None:
        mapped = host.removeprefix("::ffff:")
        self.target = (mapped, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self._mid = itertools.count(0x1000)

    def close(self) -> None:
        self.sock.close()

    def send(self, message: Any) -> None:
        if message.mid is None:
            message.mid = next(self._mid)
        self.sock.sendto(message.encode(), self.target)

    async def receive(self, timeout: float = 3.0) -> Any:
        """The next message from the client under test. Datagrams from anywhere else are
        ignored, as a CoAP endpoint matches its peer (RFC 7252 §4.4/§5.3.2): this socket's
        port is an ephemeral one that another test's peer may have sent to a moment before
        (xdist runs tests in parallel and ports get reused)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                data, source = await loop.sock_recvfrom(self.sock, 2048)
                if (source[0], source[1]) == self.target:
                    return aiocoap.Message.decode(data)

    async def receive_none(self, timeout: float) -> bool:
        """True when nothing arrives within ``timeout`` seconds."""
        try:
            await self.receive(timeout)
        except TimeoutError:
            return True
        return False

    def ack(self, message: Any) -> None:
        if message.mtype == Type.CON:
            self.send(raw_message(Type.ACK, Code.EMPTY, mid=message.mid))

    def rst(self, message: Any) -> None:
        self.send(raw_message(Type.RST, Code.EMPTY, mid=message.mid))


def raw_message(
    mtype: Any, code: Any, *, token: bytes = b"", mid: int | None = None, **options: Any
) -> Any:
    """A message with type, token and MID set by hand (aiocoap deprecates them as kwargs)."""
    message = aiocoap.Message(code=code, **options)
    message.mtype = mtype
    message.token = token
    message.mid = mid
    return message


class Notifications:
    """Collects an aiocoap client observation into a queue.

    Waiting on aiocoap's own iterator with a timeout cancels its internal future and breaks the
    iterator for good, so a task drains it into a queue that can be waited on safely.
    """

    def __init__(self, request: Any) -> None:
        self.request = request
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async for message in self.request.observation:
            self.queue.put_nowait(message)

    async def next(self, timeout: float = 3.0) -> Any:
        async with asyncio.timeout(timeout):
            return await self.queue.get()

    async def none_within(self, timeout: float) -> bool:
        try:
            await self.next(timeout)
        except TimeoutError:
            return True
        return False

    def cancel(self) -> None:
        self.request.observation.cancel()
        self._task.cancel()

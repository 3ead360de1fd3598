"""``CoapServer`` calls an object handler through its bound ``__call__`` (cheaper than calling
the instance); what is called, and what it answers, must be the same for every kind of
callable, including a replaced handler."""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

from lwm2m_runtime.coap import Code, Message, parse, serialize
from lwm2m_runtime.server import CoapServer, IncomingRequest, _direct


class Site:
    def __init__(self, code: int) -> None:
        self.code = code
        self.seen = 0

    def __call__(self, request: IncomingRequest) -> Message:
        self.seen += 1
        return Message.response(self.code)


class Static:
    @staticmethod
    def __call__(request: Any) -> Any:
        return ("static", request)


class Inherited(Site):
    pass


def _function(request: Any) -> Any:
    return ("function", request)


def test_every_kind_of_callable_is_called_as_itself() -> None:
    site = Site(Code.CHANGED)
    assert _direct(site)(None) == Message.response(Code.CHANGED)  # type: ignore[arg-type]
    assert site.seen == 1
    inherited = Inherited(Code.CREATED)
    assert _direct(inherited)(None).code == Code.CREATED  # type: ignore[arg-type, union-attr]
    assert _direct(Static())("r") == ("static", "r")  # type: ignore[arg-type]
    assert _direct(_function) is _function
    partial = functools.partial(_function)
    assert _direct(partial) is partial


async def test_an_object_handler_answers_and_a_replaced_one_takes_over() -> None:
    first, second = Site(Code.CHANGED), Site(Code.DELETED)
    server = CoapServer(first)
    await server.start(host="127.0.0.1", port=0)
    assert server.coap_address is not None
    loop = asyncio.get_running_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            for mid, site in ((1, first), (2, second)):
                server.handler = site
                assert server.handler is site
                request = Message.request(Code.POST, "/rd/x", token=b"t").replace(mid=mid)
                sock.sendto(serialize(request), server.coap_address)
                answer = parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
                assert (answer.mid, answer.code) == (mid, site.code)
        assert (first.seen, second.seen) == (1, 1)
    finally:
        await server.stop()

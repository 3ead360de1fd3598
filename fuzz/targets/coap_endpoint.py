"""Fuzz target: the sans-IO CoAP endpoint, fed a sequence of datagrams from up to four peers.

``Endpoint.receive_datagram`` must never raise (a refused datagram becomes a counter, an event
and the RFC's answer). The endpoint is also a client with one observation open to peer 0
(token ``TOKEN``) so that responses, notifications and RSTs reach the client-side code, and it
answers every request it delivers (2.05 with a body sized from the request, so that Block2
slicing runs), then sends, and runs its timers.

Input layout: ``_chunks`` (datagrams, each with its peer and a clock step).
"""

from __future__ import annotations

import random

import atheris

from ._chunks import PEERS, TOKEN, chunks

with atheris.instrument_imports(include=["lwm2m_runtime"]):
    from lwm2m_runtime.coap.endpoint import Endpoint
    from lwm2m_runtime.coap.events import RequestReceived
    from lwm2m_runtime.coap.message import Message
    from lwm2m_runtime.coap.numbers import Code


def client_endpoint() -> Endpoint:
    """An endpoint with the observation of the module docstring already sent."""
    endpoint = Endpoint(rng=random.Random(0))
    endpoint.send_request(PEERS[0], Message.request(Code.GET, "/3/0/13", token=TOKEN, observe=0))
    endpoint.datagrams_to_send(0.0)
    return endpoint


def TestOneInput(data: bytes) -> None:
    endpoint = client_endpoint()
    now = 0.0
    for ctrl, datagram in chunks(data):
        now += (ctrl >> 2) * 0.25
        endpoint.receive_datagram(datagram, PEERS[ctrl & 3], now)
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, RequestReceived):
                size = (len(event.message.payload) * 3) % 3000
                endpoint.respond(event.exchange, Message.response(Code.CONTENT, b"v" * size))
        endpoint.datagrams_to_send(now)
        endpoint.handle_timer(now)

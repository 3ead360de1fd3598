"""An active cancel queued for a sleeping device, on a cluster (docs/cluster.md, "Observations
across nodes"): the operator who cancelled sees the observation gone from every node's listing
at once (as on one node, where an active cancel removes the observation before its request is
sent or queued), and the cancelling GET (Observe=1, the observation's token) still reaches the
device when it wakes up, wherever it wakes.

Two ``Lwm2mServer`` nodes on one real ``redis-server``; the device is a raw CoAP peer in queue
mode whose datagrams reach node A."""

from __future__ import annotations

from pathlib import Path

from keystore.store.engines import StoreSettings
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import eventually, server_config


async def test_an_active_cancel_queued_for_a_sleeping_device_is_no_longer_listed(
    tmp_path: Path, redis_url: str
) -> None:
    settings = StoreSettings("redis", redis_url, "qcancel")
    a = Lwm2mServer(server_config(tmp_path / "a", store=settings))
    b = Lwm2mServer(server_config(tmp_path / "b", store=settings))
    await a.start()
    await b.start()
    requests: list[raw.Msg] = []

    def device(msg: raw.Msg) -> raw.Msg:
        requests.append(msg)
        options = [(raw.CONTENT_FORMAT, b"")]
        if msg.uint(raw.OBSERVE) == 0:
            options.insert(0, (raw.OBSERVE, raw.uint_bytes(7)))
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=b"x")

    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port), device)
    path = LwM2mPath.parse("/3/0/0")
    try:
        location = await raw.register(peer, "sleepy", links="</3/0>", queue_mode=True)
        observed = await a.observe("sleepy", path)  # the device is awake on A
        assert observed.success and not observed.queued
        (observe,) = requests
        assert a.observations("sleepy") == [(path,)] and b.observations("sleepy") == [(path,)]

        # B has not heard the device: for B it sleeps, so B queues the active cancel
        cancel = await b.cancel_observation("sleepy", path)
        assert cancel.queued and cancel.request_id is not None
        assert a.observations("sleepy") == [] and b.observations("sleepy") == []
        assert len(requests) == 1  # not sent yet

        # the device wakes up on A: A takes B's queue and sends the cancel
        answer = await peer.exchange(raw.request(raw.POST, ["rd", location]))
        assert raw.code_str(answer.code) == "2.04"
        await eventually(lambda: len(requests) == 2)  # the queued cancel at the device
        sent = requests[1]
        assert sent.uint(raw.OBSERVE) == 1 and sent.token == observe.token
        assert sent.strings(raw.URI_PATH) == ["3", "0", "0"]
        assert a.observations("sleepy") == [] and b.observations("sleepy") == []
    finally:
        peer.close()
        await b.stop()
        await a.stop()

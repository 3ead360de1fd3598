"""Two servers ("nodes") on one store file, over real loopback sockets: the store is the source
of truth, so a device whose datagrams move from node A to node B (a load balancer, a restart
elsewhere) keeps its registration: B accepts its Update (2.04) and its De-register, and A,
whose cache still held the registration, answers the next Update 4.04 instead of reviving it.
The core-level rules (expiry once, sweep) are tests/unit/store/test_shared_core.py."""

from __future__ import annotations

from pathlib import Path

from lwm2m_server.service import Lwm2mServer

from . import rawcoap as raw
from .conftest import server_config

NOT_FOUND = 0x84


def update(location: str, lifetime: int) -> raw.Msg:
    return raw.request(raw.POST, ["rd", location], query=[f"lt={lifetime}"])


async def test_a_device_moves_between_two_servers_sharing_the_store(tmp_path: Path) -> None:
    a = Lwm2mServer(server_config(tmp_path))
    b = Lwm2mServer(server_config(tmp_path))  # same data dir: the same sqlite file
    await a.start()
    await b.start()
    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port))
    try:
        location = await raw.register(peer, "roaming-1", lifetime=300)
        assert a.client("roaming-1").registration_id == location

        peer.server = ("127.0.0.1", b.coap_address.port)  # the same socket now reaches B
        answer = await peer.exchange(update(location, 600))
        assert raw.code_str(answer.code) == "2.04"
        assert b.client("roaming-1").lifetime == 600

        answer = await peer.exchange(raw.request(raw.DELETE, ["rd", location]))
        assert raw.code_str(answer.code) == "2.02"

        peer.server = ("127.0.0.1", a.coap_address.port)  # back to A, which still cached it
        answer = await peer.exchange(update(location, 600))
        assert answer.code == NOT_FOUND
        assert "roaming-1" not in [r.endpoint for r in a.clients()]
        assert b.store.get_registration(location) is None
    finally:
        peer.close()
        await b.stop()
        await a.stop()

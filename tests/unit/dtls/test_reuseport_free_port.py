"""``lwm2m-server --workers`` binds its listeners with SO_REUSEPORT. On port 0 Linux would
happily hand such a socket a port that another process's SO_REUSEPORT socket of the same user
already holds (``bind(0)`` treats it as shareable), and the two would split its datagrams: a
listener on port 0 must get a port nobody holds."""

from __future__ import annotations

import asyncio
import socket

from keystore.coaps.endpoint import _bound_socket


def test_port_zero_with_reuseport_never_lands_on_a_port_already_shared() -> None:
    async def bind_many() -> None:
        loop = asyncio.get_running_loop()
        strangers = []  # as another process's --workers listeners would hold them
        for _ in range(300):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", 0))
            strangers.append(sock)
        taken = {s.getsockname()[1] for s in strangers}
        ours: list[socket.socket] = []
        try:
            for _ in range(300):
                ours.append(await _bound_socket(loop, ("127.0.0.1", 0), reuse_port=True))
            got = [s.getsockname()[1] for s in ours]
            assert not taken & set(got)
            assert len(set(got)) == len(got)
            # still a reuseport socket: a second worker joins it on the port it got
            joined = await _bound_socket(loop, ("127.0.0.1", got[0]), reuse_port=True)
            joined.close()
        finally:
            for sock in strangers + ours:
                sock.close()

    asyncio.run(bind_many())

"""Queue-mode presence in the API is the server's own state (issue 13 item 5): ``sleeping`` in
``GET /api/clients`` follows the device falling asleep and waking up with no event-stream
subscriber at all, and no flood of other events can make it wrong."""

from __future__ import annotations

from typing import Any

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.config import QueueSettings
from tests.live import api_of

from .conftest import ServerFactory, eventually, uri_of


async def test_sleeping_and_awake_without_any_event_subscriber(
    make_server: ServerFactory,
) -> None:
    server = await make_server(queue=QueueSettings(awake_time=0.4))
    client = Lwm2mClient("q", uri_of(server), queue_mode=True, awake_time=30, auto_update=False)
    plain = Lwm2mClient("p", uri_of(server), auto_update=False)
    async with api_of(server) as http:

        async def sleeping(endpoint: str) -> Any:
            body = await (await http.get(f"/api/clients/{endpoint}")).json()
            return body.get("sleeping", "absent")

        try:
            await client.start()
            await plain.start()
            await client.register()
            await plain.register()
            assert server.bus.subscribers == 0  # nobody follows the event stream
            assert await sleeping("q") is False  # just registered: awake
            assert await sleeping("p") == "absent"  # not in queue mode
            assert server.is_sleeping("p") is None and server.is_sleeping("nobody") is None

            await eventually(lambda: server.is_sleeping("q"))  # the awake window (0.4 s) closed
            assert await sleeping("q") is True
            for n in range(3000):  # a flood of events nobody reads changes nothing
                server.bus.publish("UPDATED", f"other-{n}", {})
            assert await sleeping("q") is True
            await client.update()  # the device speaks: awake again at once
            assert await sleeping("q") is False
            assert server.is_sleeping("q") is False
            listed = {c["endpoint"]: c for c in await (await http.get("/api/clients")).json()}
            assert listed["q"]["sleeping"] is False and "sleeping" not in listed["p"]
            assert server.bus.subscribers == 0
        finally:
            await client.stop()
            await plain.stop()

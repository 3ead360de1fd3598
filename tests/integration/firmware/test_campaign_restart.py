"""A campaign survives a server restart (the sqlite store under the data dir): a paused campaign
comes back paused with its devices' outcomes, and its package stays in use meanwhile."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from lwm2m_client.firmware_image import make_image
from lwm2m_server.api import create_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.firmware.contracts import PackageKind
from lwm2m_server.service import Lwm2mServer


async def test_a_paused_campaign_is_paused_after_a_restart(tmp_path: Path) -> None:
    config = ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=tmp_path)
    image = make_image("pylwm2m-demo", "2.0.0", b"firmware 2.0.0 " * 10)
    async with Lwm2mServer(config) as server:
        assert server.packages is not None and server.campaigns is not None
        package = server.packages.add(image, kind=PackageKind.FIRMWARE, name="d", version="2")
        async with TestServer(create_app(server)) as web, TestClient(web) as http:
            created = await http.post(
                "/api/campaigns",
                json={
                    # not registered: the first start is refused (4.04), the rest wait
                    "target": {"endpoints": ["ghost-1", "ghost-2", "ghost-3"]},
                    "package": package.id,
                    "ratePerMinute": 1,
                },
            )
            assert created.status == 201
            cid = (await created.json())["id"]
            campaign = server.campaigns.get(cid)
            events = server.bus.subscribe()
            while campaign.counts["failed"] == 0:
                await events.wait()
                events.ready()
            assert (await http.post(f"/api/campaigns/{cid}/pause")).status == 200
            refused = await http.delete(f"/api/packages/{package.id}")
            assert refused.status == 409
            assert cid in (await refused.json())["error"]

    async with (
        Lwm2mServer(config) as server,
        TestServer(create_app(server)) as web,
        TestClient(web) as http,
    ):
        shown = await (await http.get(f"/api/campaigns/{cid}")).json()
        assert shown["state"] == "paused"
        assert shown["counts"]["failed"] == 1 and shown["counts"]["pending"] == 2
        first = shown["devices"][0]
        assert first["endpoint"] == "ghost-1" and first["detail"].endswith("(4.04)")
        cancelled = await (await http.post(f"/api/campaigns/{cid}/cancel")).json()
        assert cancelled["state"] == "cancelled"
        assert cancelled["counts"]["cancelled"] == 2
        deleted = await http.delete(f"/api/packages/{package.id}")
        assert deleted.status == 200

"""Two server nodes on one Redis: a package uploaded through one node's API and a grant made on
it are served by the other node over CoAP (Block2 by ``GETRANGE``) and over HTTP (ranges read
from Redis, no file): every node serves every package without a shared file system."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiocoap
import aiohttp
from aiocoap.numbers.codes import Code
from aiohttp import web

from keystore.store.engines import StoreSettings
from lwm2m_server.api import create_server_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.firmware.contracts import PackageKind
from lwm2m_server.firmware.setup import set_http_base
from lwm2m_server.service import Lwm2mServer

IMAGE = bytes(i * 7 % 256 for i in range(70_000))
SHA = hashlib.sha256(IMAGE).hexdigest()


async def test_another_node_serves_the_package(redis_url: str, tmp_path: Path) -> None:
    store = StoreSettings("redis", redis_url, "fwtest")
    nodes = [
        Lwm2mServer(
            ServerConfig(
                host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=tmp_path / name, store=store
            )
        )
        for name in ("a", "b")
    ]
    for node in nodes:
        await node.start()
    a, b = nodes
    runner = web.AppRunner(create_server_app(b), access_log=None)
    context: Any = await aiocoap.Context.create_client_context()
    try:
        assert a.packages is not None and a.downloads is not None and b.downloads is not None
        a.packages.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="2")
        grant = a.downloads.grant(SHA, "dev-1", 600)
        assert not (tmp_path / "a" / "packages").exists()  # the bytes are in Redis
        uri = b.downloads.package_uri(grant, "coap")
        response = await context.request(aiocoap.Message(code=Code.GET, uri=uri)).response
        assert response.code == Code.CONTENT and response.payload == IMAGE
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        set_http_base(b.downloads, b.config, int(runner.addresses[0][1]))
        http_uri = b.downloads.package_uri(grant, "http")
        async with aiohttp.ClientSession() as session:
            async with session.get(http_uri) as whole:
                assert whole.status == 200 and await whole.read() == IMAGE
                assert whole.headers["ETag"] == f'"{SHA[:16]}"'
            async with session.get(http_uri, headers={"Range": "bytes=65536-"}) as part:
                assert part.status == 206 and await part.read() == IMAGE[65536:]
                assert part.headers["Content-Range"] == f"bytes 65536-69999/{len(IMAGE)}"
            async with session.get(http_uri, headers={"Range": "bytes=80000-"}) as outside:
                assert outside.status == 416
    finally:
        await context.shutdown()
        await runner.cleanup()
        for node in nodes:
            await node.stop()

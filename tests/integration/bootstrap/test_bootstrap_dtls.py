"""The acceptance path over DTLS: a device holding only the fleet's factory PSK bootstraps over
CoAPs, receives a unique PSK, registers with ``lwm2m-server`` over DTLS with it, and the server
reads /3/0. Skipped until ``lwm2m_server.coap.transport.create_context`` takes ``coaps_config``
(the keystore.coaps work); the device side is ``keystore.coaps.create_client_context`` around
the test client (``lwm2m_client`` has no coaps:// yet)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiocoap.numbers.codes import Code

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from lwm2m_server.coap import transport
from object_models.path import LwM2mPath
from tests.integration.server.conftest import server_config

from .bsclient import BootstrapTestClient, _Site

pytestmark = pytest.mark.skipif(
    "coaps_config" not in inspect.signature(transport.create_context).parameters,
    reason="the CoAPs server transport is not in lwm2m_server.coap.transport yet",
)
FACTORY_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


async def _coaps_context(bs: BootstrapTestClient, identity: bytes, key: bytes) -> Any:
    from keystore.coaps import create_client_context
    from keystore.dtls import ClientConfig

    config = ClientConfig(psk_identity=identity, psk=key)
    return await create_client_context(_Site(bs), client_config=config, bind=("127.0.0.1", 0))


async def _post(context: Any, uri: str, query: list[str], payload: bytes = b"",
                content_format: int | None = None) -> Any:  # fmt: skip
    import aiocoap

    message = aiocoap.Message(code=Code.POST, uri=uri, payload=payload)
    message.opt.uri_query = query
    if content_format is not None:
        message.opt.content_format = content_format
    return await asyncio.wait_for(context.request(message).response, 10)


async def test_factory_psk_to_dtls_registration(tmp_path: Path) -> None:
    from lwm2m_server.service import Lwm2mServer

    lwm2m = Lwm2mServer(server_config(tmp_path / "data", coaps_port=0, open_registration=False))
    await lwm2m.start()
    configs = tmp_path / "configs"
    configs.mkdir()
    lwm2m_uri = f"coaps://127.0.0.1:{lwm2m.coaps_address.port}"
    (configs / "fleet.yaml").write_text(yaml.safe_dump({
        "profile": "fleet",
        "bootstrap_security": [{"mode": "psk", "identity": "fleet-factory",
                                "key": "hex:" + FACTORY_KEY.hex()}],
        "servers": [{"uri": lwm2m_uri, "short_server_id": 1, "lifetime": 120,
                     "security": {"mode": "psk", "generate": True}}],
    }))  # fmt: skip
    bootstrap = BootstrapServer(BootstrapServerConfig(
        host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=tmp_path / "data",
        configs_dir=configs, step_timeout=3.0, step_retries=1))  # fmt: skip
    await bootstrap.start()
    contexts: list[Any] = []
    try:
        interface = transport.coaps_interface(bootstrap._context)
        assert interface is not None
        bs_port = interface.endpoint_address()[1]
        bs = BootstrapTestClient("dtls-dev-1")
        contexts.append(await _coaps_context(bs, b"fleet-factory", FACTORY_KEY))
        answer = await _post(contexts[-1], f"coaps://127.0.0.1:{bs_port}/bs", ["ep=dtls-dev-1"])
        assert answer.code == Code.CHANGED
        for _ in range(250):
            if bootstrap.store.sessions("dtls-dev-1"):
                break
            await asyncio.sleep(0.02)
        assert bootstrap.store.sessions("dtls-dev-1")[0]["success"] is True
        security = bs.fake.servers()[1][0]
        identity = bs.fake.value(f"/0/{security}/3")
        key = bs.fake.value(f"/0/{security}/5")
        assert bs.fake.value(f"/0/{security}/0") == lwm2m_uri and isinstance(key, bytes)
        # register with the issued credentials, over DTLS, from a new socket
        assert isinstance(identity, bytes)
        contexts.append(await _coaps_context(bs, identity, key))
        registered = await _post(contexts[-1], f"{lwm2m_uri}/rd", ["ep=dtls-dev-1", "lt=120"],
                                 b"</3/0>", 40)  # fmt: skip
        assert registered.code == Code.CREATED
        response = await lwm2m.read("dtls-dev-1", LwM2mPath(3, 0), timeout=5)
        assert response.success and response.node is not None
        # the factory credentials do not open the LwM2M server
        bs2 = BootstrapTestClient("dtls-dev-1")
        contexts.append(await _coaps_context(bs2, b"fleet-factory", FACTORY_KEY))
        with pytest.raises(Exception):  # noqa: B017 - handshake refused, any transport error
            await _post(contexts[-1], f"{lwm2m_uri}/rd", ["ep=dtls-dev-1"], b"</3/0>", 40)
    finally:
        for context in contexts:
            await context.shutdown()
        await bootstrap.stop()
        await lwm2m.stop()

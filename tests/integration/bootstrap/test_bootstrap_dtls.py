"""The acceptance path over DTLS: the real ``lwm2m_client``, holding only the fleet's factory PSK,
bootstraps over CoAPs, receives a unique PSK, registers with ``lwm2m-server`` over DTLS with it
(credentials taken from the Security instance bootstrap wrote), and the server reads /3/0; the
factory PSK does not open the LwM2M server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from keystore import tools
from keystore.modes import SecurityMode
from lwm2m_client.accounts import server_accounts
from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from object_models.path import LwM2mPath
from tests.integration.server.conftest import server_config

FACTORY_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def _provisioning_ca(folder: Path) -> tuple[Path, Path]:
    key, ca = tools.make_ca("test provisioning CA")
    (folder / "ca.pem").write_bytes(tools.certificate_pem(ca))
    (folder / "ca.key").write_bytes(tools.private_key_pem(key))
    return folder / "ca.pem", folder / "ca.key"


@pytest.mark.parametrize("mode", [SecurityMode.PSK, SecurityMode.RPK, SecurityMode.X509],
                         ids=["psk", "rpk", "x509"])  # fmt: skip
async def test_factory_psk_to_dtls_registration(tmp_path: Path, mode: SecurityMode) -> None:
    """Factory PSK to the bootstrap server; an issued PSK, raw public key or certificate (from a
    provisioning CA) to the LwM2M server."""
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
                     "security": {"mode": mode.name.lower(), "generate": True}}],
    }))  # fmt: skip
    ca_cert, ca_key = _provisioning_ca(tmp_path)
    bootstrap = BootstrapServer(BootstrapServerConfig(
        host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=tmp_path / "data",
        configs_dir=configs, step_timeout=3.0, step_retries=1,
        provisioning_ca_cert=ca_cert, provisioning_ca_key=ca_key))  # fmt: skip
    await bootstrap.start()
    try:
        bs_uri = f"coaps://127.0.0.1:{bootstrap.coaps_address.port}"
        factory = (b"fleet-factory", FACTORY_KEY)
        client = Lwm2mClient.from_bootstrap("dtls-dev-1", bs_uri, psk=factory,
                                            finish_timeout=10.0, attempts=1)  # fmt: skip
        async with client:
            assert bootstrap.store.sessions("dtls-dev-1")[0]["success"] is True
            (account,) = server_accounts(client.objects)
            assert account.uri == lwm2m_uri and account.mode == mode
            if mode == SecurityMode.PSK:
                assert account.identity != b"fleet-factory" and len(account.secret) == 16
            assert client.server.scheme == "coaps" and client.registered  # over DTLS, issued PSK
            response = await lwm2m.read("dtls-dev-1", LwM2mPath(3, 0), timeout=5)
            assert response.success and response.node is not None
        # the factory credentials do not open the LwM2M server
        intruder = Lwm2mClient("dtls-dev-1", lwm2m_uri, psk=factory, auto_update=False)
        with pytest.raises(Lwm2mClientError):
            await asyncio.wait_for(intruder.register(), 15)
        await intruder.stop()
    finally:
        await bootstrap.stop()
        await lwm2m.stop()

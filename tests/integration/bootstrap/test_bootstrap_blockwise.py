"""Block-wise on the bootstrap server's own CoAP layer, with the real ``lwm2m_client`` (aiocoap)
as the device: a Bootstrap-Write larger than one datagram goes out with Block1 (RFC 7959 §2.5),
and a Bootstrap-Pack answer larger than one datagram is sliced with Block2 (§2.4), both
reassembled by the device into the value the configuration holds."""

from __future__ import annotations

from typing import Any

import pytest

from bootstrap_server.service import BootstrapServer
from lwm2m_client.client import Lwm2mClient
from lwm2m_server.service import Lwm2mServer
from tests.integration.bootstrap import fixtures
from tests.integration.bootstrap.fixtures import Factory, coap_uri

lwm2m_server = fixtures.lwm2m_server
make_bootstrap = fixtures.make_bootstrap

#: a Timezone far longer than one 1024-byte block (any string resource would do)
BIG = "Europe/" + "x" * 3000


def _config(name: str, lwm2m_uri: str) -> dict[str, Any]:
    return {
        "endpoint": name,
        "bootstrap_security": [{"mode": "nosec"}],
        "servers": [{"uri": lwm2m_uri, "short_server_id": 7, "lifetime": 90,
                     "security": {"mode": "nosec"}}],
        "objects": {"/3/0/15": BIG},
    }  # fmt: skip


def _client(name: str, bootstrap: BootstrapServer, **options: Any) -> Lwm2mClient:
    return Lwm2mClient.from_bootstrap(
        name, coap_uri(bootstrap), finish_timeout=10.0, attempts=1, **options
    )


@pytest.mark.parametrize("pack", [False, True], ids=["write-block1", "pack-block2"])
async def test_large_bootstrap_payloads(
    lwm2m_server: Lwm2mServer, make_bootstrap: Factory, pack: bool
) -> None:
    bootstrap = await make_bootstrap(_config("big-1", coap_uri(lwm2m_server)))
    options: dict[str, Any] = {"pack": True, "lwm2m_version": "1.2"} if pack else {}
    async with _client("big-1", bootstrap, **options) as client:
        assert client.registered and client.get_value("/3/0/15") == BIG
    (session,) = bootstrap.store.sessions("big-1")
    assert session["success"] is True and session["kind"] == ("pack" if pack else "bootstrap")

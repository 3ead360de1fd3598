"""``security_modes``: a server offers any subset of NoSec, PSK, RPK and X.509. A mode left out
is refused at the handshake (its suites are not offered, or its certificate type is not
accepted), and without ``nosec`` there is no plain CoAP listener at all."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.address import Address
from lwm2m_runtime.listeners import DtlsSettings
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

from .conftest import coaps_port, provisioned_server
from .pki import Pki
from .test_lwm2m_client import ENDPOINT, credentials

ServerFactory = Callable[..., Any]


@pytest.fixture
def make_server(tmp_path: Path, pki: Pki) -> ServerFactory:
    @asynccontextmanager
    async def make(
        modes: tuple[str, ...], dtls: DtlsSettings | None = None
    ) -> AsyncIterator[Lwm2mServer]:
        async with provisioned_server(
            tmp_path / "data", pki, security_modes=modes, dtls=dtls or DtlsSettings()
        ) as server:
            yield server

    return make


async def registers(server: Lwm2mServer, pki: Pki, mode: str) -> bool:
    """Whether a device in ``mode`` gets registered (and read) over CoAPs."""
    client = Lwm2mClient(
        ENDPOINT[mode],
        f"coaps://127.0.0.1:{coaps_port(server)}",
        auto_update=False,
        **credentials(mode, pki),
    )
    await client.start()
    try:
        try:
            await client.register()
        except Exception:  # a refused handshake surfaces as the client's connection error
            return False
        response = await server.read(ENDPOINT[mode], LwM2mPath(3, 0), timeout=5)
        return response.dotted_code == "2.05"
    finally:
        await client.stop()


@pytest.mark.parametrize(
    "modes",
    [("psk",), ("rpk",), ("x509",), ("nosec", "psk", "x509"), ("rpk", "x509")],
    ids=lambda m: "+".join(m),
)
async def test_only_the_configured_modes_are_served(
    make_server: ServerFactory, pki: Pki, modes: tuple[str, ...]
) -> None:
    async with make_server(modes) as server:
        for mode in ("psk", "rpk", "x509"):
            assert await registers(server, pki, mode) is (mode in modes), mode
        assert server.nosec_enabled is ("nosec" in modes)


async def test_without_nosec_there_is_no_plain_listener(
    make_server: ServerFactory, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m_server.service")
    async with make_server(("psk",)) as server:
        assert "CoAP (NoSec) on off" in caplog.text
        with pytest.raises(RuntimeError, match="no CoAP listener"):
            _ = server.coap_address
        # the only socket is the DTLS one
        assert server.coap.udp is None
        assert Address(*server.coap.coaps_address or ("", 0)) == server.coaps_address
        assert await registers(server, pki, "psk")


async def cid_of_a_psk_session(server: Lwm2mServer, pki: Pki) -> bytes | None:
    """The Connection ID the server assigned to a registered PSK device's session."""
    client = Lwm2mClient(
        "dev-psk", f"coaps://127.0.0.1:{coaps_port(server)}", auto_update=False,
        **credentials("psk", pki),
    )  # fmt: skip
    await client.start()
    try:
        await client.register()
        (session,) = server.dtls.sessions
        cid: bytes | None = session.cid
        return cid
    finally:
        await client.stop()


async def test_cipher_suites_and_connection_id_are_configurable(
    make_server: ServerFactory, pki: Pki
) -> None:
    dtls = DtlsSettings(cipher_suites=("psk-aes128-ccm8",), connection_id=False)
    async with make_server(("psk", "x509"), dtls) as server:
        assert await cid_of_a_psk_session(server, pki) is None
        # the only suite left is a PSK one: certificate devices cannot agree on a suite
        assert not await registers(server, pki, "x509")
    async with make_server(("psk",), DtlsSettings(cid_length=4)) as server:
        cid = await cid_of_a_psk_session(server, pki)
        assert cid is not None and len(cid) == 4

"""A small hand-written LwM2M device on Mbed TLS (python-mbedtls, an implementation independent
of ours): it registers over CoAPs, then answers the server's ``GET /3/0`` on the same DTLS
session with a TLV payload, and the server's Read returns those values. PSK and X.509
(Mbed TLS 2.28 has no raw public keys).

The device runs in a thread with a blocking UDP socket (python-mbedtls is synchronous); its
``TLSWrappedBuffer`` joins the records it wants to send into one byte string, which is sent as
one datagram (records are self-delimiting, several per datagram are allowed).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

from . import coap
from .conftest import coaps_port, eventually
from .pki import PSK_IDENTITY, PSK_KEY, Pki, key_pem

tls = pytest.importorskip("mbedtls.tls", reason="python-mbedtls not installed")
mbedtls_x509 = pytest.importorskip("mbedtls.x509")
mbedtls_pk = pytest.importorskip("mbedtls.pk")


def configuration(mode: str, pki: Pki) -> Any:
    kwargs: dict[str, Any] = {
        "lowest_supported_version": tls.DTLSVersion.DTLSv1_2,
        "highest_supported_version": tls.DTLSVersion.DTLSv1_2,
    }
    if mode == "psk":
        kwargs.update(
            ciphers=["TLS-PSK-WITH-AES-128-CCM-8"],
            pre_shared_key=(PSK_IDENTITY.decode(), PSK_KEY),
            validate_certificates=False,
        )
    else:
        device = pki.x509_device
        kwargs.update(
            ciphers=["TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8"],
            certificate_chain=(
                (mbedtls_x509.CRT.from_DER(device.cert_der),),
                mbedtls_pk.ECC.from_PEM(key_pem(device.key).decode()),
            ),
            trust_store=tls.TrustStore([mbedtls_x509.CRT.from_PEM(pki.ca_file.read_text())]),
            validate_certificates=True,
        )  # fmt: skip
    return tls.DTLSConfiguration(**kwargs)


class MbedDevice:
    """Register, then serve one ``GET /3/0``; every step blocks (run it in a thread)."""

    def __init__(self, server: tuple[str, int], config: Any, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(server)
        self.sock.settimeout(5.0)
        self.tls = tls.ClientContext(config).wrap_buffers("localhost")
        self.register_answer: Any = None
        self.request: Any = None

    def _flush(self) -> None:
        out = self.tls.peek_outgoing(65536)
        if out:
            self.tls.consume_outgoing(len(out))
            self.sock.send(bytes(out))

    def handshake(self) -> None:
        for _ in range(30):
            try:
                self.tls.do_handshake()
            except tls.WantReadError:
                self._flush()
                self.tls.receive_from_network(self.sock.recv(65536))
                continue
            except tls.WantWriteError:
                self._flush()
                continue
            self._flush()
            if self.tls._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER:
                return
        raise AssertionError("Mbed TLS handshake did not finish")

    def receive(self) -> bytes:
        while True:
            self.tls.receive_from_network(self.sock.recv(65536))
            try:
                return bytes(self.tls.read(65536))
            except tls.WantReadError:
                continue

    def run(self) -> None:
        self.handshake()
        self.tls.write(coap.register(self.endpoint))
        self._flush()
        self.register_answer = coap.decode(self.receive())
        self.request = coap.decode(self.receive())  # the server's GET /3/0
        self.tls.write(coap.answer(self.request, coap.device_tlv()))
        self._flush()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(("mode", "endpoint"), [("psk", "dev-psk"), ("x509", "dev-x509")])
async def test_mbedtls_device_registers_and_answers_a_read(
    server: Lwm2mServer, pki: Pki, mode: str, endpoint: str
) -> None:
    device = MbedDevice(("127.0.0.1", coaps_port(server)), configuration(mode, pki), endpoint)
    try:
        running = asyncio.ensure_future(asyncio.to_thread(device.run))
        await eventually(lambda: server.clients() or running.done(), timeout=10)
        registration = server.client(endpoint)
        assert registration.transport == "coaps"
        response = await server.read(endpoint, LwM2mPath(3, 0), timeout=5)
        await asyncio.wait_for(running, 5)
        assert str(device.register_answer.code) == "2.01 Created"
        assert tuple(device.register_answer.opt.location_path) == (
            "rd",
            registration.registration_id,
        )
        assert str(device.request.code) == "GET"
        assert tuple(device.request.opt.uri_path) == ("3", "0")
        assert response.dotted_code == "2.05"
        assert "dtls-device" in repr(response.node) and "mbed" in repr(response.node)
    finally:
        device.close()

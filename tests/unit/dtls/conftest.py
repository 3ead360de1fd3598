"""Shared fixtures: a test PKI and client/server config factories for PSK, RPK and X.509."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from keystore.dtls import CipherSuite, ClientConfig, ServerConfig

from . import pki

PSK_ID = b"\x00device-1\xff"  # binary on purpose
PSK = bytes(range(16))

PSK_SUITES = [CipherSuite.TLS_PSK_WITH_AES_128_CCM_8, CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256]
ECDHE_SUITES = [
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
]
#: (mode, suite) for every supported combination
ALL_MODES = [("psk", s) for s in PSK_SUITES] + [
    (m, s) for m in ("rpk", "x509") for s in ECDHE_SUITES
]


@dataclass
class Pki:
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    server_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate
    client_key: ec.EllipticCurvePrivateKey
    client_cert: x509.Certificate
    other_ca_key: ec.EllipticCurvePrivateKey
    other_ca: x509.Certificate


@pytest.fixture(scope="session")
def test_pki() -> Pki:
    ca_key, ca = pki.make_ca()
    server_key, server_cert = pki.make_leaf("server.example", ca_key, ca)
    client_key, client_cert = pki.make_leaf("urn:imei:0001", ca_key, ca)
    other_key, other = pki.make_ca("Other CA")
    return Pki(ca_key, ca, server_key, server_cert, client_key, client_cert, other_key, other)


ConfigFactory = Callable[..., tuple[ClientConfig, ServerConfig]]


@pytest.fixture(scope="session")
def configs(test_pki: Pki) -> ConfigFactory:
    def make(
        mode: str,
        suite: CipherSuite | None = None,
        client: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
    ) -> tuple[ClientConfig, ServerConfig]:
        c: dict[str, Any] = {}
        s: dict[str, Any] = {}
        if mode == "psk":
            suites = [suite] if suite else PSK_SUITES
            c.update(psk_identity=PSK_ID, psk=PSK)
            s.update(psk_for_identity=lambda i: PSK if i == PSK_ID else None)
        elif mode == "rpk":
            suites = [suite] if suite else ECDHE_SUITES
            server_spki = pki.spki(test_pki.server_key)
            client_spki = pki.spki(test_pki.client_key)
            c.update(private_key=test_pki.client_key, verify_rpk=lambda k: k == server_spki)
            s.update(private_key=test_pki.server_key, verify_rpk=lambda k: k == client_spki)
        elif mode == "x509":
            suites = [suite] if suite else ECDHE_SUITES
            c.update(
                private_key=test_pki.client_key,
                certificate_chain=[pki.der(test_pki.client_cert)],
                trust_store=[test_pki.ca],
            )
            s.update(
                private_key=test_pki.server_key,
                certificate_chain=[pki.der(test_pki.server_cert)],
                trust_store=[test_pki.ca],
            )
        else:
            raise ValueError(mode)
        c["cipher_suites"] = suites
        s["cipher_suites"] = suites
        c.update(client or {})
        s.update(server or {})
        return ClientConfig(**c), ServerConfig(**s)

    return make

"""Interop with an independent implementation: Mbed TLS (via python-mbedtls), in memory.

python-mbedtls's ``TLSWrappedBuffer`` joins outgoing datagrams into one byte stream; records
are self-delimiting, so we hand the concatenation to our engine as one datagram.
Mbed TLS 2.28 has no RFC 7250 raw public keys and no RFC 9146 CIDs, so those are not covered
here (they are covered engine-to-engine).
"""

from __future__ import annotations

from typing import Any

import pytest

from keystore.dtls import (
    AlertDescription,
    ApplicationData,
    CipherSuite,
    ClientConfig,
    ConnectionClosed,
    CookieVerifier,
    DtlsEngine,
    HandshakeComplete,
    PskIdentity,
    ServerConfig,
    X509Identity,
)

from . import pki
from .conftest import Pki

tls = pytest.importorskip("mbedtls.tls")
mbedtls_x509 = pytest.importorskip("mbedtls.x509")
mbedtls_pk = pytest.importorskip("mbedtls.pk")
mbedtls_exceptions = pytest.importorskip("mbedtls.exceptions")

SUITES = {
    CipherSuite.TLS_PSK_WITH_AES_128_CCM_8: "TLS-PSK-WITH-AES-128-CCM-8",
    CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256: "TLS-PSK-WITH-AES-128-CBC-SHA256",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256",
}
CASES = [
    ("psk", CipherSuite.TLS_PSK_WITH_AES_128_CCM_8),
    ("psk", CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256),
    ("x509", CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
    ("x509", CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256),
]
PSK_ID = "lwm2m-device"
PSK = b"\x13" * 16
COOKIE_INFO = b"192.0.2.44:5684"


def _drain(buf: Any) -> bytes:
    out = buf.peek_outgoing(65536)
    buf.consume_outgoing(len(out))
    return bytes(out)


def _step(buf: Any) -> bytes:
    """Run the Mbed TLS handshake until it needs input; return what it wants to send."""
    out = b""
    for _ in range(50):
        try:
            buf.do_handshake()
        except tls.WantReadError:
            return out + _drain(buf)
        except tls.WantWriteError:
            pass
        except tls.HelloVerifyRequest:
            buf.setcookieparam(COOKIE_INFO)  # Mbed TLS resets the session after a HVR
            return out + _drain(buf)
        out += _drain(buf)
        if buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER:
            return out
    raise AssertionError("Mbed TLS handshake did not settle")


def _mbed_done(buf: Any) -> bool:
    return buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER


def _mbed_config(mode: str, suite: CipherSuite, test_pki: Pki, server: bool) -> Any:
    kwargs: dict[str, Any] = {
        "ciphers": [SUITES[suite]],
        "lowest_supported_version": tls.DTLSVersion.DTLSv1_2,
        "highest_supported_version": tls.DTLSVersion.DTLSv1_2,
    }
    if mode == "psk":
        kwargs["validate_certificates"] = False
        if server:
            kwargs["pre_shared_key_store"] = {PSK_ID: PSK}
        else:
            kwargs["pre_shared_key"] = (PSK_ID, PSK)
    else:
        key, cert = (
            (test_pki.server_key, test_pki.server_cert)
            if server
            else (test_pki.client_key, test_pki.client_cert)
        )
        kwargs["certificate_chain"] = (
            (mbedtls_x509.CRT.from_DER(pki.der(cert)),),
            mbedtls_pk.ECC.from_PEM(pki.pem_key(key).decode()),
        )
        kwargs["trust_store"] = tls.TrustStore([mbedtls_x509.CRT.from_DER(pki.der(test_pki.ca))])
        kwargs["validate_certificates"] = True
    return tls.DTLSConfiguration(**kwargs)


def _our_config(mode: str, suite: CipherSuite, test_pki: Pki, server: bool) -> Any:
    if mode == "psk":
        if server:
            return ServerConfig(
                cipher_suites=[suite],
                psk_for_identity=lambda i: PSK if i == PSK_ID.encode() else None,
            )
        return ClientConfig(cipher_suites=[suite], psk_identity=PSK_ID.encode(), psk=PSK)
    if server:
        return ServerConfig(
            cipher_suites=[suite],
            private_key=test_pki.server_key,
            certificate_chain=[pki.der(test_pki.server_cert)],
            trust_store=[test_pki.ca],
        )
    return ClientConfig(
        cipher_suites=[suite],
        private_key=test_pki.client_key,
        certificate_chain=[pki.der(test_pki.client_cert)],
        trust_store=[test_pki.ca],
    )


@pytest.mark.parametrize(("mode", "suite"), CASES, ids=lambda v: getattr(v, "name", v))
def test_mbedtls_client_against_our_server(test_pki: Pki, mode: str, suite: CipherSuite) -> None:
    client = tls.ClientContext(_mbed_config(mode, suite, test_pki, server=False)).wrap_buffers(
        "server.example" if mode == "x509" else None
    )
    verifier = CookieVerifier()
    server: DtlsEngine | None = None
    events: list[Any] = []
    for _ in range(10):
        out = _step(client)
        if out:
            if server is None:
                reply, ok = verifier.server_handle_initial_datagram(out, ("mbed", 1), 0.0)
                if reply is not None:
                    client.receive_from_network(reply)
                if not ok:
                    continue
                server = DtlsEngine.server(_our_config(mode, suite, test_pki, server=True))
            events += server.receive_datagram(out, 0.0)
            for d in server.datagrams_to_send():
                client.receive_from_network(d)
        if _mbed_done(client) and server is not None and server.is_established:
            break
    assert server is not None and server.is_established and _mbed_done(client)
    (done,) = [e for e in events if isinstance(e, HandshakeComplete)]
    assert done.cipher_suite == suite and done.extended_master_secret
    if mode == "psk":
        assert done.peer_identity == PskIdentity(PSK_ID.encode())
    else:
        assert done.peer_identity == X509Identity((pki.der(test_pki.client_cert),))

    client.write(b"</1/0>;rt=oma.lwm2m")
    assert server.receive_datagram(_drain(client), 1.0) == [ApplicationData(b"</1/0>;rt=oma.lwm2m")]
    server.send_application_data(b"2.01 Created")
    for d in server.datagrams_to_send():
        client.receive_from_network(d)
    assert client.read(100) == b"2.01 Created"


@pytest.mark.parametrize(("mode", "suite"), CASES, ids=lambda v: getattr(v, "name", v))
def test_our_client_against_mbedtls_server(test_pki: Pki, mode: str, suite: CipherSuite) -> None:
    server = tls.ServerContext(_mbed_config(mode, suite, test_pki, server=True)).wrap_buffers()
    server.setcookieparam(COOKIE_INFO)
    client = DtlsEngine.client(_our_config(mode, suite, test_pki, server=False))
    client.connect(0.0)
    events: list[Any] = []
    for _ in range(10):
        for d in client.datagrams_to_send():
            server.receive_from_network(d)
        out = _step(server)
        if out:
            events += client.receive_datagram(out, 0.0)
        if client.is_established and _mbed_done(server):
            break
    assert client.is_established and _mbed_done(server)
    (done,) = [e for e in events if isinstance(e, HandshakeComplete)]
    assert done.cipher_suite == suite
    if mode == "x509":
        assert done.peer_identity == X509Identity((pki.der(test_pki.server_cert),))

    client.send_application_data(b"POST /rd")
    for d in client.datagrams_to_send():
        server.receive_from_network(d)
    assert server.read(100) == b"POST /rd"
    server.write(b"2.01")
    assert client.receive_datagram(_drain(server), 1.0) == [ApplicationData(b"2.01")]
    client.close()
    for d in client.datagrams_to_send():
        server.receive_from_network(d)
    with pytest.raises(mbedtls_exceptions.TLSError) as info:
        server.read(100)
    # close_notify shows up as a plain TLSError, "no data yet" would be WantReadError
    assert type(info.value) is mbedtls_exceptions.TLSError


@pytest.mark.parametrize(
    ("identity", "key", "alert"),
    [
        (PSK_ID, b"\x00" * 16, AlertDescription.bad_record_mac),
        ("stranger", PSK, AlertDescription.unknown_psk_identity),
    ],
)
def test_mbedtls_client_with_bad_credentials(
    identity: str, key: bytes, alert: AlertDescription
) -> None:
    suite = CipherSuite.TLS_PSK_WITH_AES_128_CCM_8
    conf = tls.DTLSConfiguration(
        ciphers=[SUITES[suite]],
        pre_shared_key=(identity, key),
        validate_certificates=False,
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
    )
    client = tls.ClientContext(conf).wrap_buffers(None)
    server = DtlsEngine.server(_our_config("psk", suite, None, server=True))  # type: ignore[arg-type]
    events: list[Any] = []
    failed = False
    for _ in range(10):
        try:
            out = _step(client)
        except mbedtls_exceptions.TLSError:
            failed = True  # Mbed TLS got our fatal alert
            break
        if out:
            events += server.receive_datagram(out, 0.0)
            for d in server.datagrams_to_send():
                client.receive_from_network(d)
        if server.is_closed and failed:
            break
    assert server.is_closed and failed
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == alert and not closed[0].by_peer

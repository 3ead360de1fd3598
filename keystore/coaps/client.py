"""A device's DTLS client configuration from the credentials of its Security object.

Why a helper: the LwM2M Security object gives a device one mode (PSK, RPK, X.509) with its
secret and, for the certificate modes, what to trust about the server (resource 4 "Server
Public Key": the server's raw public key, or its certificate / CA). This turns those values,
in whatever form people hold them (PEM, DER, hex, key objects), into the engine's
``ClientConfig`` with the suites of that mode only, so a device never offers a mode it has no
credentials for.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from ..credentials import CredentialError, load_certificates, load_public_key, normalize_spki
from ..dtls.config import ClientConfig
from ..dtls.constants import CipherSuite
from ..tools import load_private_key

PSK_SUITES = (CipherSuite.TLS_PSK_WITH_AES_128_CCM_8, CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256)
ECDHE_SUITES = (
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
)

PrivateKeyInput = ec.EllipticCurvePrivateKey | bytes
"""A P-256 private key object, or PEM/DER bytes."""
CertificatesInput = x509.Certificate | bytes | str | Sequence[x509.Certificate | bytes | str]
"""One certificate (object, PEM/DER/hex) or several; a PEM bundle may hold several too."""

PskInput = tuple[bytes | str, bytes]
"""(identity, key): the identity as bytes or UTF-8 text."""
RpkInput = tuple[PrivateKeyInput, bytes | str]
"""(device private key, the server's public key as SPKI DER, PEM, X||Y or hex)."""
X509Input = tuple[PrivateKeyInput, CertificatesInput, CertificatesInput]
"""(device private key, device certificate chain leaf first, trust anchors for the server:
its CA or its certificate)."""


def _key(value: PrivateKeyInput, field: str) -> ec.EllipticCurvePrivateKey:
    if isinstance(value, ec.EllipticCurvePrivateKey):
        return value
    return load_private_key(value, field)


def _certificates(value: CertificatesInput, field: str) -> list[x509.Certificate]:
    if isinstance(value, x509.Certificate):
        return [value]
    if isinstance(value, bytes | str):
        return load_certificates(value, field)
    certs: list[x509.Certificate] = []
    for i, item in enumerate(value):
        certs += _certificates(item, f"{field}[{i}]")
    return certs


def client_dtls_config(
    *,
    psk: PskInput | None = None,
    rpk: RpkInput | None = None,
    x509: X509Input | None = None,
    connection_id: bytes | None = b"",
) -> ClientConfig:
    """Exactly one of ``psk``, ``rpk``, ``x509``. ``connection_id`` b"" offers RFC 9146 (the
    server may give us a CID, so a NAT rebinding keeps the session); None does not."""
    given = [name for name, value in (("psk", psk), ("rpk", rpk), ("x509", x509)) if value]
    if len(given) != 1:
        raise ValueError(
            "coaps:// (DTLS) needs exactly one of the credentials psk, rpk, x509 "
            f"(got {', '.join(given) or 'none'})"
        )
    if psk is not None:
        identity, key = psk
        ident = identity.encode("utf-8") if isinstance(identity, str) else bytes(identity)
        return ClientConfig(
            cipher_suites=PSK_SUITES,
            psk_identity=ident,
            psk=bytes(key),
            connection_id=connection_id,
        )
    if rpk is not None:
        private, server_key = rpk
        server_spki = load_public_key(server_key, "server_public_key")

        def verify(spki: bytes) -> bool:
            try:
                return normalize_spki(spki) == server_spki
            except (CredentialError, ValueError):
                return False

        return ClientConfig(
            cipher_suites=ECDHE_SUITES,
            private_key=_key(private, "private_key"),
            verify_rpk=verify,
            connection_id=connection_id,
        )
    assert x509 is not None
    private, chain, trusted = x509
    return ClientConfig(
        cipher_suites=ECDHE_SUITES,
        private_key=_key(private, "private_key"),
        certificate_chain=[c.public_bytes(Encoding.DER) for c in _certificates(chain, "chain")],
        trust_store=_certificates(trusted, "trust"),
        connection_id=connection_id,
    )

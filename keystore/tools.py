"""Key and certificate generation behind ``lwm2m-keystore``.

Everything is ECDSA P-256 with SHA-256 signatures: the only key type the DTLS suites LwM2M
mandates (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8) can use, and the only one the DTLS engine accepts.
Times are passed in (``now``) so tests can make expired and not-yet-valid certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .credentials import CredentialError, certificate_der, raw_public_key

DEFAULT_DAYS = 365
DEFAULT_CA_DAYS = 3650
#: Start validity a little in the past: devices' clocks are often behind.
BACKDATE = datetime.timedelta(minutes=5)


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: the form stored and exported (protected by file permissions)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(data: bytes, field: str = "private_key") -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM (PKCS#8 or SEC1) or DER."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "encrypted keys are not supported" if "password" in str(exc).lower() else ""
        raise CredentialError(field, reason or "unreadable private key (PEM or DER)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CredentialError(field, "only ECDSA P-256 (secp256r1) keys are supported")
    return key


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_hex(key: ec.EllipticCurvePublicKey) -> str:
    """SubjectPublicKeyInfo DER as hex (what Leshan and Wakaama take)."""
    return spki_der(key).hex()


def public_key_xy_hex(key: ec.EllipticCurvePublicKey) -> str:
    """The raw X||Y coordinates as hex (128 digits; what ThingsBoard and many SDKs take)."""
    return raw_public_key(spki_der(key)).hex()


def certificate_hex(cert: x509.Certificate) -> str:
    return certificate_der(cert).hex()


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def subject_alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """IP addresses become IPAddress entries, ``scheme:…`` URIs, everything else DNS names."""
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if ":" in name:
            out.append(x509.UniformResourceIdentifier(name))
        else:
            out.append(x509.DNSName(name))
    return out


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) if now is None else now


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    days: int,
    now: datetime.datetime | None,
) -> x509.CertificateBuilder:
    if days < 1:
        raise CredentialError("days", "validity must be at least 1 day")
    start = _now(now) - BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + BACKDATE + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _name(cn: str) -> x509.Name:
    if not cn:
        raise CredentialError("cn", "must not be empty")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(
    cn: str,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer_cert: x509.Certificate | None = None,
    path_length: int | None = 1,
    days: int = DEFAULT_CA_DAYS,
    now: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA (basicConstraints CA:TRUE, keyCertSign) for device or server certificates:
    self-signed (a root), or an intermediate when ``issuer_key``/``issuer_cert`` are given."""
    key = key or generate_private_key()
    if (issuer_key is None) != (issuer_cert is None):
        raise CredentialError("ca_key", "an issuing CA needs both its certificate and its key")
    signer = issuer_key or key
    if issuer_cert is not None:
        _check_pair(issuer_cert, signer)
    name = _name(cn)
    issuer = name if issuer_cert is None else issuer_cert.subject
    cert = (
        _builder(name, issuer, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    return key, cert


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _check_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    own = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if own != spki_der(key.public_key()):
        raise CredentialError("ca_key", "does not belong to the CA certificate")


def issue_certificate(
    public_key: ec.EllipticCurvePublicKey,
    cn: str,
    *,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None = None,
    sans: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    server: bool = False,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """An end-entity certificate for ``public_key``. Without ``issuer_cert`` it is self-signed
    (``issuer_key`` must then be the subject's own key). ``server`` picks the serverAuth EKU,
    otherwise clientAuth (a device)."""
    subject = _name(cn)
    issuer = subject if issuer_cert is None else issuer_cert.subject
    if issuer_cert is not None:
        _check_pair(issuer_cert, issuer_key)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, issuer, public_key, days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    alt = subject_alt_names(sans)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def self_signed_server_certificate(
    key: ec.EllipticCurvePrivateKey,
    host: str,
    *,
    sans: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """CN=host with host (and ``sans``) as SAN DNS/IP entries."""
    return issue_certificate(
        key.public_key(),
        host,
        issuer_key=key,
        sans=[host, *sans],
        days=days,
        server=True,
        now=now,
    )

"""The test PKI of the CoAPs interop suite: one CA, the server's certificate, device keys and
certificates (good, expired, from an untrusted CA, naming no known endpoint), written as PEM
files for the external tools (``coap-client``, ``openssl``, ``gnutls-cli``).

Built once per test session with ``keystore.tools`` (the same code as ``lwm2m-keystore``)."""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keystore import tools
from keystore.credentials import certificate_der

PSK_IDENTITY = b"dev-psk-identity"
#: printable: libcoap 4.3.1 takes `-k` as text (openssl and gnutls-cli get its hex)
PSK_KEY = b"pylwm2m-test-psk"


def key_pem(key: ec.EllipticCurvePrivateKey, *, traditional: bool = False) -> bytes:
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return tools.spki_der(key.public_key())


@attrs.frozen
class Device:
    """A device identity: key, certificate (or none for RPK) and its PEM files."""

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate | None
    key_file: Path
    cert_file: Path | None
    #: public + private key in one PEM (libcoap's -M for RPK)
    rpk_file: Path

    @property
    def cert_der(self) -> bytes:
        assert self.cert is not None
        return certificate_der(self.cert)


@attrs.frozen
class Pki:
    folder: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    ca_file: Path
    server_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate
    server_cert_file: Path
    server_public_file: Path
    x509_device: Device  # CN=dev-x509, from the CA (a "trust CA" record)
    pinned_device: Device  # self-signed CN=whatever, pinned by dev-pinned
    rpk_device: Device  # dev-rpk
    expired_device: Device  # CN=dev-x509, from the CA, expired
    untrusted_device: Device  # CN=dev-x509, from another CA
    stranger_device: Device  # CN=nobody-knows-me, from the CA

    @property
    def server_chain(self) -> tuple[bytes, ...]:
        return (certificate_der(self.server_cert),)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _device(
    folder: Path,
    name: str,
    cn: str | None,
    *,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
    now: datetime.datetime | None = None,
    days: int = 30,
) -> Device:
    key = tools.generate_private_key()
    cert: x509.Certificate | None = None
    cert_file: Path | None = None
    if cn is not None:
        if issuer is None:
            cert = tools.issue_certificate(key.public_key(), cn, issuer_key=key, days=days, now=now)
        else:
            cert = tools.issue_certificate(
                key.public_key(),
                cn,
                issuer_key=issuer[0],
                issuer_cert=issuer[1],
                days=days,
                now=now,
            )
        cert_file = _write(folder, f"{name}.crt", tools.certificate_pem(cert))
    return Device(
        name=name,
        key=key,
        cert=cert,
        key_file=_write(folder, f"{name}.key", key_pem(key)),
        cert_file=cert_file,
        rpk_file=_write(folder, f"{name}.rpk.pem", public_pem(key) + key_pem(key)),
    )


def build(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = tools.make_ca("pylwm2m test devices CA")
    server_key = tools.generate_private_key()
    server_cert = tools.issue_certificate(
        server_key.public_key(),
        "127.0.0.1",
        issuer_key=ca_key,
        issuer_cert=ca,
        sans=["127.0.0.1", "localhost"],
        server=True,
    )
    other_ca = tools.make_ca("some other CA")
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    return Pki(
        folder=folder,
        ca_key=ca_key,
        ca=ca,
        ca_file=_write(folder, "ca.crt", tools.certificate_pem(ca)),
        server_key=server_key,
        server_cert=server_cert,
        server_cert_file=_write(folder, "server.crt", tools.certificate_pem(server_cert)),
        server_public_file=_write(folder, "server.pub.pem", public_pem(server_key)),
        x509_device=_device(folder, "dev-x509", "dev-x509", issuer=(ca_key, ca)),
        pinned_device=_device(folder, "dev-pinned", "pinned-self-signed", issuer=None),
        rpk_device=_device(folder, "dev-rpk", None, issuer=None),
        expired_device=_device(
            folder, "expired", "dev-x509", issuer=(ca_key, ca), now=long_ago, days=30
        ),
        untrusted_device=_device(folder, "untrusted", "dev-x509", issuer=other_ca),
        stranger_device=_device(folder, "stranger", "nobody-knows-me", issuer=(ca_key, ca)),
    )

"""Device credentials and the server's own identity, as validated value types.

Why a validated type instead of dicts: every way in (the CLI, an import file, the HTTP API later)
goes through the same checks, so a record in the store is always usable by the DTLS engine (a
P-256 key in canonical SubjectPublicKeyInfo form, a parseable certificate, a PSK identity that
fits the 128-byte limit of LwM2M). Errors are ``CredentialError``: the field and the reason.

Secrets (PSK keys, the server's private key) never appear in ``repr``/``str``, so a record can be
logged with ``%r`` or shown in a traceback without leaking. Public material is shown as a short
SHA-256 fingerprint to keep log lines short and unambiguous.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Any, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from object_models.errors import Lwm2mError, ResponseCode

from .modes import SecurityMode

MAX_PSK_IDENTITY = 128  # bytes; LwM2M 1.1 and RFC 4279 practice (the DTLS engine's limit too)
MAX_PSK_KEY = 64  # bytes; TLS allows more, no LwM2M client stack does
MAX_ENDPOINT = 255
"""Characters of an endpoint client name, everywhere (device records, bootstrap configurations,
the server's Register): the spec sets no limit, but ``ep=NAME`` travels in one CoAP Uri-Query
option, which is at most 255 bytes (RFC 7252 §5.10), so no conforming client can send a longer
name; a device record the server would refuse to register is a trap."""
HEX_PREFIX = "hex:"

Encoding = Literal["hex", "base64"]


class CredentialError(Lwm2mError):
    """Invalid or conflicting credentials; ``field`` names what is wrong, ``reason`` why."""

    def __init__(
        self, field: str, reason: str, *, code: ResponseCode = ResponseCode.BAD_REQUEST
    ) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason, code=code)


# -- text forms ---------------------------------------------------------------------------------


def format_psk_identity(identity: bytes) -> str:
    """UTF-8 text when it is printable, else ``hex:…``; ``parse_psk_identity`` reverses it."""
    try:
        text = identity.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and text.isprintable() and not text.startswith(HEX_PREFIX):
        return text
    return HEX_PREFIX + identity.hex()


def parse_psk_identity(text: str, field: str = "psk_identity") -> bytes:
    """Plain text is taken as UTF-8; ``hex:…`` gives binary identities."""
    raw = parse_hex(text[len(HEX_PREFIX) :], field) if text.startswith(HEX_PREFIX) else None
    return raw if raw is not None else text.encode("utf-8")


def parse_hex(text: str, field: str) -> bytes:
    """Hex digits, optionally with ``:`` or whitespace separators and a ``0x`` prefix."""
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise CredentialError(field, "not hexadecimal (expected pairs of 0-9a-f)") from None


def encode_bytes(data: bytes, encoding: Encoding) -> str:
    return data.hex() if encoding == "hex" else base64.b64encode(data).decode("ascii")


def decode_bytes(text: object, encoding: Encoding, field: str) -> bytes:
    if not isinstance(text, str):
        raise CredentialError(field, f"expected a {encoding} string, got {type(text).__name__}")
    if encoding == "hex":
        return parse_hex(text, field)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise CredentialError(field, "not base64") from None


def fingerprint(data: bytes) -> str:
    """SHA-256 of DER material as hex: how keys and certificates are named in logs and the CLI."""
    return hashlib.sha256(data).hexdigest()


def short_fingerprint(data: bytes) -> str:
    return "sha256:" + fingerprint(data)[:16]


# -- public keys --------------------------------------------------------------------------------


def load_public_key(data: bytes | str, field: str = "public_key") -> bytes:
    """A P-256 public key in any form people paste, as canonical SubjectPublicKeyInfo DER.

    Accepted: PEM, SPKI DER, the raw 64-byte X||Y form (what ThingsBoard's and many device
    SDKs' "RPK" fields hold), the 65-byte uncompressed point 04||X||Y, or any of those as hex.
    """
    raw = _maybe_text(data, field)
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError):
            raise CredentialError(field, "unreadable PEM public key") from None
        return _canonical_spki(key, field)
    if len(raw) == 64:
        raw = b"\x04" + raw
    if len(raw) == 65 and raw[0] == 4:
        try:
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise CredentialError(field, "not a point on the P-256 curve") from None
        return _canonical_spki(point, field)
    return normalize_spki(raw, field)


def normalize_spki(spki: bytes, field: str = "public_key") -> bytes:
    """Re-encode a SubjectPublicKeyInfo so one key always has one byte form (uncompressed point);
    lookups by key (unique index, RPK verification) compare bytes."""
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError):
        raise CredentialError(
            field, "not a public key (expected PEM, SPKI DER, or 64-byte X||Y, raw or hex)"
        ) from None
    return _canonical_spki(key, field)


def raw_public_key(spki: bytes) -> bytes:
    """The 64-byte X||Y form of a P-256 SPKI (no 04 prefix)."""
    key = serialization.load_der_public_key(spki)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CredentialError("public_key", "not an EC key")
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:]


def _canonical_spki(key: object, field: str) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CredentialError(field, "only ECDSA P-256 (secp256r1) keys are supported")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _maybe_text(data: bytes | str, field: str) -> bytes:
    """Text that is all hex digits is decoded; other text (PEM) is taken as its bytes."""
    if isinstance(data, bytes):
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            return data
    else:
        text = data
    stripped = "".join(text.split())
    if stripped and all(c in "0123456789abcdefABCDEF:x" for c in stripped):
        return parse_hex(stripped, field)
    return text.encode("utf-8") if isinstance(data, str) else data


# -- certificates -------------------------------------------------------------------------------


def load_certificates(data: bytes | str, field: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in PEM (one or a bundle), DER or hex DER."""
    raw = _maybe_text(data, field)
    try:
        if b"-----BEGIN" in raw:
            certs = x509.load_pem_x509_certificates(raw)
        else:
            certs = [x509.load_der_x509_certificate(raw)]
    except ValueError:
        raise CredentialError(
            field, "not an X.509 certificate (expected PEM, DER or hex)"
        ) from None
    if not certs:
        raise CredentialError(field, "no certificate found")
    return certs


def load_certificate(data: bytes | str, field: str = "certificate") -> x509.Certificate:
    certs = load_certificates(data, field)
    if len(certs) != 1:
        raise CredentialError(field, f"expected one certificate, found {len(certs)}")
    return certs[0]


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """Names a certificate can bind to an endpoint, in order: subject CN(s), then SAN DNS names,
    then SAN URIs (``urn:imei:…`` is a common endpoint name)."""
    names: list[str] = []
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value
        text = value if isinstance(value, str) else value.decode("utf-8", "replace")
        if text:
            names.append(text)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        names.extend(san.get_values_for_type(x509.DNSName))
        names.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
    return tuple(dict.fromkeys(n for n in names if n))


def is_ca_certificate(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# -- endpoints ----------------------------------------------------------------------------------


def check_endpoint(endpoint: object, field: str = "endpoint") -> str:
    if not isinstance(endpoint, str) or not endpoint:
        raise CredentialError(field, "must be a non-empty string")
    if len(endpoint) > MAX_ENDPOINT:
        raise CredentialError(field, f"longer than {MAX_ENDPOINT} characters")
    if not endpoint.isprintable():
        raise CredentialError(field, "contains control characters")
    return endpoint


# -- records ------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class DeviceCredentials:
    """How one endpoint authenticates. Build with the ``for_psk``/``for_rpk``/``for_x509``/
    ``for_nosec`` constructors; the initializer validates and normalizes whatever it is given.

    X.509 and EST records either pin one certificate (``certificate`` is its DER: the device
    must present exactly that one) or leave it ``None`` ("trust CA": any certificate that
    verifies against the trust store and names this endpoint in its CN or SAN is accepted).
    """

    endpoint: str
    mode: SecurityMode
    psk_identity: bytes | None = None
    psk_key: bytes | None = None
    rpk_spki: bytes | None = None
    certificate: bytes | None = None
    active: bool = True

    def __attrs_post_init__(self) -> None:
        check_endpoint(self.endpoint)
        if not isinstance(self.mode, SecurityMode):
            object.__setattr__(self, "mode", SecurityMode.parse(self.mode))
        if not isinstance(self.active, bool):
            raise CredentialError("active", "must be true or false")
        mode = self.mode
        _only(self, {"psk_identity", "psk_key"} if mode is SecurityMode.PSK else set(), "psk")
        _only(self, {"rpk_spki"} if mode is SecurityMode.RPK else set(), "rpk")
        _only(self, {"certificate"} if mode.uses_certificates else set(), "certificate")
        if mode is SecurityMode.PSK:
            _check_psk(self.psk_identity, self.psk_key)
        elif mode is SecurityMode.RPK:
            if self.rpk_spki is None:
                raise CredentialError("rpk_public_key", "required in rpk mode")
            object.__setattr__(self, "rpk_spki", normalize_spki(self.rpk_spki, "rpk_public_key"))
        elif self.certificate is not None:
            cert = load_certificate(self.certificate)
            object.__setattr__(self, "certificate", certificate_der(cert))

    # constructors ---------------------------------------------------------------------------
    @classmethod
    def for_psk(
        cls, endpoint: str, identity: bytes | str, key: bytes, *, active: bool = True
    ) -> DeviceCredentials:
        ident = identity.encode("utf-8") if isinstance(identity, str) else identity
        return cls(endpoint, SecurityMode.PSK, psk_identity=ident, psk_key=key, active=active)

    @classmethod
    def for_rpk(
        cls, endpoint: str, public_key: bytes | str, *, active: bool = True
    ) -> DeviceCredentials:
        spki = load_public_key(public_key, "rpk_public_key")
        return cls(endpoint, SecurityMode.RPK, rpk_spki=spki, active=active)

    @classmethod
    def for_x509(
        cls,
        endpoint: str,
        certificate: bytes | str | x509.Certificate | None = None,
        *,
        est: bool = False,
        active: bool = True,
    ) -> DeviceCredentials:
        if isinstance(certificate, x509.Certificate):
            der: bytes | None = certificate_der(certificate)
        elif certificate is None:
            der = None
        else:
            der = certificate_der(load_certificate(certificate))
        mode = SecurityMode.EST if est else SecurityMode.X509
        return cls(endpoint, mode, certificate=der, active=active)

    @classmethod
    def for_nosec(cls, endpoint: str, *, active: bool = True) -> DeviceCredentials:
        return cls(endpoint, SecurityMode.NOSEC, active=active)

    # views ----------------------------------------------------------------------------------
    @property
    def trusts_ca(self) -> bool:
        """Certificate mode without a pinned certificate: the trust store vouches."""
        return self.mode.uses_certificates and self.certificate is None

    @property
    def psk_identity_text(self) -> str | None:
        return None if self.psk_identity is None else format_psk_identity(self.psk_identity)

    def public_summary(self) -> dict[str, Any]:
        """Everything but secrets, JSON-ready (``device show`` without ``--show-secret``)."""
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "mode": self.mode.label,
            "active": self.active,
        }
        if self.psk_identity is not None:
            out["psk_identity"] = format_psk_identity(self.psk_identity)
        if self.rpk_spki is not None:
            out["rpk_public_key"] = self.rpk_spki.hex()
            out["rpk_public_key_xy"] = raw_public_key(self.rpk_spki).hex()
        if self.certificate is not None:
            cert = x509.load_der_x509_certificate(self.certificate)
            out["certificate_sha256"] = fingerprint(self.certificate)
            out["certificate_subject"] = cert.subject.rfc4514_string()
            out["certificate_not_after"] = cert.not_valid_after_utc.isoformat()
        elif self.mode.uses_certificates:
            out["trust"] = "trusted CA; endpoint from certificate CN/SAN"
        return out

    def to_json(self, encoding: Encoding = "hex") -> dict[str, Any]:
        """The export form, secrets included (documented in docs/security.md)."""
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "mode": self.mode.label,
            "active": self.active,
        }
        for name, value in (
            ("psk_identity", self.psk_identity),
            ("psk_key", self.psk_key),
            ("rpk_public_key", self.rpk_spki),
            ("certificate", self.certificate),
        ):
            if value is not None:
                out[name] = encode_bytes(value, encoding)
        return out

    @classmethod
    def from_json(cls, data: object, encoding: Encoding = "hex") -> DeviceCredentials:
        if not isinstance(data, dict):
            raise CredentialError("", f"expected an object, got {type(data).__name__}")
        _no_unknown(data, _DEVICE_KEYS)
        try:
            mode = SecurityMode.parse(data.get("mode", ""))
        except ValueError as exc:
            raise CredentialError("mode", str(exc)) from None
        identity: bytes | None = None
        if "psk_identity_text" in data:
            text = data["psk_identity_text"]
            if not isinstance(text, str):
                raise CredentialError("psk_identity_text", "must be a string")
            identity = text.encode("utf-8")
        elif "psk_identity" in data:
            identity = decode_bytes(data["psk_identity"], encoding, "psk_identity")

        def blob(name: str) -> bytes | None:
            return decode_bytes(data[name], encoding, name) if name in data else None

        return cls(
            endpoint=data.get("endpoint"),  # type: ignore[arg-type]  # checked in post-init
            mode=mode,
            psk_identity=identity,
            psk_key=blob("psk_key"),
            rpk_spki=blob("rpk_public_key"),
            certificate=blob("certificate"),
            active=data.get("active", True),
        )

    def __repr__(self) -> str:
        parts = [f"endpoint={self.endpoint!r}", f"mode={self.mode.label}", f"active={self.active}"]
        if self.psk_identity is not None:
            parts.append(f"psk_identity={format_psk_identity(self.psk_identity)!r}")
        if self.psk_key is not None:
            parts.append("psk_key=<secret>")
        if self.rpk_spki is not None:
            parts.append(f"rpk={short_fingerprint(self.rpk_spki)}")
        if self.certificate is not None:
            parts.append(f"certificate={short_fingerprint(self.certificate)}")
        elif self.mode.uses_certificates:
            parts.append("certificate=<trusted CA>")
        return f"DeviceCredentials({', '.join(parts)})"

    __str__ = __repr__


_DEVICE_KEYS = {
    "endpoint",
    "mode",
    "active",
    "psk_identity",
    "psk_identity_text",
    "psk_key",
    "rpk_public_key",
    "certificate",
}

_FIELD_NAMES = {"rpk_spki": "rpk_public_key"}


def _only(creds: DeviceCredentials, allowed: set[str], group: str) -> None:
    names = {
        "psk": ("psk_identity", "psk_key"),
        "rpk": ("rpk_spki",),
        "certificate": ("certificate",),
    }
    for name in names[group]:
        if name not in allowed and getattr(creds, name) is not None:
            shown = _FIELD_NAMES.get(name, name)
            raise CredentialError(shown, f"not used in {creds.mode.label} mode")


def _check_psk(identity: bytes | None, key: bytes | None) -> None:
    if not isinstance(identity, bytes) or not identity:
        raise CredentialError("psk_identity", "required in psk mode (1..128 bytes)")
    if len(identity) > MAX_PSK_IDENTITY:
        raise CredentialError(
            "psk_identity", f"{len(identity)} bytes, at most {MAX_PSK_IDENTITY} allowed"
        )
    if not isinstance(key, bytes) or not key:
        raise CredentialError("psk_key", "required in psk mode (1..64 bytes)")
    if len(key) > MAX_PSK_KEY:
        raise CredentialError("psk_key", f"{len(key)} bytes, at most {MAX_PSK_KEY} allowed")


def _no_unknown(data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise CredentialError(unknown[0], "unknown field")


@attrs.frozen(repr=False)
class TrustedCa:
    """A CA whose certificates identify devices ("X.509 with trust store"). With
    ``auto_registration`` a device holding a certificate it issued may register without a
    device record, as the endpoint named by its CN/SAN."""

    certificate: bytes
    auto_registration: bool = False
    cert: x509.Certificate = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        cert = load_certificate(self.certificate, "ca_certificate")
        if not is_ca_certificate(cert):
            raise CredentialError(
                "ca_certificate", "not a CA certificate (basicConstraints CA:TRUE missing)"
            )
        object.__setattr__(self, "cert", cert)
        object.__setattr__(self, "certificate", certificate_der(cert))
        if not isinstance(self.auto_registration, bool):
            raise CredentialError("auto_registration", "must be true or false")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    def to_json(self, encoding: Encoding = "hex") -> dict[str, Any]:
        return {
            "subject": self.subject,  # informative; ignored on import
            "sha256": self.fingerprint,  # informative; ignored on import
            "certificate": encode_bytes(self.certificate, encoding),
            "auto_registration": self.auto_registration,
        }

    @classmethod
    def from_json(cls, data: object, encoding: Encoding = "hex") -> TrustedCa:
        if not isinstance(data, dict):
            raise CredentialError("", f"expected an object, got {type(data).__name__}")
        _no_unknown(data, {"certificate", "auto_registration", "subject", "sha256"})
        if "certificate" not in data:
            raise CredentialError("certificate", "required")
        return cls(
            decode_bytes(data["certificate"], encoding, "certificate"),
            auto_registration=data.get("auto_registration", False),
        )

    def __repr__(self) -> str:
        return (
            f"TrustedCa(subject={self.subject!r}, sha256={self.fingerprint[:16]}, "
            f"auto_registration={self.auto_registration})"
        )

    __str__ = __repr__


def _as_tuple(items: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(items)


@attrs.frozen(repr=False)
class ServerIdentity:
    """The server's ECDSA P-256 key (PKCS#8 PEM) and, optionally, its X.509 chain (DER, leaf
    first). One key serves both: devices in RPK mode pin its public key, devices in certificate
    mode verify the chain. The leaf's public key must be this key."""

    private_key_pem: bytes
    certificate_chain: tuple[bytes, ...] = attrs.field(default=(), converter=_as_tuple)
    key: ec.EllipticCurvePrivateKey = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        try:
            key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        except (ValueError, TypeError):
            raise CredentialError(
                "private_key", "unreadable PEM private key (unencrypted PKCS#8 expected)"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise CredentialError("private_key", "only ECDSA P-256 (secp256r1) keys are supported")
        object.__setattr__(self, "key", key)
        chain = tuple(
            certificate_der(load_certificate(c, f"certificate_chain[{i}]"))
            for i, c in enumerate(self.certificate_chain)
        )
        object.__setattr__(self, "certificate_chain", chain)
        if chain:
            leaf = x509.load_der_x509_certificate(chain[0])
            if _canonical_spki(leaf.public_key(), "certificate_chain[0]") != self.public_key_spki:
                raise CredentialError(
                    "certificate_chain[0]", "the certificate is not for the server's private key"
                )

    @property
    def public_key_spki(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def certificate(self) -> x509.Certificate | None:
        if not self.certificate_chain:
            return None
        return x509.load_der_x509_certificate(self.certificate_chain[0])

    def with_chain(self, chain: tuple[bytes, ...]) -> ServerIdentity:
        return ServerIdentity(self.private_key_pem, chain)

    def to_json(self, encoding: Encoding = "hex") -> dict[str, Any]:
        return {
            "private_key_pem": self.private_key_pem.decode("ascii"),
            "certificate_chain": [encode_bytes(c, encoding) for c in self.certificate_chain],
        }

    @classmethod
    def from_json(cls, data: object, encoding: Encoding = "hex") -> ServerIdentity:
        if not isinstance(data, dict):
            raise CredentialError("server", f"expected an object, got {type(data).__name__}")
        _no_unknown(data, {"private_key_pem", "certificate_chain"})
        pem = data.get("private_key_pem")
        if not isinstance(pem, str):
            raise CredentialError("private_key_pem", "required (a PEM string)")
        chain = data.get("certificate_chain", [])
        if not isinstance(chain, list):
            raise CredentialError("certificate_chain", "must be a list")
        return cls(
            pem.encode("ascii"),
            tuple(
                decode_bytes(c, encoding, f"certificate_chain[{i}]") for i, c in enumerate(chain)
            ),
        )

    def __repr__(self) -> str:
        cert = self.certificate
        subject = None if cert is None else cert.subject.rfc4514_string()
        return (
            f"ServerIdentity(public_key={short_fingerprint(self.public_key_spki)}, "
            f"private_key=<secret>, certificate={subject!r}, chain={len(self.certificate_chain)})"
        )

    __str__ = __repr__

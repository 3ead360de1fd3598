"""Authenticating peer keys: raw public keys (RFC 7250) and X.509 chains.

Why here and not in the state machine: every failure must map to the right alert
(certificate_expired, unsupported_certificate, bad_certificate) and that mapping is easier to test
in isolation. Chains are verified with ``cryptography.x509.verification`` (the WebPKI CA rules for
the trust anchors and intermediates, a permissive end-entity policy because LwM2M device
certificates rarely carry SAN/EKU extensions); validity dates of every certificate are checked
first so an out-of-date chain reports certificate_expired rather than a generic failure.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .constants import AlertDescription
from .errors import AlertError


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _require_p256(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AlertError(AlertDescription.unsupported_certificate, "peer key is not ECDSA P-256")
    return key


def load_raw_public_key(spki: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a SubjectPublicKeyInfo; only P-256 keys are usable with our suites."""
    try:
        key = serialization.load_der_public_key(spki)
    except UnsupportedAlgorithm:
        raise AlertError(AlertDescription.unsupported_certificate, "unsupported key type") from None
    except (ValueError, TypeError):
        raise AlertError(AlertDescription.bad_certificate, "malformed raw public key") from None
    return _require_p256(key)


def verify_certificate_chain(
    chain_der: Sequence[bytes],
    trust_store: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> ec.EllipticCurvePublicKey:
    """Verify ``chain_der`` (leaf first) against ``trust_store`` at ``now``; return the leaf key."""
    if not chain_der:
        raise AlertError(AlertDescription.bad_certificate, "empty certificate chain")
    try:
        chain = [x509.load_der_x509_certificate(c) for c in chain_der]
    except ValueError:
        raise AlertError(AlertDescription.bad_certificate, "malformed certificate") from None
    for cert in chain:
        if now < cert.not_valid_before_utc or now > cert.not_valid_after_utc:
            raise AlertError(
                AlertDescription.certificate_expired, "certificate outside its validity period"
            )
    try:
        leaf_public_key = chain[0].public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise AlertError(AlertDescription.unsupported_certificate, "unsupported key type") from None
    leaf_key = _require_p256(leaf_public_key)
    if not trust_store:
        raise AlertError(AlertDescription.bad_certificate, "no trust anchors configured")
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(trust_store)))
            .time(now)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        verifier.verify(chain[0], chain[1:])
    except VerificationError:
        raise AlertError(
            AlertDescription.bad_certificate, "certificate chain does not verify"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise AlertError(AlertDescription.bad_certificate, "unusable certificate chain") from None
    return leaf_key


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)

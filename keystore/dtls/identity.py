"""Who the peer proved to be, as reported in :class:`~keystore.dtls.events.HandshakeComplete`.

Why three value types instead of one blob: the resolver that maps a DTLS peer to an LwM2M
endpoint matches PSK identities, raw public keys and certificates differently; a tagged type keeps
that explicit. None of them holds secret material.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PskIdentity:
    """The (binary, up to 128 bytes) PSK identity the client used."""

    identity: bytes


@dataclass(frozen=True, slots=True)
class RawPublicKeyIdentity:
    """RFC 7250 raw public key: the DER SubjectPublicKeyInfo."""

    spki_der: bytes


@dataclass(frozen=True, slots=True)
class X509Identity:
    """The certificate chain as sent by the peer, leaf first, DER."""

    chain: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class AnonymousIdentity:
    """The client was not asked to authenticate (``ServerConfig.require_client_auth=False``)."""


DtlsIdentity = PskIdentity | RawPublicKeyIdentity | X509Identity | AnonymousIdentity

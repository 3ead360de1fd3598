"""The identity a CoAPs request carries: what the DTLS handshake of its session authenticated.

Why a separate value on the remote rather than an endpoint name: the transport knows *who* the
peer proved to be (PSK identity, raw public key, certificate chain), not *which endpoint* it may
be. That second question depends on the Register's ``ep`` and on the device records at the time
of the request, so it is answered by ``keystore.resolver.Resolver.resolve`` in the server's /rd
and /dp handlers, from this claim. aiocoap's own convention for such facts is
``remote.authenticated_claims`` (an iterable; ``tinydtls_server`` puts its PSK claims there), so
a :class:`DtlsClaim` is what our remotes list there.

Nothing here holds key material: a PSK identity is public (it goes over the wire in clear), and
public keys and certificates are public by nature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..credentials import format_psk_identity, short_fingerprint
from ..dtls.constants import CipherSuite
from ..dtls.identity import (
    AnonymousIdentity,
    PskIdentity,
    RawPublicKeyIdentity,
    X509Identity,
)
from ..dtls.identity import DtlsIdentity as DtlsPeerIdentity
from ..resolver import PeerIdentity


@dataclass(frozen=True, slots=True)
class DtlsClaim:
    """One authenticated DTLS session's peer: the engine's identity and the suite it used."""

    identity: DtlsPeerIdentity
    cipher_suite: int

    @property
    def mode(self) -> str:
        """``psk``, ``rpk``, ``x509`` or ``anonymous`` (for logs and metrics)."""
        if isinstance(self.identity, PskIdentity):
            return "psk"
        if isinstance(self.identity, RawPublicKeyIdentity):
            return "rpk"
        if isinstance(self.identity, X509Identity):
            return "x509"
        return "anonymous"

    def peer(self, source: tuple[str, int] | None = None) -> PeerIdentity:
        """The resolver's view of this peer. ``ValueError`` for an anonymous peer (the server
        always requires client authentication, so it never has one)."""
        if isinstance(self.identity, AnonymousIdentity):
            raise ValueError("an anonymous DTLS peer has no identity to resolve")
        return PeerIdentity.from_dtls(self.identity, source)

    def describe(self) -> str:
        """For logs: identity text, key fingerprint or certificate count; never secrets."""
        ident = self.identity
        if isinstance(ident, PskIdentity):
            what = f"psk {format_psk_identity(ident.identity)!r}"
        elif isinstance(ident, RawPublicKeyIdentity):
            what = f"rpk {short_fingerprint(ident.spki_der)}"
        elif isinstance(ident, X509Identity):
            what = f"x509 {short_fingerprint(ident.chain[0]) if ident.chain else '<empty>'}"
        else:
            what = "anonymous"
        try:
            suite = CipherSuite(self.cipher_suite).name
        except ValueError:
            suite = f"{self.cipher_suite:#06x}"
        return f"{what} ({suite})"


def dtls_claim(claims: Iterable[object]) -> DtlsClaim | None:
    """The first :class:`DtlsClaim` among a remote's ``authenticated_claims``."""
    for claim in claims:
        if isinstance(claim, DtlsClaim):
            return claim
    return None


def peer_of(remote: object, source: tuple[str, int] | None = None) -> PeerIdentity:
    """Who sent a request, for ``Resolver.resolve``: the DTLS identity of a CoAPs remote, or a
    NoSec peer for anything without a :class:`DtlsClaim` (plain CoAP).

    Reads ``remote.authenticated_claims`` only, so it works for any aiocoap remote without
    importing aiocoap."""
    claim = dtls_claim(getattr(remote, "authenticated_claims", ()) or ())
    if claim is None or isinstance(claim.identity, AnonymousIdentity):
        return PeerIdentity.nosec(source)
    return claim.peer(source)

"""Who a peer is: DTLS identity (or none) + the ``ep`` of a Register -> endpoint, or a refusal.

This is where DESIGN.md's identity binding is decided, once, for every transport: a DTLS peer is
bound to exactly one endpoint (by PSK identity, raw public key, pinned certificate, or the CN/SAN
of a certificate from a trusted CA), a Register whose ``ep`` disagrees gets 4.03, an endpoint
whose record requires security never gets in over NoSec (4.03), and an unknown NoSec endpoint
gets in only while ``open_registration`` is on (else 4.01). The full table is in
docs/security.md; ``tests/unit/keystore/test_resolver.py`` checks every row.

Everything here is a pure function of the store's records and the clock, and no I/O but store
reads. The records are read through ``keystore.credential_cache``, which knows cheaply when they
changed (this process's writes; for other processes', sqlite's ``PRAGMA data_version`` or the
Redis store's version counter), so a device removed or re-keyed anywhere is refused by the next
request the server reads. The DTLS engine's callbacks are methods of the same
``Resolver`` so the handshake and the Register are decided from one set of records. Identities
are logged as text/hex/fingerprints; keys never.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Protocol

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from object_models.errors import Lwm2mError, ResponseCode

from .credential_cache import CachedCredentials, VersionedCredentials
from .credentials import (
    MAX_ENDPOINT,
    CredentialError,
    DeviceCredentials,
    TrustedCa,
    certificate_names,
    check_endpoint,
    format_psk_identity,
    normalize_spki,
    short_fingerprint,
)
from .dtls.identity import DtlsIdentity, PskIdentity, RawPublicKeyIdentity, X509Identity
from .log_limit import PerPeerLimit
from .modes import SecurityMode

log = logging.getLogger(__name__)

Transport = Literal["coap", "coaps"]
Clock = Callable[[], datetime.datetime]


class IdentityRefused(Lwm2mError):
    """The peer may not be (or register as) that endpoint; ``code`` is the CoAP answer."""

    code = ResponseCode.UNAUTHORIZED


class ChainError(Exception):
    """A certificate chain that does not verify against the trusted CAs (the reason says why)."""


class CredentialLookup(Protocol):
    """The part of ``CredentialStore`` the resolver reads."""

    def get_device(self, endpoint: str) -> DeviceCredentials | None: ...

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None: ...

    def device_by_rpk(self, spki: bytes) -> DeviceCredentials | None: ...

    def device_by_certificate(self, der: bytes) -> DeviceCredentials | None: ...

    def devices(self) -> list[DeviceCredentials]: ...

    def trusted_cas(self) -> list[TrustedCa]: ...


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


_new = object.__new__
_tuple_new = tuple.__new__
_set = object.__setattr__
_NOSEC = SecurityMode.NOSEC


@attrs.frozen
class PeerIdentity:
    """What the transport knows about a peer. ``coap`` peers are NoSec and carry nothing;
    ``coaps`` peers carry exactly what their mode proved (PSK identity, SPKI DER, or the
    certificate chain, leaf first, DER)."""

    transport: Transport
    mode: SecurityMode
    psk_identity: bytes | None = None
    spki: bytes | None = None
    certificate_chain: tuple[bytes, ...] = ()
    source: tuple[str, int] | None = None

    def __attrs_post_init__(self) -> None:
        if (
            self.mode is SecurityMode.NOSEC
            and self.transport == "coap"
            and self.psk_identity is None
            and self.spki is None
            and not self.certificate_chain
        ):
            return  # the one shape of a NoSec peer, built for every NoSec request: checked fast
        expected = {
            SecurityMode.NOSEC: "coap",
            SecurityMode.PSK: "coaps",
            SecurityMode.RPK: "coaps",
            SecurityMode.X509: "coaps",
            SecurityMode.EST: "coaps",
        }[self.mode]
        if self.transport != expected:
            raise ValueError(f"{self.mode.label} peers come over {expected}, not {self.transport}")
        given = {
            "psk_identity": self.psk_identity is not None,
            "spki": self.spki is not None,
            "certificate_chain": bool(self.certificate_chain),
        }
        needed = {
            SecurityMode.PSK: "psk_identity",
            SecurityMode.RPK: "spki",
            SecurityMode.X509: "certificate_chain",
            SecurityMode.EST: "certificate_chain",
        }.get(self.mode)
        for name, present in given.items():
            if present != (name == needed):
                state = "missing" if not present else "not expected"
                raise ValueError(f"{self.mode.label} peer: {name} {state}")

    @classmethod
    def nosec(cls, source: tuple[str, int] | None = None) -> PeerIdentity:
        """Built for every NoSec request that is not in the runtime's per-source table
        (``lwm2m_runtime.server._nosec_peers``, which keeps one per source), so without attrs'
        frozen ``__init__`` and the post-init check (~0.9 → ~0.4 µs): the fields are the one
        valid NoSec shape, set directly (a test holds it equal to the checked constructor's)."""
        peer = _new(cls)
        _set(peer, "transport", "coap")
        _set(peer, "mode", _NOSEC)
        _set(peer, "psk_identity", None)
        _set(peer, "spki", None)
        _set(peer, "certificate_chain", ())
        _set(peer, "source", source)
        return peer

    @classmethod
    def psk(cls, identity: bytes, source: tuple[str, int] | None = None) -> PeerIdentity:
        return cls("coaps", SecurityMode.PSK, psk_identity=bytes(identity), source=source)

    @classmethod
    def rpk(cls, spki: bytes, source: tuple[str, int] | None = None) -> PeerIdentity:
        return cls("coaps", SecurityMode.RPK, spki=bytes(spki), source=source)

    @classmethod
    def x509(cls, chain: Sequence[bytes], source: tuple[str, int] | None = None) -> PeerIdentity:
        return cls("coaps", SecurityMode.X509, certificate_chain=tuple(chain), source=source)

    @classmethod
    def from_dtls(
        cls, identity: DtlsIdentity | None, source: tuple[str, int] | None = None
    ) -> PeerIdentity:
        """From what the DTLS engine reports at HandshakeComplete (``None``: a NoSec peer)."""
        if identity is None:
            return cls.nosec(source)
        if isinstance(identity, PskIdentity):
            return cls.psk(identity.identity, source)
        if isinstance(identity, RawPublicKeyIdentity):
            return cls.rpk(identity.spki_der, source)
        if isinstance(identity, X509Identity):
            return cls.x509(identity.chain, source)
        raise TypeError(f"not a DTLS peer identity: {type(identity).__name__}")

    def describe(self) -> str:
        """For logs: the identity as text, hex or a fingerprint (never key material)."""
        if self.psk_identity is not None:
            what = f"psk identity {format_psk_identity(self.psk_identity)!r}"
        elif self.spki is not None:
            what = f"raw public key {short_fingerprint(self.spki)}"
        elif self.certificate_chain:
            what = f"certificate {_subject(self.certificate_chain[0])}"
        else:
            what = "nosec peer"
        if self.source is not None:
            what += f" from {self.source[0]}:{self.source[1]}"
        return what


@attrs.frozen
class IdentityBinding:
    """The identity a registration is bound to, once ``Resolver`` accepted a DTLS peer: what
    the LwM2M server stores with a registration and compares on every later request (a
    registration may only be updated or read by the identity that made it).

    ``mode`` is ``psk``, ``rpk`` or ``x509``; ``identity`` the PSK identity (as the keystore
    writes it), the public key (SPKI, hex) or the certificate subject. A NoSec peer has no
    binding at all (``None``). Not a ``PeerIdentity``: that is what the transport proved about
    one connection (with the certificate chain and source address); this is the small,
    storable summary of it."""

    mode: str
    identity: str


class Resolution(NamedTuple):
    """An accepted peer. ``binding`` is the registration's ``IdentityBinding``, ``None`` for
    NoSec. ``auto_registered`` says the endpoint has no device record (open NoSec registration
    or an auto-registration CA).

    A named tuple rather than a frozen attrs class: every Register and Update resolves its
    peer, and a frozen attrs ``__init__`` sets each field through ``object.__setattr__``; a
    tuple is as immutable and is built in one C call."""

    endpoint: str
    mode: SecurityMode
    binding: IdentityBinding | None = None
    auto_registered: bool = False


class Resolver:
    """Decides identities from a ``CredentialStore``; also the DTLS engine's callbacks."""

    def __init__(
        self, store: CredentialLookup, *, open_registration: bool, clock: Clock = utc_now
    ) -> None:
        self.store: CredentialLookup = (
            CachedCredentials(store) if isinstance(store, VersionedCredentials) else store
        )
        """The lookups, through the record cache when the store supports it (module docstring)."""
        self.open_registration = open_registration
        self.clock = clock
        # a refused identity is logged at INFO once a minute, later repeats at DEBUG: a device
        # retrying with a revoked key (or a flood of spoofed handshakes) must not flood the log
        self._refusals = PerPeerLimit()

    def _log_refusal(self, who: str, message: str, *args: object) -> None:
        now = self.clock().timestamp()
        level = logging.INFO if self._refusals.allow(who, now) else logging.DEBUG
        log.log(level, message, *args)

    # -- the decision -------------------------------------------------------------------------
    def resolve(self, peer: PeerIdentity, endpoint: str | None = None) -> Resolution:
        """``endpoint`` is the Register's ``ep`` (``None`` for a DTLS peer before or outside a
        Register: then the identity's own endpoint is returned). Raises ``IdentityRefused``."""
        if (
            peer.mode is _NOSEC
            and type(endpoint) is str
            and 0 < len(endpoint) <= MAX_ENDPOINT
            and endpoint.isprintable()
        ):
            # the NoSec acceptance of every Register and Update, written out: ``check_endpoint``'s
            # rules inline (a test holds them equal), the record read once, the answer built by
            # ``tuple.__new__`` (a named tuple's ``__new__`` is a Python frame). Anything else,
            # a refusal included, takes the full path below, which decides and logs it.
            record = self.store.get_device(endpoint)
            if record is None:
                if self.open_registration:
                    return _tuple_new(Resolution, (endpoint, _NOSEC, None, True))
            elif record.active and record.mode is _NOSEC:
                return _tuple_new(Resolution, (endpoint, _NOSEC, None, False))
        try:
            if endpoint is not None:
                check_endpoint(endpoint, "ep")
            if peer.mode is SecurityMode.NOSEC:
                return self._nosec(endpoint)
            if peer.mode is SecurityMode.PSK:
                assert peer.psk_identity is not None
                record = self.store.device_by_psk_identity(peer.psk_identity)
                binding = IdentityBinding("psk", format_psk_identity(peer.psk_identity))
            elif peer.mode is SecurityMode.RPK:
                assert peer.spki is not None
                spki = normalize_spki(peer.spki, "spki")
                record = self.store.device_by_rpk(spki)
                binding = IdentityBinding("rpk", spki.hex())
            else:
                return self._certificate(peer.certificate_chain, endpoint)
            if record is None:
                raise IdentityRefused("no device has this identity")
            return self._bind(record, endpoint, binding)
        except IdentityRefused as exc:
            self._log_refusal(peer.describe(), "refused %s as %r: %s (%s)", peer.describe(),
                              endpoint, exc.message, exc.code.dotted)  # fmt: skip
            raise
        except CredentialError as exc:
            self._log_refusal(peer.describe(), "refused %s: %s", peer.describe(), exc.message)
            raise IdentityRefused(exc.message, code=ResponseCode.BAD_REQUEST) from None

    def _nosec(self, endpoint: str | None) -> Resolution:
        if endpoint is None:
            raise IdentityRefused(
                "a NoSec peer is known only by the ep of its Register",
                code=ResponseCode.BAD_REQUEST,
            )
        record = self.store.get_device(endpoint)
        if record is None:
            if self.open_registration:
                return Resolution(endpoint, SecurityMode.NOSEC, None, True)  # by position: hot
            raise IdentityRefused(f"unknown endpoint {endpoint!r} (open registration is off)")
        if not record.active:
            raise IdentityRefused(f"endpoint {endpoint!r} is deactivated")
        if record.mode.requires_dtls:
            raise IdentityRefused(
                f"endpoint {endpoint!r} requires {record.mode.label} security; NoSec refused",
                code=ResponseCode.FORBIDDEN,
            )
        return Resolution(endpoint, SecurityMode.NOSEC, None)

    def _bind(
        self, record: DeviceCredentials, endpoint: str | None, binding: IdentityBinding
    ) -> Resolution:
        if not record.active:
            raise IdentityRefused(f"endpoint {record.endpoint!r} is deactivated")
        if endpoint is not None and endpoint != record.endpoint:
            raise IdentityRefused(
                f"this identity belongs to endpoint {record.endpoint!r}, not {endpoint!r}",
                code=ResponseCode.FORBIDDEN,
            )
        return Resolution(record.endpoint, record.mode, binding)

    def _certificate(self, chain: Sequence[bytes], endpoint: str | None) -> Resolution:
        now = self.clock()
        try:
            leaf = x509.load_der_x509_certificate(chain[0])
        except ValueError:
            raise IdentityRefused("malformed certificate") from None
        problem = validity_problem(leaf, now)
        if problem:
            raise IdentityRefused(f"certificate {problem}")
        binding = IdentityBinding("x509", leaf.subject.rfc4514_string())
        pinned = self.store.device_by_certificate(chain[0])
        if pinned is not None:
            return self._bind(pinned, endpoint, binding)
        try:
            ca = verify_chain(chain, self.store.trusted_cas(), now)
        except ChainError as exc:
            raise IdentityRefused(f"certificate refused: {exc}") from None
        names = certificate_names(leaf)
        if not names:
            raise IdentityRefused("the certificate names no endpoint (no CN or SAN DNS/URI)")
        if endpoint is not None and endpoint not in names:
            raise IdentityRefused(
                f"the certificate names {', '.join(map(repr, names))}, not {endpoint!r}",
                code=ResponseCode.FORBIDDEN,
            )
        candidates = names if endpoint is None else (endpoint,)
        for name in candidates:
            record = self.store.get_device(name)
            if record is None:
                continue
            if not record.trusts_ca:
                raise IdentityRefused(
                    f"endpoint {name!r} requires its own {record.mode.label} credentials",
                    code=ResponseCode.FORBIDDEN,
                )
            return self._bind(record, name, binding)
        if ca.auto_registration:
            return Resolution(candidates[0], SecurityMode.X509, binding, auto_registered=True)
        raise IdentityRefused(
            f"no device record for {', '.join(map(repr, candidates))} and CA {ca.subject!r} "
            "does not auto-register devices"
        )

    # -- DTLS engine callbacks ---------------------------------------------------------------
    def psk_lookup(self, identity: bytes) -> bytes | None:
        """``psk_for_identity``: the key of an active PSK device, else None."""
        record = self.store.device_by_psk_identity(identity)
        if record is None or not record.active or record.psk_key is None:
            shown = format_psk_identity(identity)
            self._log_refusal(f"psk {shown}", "psk handshake: unknown or inactive identity %r",
                              shown)  # fmt: skip
            return None
        return record.psk_key

    def rpk_verifier(self, spki: bytes) -> bool:
        """``verify_rpk``: the key belongs to an active RPK device."""
        record = self.store.device_by_rpk(spki)
        if record is None or not record.active:
            shown = short_fingerprint(spki)
            self._log_refusal(f"rpk {shown}", "rpk handshake: unknown or inactive key %s", shown)
            return False
        return True

    def trust_store(self) -> list[x509.Certificate]:
        """Anchors for the engine's chain check: the trusted CAs plus the pinned certificates of
        active devices (a pinned certificate verifies as its own anchor). A snapshot: rebuild the
        engine config when devices change, or use ``certificate_verifier``."""
        anchors = [ca.cert for ca in self.store.trusted_cas()]
        for device in self.store.devices():
            if device.active and device.certificate is not None:
                anchors.append(x509.load_der_x509_certificate(device.certificate))
        return anchors

    def certificate_verifier(self, chain: Sequence[bytes]) -> bool:
        """Per-handshake alternative to ``trust_store``: would ``resolve`` accept this chain
        (with no ``ep`` yet)? Reads the store each time, so changes apply at once."""
        try:
            self.resolve(PeerIdentity.x509(chain))
        except IdentityRefused:
            return False
        return True

    def endpoint_for_certificate(self, cert: x509.Certificate) -> str | None:
        """The endpoint a certificate identifies, or None: pinned record first, else a CN/SAN
        name, for a certificate issued directly by a trusted CA that is in its validity
        period (chains through intermediates: use ``resolve`` with the whole chain)."""
        now = self.clock()
        if validity_problem(cert, now):
            return None
        pinned = self.store.device_by_certificate(cert.public_bytes(Encoding.DER))
        if pinned is not None:
            return pinned.endpoint if pinned.active else None
        issuer = _direct_issuer(cert, self.store.trusted_cas(), now)
        if issuer is None:
            return None
        names = certificate_names(cert)
        for name in names:
            record = self.store.get_device(name)
            if record is not None:
                return name if record.trusts_ca and record.active else None
        return names[0] if names and issuer.auto_registration else None


# -- certificate helpers ----------------------------------------------------------------------


def validity_problem(cert: x509.Certificate, now: datetime.datetime) -> str | None:
    """``"expired …"``/``"not valid before …"`` or None when ``now`` is inside the validity."""
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc.isoformat()}"
    if now > cert.not_valid_after_utc:
        return f"expired {cert.not_valid_after_utc.isoformat()}"
    return None


def verify_chain(
    chain: Sequence[bytes], cas: Sequence[TrustedCa], now: datetime.datetime
) -> TrustedCa:
    """Verify ``chain`` (leaf first, DER) against ``cas`` at ``now``; return the anchoring CA.

    Dates of every certificate are checked first so an expired chain says so; then
    ``cryptography``'s path builder (WebPKI rules for CAs, a permissive end-entity policy: device
    certificates rarely carry SAN/EKU), the same policy as the DTLS engine's check.
    """
    if not chain:
        raise ChainError("empty certificate chain")
    if not cas:
        raise ChainError("no trusted CAs configured")
    try:
        certs = [x509.load_der_x509_certificate(c) for c in chain]
    except ValueError:
        raise ChainError("malformed certificate in the chain") from None
    for i, cert in enumerate(certs):
        problem = validity_problem(cert, now)
        if problem:
            raise ChainError(f"chain[{i}] {_subject_of(cert)} {problem}")
    by_der = {ca.certificate: ca for ca in cas}
    try:
        verifier = (
            PolicyBuilder()
            .store(Store([ca.cert for ca in cas]))
            .time(now)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        verified = verifier.verify(certs[0], certs[1:])
    except VerificationError as exc:
        raise ChainError(f"does not verify against the trusted CAs ({exc})") from None
    except ValueError as exc:
        raise ChainError(f"unusable certificate chain ({exc})") from None
    anchor = by_der.get(verified.chain[-1].public_bytes(Encoding.DER))
    if anchor is None:  # pragma: no cover - the path builder only ends at a store anchor
        raise ChainError("the chain ends at an unknown anchor")
    return anchor


def _direct_issuer(
    cert: x509.Certificate, cas: Sequence[TrustedCa], now: datetime.datetime
) -> TrustedCa | None:
    for ca in cas:
        if ca.cert.subject != cert.issuer or validity_problem(ca.cert, now):
            continue
        try:
            cert.verify_directly_issued_by(ca.cert)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def _subject_of(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def _subject(der: bytes) -> str:
    try:
        return _subject_of(x509.load_der_x509_certificate(der))
    except ValueError:
        return f"<malformed {short_fingerprint(der)}>"

"""Client and server configuration of the DTLS engine.

Why plain dataclasses validated once: one config object is shared by every session of a listener
(so it costs nothing per session), and inconsistent settings fail at startup with
:class:`ConfigError` instead of during a handshake.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .certificates import spki_der, utc_now
from .constants import CipherSuite
from .errors import ConfigError
from .messages import MAX_PSK_IDENTITY
from .session import Session, SessionCache
from .suites import DEFAULT_SUITES, SUITES, KeyExchange

PskLookup = Callable[[bytes], bytes | None]
RpkVerifier = Callable[[bytes], bool]


@dataclass(slots=True)
class TimingConfig:
    """RFC 6347 §4.2.4 timer values and path MTU."""

    retransmit_initial: float = 1.0
    retransmit_max: float = 60.0
    max_retransmissions: int = 6
    #: UDP payload budget per datagram (LwM2M over cellular: keep it small).
    mtu: int = 1200
    max_handshake_message: int = 16384


def _check_common(
    suites: Sequence[CipherSuite],
    private_key: ec.EllipticCurvePrivateKey | None,
    timing: TimingConfig,
) -> None:
    if not suites:
        raise ConfigError("no cipher suites configured")
    for s in suites:
        if s not in SUITES:
            raise ConfigError(f"unsupported cipher suite {s:#06x}")
    if private_key is not None and not isinstance(private_key.curve, ec.SECP256R1):
        raise ConfigError("only ECDSA P-256 keys are supported")
    if timing.mtu < 256:
        raise ConfigError("mtu below 256 bytes is not supported")


@dataclass(slots=True)
class ServerConfig:
    cipher_suites: Sequence[CipherSuite] = DEFAULT_SUITES
    #: PSK lookup by (binary) identity; None means the identity is unknown.
    psk_for_identity: PskLookup | None = None
    psk_identity_hint: bytes | None = None
    #: Our ECDSA P-256 key; with it we can always present a raw public key (RFC 7250).
    private_key: ec.EllipticCurvePrivateKey | None = None
    #: Our X.509 chain (DER, leaf first), when we also present certificates.
    certificate_chain: Sequence[bytes] | None = None
    #: Certificate suites: ask for and require a client certificate / raw key.
    require_client_auth: bool = True
    verify_rpk: RpkVerifier | None = None
    trust_store: Sequence[x509.Certificate] | None = None
    #: Length of the CID we assign (RFC 9146); None disables the extension, 0 accepts the
    #: client's CID without asking for one ourselves.
    cid_length: int | None = 6
    session_cache: SessionCache | None = None
    allow_mac_then_encrypt: bool = False
    require_extended_master_secret: bool = False
    timing: TimingConfig = field(default_factory=TimingConfig)
    clock: Callable[[], datetime.datetime] = utc_now
    #: Cached DER of our public key (filled by validate()).
    own_spki: bytes | None = None

    def __post_init__(self) -> None:
        _check_common(self.cipher_suites, self.private_key, self.timing)
        if self.cid_length is not None and not 0 <= self.cid_length <= 255:
            raise ConfigError("cid_length must be within 0..255")
        has_psk = any(SUITES[s].kex is KeyExchange.PSK for s in self.cipher_suites)
        has_ecdhe = any(SUITES[s].kex is KeyExchange.ECDHE_ECDSA for s in self.cipher_suites)
        if has_psk and self.psk_for_identity is None and not has_ecdhe:
            raise ConfigError("PSK suites need psk_for_identity")
        if self.psk_identity_hint is not None and len(self.psk_identity_hint) > 0xFFFF:
            raise ConfigError("psk identity hint too long")
        if self.private_key is not None:
            self.own_spki = spki_der(self.private_key.public_key())


@dataclass(slots=True)
class ClientConfig:
    cipher_suites: Sequence[CipherSuite] = DEFAULT_SUITES
    psk_identity: bytes | None = None
    psk: bytes | None = field(default=None, repr=False)
    private_key: ec.EllipticCurvePrivateKey | None = None
    #: Our chain (DER, leaf first); without it we authenticate with a raw public key.
    certificate_chain: Sequence[bytes] | None = None
    #: How to authenticate the server: raw public key callback and/or trust anchors.
    verify_rpk: RpkVerifier | None = None
    trust_store: Sequence[x509.Certificate] | None = None
    #: CID we ask the server to put on its records (b"" = we support CID but need none);
    #: None: do not offer the extension.
    connection_id: bytes | None = None
    #: Resume this session (abbreviated handshake) if the server still knows it.
    session: Session | None = None
    offer_encrypt_then_mac: bool = True
    offer_extended_master_secret: bool = True
    require_extended_master_secret: bool = False
    allow_mac_then_encrypt: bool = False
    timing: TimingConfig = field(default_factory=TimingConfig)
    clock: Callable[[], datetime.datetime] = utc_now
    own_spki: bytes | None = None

    def __post_init__(self) -> None:
        _check_common(self.cipher_suites, self.private_key, self.timing)
        if self.psk_identity is not None and len(self.psk_identity) > MAX_PSK_IDENTITY:
            raise ConfigError("PSK identity longer than 128 bytes")
        if (self.psk_identity is None) != (self.psk is None):
            raise ConfigError("psk_identity and psk go together")
        if self.connection_id is not None and len(self.connection_id) > 255:
            raise ConfigError("connection id longer than 255 bytes")
        if self.private_key is not None:
            self.own_spki = spki_der(self.private_key.public_key())

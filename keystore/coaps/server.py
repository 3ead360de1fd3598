"""The server side's DTLS configuration, taken from the keystore.

Why here and not in ``lwm2m_server``: the LwM2M server and the bootstrap server both serve
CoAPs from the same kind of store; DESIGN.md wants that glue written once.

* PSK keys and raw public keys are looked up through the ``Resolver`` at every handshake
  (``psk_lookup``, ``rpk_verifier``): no cache, so a device added with ``lwm2m-keystore`` while
  the server runs can connect at once, and a removed one cannot.
* X.509 anchors (trusted CAs + pinned device certificates) are a ``Sequence`` the engine reads
  per handshake; :class:`LiveTrustStore` rebuilds it from the resolver at most every
  ``trust_refresh`` seconds (it reads every device record, too costly per handshake at 100k
  devices), and :meth:`LiveTrustStore.invalidate` forces the next handshake to re-read.
  Whether the verified certificate may be *that endpoint* is decided later, at Register, by
  ``Resolver.resolve`` against the store as it is then.
* The server's own key: :func:`ensure_server_identity` generates an ECDSA P-256 key and a
  self-signed certificate at first start when the store has none, through the same
  ``keystore.tools`` functions as ``lwm2m-keystore server generate-x509``; the credential store
  keeps it in the 0600 database file.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from cryptography import x509

from .. import tools
from ..credentials import ServerIdentity, certificate_der, short_fingerprint
from ..dtls.config import ServerConfig
from ..dtls.constants import CipherSuite
from ..dtls.session import LruSessionCache
from ..dtls.suites import DEFAULT_SUITES, SUITES, KeyExchange
from ..modes import SecurityMode
from ..resolver import Resolver
from ..store.credentials import ServerIdentityStore
from .endpoint import EndpointSettings

log = logging.getLogger(__name__)


#: Cipher suite names accepted in configuration: the IANA name or the OpenSSL-style short name,
#: any case ("TLS_PSK_WITH_AES_128_CCM_8", "psk-aes128-ccm8").
SUITE_NAMES: dict[str, CipherSuite] = {
    **{s.name.lower(): s for s in DEFAULT_SUITES},
    "psk-aes128-ccm8": CipherSuite.TLS_PSK_WITH_AES_128_CCM_8,
    "ecdhe-ecdsa-aes128-ccm8": CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    "psk-aes128-cbc-sha256": CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256,
    "ecdhe-ecdsa-aes128-cbc-sha256": CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
}


def parse_suites(text: str) -> tuple[CipherSuite, ...]:
    """``"psk-aes128-ccm8, TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"`` → suites in that (server
    preference) order. ``ValueError`` names an unknown suite and lists the known ones."""
    suites: list[CipherSuite] = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        suite = SUITE_NAMES.get(name.lower())
        if suite is None:
            known = ", ".join(sorted(n for n in SUITE_NAMES if "-" in n))
            raise ValueError(f"unknown cipher suite {name!r} (known: {known} or IANA names)")
        if suite not in suites:
            suites.append(suite)
    if not suites:
        raise ValueError("no cipher suite given")
    return tuple(suites)


DTLS_MODES = frozenset({SecurityMode.PSK, SecurityMode.RPK, SecurityMode.X509})


def suites_for_modes(
    suites: Sequence[CipherSuite], modes: frozenset[SecurityMode]
) -> tuple[CipherSuite, ...]:
    """The suites that serve ``modes``: PSK suites for PSK, ECDHE-ECDSA ones for RPK/X.509.
    ``ValueError`` when nothing is left (e.g. only PSK suites configured for an RPK-only
    server), naming both sides."""
    wanted = set()
    if SecurityMode.PSK in modes:
        wanted.add(KeyExchange.PSK)
    if modes & {SecurityMode.RPK, SecurityMode.X509}:
        wanted.add(KeyExchange.ECDHE_ECDSA)
    kept = tuple(s for s in suites if SUITES[s].kex in wanted)
    if not kept:
        names = ", ".join(sorted(m.name for m in modes))
        raise ValueError(f"none of the configured cipher suites serves the modes {names}")
    return kept


@dataclass(slots=True)
class CoapsSettings:
    """What an operator may tune about the CoAPs listener."""

    cipher_suites: Sequence[CipherSuite] = DEFAULT_SUITES
    #: RFC 9146 CID length we assign (None: no CIDs; 0: accept the client's, assign none)
    cid_length: int | None = 6
    #: sessions kept for abbreviated handshakes (0 disables resumption)
    session_cache_size: int = 10_000
    #: seconds a snapshot of the X.509 trust anchors is used before it is re-read
    trust_refresh: float = 5.0
    #: the DTLS security modes this listener offers (any non-empty subset of PSK, RPK, X.509)
    modes: frozenset[SecurityMode] = DTLS_MODES
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)

    @classmethod
    def from_options(
        cls,
        *,
        cipher_suites: Sequence[str] = (),
        connection_id: bool = True,
        cid_length: int = 6,
        modes: frozenset[SecurityMode] = DTLS_MODES,
        handshake_timeout: float | None = None,
        max_handshakes: int | None = None,
        hello_rate: float | None = None,
    ) -> CoapsSettings:
        """Settings from configuration values (suite names as ``parse_suites`` takes them; an
        empty list keeps the default suites), shared by both servers' configs. The flood
        limits (``None``: the ``EndpointSettings`` default) raise ``ValueError`` when invalid,
        so a bad value stops the start instead of locking devices out."""
        suites = parse_suites(",".join(cipher_suites)) if cipher_suites else DEFAULT_SUITES
        default = EndpointSettings()
        endpoint = EndpointSettings(
            handshake_timeout=default.handshake_timeout
            if handshake_timeout is None
            else handshake_timeout,
            max_handshakes=default.max_handshakes if max_handshakes is None else max_handshakes,
            hello_rate=default.hello_rate if hello_rate is None else hello_rate,
        )
        return cls(
            cipher_suites=suites,
            cid_length=cid_length if connection_id else None,
            modes=modes,
            endpoint=endpoint,
        )


class LiveTrustStore(Sequence[x509.Certificate]):
    """``resolver.trust_store()``, re-read when older than ``ttl`` seconds (see module doc)."""

    def __init__(
        self, resolver: Resolver, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._resolver = resolver
        self._ttl = ttl
        self._clock = clock
        self._anchors: list[x509.Certificate] = []
        self._read_at: float | None = None

    def invalidate(self) -> None:
        self._read_at = None

    def _current(self) -> list[x509.Certificate]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            try:
                self._anchors = self._resolver.trust_store()
            except Exception:  # a store hiccup must not break every handshake
                log.exception("could not read the X.509 trust anchors; keeping the last ones")
            self._read_at = now
        return self._anchors

    def __len__(self) -> int:
        return len(self._current())

    @overload
    def __getitem__(self, index: int) -> x509.Certificate: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[x509.Certificate]: ...

    def __getitem__(self, index: int | slice) -> x509.Certificate | Sequence[x509.Certificate]:
        return self._current()[index]

    def __iter__(self) -> Iterator[x509.Certificate]:
        return iter(self._current())


def ensure_server_identity(store: ServerIdentityStore, *, host: str = "") -> ServerIdentity:
    """The stored server identity, or a new key + self-signed certificate (stored)."""
    identity = store.server_identity()
    if identity is not None:
        return identity
    name = host if host and host not in ("0.0.0.0", "::", "*") else socket.getfqdn() or "localhost"
    key = tools.generate_private_key()
    cert = tools.self_signed_server_certificate(key, name)
    identity = ServerIdentity(tools.private_key_pem(key), (certificate_der(cert),))
    store.put_server_identity(identity)
    log.warning(
        "no server identity in the keystore: generated an ECDSA P-256 key (public key %s) and a "
        "self-signed certificate for %r; devices need it (lwm2m-keystore server show)",
        short_fingerprint(identity.public_key_spki),
        name,
    )
    return identity


def dtls_server_config(
    identity: ServerIdentity,
    *,
    psk_lookup: Callable[[bytes], bytes | None],
    rpk_verifier: Callable[[bytes], bool],
    trust_store: Sequence[x509.Certificate],
    settings: CoapsSettings | None = None,
) -> ServerConfig:
    """The engine's ``ServerConfig`` from who-is-who callbacks, our key/chain and the settings.

    Both servers build theirs here (the LwM2M server from its ``Resolver``, the bootstrap server
    from its configuration catalog). A mode left out of ``settings.modes`` is refused by the
    engine itself: its suites are not offered (PSK), or its client certificate type is not
    accepted (RPK: no raw-key verifier; X.509: no trust store, and we present no certificate,
    only our raw public key)."""
    settings = settings or CoapsSettings()
    modes = settings.modes
    x509_on = SecurityMode.X509 in modes
    return ServerConfig(
        cipher_suites=suites_for_modes(settings.cipher_suites, modes),
        psk_for_identity=psk_lookup if SecurityMode.PSK in modes else None,
        private_key=identity.key,
        certificate_chain=(list(identity.certificate_chain) or None) if x509_on else None,
        require_client_auth=True,
        verify_rpk=rpk_verifier if SecurityMode.RPK in modes else None,
        trust_store=trust_store if x509_on else None,
        cid_length=settings.cid_length,
        session_cache=(
            LruSessionCache(settings.session_cache_size) if settings.session_cache_size else None
        ),
    )


def server_dtls_config(
    resolver: Resolver,
    identity: ServerIdentity,
    settings: CoapsSettings | None = None,
    trust_store: LiveTrustStore | None = None,
) -> ServerConfig:
    """The LwM2M server's ``ServerConfig``: the resolver's callbacks over the keystore."""
    settings = settings or CoapsSettings()
    return dtls_server_config(
        identity,
        psk_lookup=resolver.psk_lookup,
        rpk_verifier=resolver.rpk_verifier,
        trust_store=trust_store or LiveTrustStore(resolver, settings.trust_refresh),
        settings=settings,
    )

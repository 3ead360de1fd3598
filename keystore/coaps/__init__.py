"""CoAPs on our own DTLS 1.2 engine (see docs/coaps-transport.md).

* :mod:`.endpoint` — one asyncio UDP socket, the session table, cookies, CIDs, timers (the
  servers' CoAP layer runs over it: ``lwm2m_runtime.coaps``);
* :mod:`.identity` — the authenticated identity a request carries (``DtlsClaim``);
* :mod:`.server` — the server's DTLS configuration from the keystore;
* :mod:`.client` — a device's DTLS configuration from its Security object credentials.
"""

from __future__ import annotations

from .client import client_dtls_config
from .endpoint import DtlsEndpoint, EndpointSettings, EndpointStats, HandshakeFailed
from .identity import DtlsClaim, dtls_claim, peer_of
from .server import (
    DTLS_MODES,
    CoapsSettings,
    LiveTrustStore,
    ensure_server_identity,
    parse_suites,
    server_dtls_config,
)
from .sessions import Session, SessionTable, address_key

__all__ = [
    "DTLS_MODES",
    "CoapsSettings",
    "DtlsClaim",
    "DtlsEndpoint",
    "EndpointSettings",
    "EndpointStats",
    "HandshakeFailed",
    "LiveTrustStore",
    "Session",
    "SessionTable",
    "address_key",
    "client_dtls_config",
    "dtls_claim",
    "ensure_server_identity",
    "parse_suites",
    "peer_of",
    "server_dtls_config",
]

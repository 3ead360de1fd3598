"""A sans-IO DTLS 1.2 engine on ``cryptography`` (see docs/dtls.md).

Public surface: :class:`DtlsEngine` (client or server), its configs, the events it returns,
:class:`CookieVerifier` for stateless HelloVerifyRequest handling, and the transport helpers
:func:`peek_connection_id` / :func:`is_client_hello`.
"""

from __future__ import annotations

from .config import ClientConfig, ServerConfig, TimingConfig
from .constants import AlertDescription, AlertLevel, CipherSuite
from .cookie import CookieVerifier, InitialDecision
from .drops import DropReason
from .engine import DtlsEngine, State
from .errors import AlertError, ConfigError, ConnectionStateError, DecodeError, DtlsError
from .events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    PeerAddressChanged,
    RecordDropped,
)
from .identity import (
    AnonymousIdentity,
    DtlsIdentity,
    PskIdentity,
    RawPublicKeyIdentity,
    X509Identity,
)
from .record import is_client_hello, peek_connection_id
from .session import LruSessionCache, Session, SessionCache
from .state import SavedState

__all__ = [
    "AlertDescription",
    "AlertError",
    "AlertLevel",
    "AlertReceived",
    "AnonymousIdentity",
    "ApplicationData",
    "CipherSuite",
    "ClientConfig",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionStateError",
    "CookieVerifier",
    "DecodeError",
    "DropReason",
    "DtlsEngine",
    "DtlsError",
    "DtlsIdentity",
    "Event",
    "HandshakeComplete",
    "InitialDecision",
    "LruSessionCache",
    "PeerAddressChanged",
    "PskIdentity",
    "RawPublicKeyIdentity",
    "RecordDropped",
    "SavedState",
    "ServerConfig",
    "Session",
    "SessionCache",
    "State",
    "TimingConfig",
    "X509Identity",
    "is_client_hello",
    "peek_connection_id",
]

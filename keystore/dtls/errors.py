"""Exceptions raised inside the DTLS engine.

Why a small hierarchy: the engine must never let a malformed datagram escape as an arbitrary
``IndexError`` or ``struct.error``; every parser raises :class:`DecodeError` so callers catch
exactly one thing. :class:`AlertError` carries the alert the engine has to send, so the state
machine turns "this is wrong" into the right wire alert in one place.

Messages never contain key material, PSKs or secrets: they may end up in logs.
"""

from __future__ import annotations

from .constants import AlertDescription


class DtlsError(Exception):
    """Base class of everything the DTLS package raises."""


class DecodeError(DtlsError):
    """Bytes from the network could not be parsed (truncated, oversized, inconsistent)."""


class AlertError(DtlsError):
    """A fatal protocol error: the engine sends ``description`` as a fatal alert and closes."""

    def __init__(self, description: AlertDescription, reason: str) -> None:
        super().__init__(reason)
        self.description = description
        self.reason = reason


class ConfigError(DtlsError):
    """The engine configuration is inconsistent (raised at construction, never on the wire)."""


class ConnectionStateError(DtlsError):
    """The application called an API that the current connection state does not allow."""

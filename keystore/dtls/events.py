"""Events the engine returns to its caller (h11/aioquic style).

Why events: the engine never calls back into the transport; it returns what happened and the
transport decides (bind identity, deliver data, forget the session, re-map an address).
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import AlertDescription, AlertLevel
from .drops import DropReason
from .identity import DtlsIdentity


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    peer_identity: DtlsIdentity
    cipher_suite: int
    session_id: bytes
    resumed: bool
    extended_master_secret: bool
    connection_id: bytes | None
    """The CID the peer puts on its records to us (None: no CID negotiated)."""


@dataclass(frozen=True, slots=True)
class ApplicationData:
    data: bytes


@dataclass(frozen=True, slots=True)
class AlertReceived:
    level: AlertLevel
    description: AlertDescription | int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    reason: str
    alert: AlertDescription | int | None = None
    by_peer: bool = False


@dataclass(frozen=True, slots=True)
class PeerAddressChanged:
    """An authenticated CID record, newer than any before, came from a new address (RFC 9146 §6).

    The transport re-maps the session to ``new_address``; replies go there from now on.
    """

    old_address: object
    new_address: object


@dataclass(frozen=True, slots=True)
class RecordDropped:
    """A record (or the unparsable rest of a datagram) was discarded without a word on the
    wire (RFC 6347 §4.1.2.7); the transport counts and logs it so that a device that "gets no
    answer" can be diagnosed."""

    reason: DropReason


Event = (
    HandshakeComplete
    | ApplicationData
    | AlertReceived
    | ConnectionClosed
    | PeerAddressChanged
    | RecordDropped
)

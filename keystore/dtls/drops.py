"""Why the DTLS layer dropped a record or datagram, as a small closed set of names.

Why a fixed vocabulary: RFC 6347 §4.1.2.7 makes DTLS drop bad input *silently*, which is right
on the wire and wrong for an operator whose device "gets no answer". The engine and the
transport report every drop with one of these reasons; the transport counts them per reason
(``DtlsEndpoint.stats.drops``) and logs them at DEBUG, rate-limited per peer. The values are
stable strings so they can be metric labels.
"""

from __future__ import annotations

from enum import StrEnum


class DropReason(StrEnum):
    #: truncated or oversized record, unknown content type, garbage, empty datagram
    MALFORMED = "malformed"
    #: a record version we do not accept (anything but DTLS 1.2/1.0 outside an initial
    #: ClientHello; anything but the negotiated version on a protected record)
    BAD_VERSION = "bad_version"
    #: a tls12_cid record where no Connection ID was negotiated (or on epoch 0)
    UNEXPECTED_CID = "unexpected_cid"
    #: a protected record without the Connection ID that was negotiated
    MISSING_CID = "missing_cid"
    #: a datagram from a peer without a session that is not a ClientHello
    NO_SESSION = "no_session"
    #: a record of an epoch we do not have (a future epoch beyond what is buffered)
    UNKNOWN_EPOCH = "unknown_epoch"
    #: an unprotected (epoch 0) record after the peer switched to epoch 1
    STALE_EPOCH = "stale_epoch"
    #: a sequence number already accepted, or older than the replay window
    REPLAY = "replay"
    #: a protected record that failed authentication (wrong key, tampering, a forged record)
    BAD_MAC = "bad_mac"
    #: a well-formed record that is not acceptable in the current state (application data
    #: during the handshake or at epoch 0)
    UNEXPECTED = "unexpected"
    #: input for a session that is already closed
    CLOSED = "closed"
    #: a handshake refused because the session table is full
    TABLE_FULL = "table_full"
    #: a ClientHello to an endpoint that has no server role
    NOT_A_SERVER = "not_a_server"
    #: a ClientHello without a valid cookie beyond the HelloVerifyRequests answered per loop
    #: iteration (``EndpointSettings.hello_budget``: a flood of spoofed ClientHellos)
    HELLO_OVERLOAD = "hello_overload"
    #: a handshake refused because ``EndpointSettings.max_handshakes`` are in progress
    HANDSHAKE_LIMIT = "handshake_limit"

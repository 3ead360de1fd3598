"""The state of an established DTLS session, as data: what it takes to restore it elsewhere.

Why it exists: a server that is killed (``kill -9``, OOM, a crash) loses every session, and
many LwM2M devices never handshake again on their own: they keep sending records on the old
session, which a fresh server drops, until their registration expires. The transport exports
this value when a handshake completes and as the session moves on, stores it, and builds the
engine again from it at start (:meth:`DtlsEngine.restore <keystore.dtls.engine.DtlsEngine>`).

The engine stays sans-IO: it never stores anything itself; it only turns itself into this value
and back. Sequence numbers are the caller's business: ``write_seq`` is where the restored engine
continues, so the transport stores a number *ahead* of what it has used (a reused sequence
number would reuse an AES-CCM nonce); ``read_top``/``read_bitmap`` are the replay window, so a
record accepted before the restart is not accepted again.

The master secret is key material: it is excluded from ``repr`` and must never be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .identity import DtlsIdentity


@dataclass(frozen=True, slots=True)
class SavedState:
    """An established session at epoch 1 (renegotiation is never done, so 1 is the only one)."""

    is_client: bool
    cipher_suite: int
    master_secret: bytes = field(repr=False)
    client_random: bytes = field(repr=False)
    server_random: bytes = field(repr=False)
    session_id: bytes = field(repr=False)
    extended_master_secret: bool
    encrypt_then_mac: bool
    peer_identity: DtlsIdentity
    #: the CID the peer puts on records to us (None: none negotiated)
    own_cid: bytes | None
    #: the CID we put on records to the peer (empty: none)
    peer_cid: bytes
    #: the next epoch-1 sequence number the engine will use for a record it sends
    write_seq: int
    #: the highest epoch-1 sequence number accepted from the peer (-1: none yet)
    read_top: int
    #: which of the 64 sequence numbers below ``read_top`` were accepted (bit n: top - n)
    read_bitmap: int

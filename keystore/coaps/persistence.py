"""What the CoAPs endpoint stores about its DTLS sessions so that they survive a crash.

Why: many LwM2M devices never handshake again on their own; after a server restart they keep
sending records on their old session. A server that forgot the session drops them silently
and the device's registration expires. Leshan/Californium save sessions on a graceful stop
only; we save them as they go, so a ``kill -9`` costs nothing (see docs/coaps-transport.md,
"Sessions survive a restart").

This module is the contract between :class:`~keystore.coaps.endpoint.DtlsEndpoint` and a
store: two value types and a three-method Protocol. Nothing here knows sqlite or aiocoap (the
sqlite implementation is :mod:`keystore.store.dtls_sessions`; the CoAP layer that replaces
aiocoap keeps the endpoint, and with it this contract).

The rules the endpoint keeps (and a store must make durable before ``save_dtls_sessions``
returns):

* a session is written (:class:`StoredSession`) when its handshake completes, before our
  Finished goes out, so every session a client believes established is on disk;
* ``write_seq`` in the store is always *ahead* of every sequence number the session has used
  ("reserve ahead"): a restored session continues from there and never reuses a number (with
  AES-CCM a reused sequence number is a reused nonce);
* the replay window (:class:`SessionProgress`) is written before any reply to the records it
  accepted goes out, so a record answered before a crash is refused after it;
* a session that ends (closed, replaced, evicted) is deleted.

A store several nodes share (:class:`SharedDtlsSessionStore`, the Redis engine) adds what lets
any node continue a session another node made (docs/coaps-transport.md, "DTLS across nodes"):
a read-only lookup by peer address or by our Connection ID, and an atomic *claim* that makes
the session the caller's and moves its reservation ahead; a node's writes to a session another
node claimed since are refused and reported, so that it forgets the session (one writer per
session: no sequence number is ever used twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..dtls.state import SavedState


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A whole session row. ``state.write_seq`` is the reserved (never used) number."""

    #: random, stable for the life of the session (the address and the CID may change)
    id: str
    host: str
    port: int
    state: SavedState
    #: wall-clock time (seconds since the epoch) of the last write: idle sessions expire
    saved_at: float


@dataclass(frozen=True, slots=True)
class SessionProgress:
    """What changes while a session lives: the address (CID rebinding), the reserved write
    sequence number and the replay window."""

    id: str
    host: str
    port: int
    write_seq: int
    read_top: int
    read_bitmap: int
    saved_at: float


class DtlsSessionStore(Protocol):
    """Durable DTLS sessions of one listener. Key material lives in the rows (as Leshan's and
    Californium's session stores do): the store file is the server's secret data."""

    def load_dtls_sessions(self) -> list[StoredSession]:
        """Every stored session (start-up restore). Rows that cannot be decoded are skipped
        (and reported by the store), never fatal."""
        ...

    def save_dtls_sessions(
        self,
        new: Sequence[StoredSession],
        progress: Sequence[SessionProgress],
        removed: Sequence[str],
    ) -> None:
        """Insert ``new`` (replacing by id), update ``progress`` of existing rows, delete
        ``removed``: durable when the call returns; raises on failure. sqlite: one
        transaction (nothing written on failure). A store whose sessions live in different
        places (Redis Cluster: a slot per session) writes each session all or nothing, the
        call as a whole not: on failure part of it may be written, so every part must be safe
        to repeat (a reservation never moves backwards) and the caller treats a failed call
        as not written (deleting the rows of its ``new`` sessions later)."""
        ...

    def remove_dtls_sessions(self, ids: Sequence[str]) -> None:
        """Delete rows by id (sessions that cannot be restored); one transaction."""
        ...


@runtime_checkable
class SharedDtlsSessionStore(DtlsSessionStore, Protocol):
    """A session store shared by several nodes; ``owner`` names this handle (one per node).

    A node using it loads nothing at start: it looks a session up when a record of a peer it
    does not know arrives (:meth:`find_dtls_session`), authenticates that record against the
    stored keys, and only then claims the session (:meth:`claim_dtls_session`)."""

    owner: str

    def new_session_id(self, cid: bytes | None) -> str:
        """The id for a session just established with our Connection ID ``cid`` (None: no
        CID). The store may make it name the CID, so that a lookup by CID finds the session
        without an index (Redis: one round trip on a Redis Cluster too); such an id may be
        refused by ``save_owned_dtls_sessions`` (a CID drawn twice), and the caller then
        saves the session again under a random id (``os.urandom(12).hex()``)."""
        ...

    def find_dtls_session(
        self, *, address: tuple[str, int] | None = None, cid: bytes | None = None, cutoff: float
    ) -> StoredSession | None:
        """The session whose Connection ID (ours) is ``cid``, else the one whose peer is at
        ``address``; None when there is none or it was last saved before ``cutoff`` (wall
        clock: idle, deleted). Changes nothing else."""
        ...

    def claim_dtls_session(self, session_id: str, reserve: int) -> StoredSession | None:
        """Atomically: this handle becomes the session's only writer and its stored write
        reservation moves ``reserve`` ahead. Returns the row as stored before the move
        (``state.write_seq`` is the first number the caller may use), None if it is gone."""
        ...

    def expire_dtls_sessions(self, cutoff: float, cursor: int = 0, count: int = 500) -> int:
        """Delete about ``count`` sessions last saved before ``cutoff``, scanning from
        ``cursor``; returns where to continue (0: done a full round)."""
        ...

    def save_owned_dtls_sessions(
        self,
        new: Sequence[StoredSession],
        progress: Sequence[SessionProgress],
        removed: Sequence[str],
    ) -> list[str]:
        """``save_dtls_sessions``, except that progress and removal of a session another
        handle owns are not written; returns the ids whose progress was refused (the caller
        forgets those sessions), and those of ``new`` sessions that were not written because
        another session is stored under their id (an id from ``new_session_id`` that names a
        CID drawn twice: the caller saves the session again under a random id)."""
        ...

"""Resumable sessions and the server-side session cache (RFC 5246 §7.3 abbreviated handshake).

Why a bounded LRU: a server with 100k devices cannot keep every master secret forever; the cache
is a small object passed in the config (or any object with the same three methods, e.g. one
backed by a shared store), so memory is the operator's decision.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from .identity import DtlsIdentity


@dataclass(frozen=True, slots=True)
class Session:
    """What an abbreviated handshake needs. ``master_secret`` is excluded from repr on purpose."""

    session_id: bytes
    master_secret: bytes = field(repr=False)
    cipher_suite: int
    peer_identity: DtlsIdentity
    extended_master_secret: bool
    encrypt_then_mac: bool


class SessionCache(Protocol):
    def get(self, session_id: bytes) -> Session | None: ...

    def put(self, session: Session) -> None: ...

    def remove(self, session_id: bytes) -> None: ...


class LruSessionCache:
    """In-memory LRU of at most ``max_entries`` sessions."""

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int = 10000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Session] = OrderedDict()

    def get(self, session_id: bytes) -> Session | None:
        session = self._entries.get(session_id)
        if session is not None:
            self._entries.move_to_end(session_id)
        return session

    def put(self, session: Session) -> None:
        self._entries[session.session_id] = session
        self._entries.move_to_end(session.session_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def remove(self, session_id: bytes) -> None:
        self._entries.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._entries)

"""The two handles the application holds: :class:`Exchange` (a request we received, to answer)
and :class:`RequestHandle` (a request we sent, possibly an observation).

Why explicit state enums: the legal moves of each life cycle are visible in one place, and a call
in the wrong state (answering twice) raises :class:`ExchangeStateError` instead of doing
something half-right.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

from .message import Block, Message


class ExchangeState(enum.Enum):
    PENDING = "pending"
    """Received, nothing sent yet (a CON can still get a piggybacked answer)."""
    ACKED = "acked"
    """An empty ACK went out; the answer will be a separate CON response."""
    ANSWERED = "answered"


_PENDING = ExchangeState.PENDING
"""A global: ``ExchangeState.PENDING`` is a lookup on the enum class (~0.1 µs, per request)."""


class Exchange:
    """One received request (or unknown notification) waiting for the application's answer."""

    __slots__ = (
        "ack_deadline",
        "block1",
        "block2",
        "is_notification",
        "mid",
        "mtype",
        "peer",
        "request",
        "request_key",
        "state",
        "token",
    )

    def __init__(self, peer: Hashable, request: Message) -> None:
        self.peer = peer
        self.request = request
        self.mtype = request.mtype
        self.mid = request.mid
        self.token = request.token
        self.state = _PENDING
        self.ack_deadline = 0.0
        self.block1: Block | None = None
        """Block1 of the final block of a reassembled request, echoed in the answer."""
        self.block2: Block | None = None
        """Block2 the client asked for (number and size), applied to a large answer."""
        self.request_key: object = None
        self.is_notification = False

    def __repr__(self) -> str:
        return f"<Exchange {self.peer!r} mid={self.mid} {self.state.value}>"


class HandleState(enum.Enum):
    QUEUED = "queued"
    """Waiting for an NSTART slot to the peer."""
    ACTIVE = "active"
    """On the wire: waiting for an ACK and/or the response (or following Block1/Block2)."""
    OBSERVING = "observing"
    """An established observation: notifications arrive under its token."""
    DONE = "done"


_QUEUED = HandleState.QUEUED


class RequestHandle:
    """A request we sent. Identity is the handle; the endpoint keeps the wire details inside."""

    __slots__ = (
        "_b2_body",
        "_b2_etag",
        "_b2_first",
        "_b2_held",
        "_b2_kind",
        "_b2_token",
        "_body",
        "_body_offset",
        "_body_szx",
        "_deregister",
        "_wire",
        "last_seq",
        "last_time",
        "peer",
        "request",
        "state",
        "token",
    )

    def __init__(self, peer: Hashable, request: Message, token: bytes) -> None:
        self.peer = peer
        self.request = request
        self.token = token
        self.state = _QUEUED
        self.last_seq = -1
        """Observe number of the last fresh notification (-1: none yet)."""
        self.last_time = 0.0
        self._wire: object = None
        self._body = b""
        self._body_offset = 0
        self._body_szx = 6
        self._b2_body: bytearray | None = None
        self._b2_first: Message | None = None
        self._b2_etag: bytes | None = None
        self._b2_kind = ""
        self._b2_token = b""
        self._b2_held: tuple[int, bytes, int, float] | None = None
        """A block-wise CON notification's first-block ACK, held until the whole value is
        delivered: (MID, ACK, Observe number and time before it)."""
        self._deregister = False

    @property
    def is_observation(self) -> bool:
        return self.state is HandleState.OBSERVING

    def __repr__(self) -> str:
        return f"<RequestHandle {self.peer!r} token={self.token.hex()} {self.state.value}>"

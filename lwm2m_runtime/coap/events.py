"""Events the endpoint returns to the application (h11/aioquic style).

Why events and not callbacks: the endpoint never calls into the application, so the application
decides when to answer (after its group commit), and every sequence is a deterministic test.
Events are slotted dataclasses to be read, not changed; they are not ``frozen`` because a frozen
dataclass's ``__init__`` goes through ``object.__setattr__`` and costs ~0.5 µs per request on
the hot path (aioquic's events are plain dataclasses for the same reason).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from .message import Message

if TYPE_CHECKING:
    from .exchange import Exchange, RequestHandle


class FailureReason(enum.Enum):
    TIMEOUT = "timeout"
    """A CON request was retransmitted MAX_RETRANSMIT times without an ACK (RFC 7252 §4.2)."""
    RESPONSE_TIMEOUT = "response_timeout"
    """Acknowledged (or NON) but no response within ``response_timeout``."""
    RESET = "reset"
    """The peer answered with RST."""
    QUEUE_FULL = "queue_full"
    """The per-peer NSTART queue was full."""
    BLOCK_TRANSFER = "block_transfer"
    """A Block2 follow-up failed (error code, wrong block number, changed ETag)."""


class ErrorKind(enum.Enum):
    """Why a datagram was refused; ``counters`` on the endpoint count each kind."""

    FORMAT_ERROR = "format_error"
    """RFC 7252 message format error: RST for a CON, silence otherwise."""
    BAD_OPTION = "bad_option"
    """Unknown critical option (or a known one with an invalid length): 4.02."""
    BAD_UTF8 = "bad_utf8"
    """A string option that is not UTF-8: 4.00."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """An unknown method code: 4.05."""
    BAD_BLOCK = "bad_block"
    """Block1 problems: 4.08 (missing block), 4.13 (too large), 4.00 (malformed)."""
    UNMATCHED = "unmatched"
    """A response or ACK/RST that matches nothing we sent (RST for a CON response)."""
    OVERLOAD = "overload"
    """A memory limit was reached (deduplication cache, Block1 transfers): 5.03 Service
    Unavailable with Max-Age for a CON (RFC 7252 §5.9.3.4), a NON dropped. The endpoint's
    ``dedup_full`` and ``block1_full`` counters say which."""
    PING = "ping"
    """An Empty CON (CoAP ping), answered with RST. Not an error; counted for visibility."""


@final
@dataclass(slots=True, eq=False)
class RequestReceived:
    """A request (reassembled if it came block-wise); answer with
    ``endpoint.respond(exchange, response)``."""

    peer: Hashable
    message: Message
    exchange: Exchange


@final
@dataclass(slots=True, eq=False)
class ResponseReceived:
    """The (reassembled) response to ``handle``; for an observe request it is the first one."""

    handle: RequestHandle
    message: Message


@dataclass(slots=True, eq=False)
class Notification:
    """A fresh notification of an observation (RFC 7641 §3.4). ``final`` when it ends the
    observation (an error code, or no Observe option)."""

    handle: RequestHandle
    message: Message
    final: bool = False


@final
@dataclass(slots=True, eq=False)
class RequestFailed:
    handle: RequestHandle
    reason: FailureReason
    detail: str = ""
    response: Message | None = None
    """For ``BLOCK_TRANSFER`` refused by the peer: its error answer to the block request (what
    the application reports as the answer, e.g. 5.03 on block 2)."""


@dataclass(slots=True, eq=False)
class UnknownNotification:
    """A notification with a token we do not know (e.g. after a restart). Answer with
    ``endpoint.accept_notification(event)`` (ACK, and later ones become :class:`Notification`)
    or ``endpoint.reject_notification(event)`` (RST: the device forgets the observation)."""

    peer: Hashable
    message: Message
    exchange: Exchange


@dataclass(slots=True, eq=False)
class ProtocolError:
    """A refused datagram; the adapter logs it rate-limited (never a traceback)."""

    peer: Hashable
    kind: ErrorKind
    detail: str


Event = (
    RequestReceived
    | ResponseReceived
    | Notification
    | RequestFailed
    | UnknownNotification
    | ProtocolError
)

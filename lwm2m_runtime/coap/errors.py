"""Errors of the CoAP layer.

Why three kinds: RFC 7252 treats them differently. A *message format error* is answered on the
message layer (RST for a CON, silence otherwise, §4.2/§4.3); an *invalid option value* in a
well-formed message is a request-level problem answered with a response code (4.00 for invalid
UTF-8, §5.4 / §5.10); an *API misuse* (answering an exchange twice) is a bug in the caller and is
raised to it. None of them ever leaves :meth:`Endpoint.receive_datagram`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .numbers import Code, Type

if TYPE_CHECKING:
    from .message import Message


class CoapError(Exception):
    """Base of the errors of this package."""


class MessageFormatError(CoapError):
    """The datagram is not a valid CoAP message.

    ``mtype`` and ``mid`` are set when the 4-byte header could be read, so that the endpoint can
    reject a CON with an RST carrying its Message ID. ``silent`` is set for the cases the RFC wants
    ignored even for a CON (an unknown version number, §3).
    """

    def __init__(
        self,
        reason: str,
        mtype: Type | None = None,
        mid: int | None = None,
        *,
        silent: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.mtype = mtype
        self.mid = mid
        self.silent = silent


class InvalidOptionValueError(CoapError):
    """A well-formed message whose option value is unusable (a string option that is not UTF-8).

    Carries the whole parsed ``message`` so a request can be answered with ``code`` and its token.
    """

    def __init__(self, message: Message, number: int, reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.number = number
        self.reason = reason
        self.code = Code.BAD_REQUEST


class ExchangeStateError(CoapError):
    """The caller used an exchange or handle in a state that does not allow it (a bug)."""

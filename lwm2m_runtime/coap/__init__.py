"""Our sans-IO CoAP layer (RFC 7252, RFC 7641 observe, RFC 7959 block-wise).

Bytes and ``now`` in, events and datagrams out, timers queried — no asyncio, no clock reads.
See ``docs/coap-layer.md`` for the API and how each RFC rule maps to code.
"""

from .endpoint import Endpoint, Peer
from .errors import CoapError, ExchangeStateError, InvalidOptionValueError, MessageFormatError
from .events import (
    ErrorKind,
    Event,
    FailureReason,
    Notification,
    ProtocolError,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    UnknownNotification,
)
from .exchange import Exchange, ExchangeState, HandleState, RequestHandle
from .message import (
    Block,
    Message,
    Option,
    Options,
    decode_uint,
    encode_uint,
    options,
    parse,
    piggybacked,
    piggybacked_options,
    serialize,
)
from .numbers import Code, ContentFormat, OptionNumber, Type
from .params import Parameters

__all__ = [
    "Block",
    "CoapError",
    "Code",
    "ContentFormat",
    "Endpoint",
    "ErrorKind",
    "Event",
    "Exchange",
    "ExchangeState",
    "ExchangeStateError",
    "FailureReason",
    "HandleState",
    "InvalidOptionValueError",
    "Message",
    "MessageFormatError",
    "Notification",
    "Option",
    "OptionNumber",
    "Options",
    "Parameters",
    "Peer",
    "ProtocolError",
    "RequestFailed",
    "RequestHandle",
    "RequestReceived",
    "ResponseReceived",
    "Type",
    "UnknownNotification",
    "decode_uint",
    "encode_uint",
    "options",
    "parse",
    "piggybacked",
    "piggybacked_options",
    "serialize",
]

"""CoAP numbers (RFC 7252 §12, RFC 7641, RFC 7959) as int enums, like aiocoap's ``numbers``.

Why IntEnums: a member compares equal to the wire integer, so the parser can keep plain ints on
the hot path while every other place names the protocol thing instead of a magic number. Option
properties (critical / unsafe / no-cache-key) are derived from the number as RFC 7252 §5.4.6
defines them, so an option we have never heard of still gets the right treatment.
"""

from __future__ import annotations

import enum

from object_models.content_format import ContentFormat

__all__ = [
    "Code",
    "ContentFormat",
    "OptionNumber",
    "Type",
    "code_class",
    "code_detail",
    "is_critical",
    "is_no_cache_key",
    "is_unsafe",
]


class Type(enum.IntEnum):
    """Message type (RFC 7252 §3, the two ``T`` bits)."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


def code_class(code: int) -> int:
    return code >> 5


def code_detail(code: int) -> int:
    return code & 0x1F


class Code(enum.IntEnum):
    """Method and response codes as ``class << 5 | detail`` (RFC 7252 §12.1, RFC 7959, RFC 8132)."""

    EMPTY = 0x00
    # methods (class 0)
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    FETCH = 0x05
    PATCH = 0x06
    IPATCH = 0x07
    # 2.xx success
    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    CONTINUE = 0x5F  # 2.31, RFC 7959
    # 4.xx client error
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88  # 4.08, RFC 7959
    CONFLICT = 0x89  # 4.09, RFC 8132
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D
    UNSUPPORTED_CONTENT_FORMAT = 0x8F
    UNPROCESSABLE_ENTITY = 0x96  # 4.22, RFC 8132
    TOO_MANY_REQUESTS = 0x9D  # 4.29, RFC 8516
    # 5.xx server error
    INTERNAL_SERVER_ERROR = 0xA0
    NOT_IMPLEMENTED = 0xA1
    BAD_GATEWAY = 0xA2
    SERVICE_UNAVAILABLE = 0xA3
    GATEWAY_TIMEOUT = 0xA4
    PROXYING_NOT_SUPPORTED = 0xA5

    @property
    def code_class(self) -> int:
        return self.value >> 5

    @property
    def detail(self) -> int:
        return self.value & 0x1F

    @property
    def dotted(self) -> str:
        """The code as the RFCs write it, e.g. ``4.04``."""
        return f"{self.value >> 5}.{self.value & 0x1F:02d}"

    @property
    def is_request(self) -> bool:
        return 1 <= self.value <= 31

    @property
    def is_response(self) -> bool:
        return 64 <= self.value <= 191

    @property
    def is_successful(self) -> bool:
        return 64 <= self.value < 96

    @property
    def is_client_error(self) -> bool:
        return 128 <= self.value < 160

    @property
    def is_server_error(self) -> bool:
        return 160 <= self.value < 192


#: The methods the endpoint accepts; any other class-0 code is answered 4.05 (RFC 7252 §5.8).
METHODS = frozenset(
    {Code.GET, Code.POST, Code.PUT, Code.DELETE, Code.FETCH, Code.PATCH, Code.IPATCH}
)


def dotted(code: int) -> str:
    """``4.04`` for any code, known to :class:`Code` or not."""
    return f"{code >> 5}.{code & 0x1F:02d}"


class OptionNumber(enum.IntEnum):
    """Option numbers (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 8613, RFC 9175)."""

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    OSCORE = 9
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60
    NO_RESPONSE = 258  # RFC 7967

    @property
    def is_critical(self) -> bool:
        return is_critical(self.value)

    @property
    def is_unsafe(self) -> bool:
        return is_unsafe(self.value)

    @property
    def is_no_cache_key(self) -> bool:
        return is_no_cache_key(self.value)


def is_critical(number: int) -> bool:
    """Odd numbers are critical: a recipient that does not know one must reject it
    (RFC 7252 §5.4.1)."""
    return bool(number & 1)


def is_unsafe(number: int) -> bool:
    """Bit 1 set: a proxy must not forward it unless it understands it (RFC 7252 §5.4.2)."""
    return bool(number & 2)


def is_no_cache_key(number: int) -> bool:
    """Bits 2-4 all set (``0b111xx``): not part of the cache key (RFC 7252 §5.4.6)."""
    return (number & 0x1E) == 0x1C


#: Options whose value is a UTF-8 string (RFC 7252 §5.10 "string" format); a value that is not
#: valid UTF-8 makes a request a 4.00 Bad Request.
STRING_OPTIONS = frozenset(
    {
        OptionNumber.URI_HOST,
        OptionNumber.LOCATION_PATH,
        OptionNumber.URI_PATH,
        OptionNumber.URI_QUERY,
        OptionNumber.LOCATION_QUERY,
        OptionNumber.PROXY_URI,
        OptionNumber.PROXY_SCHEME,
    }
)

#: (min, max) value length of every option we understand (RFC 7252 §5.10 and the extensions). A
#: value outside its range is treated like an unrecognized option (RFC 7252 §5.4.3): a critical
#: one rejects the request with 4.02, an elective one is ignored.
OPTION_LENGTHS: dict[int, tuple[int, int]] = {
    OptionNumber.IF_MATCH: (0, 8),
    OptionNumber.URI_HOST: (1, 255),
    OptionNumber.ETAG: (1, 8),
    OptionNumber.IF_NONE_MATCH: (0, 0),
    OptionNumber.OBSERVE: (0, 3),
    OptionNumber.URI_PORT: (0, 2),
    OptionNumber.LOCATION_PATH: (0, 255),
    OptionNumber.URI_PATH: (0, 255),
    OptionNumber.CONTENT_FORMAT: (0, 2),
    OptionNumber.MAX_AGE: (0, 4),
    OptionNumber.URI_QUERY: (0, 255),
    OptionNumber.ACCEPT: (0, 2),
    OptionNumber.LOCATION_QUERY: (0, 255),
    OptionNumber.BLOCK2: (0, 3),
    OptionNumber.BLOCK1: (0, 3),
    OptionNumber.SIZE2: (0, 4),
    OptionNumber.PROXY_URI: (1, 1034),
    OptionNumber.PROXY_SCHEME: (1, 255),
    OptionNumber.SIZE1: (0, 4),
    OptionNumber.NO_RESPONSE: (0, 1),
}

#: Options the endpoint understands by default. OSCORE and the proxy options are deliberately
#: absent: a request carrying them (critical) is answered 4.02 rather than half-processed.
DEFAULT_KNOWN_OPTIONS = frozenset(
    {
        OptionNumber.IF_MATCH,
        OptionNumber.URI_HOST,
        OptionNumber.ETAG,
        OptionNumber.IF_NONE_MATCH,
        OptionNumber.OBSERVE,
        OptionNumber.URI_PORT,
        OptionNumber.LOCATION_PATH,
        OptionNumber.URI_PATH,
        OptionNumber.CONTENT_FORMAT,
        OptionNumber.MAX_AGE,
        OptionNumber.URI_QUERY,
        OptionNumber.ACCEPT,
        OptionNumber.LOCATION_QUERY,
        OptionNumber.BLOCK2,
        OptionNumber.BLOCK1,
        OptionNumber.SIZE2,
        OptionNumber.SIZE1,
        OptionNumber.NO_RESPONSE,
    }
)

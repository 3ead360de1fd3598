"""Errors of the data model, each carrying the CoAP response code to answer with.

The CoAP layer turns any of these into a reply without knowing where it came from; keeping the
code here (as a plain integer, not an aiocoap type) keeps this package free of aiocoap.
"""

from __future__ import annotations

import enum


class ResponseCode(enum.IntEnum):
    """CoAP response codes (RFC 7252 §12.1.2) as ``class << 5 | detail``, like aiocoap's Code."""

    BAD_REQUEST = 0x80  # 4.00
    UNAUTHORIZED = 0x81  # 4.01
    BAD_OPTION = 0x82  # 4.02
    FORBIDDEN = 0x83  # 4.03
    NOT_FOUND = 0x84  # 4.04
    METHOD_NOT_ALLOWED = 0x85  # 4.05
    NOT_ACCEPTABLE = 0x86  # 4.06
    REQUEST_ENTITY_INCOMPLETE = 0x88  # 4.08
    CONFLICT = 0x89  # 4.09 (RFC 8132)
    PRECONDITION_FAILED = 0x8C  # 4.12
    REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13
    UNSUPPORTED_CONTENT_FORMAT = 0x8F  # 4.15
    TOO_MANY_REQUESTS = 0x9D  # 4.29 (RFC 8516)
    INTERNAL_SERVER_ERROR = 0xA0  # 5.00
    SERVICE_UNAVAILABLE = 0xA3  # 5.03
    GATEWAY_TIMEOUT = 0xA4  # 5.04

    @property
    def dotted(self) -> str:
        """The code as written in the specs, e.g. ``4.04``."""
        return f"{self.value >> 5}.{self.value & 0x1F:02d}"


class Lwm2mError(Exception):
    """Base of every error that maps to a CoAP response code."""

    code: ResponseCode = ResponseCode.BAD_REQUEST

    def __init__(self, message: str, *, code: ResponseCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class CodecError(Lwm2mError):
    """Anything malformed in an LwM2M payload, or a value that cannot be encoded.

    ``path`` names where in the payload the problem is (an LwM2M path string, or ``None`` when the
    payload is broken before any path is known). The message always says the path and the reason,
    so that a single log line is enough to understand a rejected payload.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: object | None = None,
        code: ResponseCode = ResponseCode.BAD_REQUEST,
    ) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        text = reason if self.path is None else f"{self.path}: {reason}"
        super().__init__(text, code=code)


class InvalidPathError(Lwm2mError, ValueError):
    """A string or id tuple that is not a valid LwM2M path (answered with 4.00)."""


class ModelError(Exception):
    """An object-model file that cannot be loaded; names the file, the field and the reason."""

    def __init__(self, file: str, field: str, reason: str, *, line: int | None = None) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        self.line = line  # 1-based line in ``file`` when known
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")

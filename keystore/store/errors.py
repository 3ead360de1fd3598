"""``StoreError``: the one failure every store raises (credentials, profiles, DTLS sessions here;
the registration store of ``lwm2m_server`` too), so callers handle one type whatever the engine.

It lives in ``keystore`` because the stores that need it first (the credential store, the
database they share) are here, the lowest layer with stores; the servers' stores build on it.
"""

from __future__ import annotations

from object_models.errors import Lwm2mError, ResponseCode


class StoreError(Lwm2mError):
    """The store cannot do what was asked (unreadable/corrupt/locked file, disk full, invalid
    record). The device gets 5.00; nothing was half-written."""

    code = ResponseCode.INTERNAL_SERVER_ERROR


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (Redis down, restarting, or not answering in
    time), as opposed to refusing what was asked: nothing was written, and the same request
    may well succeed in a few seconds. A device gets 5.03 Service Unavailable with Max-Age =
    ``retry_after`` (RFC 7252 §5.9.3.4: "try again later", not "you sent something wrong"),
    the HTTP API 503 with Retry-After."""

    code = ResponseCode.SERVICE_UNAVAILABLE
    retry_after = 5
    """Seconds a client should wait before retrying (CoAP Max-Age, HTTP Retry-After): about
    what a Redis restart takes; redis-py reconnects by itself on the first command after."""

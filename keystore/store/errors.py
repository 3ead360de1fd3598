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

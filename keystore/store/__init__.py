"""The keystore's stores: credentials (``credentials``), device profiles (``profiles``) and DTLS
sessions (``dtls_sessions``), all in one sqlite file opened by ``database.SqliteDatabase``.
The LwM2M server's registration/observation/telemetry store builds on the same database
(``lwm2m_server.store``)."""

from .errors import StoreError

__all__ = ["StoreError"]

"""Credential storage: device credentials, the server's identity and trusted CAs.

Two small Protocols (devices; server identity and trust store) joined as ``CredentialStore``,
the sqlite implementation, and the JSON import/export document.

One identity, one endpoint. A PSK identity, a raw public key or a pinned certificate maps to at
most one endpoint (unique indexes), and ``put_device`` refuses a second endpoint with a
``CredentialError`` naming the field and the endpoint that already has it: otherwise which
endpoint a DTLS peer is would depend on row order.

Secrets live in the database file (PSK keys, the server's private key), like Leshan's and
ThingsBoard's stores. So the file is made owner-only (0600) whenever this store opens it, even if
``SqliteDatabase`` or an older version created it first with the umask's mode; its ``-wal`` and
``-shm`` files get the same mode (sqlite copies the database file's mode when it creates them,
and existing ones are chmod-ed here).
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs

from ..credential_cache import WriteCounter
from ..credentials import (
    CredentialError,
    DeviceCredentials,
    Encoding,
    ServerIdentity,
    TrustedCa,
    fingerprint,
    format_psk_identity,
    normalize_spki,
    short_fingerprint,
)
from ..modes import SecurityMode
from ..secrets_io import ensure_private_dir, ensure_private_file
from .database import SqliteDatabase
from .errors import StoreError

CREDENTIALS_SCHEMA_VERSION = 1
EXPORT_FORMAT = "pylwm2m-keystore"
EXPORT_VERSION = 1


class DeviceCredentialStore(Protocol):
    def put_device(self, device: DeviceCredentials) -> DeviceCredentials | None:
        """Insert or replace by endpoint; return the replaced record. ``CredentialError`` if
        its PSK identity, public key or pinned certificate belongs to another endpoint."""
        ...

    def get_device(self, endpoint: str) -> DeviceCredentials | None: ...

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None: ...

    def device_by_rpk(self, spki: bytes) -> DeviceCredentials | None:
        """By SubjectPublicKeyInfo DER (any encoding of the point: it is normalized)."""
        ...

    def device_by_certificate(self, der: bytes) -> DeviceCredentials | None:
        """The device that pinned exactly this certificate (DER)."""
        ...

    def devices(self) -> list[DeviceCredentials]:
        """Every device, by endpoint."""
        ...

    def remove_device(self, endpoint: str) -> DeviceCredentials | None: ...


class ServerIdentityStore(Protocol):
    def server_identity(self) -> ServerIdentity | None: ...

    def put_server_identity(self, identity: ServerIdentity) -> None: ...

    def trusted_cas(self) -> list[TrustedCa]: ...

    def put_trusted_ca(self, ca: TrustedCa) -> None:
        """Insert or replace by certificate fingerprint (updates ``auto_registration``)."""
        ...

    def remove_trusted_ca(self, sha256: str) -> TrustedCa | None:
        """Remove by SHA-256 fingerprint (hex, or a unique prefix of at least 8 digits)."""
        ...


class CredentialStore(DeviceCredentialStore, ServerIdentityStore, Protocol):
    def batch(self) -> AbstractContextManager[object]:
        """Group writes into one all-or-nothing transaction (imports)."""
        ...


# -- sqlite ---------------------------------------------------------------------------------------

_LOCAL_WRITES: weakref.WeakKeyDictionary[SqliteDatabase, WriteCounter] = weakref.WeakKeyDictionary()
"""Credential writes per connection (``SqliteCredentialStore.local_writes``): counted per
database object, not per store object, so two credential stores over one connection see each
other's writes. One ``WriteCounter`` per connection, which every store over it holds: the
resolver's cache reads its ``writes`` on every lookup, an attribute rather than a call."""


def _write_counter(db: SqliteDatabase) -> WriteCounter:
    counter = _LOCAL_WRITES.get(db)
    if counter is None:
        counter = _LOCAL_WRITES[db] = WriteCounter()
    return counter


_DEVICE_COLUMNS = "endpoint, mode, active, psk_identity, psk_key, rpk_spki, certificate"


class SqliteCredentialStore:
    """``CredentialStore`` in the server's sqlite file, on the ``SqliteDatabase`` connection (one
    connection, one transaction discipline, one file to back up)."""

    def __init__(self, store: SqliteDatabase, *, owns_store: bool = False) -> None:
        self._store = store
        self._writes = _write_counter(store)
        self._owns = owns_store
        self.path = store.path
        store.restrict_to_owner()
        self._create_schema()

    @classmethod
    def open(cls, path: str | Path, **options: Any) -> SqliteCredentialStore:
        """Open (or create, 0600, in a 0700 folder if the folder is new) a store file of its
        own; ``options`` go to ``SqliteDatabase``."""
        target = Path(path)
        try:
            ensure_private_dir(target.parent)
            ensure_private_file(target)
        except OSError as exc:
            raise StoreError(f"{target}: cannot create the store file: {exc}") from exc
        return cls(SqliteDatabase(target, **options), owns_store=True)

    @property
    def store(self) -> SqliteDatabase:
        return self._store

    def close(self) -> None:
        if self._owns:
            self._store.close()

    def __enter__(self) -> SqliteCredentialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self) -> AbstractContextManager[object]:
        return self._store.batch()

    def _create_schema(self) -> None:
        db = self._store.db
        try:
            row = self._store.conn.execute(
                "SELECT value FROM meta WHERE name='credentials_schema'"
            ).fetchone()
            if row is not None and int(row[0]) != CREDENTIALS_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: credentials schema version {row[0]}, "
                    f"expected {CREDENTIALS_SCHEMA_VERSION}"
                )
            devices = db.table("credential_devices")
            devices.create(
                {
                    "endpoint": str,
                    "mode": int,
                    "active": int,
                    "psk_identity": bytes,
                    "psk_key": bytes,
                    "rpk_spki": bytes,
                    "certificate": bytes,
                    "cert_sha256": str,
                },
                pk="endpoint",
                not_null={"mode", "active"},
                if_not_exists=True,
            )
            for column in ("psk_identity", "rpk_spki", "cert_sha256"):
                devices.create_index([column], unique=True, if_not_exists=True)
            db.table("credential_cas").create(
                {"sha256": str, "subject": str, "certificate": bytes, "auto_registration": int},
                pk="sha256",
                not_null={"subject", "certificate", "auto_registration"},
                if_not_exists=True,
            )
            db.table("credential_server").create(
                {"name": str, "private_key_pem": bytes, "chain": str},
                pk="name",
                not_null={"private_key_pem", "chain"},
                if_not_exists=True,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the credential tables: {exc}") from exc
        if row is None:
            with self._write() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO meta(name, value) VALUES('credentials_schema', ?)",
                    (str(CREDENTIALS_SCHEMA_VERSION),),
                )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._store
        counter = self._writes
        counter.writes += 1  # a lookup during the write re-reads
        try:
            with db.batch():
                yield db.conn
        finally:
            counter.writes += 1

    # -- change detection (keystore.credential_cache) ---------------------------------------------
    def local_writes(self) -> int:
        """Credential writes made through this connection so far (by any credential store over
        it): the resolver's cache drops its records when this moves."""
        return self._writes.writes

    def local_write_counter(self) -> WriteCounter:
        """The counter ``local_writes`` reads, shared by the credential stores of this
        connection (``keystore.credential_cache.CountsLocalWrites``)."""
        return self._writes

    def data_version(self) -> int:
        """sqlite's ``PRAGMA data_version``: changes when another connection (another process:
        ``lwm2m-keystore``, the bootstrap server) committed to the file. -1 when it cannot be
        read (the cache then reads through and the read reports the error)."""
        try:
            row = self._store.conn.execute("PRAGMA data_version").fetchone()
        except (sqlite3.Error, StoreError):
            return -1
        return int(row[0])

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._store.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: read failed: {exc}") from exc

    # -- devices ---------------------------------------------------------------------------------
    def put_device(self, device: DeviceCredentials) -> DeviceCredentials | None:
        if not isinstance(device, DeviceCredentials):
            raise StoreError(f"expected DeviceCredentials, got {type(device).__name__}")
        cert_sha = None if device.certificate is None else fingerprint(device.certificate)
        with self._write() as conn:
            self._check_unique(conn, device, cert_sha)
            old = self._one(f"SELECT {_DEVICE_COLUMNS} FROM credential_devices WHERE endpoint=?",
                            (device.endpoint,))  # fmt: skip
            conn.execute(
                f"INSERT INTO credential_devices({_DEVICE_COLUMNS}, cert_sha256) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(endpoint) DO UPDATE SET "
                "mode=excluded.mode, active=excluded.active, psk_identity=excluded.psk_identity, "
                "psk_key=excluded.psk_key, rpk_spki=excluded.rpk_spki, "
                "certificate=excluded.certificate, cert_sha256=excluded.cert_sha256",
                (
                    device.endpoint,
                    int(device.mode),
                    int(device.active),
                    device.psk_identity,
                    device.psk_key,
                    device.rpk_spki,
                    device.certificate,
                    cert_sha,
                ),
            )
        return old

    def _check_unique(
        self, conn: sqlite3.Connection, device: DeviceCredentials, cert_sha: str | None
    ) -> None:
        checks: list[tuple[str, str, object, str]] = []
        if device.psk_identity is not None:
            shown = repr(format_psk_identity(device.psk_identity))
            checks.append(("psk_identity", "psk_identity", device.psk_identity, shown))
        if device.rpk_spki is not None:
            shown = f"public key {short_fingerprint(device.rpk_spki)}"
            checks.append(("rpk_public_key", "rpk_spki", device.rpk_spki, shown))
        if cert_sha is not None:
            checks.append(("certificate", "cert_sha256", cert_sha, f"sha256:{cert_sha[:16]}"))
        for field, column, value, shown in checks:
            row = conn.execute(
                f"SELECT endpoint FROM credential_devices WHERE {column} = ? AND endpoint != ?",
                (value, device.endpoint),
            ).fetchone()
            if row is not None:
                raise CredentialError(field, f"{shown} already belongs to endpoint {row[0]!r}")

    def get_device(self, endpoint: str) -> DeviceCredentials | None:
        return self._one(
            f"SELECT {_DEVICE_COLUMNS} FROM credential_devices WHERE endpoint = ?", (endpoint,)
        )

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None:
        return self._one(
            f"SELECT {_DEVICE_COLUMNS} FROM credential_devices WHERE psk_identity = ?",
            (bytes(identity),),
        )

    def device_by_rpk(self, spki: bytes) -> DeviceCredentials | None:
        try:
            canonical = normalize_spki(spki)
        except CredentialError:
            return None
        return self._one(
            f"SELECT {_DEVICE_COLUMNS} FROM credential_devices WHERE rpk_spki = ?", (canonical,)
        )

    def device_by_certificate(self, der: bytes) -> DeviceCredentials | None:
        return self._one(
            f"SELECT {_DEVICE_COLUMNS} FROM credential_devices WHERE cert_sha256 = ?",
            (fingerprint(der),),
        )

    def device_endpoints(self, limit: int) -> frozenset[str] | None:
        """The endpoints that have a device record, or None when there are more than ``limit``
        (reads at most ``limit + 1`` index entries). For the resolver's cache
        (``keystore.credential_cache``): "no record for this endpoint" without a read per new
        endpoint."""
        rows = self._read("SELECT endpoint FROM credential_devices LIMIT ?", (limit + 1,))
        if len(rows) > limit:
            return None
        return frozenset(row[0] for row in rows)

    def devices(self) -> list[DeviceCredentials]:
        rows = self._read(f"SELECT {_DEVICE_COLUMNS} FROM credential_devices ORDER BY endpoint")
        return [self._decode_device(r) for r in rows]

    def remove_device(self, endpoint: str) -> DeviceCredentials | None:
        with self._write() as conn:
            old = self.get_device(endpoint)
            if old is not None:
                conn.execute("DELETE FROM credential_devices WHERE endpoint = ?", (endpoint,))
        return old

    def _one(self, sql: str, params: tuple[Any, ...]) -> DeviceCredentials | None:
        rows = self._read(sql, params)
        return self._decode_device(rows[0]) if rows else None

    def _decode_device(self, row: tuple[Any, ...]) -> DeviceCredentials:
        endpoint, mode, active, identity, key, spki, cert = row
        try:
            return DeviceCredentials(
                endpoint=endpoint,
                mode=SecurityMode(mode),
                psk_identity=identity,
                psk_key=key,
                rpk_spki=spki,
                certificate=cert,
                active=bool(active),
            )
        except (CredentialError, ValueError) as exc:
            raise StoreError(f"{self.path}: corrupt credentials of {endpoint!r}: {exc}") from exc

    # -- server identity and trusted CAs --------------------------------------------------------
    def server_identity(self) -> ServerIdentity | None:
        rows = self._read(
            "SELECT private_key_pem, chain FROM credential_server WHERE name = 'server'"
        )
        if not rows:
            return None
        pem, chain = rows[0]
        try:
            return ServerIdentity(bytes(pem), tuple(bytes.fromhex(c) for c in json.loads(chain)))
        except (CredentialError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: corrupt server identity: {exc}") from exc

    def put_server_identity(self, identity: ServerIdentity) -> None:
        if not isinstance(identity, ServerIdentity):
            raise StoreError(f"expected ServerIdentity, got {type(identity).__name__}")
        chain = json.dumps([c.hex() for c in identity.certificate_chain])
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO credential_server(name, private_key_pem, chain) "
                "VALUES('server', ?, ?)",
                (identity.private_key_pem, chain),
            )

    def trusted_cas(self) -> list[TrustedCa]:
        rows = self._read(
            "SELECT certificate, auto_registration FROM credential_cas ORDER BY subject, sha256"
        )
        out = []
        for der, auto in rows:
            try:
                out.append(TrustedCa(bytes(der), auto_registration=bool(auto)))
            except CredentialError as exc:
                raise StoreError(f"{self.path}: corrupt trusted CA: {exc}") from exc
        return out

    def put_trusted_ca(self, ca: TrustedCa) -> None:
        if not isinstance(ca, TrustedCa):
            raise StoreError(f"expected TrustedCa, got {type(ca).__name__}")
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO credential_cas(sha256, subject, certificate, "
                "auto_registration) VALUES(?, ?, ?, ?)",
                (ca.fingerprint, ca.subject, ca.certificate, int(ca.auto_registration)),
            )

    def remove_trusted_ca(self, sha256: str) -> TrustedCa | None:
        prefix = sha256.lower().removeprefix("sha256:").replace(":", "")
        if len(prefix) < 8:
            raise CredentialError("sha256", "give at least 8 hex digits of the fingerprint")
        matches = [ca for ca in self.trusted_cas() if ca.fingerprint.startswith(prefix)]
        if len(matches) > 1:
            raise CredentialError("sha256", f"{prefix!r} matches {len(matches)} CAs")
        if not matches:
            return None
        with self._write() as conn:
            conn.execute("DELETE FROM credential_cas WHERE sha256 = ?", (matches[0].fingerprint,))
        return matches[0]


# -- import / export ------------------------------------------------------------------------------


@attrs.frozen
class ImportSummary:
    devices: int
    trusted_cas: int
    server_identity: bool


def export_document(store: CredentialStore, *, encoding: Encoding = "hex") -> dict[str, Any]:
    """Everything in the store, secrets included (see docs/security.md for the schema)."""
    if encoding not in ("hex", "base64"):
        raise CredentialError("encoding", "must be hex or base64")
    server = store.server_identity()
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "encoding": encoding,
        "server": None if server is None else server.to_json(encoding),
        "trusted_cas": [ca.to_json(encoding) for ca in store.trusted_cas()],
        "devices": [d.to_json(encoding) for d in store.devices()],
    }


def import_document(
    store: CredentialStore, document: object, *, replace: bool = False
) -> ImportSummary:
    """Validate the whole document, then write it in one transaction (all or nothing).

    Records identical to stored ones are fine (re-importing is idempotent). A device stored
    with other credentials, or another server identity, is an error unless ``replace``.
    Errors name the field as a path into the document (``devices[3].psk_key``).
    """
    server, cas, devices = _parse_document(document)
    with store.batch():
        if server is not None:
            current = store.server_identity()
            if current is not None and current != server and not replace:
                raise CredentialError(
                    "server", "the store has another server identity (replace it with --replace)"
                )
            store.put_server_identity(server)
        for ca in cas:
            store.put_trusted_ca(ca)
        for i, device in enumerate(devices):
            current_device = store.get_device(device.endpoint)
            if current_device is not None and current_device != device and not replace:
                raise CredentialError(
                    f"devices[{i}].endpoint",
                    f"{device.endpoint!r} is stored with other credentials "
                    "(replace it with --replace)",
                )
            try:
                store.put_device(device)
            except CredentialError as exc:
                raise CredentialError(f"devices[{i}].{exc.field}", exc.reason) from None
    return ImportSummary(len(devices), len(cas), server is not None)


def _parse_document(
    document: object,
) -> tuple[ServerIdentity | None, list[TrustedCa], list[DeviceCredentials]]:
    if not isinstance(document, dict):
        raise CredentialError("", "the document must be a JSON object")
    if document.get("format") != EXPORT_FORMAT:
        raise CredentialError("format", f"expected {EXPORT_FORMAT!r}")
    if document.get("version") != EXPORT_VERSION:
        raise CredentialError("version", f"unsupported version {document.get('version')!r}")
    unknown = sorted(set(document) - {"format", "version", "encoding", "server",
                                      "trusted_cas", "devices"})  # fmt: skip
    if unknown:
        raise CredentialError(unknown[0], "unknown field")
    encoding = document.get("encoding", "hex")
    if encoding not in ("hex", "base64"):
        raise CredentialError("encoding", "must be hex or base64")
    server = None
    if document.get("server") is not None:
        with _at("server"):
            server = ServerIdentity.from_json(document["server"], encoding)
    raw_cas = document.get("trusted_cas", [])
    raw_devices = document.get("devices", [])
    for name, value in (("trusted_cas", raw_cas), ("devices", raw_devices)):
        if not isinstance(value, list):
            raise CredentialError(name, "must be a list")
    cas = []
    for i, raw in enumerate(raw_cas):
        with _at(f"trusted_cas[{i}]"):
            cas.append(TrustedCa.from_json(raw, encoding))
    devices = []
    for i, raw in enumerate(raw_devices):
        with _at(f"devices[{i}]"):
            devices.append(DeviceCredentials.from_json(raw, encoding))
    _unique_in_document(devices)
    return server, cas, devices


@contextmanager
def _at(where: str) -> Iterator[None]:
    """Prefix a CredentialError's field with where in the document it happened."""
    try:
        yield
    except CredentialError as exc:
        field = f"{where}.{exc.field}" if exc.field else where
        raise CredentialError(field, exc.reason) from None


def _unique_in_document(devices: list[DeviceCredentials]) -> None:
    seen: dict[tuple[str, object], int] = {}
    for i, device in enumerate(devices):
        cert = None if device.certificate is None else fingerprint(device.certificate)
        for field, value in (
            ("endpoint", device.endpoint),
            ("psk_identity", device.psk_identity),
            ("rpk_public_key", device.rpk_spki),
            ("certificate", cert),
        ):
            if value is None:
                continue
            first = seen.setdefault((field, value), i)
            if first != i:
                raise CredentialError(f"devices[{i}].{field}", f"same as devices[{first}]")

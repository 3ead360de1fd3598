"""``SqliteDtlsSessionStore``: the CoAPs endpoint's DTLS sessions in the server's sqlite file.

Why in the same file: one connection, one transaction discipline (WAL, a write is in the
operating system's page cache when the call returns, so ``kill -9`` loses nothing: see
``keystore.store.database``), one file to back up. The rows hold key material (the master secret
of each session, from which its keys are derived), like the device PSKs of the credential
tables beside them: the file is owner-only (0600), and nothing here logs a row.

One row per session (``dtls_sessions``): the parts that never change once the handshake is done
as one JSON document (suite, master secret, randoms, session id, flags, peer identity, CIDs),
and the parts that move as columns, so the frequent write (the replay window after every
accepted record, the write reservation, the address after a CID rebinding) is a small UPDATE.
The replay bitmap is 64 bits unsigned, stored as hex text (sqlite integers are signed).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..coaps.persistence import SessionProgress, StoredSession
from ..dtls.identity import (
    AnonymousIdentity,
    DtlsIdentity,
    PskIdentity,
    RawPublicKeyIdentity,
    X509Identity,
)
from ..dtls.state import SavedState
from .database import SqliteDatabase
from .errors import StoreError

log = logging.getLogger(__name__)

DTLS_SESSIONS_SCHEMA_VERSION = 1


def _identity_to_json(identity: DtlsIdentity) -> dict[str, Any]:
    if isinstance(identity, PskIdentity):
        return {"type": "psk", "identity": identity.identity.hex()}
    if isinstance(identity, RawPublicKeyIdentity):
        return {"type": "rpk", "spki": identity.spki_der.hex()}
    if isinstance(identity, X509Identity):
        return {"type": "x509", "chain": [c.hex() for c in identity.chain]}
    return {"type": "anonymous"}


def _identity_from_json(data: dict[str, Any]) -> DtlsIdentity:
    kind = data["type"]
    if kind == "psk":
        return PskIdentity(bytes.fromhex(data["identity"]))
    if kind == "rpk":
        return RawPublicKeyIdentity(bytes.fromhex(data["spki"]))
    if kind == "x509":
        return X509Identity(tuple(bytes.fromhex(c) for c in data["chain"]))
    if kind == "anonymous":
        return AnonymousIdentity()
    raise ValueError(f"unknown identity type {kind!r}")


def state_to_json(state: SavedState) -> str:
    """The fixed part of a session (everything but the sequence numbers), as JSON text."""
    return json.dumps(
        {
            "client": state.is_client,
            "suite": state.cipher_suite,
            "master_secret": state.master_secret.hex(),
            "client_random": state.client_random.hex(),
            "server_random": state.server_random.hex(),
            "session_id": state.session_id.hex(),
            "ems": state.extended_master_secret,
            "etm": state.encrypt_then_mac,
            "identity": _identity_to_json(state.peer_identity),
            "own_cid": None if state.own_cid is None else state.own_cid.hex(),
            "peer_cid": state.peer_cid.hex(),
        },
        separators=(",", ":"),
    )


def state_from_json(text: str, write_seq: int, read_top: int, read_bitmap: int) -> SavedState:
    """Inverse of :func:`state_to_json` plus the counters; ``ValueError``/``KeyError``/
    ``TypeError`` on a damaged row."""
    data = json.loads(text)
    own_cid = data["own_cid"]
    return SavedState(
        is_client=bool(data["client"]),
        cipher_suite=int(data["suite"]),
        master_secret=bytes.fromhex(data["master_secret"]),
        client_random=bytes.fromhex(data["client_random"]),
        server_random=bytes.fromhex(data["server_random"]),
        session_id=bytes.fromhex(data["session_id"]),
        extended_master_secret=bool(data["ems"]),
        encrypt_then_mac=bool(data["etm"]),
        peer_identity=_identity_from_json(data["identity"]),
        own_cid=None if own_cid is None else bytes.fromhex(own_cid),
        peer_cid=bytes.fromhex(data["peer_cid"]),
        write_seq=write_seq,
        read_top=read_top,
        read_bitmap=read_bitmap,
    )


class SqliteDtlsSessionStore:
    """``keystore.coaps.persistence.DtlsSessionStore`` on a ``SqliteDatabase`` connection."""

    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        self.path = store.path
        store.restrict_to_owner()
        self._create_schema()

    def _create_schema(self) -> None:
        conn = self._store.conn
        try:
            row = conn.execute(
                "SELECT value FROM meta WHERE name='dtls_sessions_schema'"
            ).fetchone()
            if row is not None and int(row[0]) != DTLS_SESSIONS_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: DTLS session schema version {row[0]}, "
                    f"expected {DTLS_SESSIONS_SCHEMA_VERSION}"
                )
            self._store.db.table("dtls_sessions").create(
                {
                    "id": str,
                    "host": str,
                    "port": int,
                    "state": str,
                    "write_seq": int,
                    "read_top": int,
                    "read_bitmap": str,
                    "saved_at": float,
                },
                pk="id",
                not_null={"host", "port", "state", "write_seq", "read_top", "read_bitmap"},
                if_not_exists=True,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot create the DTLS session table: {exc}") from exc
        if row is None:
            with self._store.batch():
                conn.execute(
                    "INSERT OR IGNORE INTO meta(name, value) VALUES('dtls_sessions_schema', ?)",
                    (str(DTLS_SESSIONS_SCHEMA_VERSION),),
                )

    def load_dtls_sessions(self) -> list[StoredSession]:
        try:
            rows = self._store.conn.execute(
                "SELECT id, host, port, state, write_seq, read_top, read_bitmap, saved_at "
                "FROM dtls_sessions ORDER BY saved_at"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the DTLS sessions: {exc}") from exc
        sessions: list[StoredSession] = []
        for row_id, host, port, state, write_seq, read_top, bitmap, saved_at in rows:
            try:
                saved = state_from_json(state, int(write_seq), int(read_top), int(bitmap, 16))
                sessions.append(
                    StoredSession(str(row_id), str(host), int(port), saved, float(saved_at))
                )
            except (ValueError, KeyError, TypeError) as exc:
                # the reason names a field, never a value (values are secrets)
                log.error(
                    "%s: DTLS session row %s unreadable (%s), skipped",
                    self.path,
                    row_id,
                    type(exc).__name__,
                )
        return sessions

    def save_dtls_sessions(
        self,
        new: Sequence[StoredSession],
        progress: Sequence[SessionProgress],
        removed: Sequence[str],
    ) -> None:
        inserts = [
            (
                s.id,
                s.host,
                s.port,
                state_to_json(s.state),
                s.state.write_seq,
                s.state.read_top,
                f"{s.state.read_bitmap:x}",
                s.saved_at,
            )
            for s in new
        ]
        updates = [
            (p.host, p.port, p.write_seq, p.read_top, f"{p.read_bitmap:x}", p.saved_at, p.id)
            for p in progress
        ]
        with self._store.batch():
            conn = self._store.conn
            if inserts:
                conn.executemany(
                    "INSERT OR REPLACE INTO dtls_sessions(id, host, port, state, write_seq, "
                    "read_top, read_bitmap, saved_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                    inserts,
                )
            if updates:
                # max(): a reservation never moves backwards, whatever the caller sends
                conn.executemany(
                    "UPDATE dtls_sessions SET host=?, port=?, write_seq=max(write_seq, ?), "
                    "read_top=?, read_bitmap=?, saved_at=? WHERE id=?",
                    updates,
                )
            if removed:
                conn.executemany("DELETE FROM dtls_sessions WHERE id=?", [(i,) for i in removed])

    def remove_dtls_sessions(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._store.batch():
            self._store.conn.executemany(
                "DELETE FROM dtls_sessions WHERE id=?", [(i,) for i in ids]
            )

    def count(self) -> int:
        """How many sessions are stored (tests, the operator CLI)."""
        row = self._store.conn.execute("SELECT count(*) FROM dtls_sessions").fetchone()
        return int(row[0])

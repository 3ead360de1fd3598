"""``SqliteStore``: registrations, observations and telemetry, in the process's sqlite file.

The file, its durability (WAL, ``synchronous=NORMAL``), transactions (``batch()``, savepoints)
and error wording are ``keystore.store.database.SqliteDatabase``'s, which this class extends
with its tables; the credential, profile and DTLS-session stores share the same connection.
Every public write is one transaction; input is converted and checked *before* the transaction
starts, so invalid input never leaves a partial write.

A registration or observation row that cannot be read back (invalid JSON, a field of the wrong
type, a missing column value, columns that disagree with the record) is **quarantined** rather
than raised: it is moved to the ``quarantine`` table with the reason and the time, one WARNING
names its row id / endpoint and the reason, and the reader carries on without it. One bad row
(a disk error, a hand edit, a downgrade) must not stop a server that has 99,999 good ones from
starting, and an error that does not name the row leaves the operator nothing to fix.
``quarantined()`` is the count an operator's health check shows; the rows stay in the table
(``quarantined_rows()``) for inspection or repair.

**Group commit** (``enable_group_commit()``, what the server runs): the first write of a loop
iteration opens one transaction (``BEGIN IMMEDIATE``), every later write of the iteration is a
savepoint inside it (a failing write is still undone alone), and ``commit()`` — called by the
CoAP driver (``lwm2m_runtime.driver.Committer``) before the iteration's replies leave —
commits them all at once. One fsync-bearing commit per iteration instead of one per message,
and no reply precedes its write. A write made outside a datagram's handling (API, timers) is
committed by a ``call_soon`` the store arms when it opens the transaction, so nothing stays
uncommitted when no reply follows. ``batch()`` (the DTLS session store's writes) commits at
once, the pending writes of the iteration with it: a DTLS record held for its session row
leaves only when that row is durable. A commit that fails rolls the whole iteration back and
makes the next ``commit()`` return False, so the driver withholds those replies.

A group's keep-alives by ``rid`` and its Registers' times are **deferred** the same way:
each list runs as one ``executemany`` before the commit or before any other statement that
may read or write ``registration_times`` (``SqliteStore._flush_times``).

Telemetry in a group is **buffered**: ``append_points`` checks the points and keeps their rows;
they are inserted with one ``executemany`` per table when the group commits (or before a
telemetry read, which must see them). A notification then costs a list append instead of a
savepoint and two single-row statements. A failed insert rolls the whole iteration back, as a
failed commit does: the driver withholds the iteration's replies (a notification's ACK too),
and the devices retransmit.

**Checkpoints** in group commit run **off the loop**, in a thread with its own connection
(``checkpointer.Checkpointer``, started by ``enable_group_commit`` and joined by ``close``):
the loop sets the thread's ``Event`` every so many commits, as many as bring about
``THREAD_CHECKPOINT_PAGES`` (1000) WAL pages (the thread learns that from the result row of its
own checkpoint); the thread runs ``PRAGMA wal_checkpoint(PASSIVE)``, which takes no lock the
loop waits for, and sqlite releases the GIL while it copies and fsyncs. Why: sqlite's
autocheckpoint runs inside the commit that crosses its bound, i.e. on the event loop, and its
copy of the WAL's pages into the database (and the fsyncs) stalls every request in flight.

The loop's own autocheckpoint stays, at ``GROUP_CHECKPOINT_PAGES`` (2500), as the
**backstop** that restarts the WAL: under continuous commits a PASSIVE checkpoint from another
connection never finds the WAL wholly copied when the next write begins (frames arrive while
it copies), and only then does the writer start the WAL over; so only the writer's own
checkpoint lets it restart. It copies only what the thread has not: the thread times its last
pass before the backstop to come a commit short of it, so usually a commit or two of frames
(at worst one thread interval, ~1000 pages, what main's autocheckpoint copies every time);
when it meets the thread's checkpoint in the lock they share it skips its turn and the next
commit tries again.
The WAL stays small (``journal_size_limit`` cuts the file back to the backstop's size, ~10 MiB
at 4 KiB pages): session 9 first ran the backstop at 10,000 pages, and the server's CPU per
Register over sockets was 5-12 % above main's, most likely from the larger WAL (sqlite's
WAL-index lookups per page read grow with it). Durability is
unchanged: the thread's connection runs the store's ``synchronous``, a checkpoint copies only
committed frames, and a process killed mid-copy leaves a WAL the next open replays. A failing
checkpoint is logged (once a minute at most) and the backstop keeps the WAL bounded meanwhile.
``FALLBACK_CHECKPOINT_PAGES`` (1000) is the loop's autocheckpoint when no thread runs.
Figures: docs/performance.md, "Session 9: checkpoints off the loop (s9-checkpoint)".
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice
from pathlib import Path
from typing import Any, Self, TypeVar

import attrs

from keystore.resolver import IdentityBinding
from keystore.store.database import SqliteDatabase, dumps
from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint

from .checkpointer import Checkpointer
from .records import (
    check_point,
    observation_from_json,
    observation_to_json,
    point_from_row,
    registration_from_json,
    registration_text,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
"""2 added the registration columns the cheap Update (``touch_registration``) writes and the
lookups read (lifetime, host, port, identity, expires_at); a version-1 file is migrated in
place on open (``_migrate_v1``). 3: a registration record may store its object list as the
text alone (``records.registration_text``: ~300 bytes less per row, so an Update at 100k
clients walks fewer table pages, issue 10); the tables are unchanged and version-2 records
read as they are (``_migrate_v2`` only records the version), but a server of version 2 must
not open the file: it would quarantine every compact record as unreadable. 4: the telemetry
history keeps one index, ``(endpoint, path, ts_ms)``, instead of three, and the small
``telemetry_keys`` table says which paths of an endpoint have had points under a key (a history
by key reads those series through the index; retention prunes each series through it). Each
index cost ~4 µs per stored point and more as the table grew (issue 10; docs/performance.md,
"Telemetry indexes and the WAL after a Register storm"). ``_migrate_v3`` fills the table and
drops the two indexes; a server of version 3 must not open the file: its points would not
reach ``telemetry_keys`` and a history by key would miss them. Also in 4: the registrations'
identity index is partial, ``WHERE identity IS NOT NULL`` (``_IDENTITY_INDEX_SQL``).
5: a registration's two times, ``last_update`` and ``expires_at``, live in the narrow table
``registration_times`` (``_TIMES_SQL``) instead of the ``registrations`` row: a keep-alive
Update writes only them. ``_migrate_v4`` moves them in one transaction; a server of version 4
must not open the file: it would find no times in the rows."""

_IDENTITY_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS idx_registrations_identity_bound "
    "ON registrations(identity) WHERE identity IS NOT NULL"
)
"""The registrations' identity index holds only the rows that have an identity (DTLS/PSK,
RPK, X.509). A NoSec device's identity is NULL: with a full index its Register filed a
NULL entry no lookup reads (``registrations_by_identity`` asks ``identity = ?``, which
implies ``IS NOT NULL``, so sqlite uses this index for it, as
``tests/unit/store/test_registration_indexes.py`` checks). One B-tree insert less per NoSec
Register (issue 10; docs/performance.md, "Register: the store and the events"). Part of
schema 4 (not released before session 6): ``_index_registrations`` drops the full index
``idx_registrations_identity`` of older files, versions 2 and 3 and the first schema-4 builds
alike."""

_REGISTRATIONS_SQL = (
    "CREATE TABLE IF NOT EXISTS {name}(rid INTEGER PRIMARY KEY, id TEXT UNIQUE, "
    "endpoint TEXT NOT NULL, data TEXT NOT NULL, lifetime INTEGER, host TEXT, port INTEGER, "
    "identity TEXT)"
)
"""The registrations (schema 5; ``{name}``: the table's name). ``rid`` is the rowid, named so
that it is stable: ``registration_times`` is keyed by it, and ``VACUUM`` may renumber the
rowids of a table without an ``INTEGER PRIMARY KEY``. ``id`` (the registration id, what the
lookups go by) is ``UNIQUE``: the index the ``id TEXT PRIMARY KEY`` of versions 1-4 made."""
_TIMES_SQL = (
    "CREATE TABLE IF NOT EXISTS registration_times(rid INTEGER PRIMARY KEY, "
    "last_update REAL NOT NULL, expires_at REAL)"
)
"""A registration's two times, apart from its ~450-byte ``registrations`` row (schema 5),
keyed by that row's ``rid``.

Why: a keep-alive Update (nearly every Update) writes only these two, and sqlite writes a
whole page to the WAL for each page a group commit dirtied. ~8 wide rows share a page, so a
group of ~120 Updates of devices far apart in the table (the load generator's every-5th
client at 100k, or devices whose timers drifted apart) dirtied ~75 pages of it; ~150 of these
~25-byte rows share a page, and 100k of them fit in ~700 pages, which stay in sqlite's page
cache. Keyed by ``rid`` rather than by the registration id: a Register appends its times at
the end of the table (the id is random: keyed by it, every Register and Update dirtied a
random page, which measured slower than the wide row, docs/performance.md, "Session 8:
narrow keep-alive table"), and a keep-alive finds its row through the ``id`` index it reads
anyway to check the guard (``SqliteStore._KEEP_ALIVE_SQL``).

Every registration has its row here, written in the same transaction as its ``registrations``
row (the Register's group INSERT rolls the group back if the second statement fails) and
deleted with it; a reader joins the two ``LEFT``, so a ``registrations`` row without times (a
hand edit) still reads, from its JSON record's ``last_update``."""
_TIMES_EXPIRY_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS idx_registration_times_expires_at ON registration_times(expires_at)"
)
"""The expiry sweep's index (``expiring_before``): its entries are (expires_at, rid), so the
sweep reads them in its order and joins each to its row."""
_TIMES_PUT_SQL = (
    "INSERT OR REPLACE INTO registration_times(rid, last_update, expires_at) "
    "SELECT rid, ?, ? FROM registrations WHERE id = ?"
)
"""The times of the registration ``id`` (written or replaced; nothing when the id is gone)."""
_TIMES_NEW_SQL = (
    "INSERT INTO registration_times(rid, last_update, expires_at) "
    "VALUES(?, ?, ?) ON CONFLICT(rid) DO UPDATE SET "
    "last_update=excluded.last_update, expires_at=excluded.expires_at"
)
"""The times of a Register's new row (``rid``: the ``registrations`` INSERT's rowid), run for
the group's Registers in one ``executemany`` (``SqliteStore._flush_times``). The upsert: a row
left behind by a hand edit under a reused ``rid`` cannot fail it, it takes the new times (what
``OR REPLACE`` did before, by deleting and inserting the row: ~0.5 µs more per Register at
100k rows, the REPLACE conflict path's setup; docs/performance.md, "Session 9: Registers")."""

_TELEMETRY_KEYS_SQL = (
    "CREATE TABLE IF NOT EXISTS telemetry_keys(endpoint TEXT NOT NULL, key TEXT NOT NULL, "
    "path TEXT NOT NULL, PRIMARY KEY(endpoint, key, path)) WITHOUT ROWID"
)
"""The series (paths) of an endpoint that have had points under each key: one row per
(endpoint, key, path), written with the points (``INSERT OR IGNORE``: a probe of a small
B-tree, nothing written once the series is known), never deleted (like ``telemetry_latest``)."""
_SERIES_SQL = "INSERT OR IGNORE INTO telemetry_keys(endpoint, key, path) VALUES(?, ?, ?)"
_SERIES_KNOWN = 16_384
"""Series (endpoint, key, path) a store remembers as committed (``SqliteStore._series``):
~100 bytes each, most of it the tuple (its strings are the points' own)."""
_HISTORY_SQL = (
    "SELECT endpoint, path, key, ts_ms, type, value, id FROM telemetry "
    "WHERE endpoint = ? AND path = ? AND (key = ? OR path = ?) AND ts_ms >= ? AND ts_ms < ? "
    "ORDER BY ts_ms DESC, id DESC LIMIT ?"
)
"""One series, newest first, straight from the ``(endpoint, path, ts_ms)`` index (its entries
end with the rowid, ``id``): no sort, and it stops after ``LIMIT`` rows."""
_PRUNE_SQL = (
    "DELETE FROM telemetry WHERE rowid IN (SELECT rowid FROM telemetry "
    "WHERE endpoint = ? AND path IN (SELECT path FROM telemetry_keys WHERE endpoint = ?) "
    "AND ts_ms < ? LIMIT ?)"
)
"""An endpoint's oldest points, series by series through the ``(endpoint, path, ts_ms)``
index (the paths from ``telemetry_keys``, which has every series that has points)."""
MAX_HISTORY = 100_000
_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
"""``PRAGMA synchronous``'s answer by name: the checkpoint thread runs the store's setting."""

T = TypeVar("T")


@attrs.frozen
class QuarantinedRow:
    """A row moved out of ``registrations`` or ``observations`` because it could not be read."""

    kind: str
    """``registration`` or ``observation``."""
    key: str | None
    """The row's id (registration id, observation token in hex), as it was in the row."""
    endpoint: str | None
    reason: str
    quarantined_at: float
    """Unix time."""
    data: object
    """The row's ``data`` column exactly as it was stored."""


@attrs.frozen
class _BadRow:
    rowid: int
    key: object
    endpoint: object
    data: object
    reason: str


class SqliteStore(SqliteDatabase):
    """Implements ``RegistrationStore``, ``ObservationStore`` (``CoreStore``) and
    ``TelemetryStore``.

    ``shared``: whether other processes write this file too. The server opens it unshared (a
    sqlite file is served by one process: ``cluster.workers.refuse_reason``), so its
    registration book holds every registration after the start-up load and answers lookups by
    address from memory (``one_process``, ``RegistrationBook.complete``); the file then keeps
    no ``(host, port)`` index, whose upkeep was ~10-13 µs of a Register at 100k when devices
    share addresses (a group commit's Registers each land on another leaf page of it:
    docs/performance.md, "Session 8: Registers at 100k"). ``registrations_by_address`` stays
    correct without it (a scan nobody on the hot path calls). A shared handle (two "nodes" on
    one file, as the shared-store tests run it) reads by address and keeps the index; opening
    the file either way adds or drops it, nothing else differs."""

    def __init__(self, path: str | Path, *, shared: bool = False, **options: Any) -> None:
        self.one_process = not shared
        """No other process writes this file: the server's book needs no reads by address."""
        self._rids: dict[str, int] | None = {} if self.one_process else None
        """Registration id -> ``rid`` of its committed row, in a file no other process writes
        (``one_process``): what lets a keep-alive skip the guard (``_KEEP_ALIVE_BY_RID_SQL``).
        An entry is there only while the committed row of that ``rid`` is this id's, with the
        lifetime and address this process last wrote for it: filled at load (``registrations``)
        and, through ``_rids_pending``, by a group commit that wrote a new or moved row; popped
        by every write that deletes, renumbers or rewrites the row before that write runs;
        emptied when a group fails. A missing entry costs only the guarded statement."""
        self._rids_pending: dict[str, int] = {}
        """Entries the open group's writes make true once it commits (and only then)."""
        self._touches: list[tuple[float, float, int]] = []
        """Keep-alives by ``rid`` of the open group, not run yet: (last_update, expires_at,
        rid) for ``_KEEP_ALIVE_BY_RID_SQL`` (``_flush_times``)."""
        self._times_new: list[tuple[int, float, float]] = []
        """The times of the open group's new registrations, not inserted yet: (rid,
        last_update, expires_at) for ``_TIMES_NEW_SQL`` (``_flush_times``)."""
        super().__init__(path, **options)

    _grouping = False
    _group_open = False
    _group_failed = False
    _failed_commits = 0
    _next_failure_log = 0.0
    _points: list[tuple[str, str, str, int, str, str]] | None = None
    """Telemetry rows appended in the group, not inserted yet (module docstring)."""
    _series: set[tuple[str, str, str]] | None = None
    """``telemetry_keys`` rows (endpoint, key, path) this connection knows are committed, so the
    group's insert skips them: ``INSERT OR IGNORE`` of a known series writes nothing but still
    probes the table (~1 µs per stored point). Rows are never deleted from that table, so a
    committed one stays true; at most ``_SERIES_KNOWN`` are remembered (then forgotten at once,
    and re-learnt: the probe is only a cost)."""
    _series_pending: list[tuple[str, str, str]] | None = None
    """Series inserted in the open group: known once it commits, forgotten if it fails."""
    commits = 0
    """Group transactions committed (for metrics and tests)."""
    GROUP_CHECKPOINT_PAGES = 2_500
    """The backstop: WAL pages at which the loop's own commit checkpoints (sqlite's
    autocheckpoint) and so lets the WAL restart; the bound of the WAL file
    (``journal_size_limit``). Module docstring, "Checkpoints"."""
    THREAD_CHECKPOINT_PAGES = 1_000
    """WAL pages (about) between two wake-ups of the checkpoint thread: the copy main's
    autocheckpoint made on the loop, now in the thread."""
    FALLBACK_CHECKPOINT_PAGES = 1_000
    """The autocheckpoint when no thread runs (``Checkpointer.start`` declined)."""
    _checkpointer: Checkpointer | None = None

    # -- group commit (module docstring) ---------------------------------------------------------
    def enable_group_commit(self) -> None:
        self._grouping = True
        conn = self.conn
        if self._checkpointer is None:
            synchronous = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            checkpointer = self._new_checkpointer(_SYNCHRONOUS.get(synchronous, "FULL"))
            if checkpointer.start():
                self._checkpointer = checkpointer
        pages = (
            self.GROUP_CHECKPOINT_PAGES
            if self._checkpointer is not None
            else self.FALLBACK_CHECKPOINT_PAGES
        )
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")
        conn.execute(f"PRAGMA journal_size_limit={int(pages) * page_size}")

    def _new_checkpointer(self, synchronous: str) -> Checkpointer:
        """The checkpoint thread of this file (not started; a test replaces it)."""
        return Checkpointer(
            self.path,
            synchronous=synchronous,
            pages=self.THREAD_CHECKPOINT_PAGES,
            backstop=self.GROUP_CHECKPOINT_PAGES,
        )

    @property
    def checkpointer(self) -> Checkpointer | None:
        """The checkpoint thread, when group commit runs one (metrics and tests)."""
        return self._checkpointer

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        if self._touches or self._times_new:
            self._flush_times()  # before this write's statements, in their order
        if self._grouping and self._depth == 0:
            self._open_group()
        else:
            self._check_group()
        try:
            with super().write() as conn:
                yield conn
        except BaseException:
            # a failed statement may have made sqlite roll the whole transaction back
            # (SQLITE_FULL, IOERR, BUSY, NOMEM), rows whose ``rid`` the keep-alive map holds or
            # will hold included: every write on this connection (the credential, profile and
            # DTLS session stores' too) comes here, so none of it is trusted any more
            self._forget_rids()
            raise

    @contextmanager
    def batch(self) -> Iterator[Self]:
        """One transaction that is durable when the block ends, even inside a group."""
        with self.write():
            yield self
        if self._group_open and self._depth == 1 and not self._settle():
            raise StoreError(f"{self.path}: commit failed (the writes were rolled back)")

    def commit(self) -> bool:
        """The ``Committer`` hook: commit the iteration's writes; False when any write since
        the last call was rolled back by a failed commit (the caller withholds its replies).

        Only the CoAP driver may call it on the hot path: it *consumes* the failure flag, so
        another caller (an HTTP handler wanting its write durable before it answers) would
        hide a failed group from the driver, which would then acknowledge rolled-back device
        writes. HTTP API writes alone would be committed by ``_commit_pending`` one loop turn after
        the handler returns, so an answer could precede its commit and a failed commit would
        not be reported to the API caller unless it calls ``settle`` (which leaves the flag for the
        driver)."""
        ok = self._settle()
        failed, self._group_failed = self._group_failed, False
        return ok and not failed

    def settle(self) -> bool:
        """Commit the open group now; False when that commit failed. The failure stays
        flagged for the driver (which then withholds its replies too). For an HTTP handler
        that must not answer before its write is durable (``lwm2m_server.api.durability``),
        with ``failed_commits`` to see a group that failed while the handler awaited."""
        return self._settle()

    @property
    def failed_commits(self) -> int:
        """Groups rolled back so far (a handler compares it before and after its work)."""
        return self._failed_commits

    def close(self) -> None:
        if (self._group_open or self._points) and self._conn is not None:
            self._settle()
        # the thread and its connection first: the store's connection must be the last to
        # close (sqlite then checkpoints and removes the WAL) and the WAL index stays mapped
        # only while a connection holds it open
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        super().close()

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read sees the group's deferred times (``_flush_times``), as it sees its writes."""
        if self._touches or self._times_new:
            self._flush_times()
        return super().read(sql, params)

    def _settle(self) -> bool:
        """Run the deferred times, insert the buffered telemetry into the group and commit it;
        False: rolled back."""
        if (self._touches or self._times_new) and not self._flush_times():
            # the group is gone with them: so is the telemetry buffered in its iteration
            self._points = None
            if self._group_open and self._depth == 1:
                self._commit_group()  # the empty group ``_lose_group`` began
            return False
        if self._points and not self._insert_points():
            return False
        if self._group_open and self._depth == 1:
            return self._commit_group()
        return True

    def _insert_points(self) -> bool:
        """The buffered rows into the open group (opened if need be). A failure rolls the whole
        group back (its replies are withheld, ``_group_failed``): False."""
        rows, self._points = self._points, None
        if not rows:
            return True
        # directly in the group (not inside another write's savepoint, which its writer may roll
        # back alone): only then does the group's commit or failure decide the series' fate
        direct = self._grouping and (self._depth == 0 or (self._group_open and self._depth == 1))
        if direct:
            return self._insert_group_rows(rows)
        try:
            with self.write() as conn:
                self._insert_rows(conn, rows, grouped=False)
        except StoreError as exc:
            self._abort_group(exc)
            return False
        return True

    def _insert_group_rows(self, rows: Sequence[tuple[str, str, str, int, str, str]]) -> bool:
        """The group's buffered rows straight into its transaction, without the savepoint
        ``write()`` would open: a failure rolls the whole group back anyway, so the savepoint
        bought nothing, and it cost a sub-journal: sqlite keeps the original of every page a
        savepoint modifies (each history index page, the latest values' pages: ~100 pages of
        4 KiB per group of 64 notifications over 1000 series), past 64 KiB in a temporary file
        created, written and deleted per commit. ~6 µs per notification at 100k history rows
        (docs/performance.md, "Session 8: notifications over sockets")."""
        try:
            if self._depth == 0:
                self._open_group()
            self._insert_rows(self.conn, rows, grouped=True)
        except (sqlite3.Error, StoreError) as exc:
            self._abort_group(exc)
            return False
        return True

    def _insert_rows(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[tuple[str, str, str, int, str, str]],
        *,
        grouped: bool = False,
    ) -> None:
        """The rows into the history, the latest values and the series (``telemetry_keys``);
        ``grouped``: in the group's own transaction, whose commit ``_commit_group`` makes,
        so the series this connection knows committed are skipped (``_series``)."""
        conn.executemany(
            "INSERT INTO telemetry(endpoint, path, key, ts_ms, type, value) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO telemetry_latest(endpoint, path, key, ts_ms, type, value) "
            "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(endpoint, path) DO UPDATE SET "
            "key=excluded.key, ts_ms=excluded.ts_ms, type=excluded.type, "
            "value=excluded.value WHERE excluded.ts_ms >= telemetry_latest.ts_ms",
            rows,
        )
        if not grouped:
            conn.executemany(_SERIES_SQL, [(row[0], row[2], row[1]) for row in rows])
            return
        known = self._series
        if known is None:
            known = self._series = set()
        new = [series for row in rows if (series := (row[0], row[2], row[1])) not in known]
        if new:
            conn.executemany(_SERIES_SQL, new)
            pending = self._series_pending
            if pending is None:
                self._series_pending = new
            else:
                pending.extend(new)

    def _flush_times(self) -> bool:
        """The group's deferred times (``_times_new``, then ``_touches``), one ``executemany``
        each, straight in the group transaction; False when the group is gone (they went with
        it: the iteration's replies are withheld).

        Why deferred: a statement per Register and per keep-alive cost the sqlite3 module's
        per-call work each time (a cursor, the statement cache, a reset) and the caller's
        ``try``; ``executemany`` pays it once per group (~3k instructions less per keep-alive).
        Why that is safe: only ``registration_times`` rows are deferred, and every other
        statement that may read or write that table runs after them: ``write()``, ``read()``
        and ``_execute_one`` flush first, and the commit (``_settle``) runs them before it. The
        one statement that runs ahead, the Register's ``registrations`` INSERT, touches no
        times row. A keep-alive is deferred only by a ``rid`` whose committed row is its
        registration's (``_rids``); a write that deletes or renumbers that row flushes first.
        A failure (or a count of touched rows short of the keep-alives: a times row deleted
        behind the store's back) rolls the whole group back, as a failed Register times insert
        always did: the driver withholds the iteration's replies and the devices retransmit."""
        new, touches = self._times_new, self._touches
        conn = self._conn
        if conn is None or not self._group_open or not conn.in_transaction:
            # no group to run them in (a closed store), or sqlite rolled it back by itself:
            # they were the lost group's, whose replies are withheld (``_lose_group`` flags
            # it and begins the next group; running them now would begin a transaction of
            # their own that commits, and the loss would go unnoticed)
            new.clear()
            touches.clear()
            if conn is not None and self._group_open:
                self._lose_group(conn)
            return False
        self._times_new, self._touches = [], []
        try:
            if new:
                conn.executemany(_TIMES_NEW_SQL, new)
            if touches:
                touched = conn.executemany(self._KEEP_ALIVE_BY_RID_SQL, touches).rowcount
                if touched != len(touches):
                    raise sqlite3.DatabaseError(
                        f"{len(touches) - touched} keep-alive(s) found no times row"
                    )
        except sqlite3.Error as exc:
            self._abort_group(exc)
            return False
        return True

    def _failed(self, exc: Exception) -> None:
        """The iteration's writes were rolled back: the next ``commit()`` says so (logged once
        a minute: a full disk fails every iteration)."""
        self._group_failed = True
        self._failed_commits += 1
        self._forget_rids()
        self._touches.clear()  # deferred writes of the lost group
        self._times_new.clear()
        self._series_pending = None  # rolled back with the group
        now = time.monotonic()
        if now >= self._next_failure_log:
            self._next_failure_log = now + 60.0
            log.error(
                "%s: commit failed (%d so far), those iterations' writes were rolled back "
                "and their replies withheld: %s",
                self.path,
                self._failed_commits,
                exc,
            )

    def _open_group(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write: {exc}") from exc
        self._depth = 1
        self._group_open = True
        with suppress(RuntimeError):  # no loop (a script, a test): the caller commits
            asyncio.get_running_loop().call_soon(self._commit_pending)

    def _commit_pending(self) -> None:
        if self._points or (self._group_open and self._depth == 1):
            self._settle()

    def _commit_group(self) -> bool:
        self._group_open = False
        self._depth = 0
        conn = self.conn
        if not conn.in_transaction:
            # sqlite rolled the whole transaction back by itself: SQLITE_FULL, SQLITE_IOERR,
            # SQLITE_NOMEM and SQLITE_BUSY may do so on a failed statement (sqlite.org/lang_
            # transaction.html, "Response To Errors Within A Transaction"). The statement's own
            # request saw its error, but the writes of every other request of this iteration
            # are gone too: COMMIT would be a no-op that says success, and their replies would
            # acknowledge what is not stored.
            self._failed(sqlite3.OperationalError("the transaction was rolled back by sqlite"))
            return False
        try:
            conn.commit()
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.rollback()
            self._failed(exc)
            return False
        self.commits += 1
        pending_rids = self._rids_pending
        if pending_rids:
            rids = self._rids
            assert rids is not None  # pending only where kept
            rids.update(pending_rids)
            pending_rids.clear()
        checkpointer = self._checkpointer
        if checkpointer is not None:
            checkpointer.after_commit()
        pending = self._series_pending
        if pending is not None:
            self._series_pending = None
            known = self._series
            assert known is not None  # set by _insert_rows with the pending series
            if len(known) + len(pending) > _SERIES_KNOWN:
                known.clear()
            known.update(pending)
        return True

    def _create_schema(self) -> None:
        super()._create_schema()
        db = self.db
        self._migrate()
        known = self.check_schema("schema", SCHEMA_VERSION)
        self.conn.execute(_REGISTRATIONS_SQL.format(name="registrations"))
        self.conn.execute(_TIMES_SQL)
        self._index_registrations()
        db.table("observations").create(
            {"token": str, "endpoint": str, "registration_id": str, "data": str},
            pk="token",
            not_null={"endpoint", "registration_id", "data"},
            if_not_exists=True,
        )
        db.table("observations").create_index(["endpoint"], if_not_exists=True)
        db.table("observations").create_index(["registration_id"], if_not_exists=True)
        db.table("telemetry").create(
            {
                "id": int,
                "endpoint": str,
                "path": str,
                "key": str,
                "ts_ms": int,
                "type": str,
                "value": str,
            },
            pk="id",
            not_null={"endpoint", "path", "key", "ts_ms", "type", "value"},
            if_not_exists=True,
        )
        # the one index of the history (SCHEMA_VERSION 4): every read and retention's deletes
        # go through it, series by series (``history``, ``prune_history``)
        db.table("telemetry").create_index(["endpoint", "path", "ts_ms"], if_not_exists=True)
        self.conn.execute(_TELEMETRY_KEYS_SQL)
        db.table("telemetry_latest").create(
            {"endpoint": str, "path": str, "key": str, "ts_ms": int, "type": str, "value": str},
            pk=("endpoint", "path"),
            not_null={"key", "ts_ms", "type", "value"},
            if_not_exists=True,
        )
        db.table("quarantine").create(
            {
                "id": int,
                "kind": str,
                "row_key": str,
                "endpoint": str,
                "data": str,
                "reason": str,
                "quarantined_at": float,
            },
            pk="id",
            not_null={"kind", "reason", "quarantined_at"},
            if_not_exists=True,
        )
        if not known:
            self.record_schema("schema", SCHEMA_VERSION)

    def _index_registrations(self) -> None:
        table = self.db.table("registrations")
        table.create_index(["endpoint"], unique=True, if_not_exists=True)
        if self.one_process:  # the book answers by address (class docstring)
            self.conn.execute("DROP INDEX IF EXISTS idx_registrations_host_port")
        else:
            table.create_index(["host", "port"], if_not_exists=True)
        conn = self.conn
        conn.execute(_TIMES_EXPIRY_INDEX_SQL)
        conn.execute("DROP INDEX IF EXISTS idx_registrations_identity")  # the full one
        conn.execute(_IDENTITY_INDEX_SQL)

    def _migrate(self) -> None:
        """Bring an older file to ``SCHEMA_VERSION`` one version at a time, each step in its
        own transaction with the version it reaches (a server stopped in between carries on
        from there at the next open)."""
        steps: dict[int, Callable[[sqlite3.Connection], None]] = {
            1: _migrate_v1,
            2: _migrate_v2,
            3: _migrate_v3,
            4: _migrate_v4,
        }
        row = self.conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        version = None if row is None else int(row[0])
        while version in steps:
            with self.write() as conn:
                steps[version](conn)
                version += 1
                conn.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(version),))
            log.info("%s: migrated to schema version %d", self.path, version)

    # -- registrations -----------------------------------------------------------------------
    # the JSON ``data`` holds the record; the touch columns (last_update from
    # ``registration_times``, lifetime, host, port) are newer when an Update only touched them,
    # so the reader takes those from the columns
    _REG_COLUMNS = "r.rid, r.id, r.endpoint, r.data, t.last_update, r.lifetime, r.host, r.port"
    _REG_FROM = "registrations AS r LEFT JOIN registration_times AS t ON t.rid = r.rid"
    _REG_SELECT = f"SELECT {_REG_COLUMNS} FROM {_REG_FROM}"

    _REPLACED_SQL = f"{_REG_SELECT} WHERE r.endpoint = ? AND r.id != ?"
    _INSERT_SQL = (
        "INSERT INTO registrations(id, endpoint, data, lifetime, host, port, identity) "
        "VALUES(?, ?, ?, ?, ?, ?, ?)"
    )
    _INSERT_NEW_SQL = f"{_INSERT_SQL} ON CONFLICT(endpoint) DO NOTHING"
    _INSERT_NEW_NOSEC_SQL = (
        "INSERT INTO registrations(id, endpoint, data, lifetime, host, port, identity) "
        "VALUES(?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(endpoint) DO NOTHING"
    )
    """``_INSERT_NEW_SQL`` of a NoSec registration (no identity): the NULL written in the
    statement rather than bound. The sqlite3 module hands every parameter that is not an
    exact int, float, str or bytes (None included) to its adapter lookup (a key tuple, a dict
    probe, two attribute lookups): ~0.3 µs per Register on the development machine."""
    _PUT_SQL = (
        f"{_INSERT_SQL} "
        "ON CONFLICT(id) DO UPDATE SET endpoint=excluded.endpoint, data=excluded.data, "
        "lifetime=excluded.lifetime, host=excluded.host, port=excluded.port, "
        "identity=excluded.identity"
    )
    _KEEP_ALIVE_SQL = (
        "UPDATE registration_times SET last_update=?, expires_at=? WHERE rid=("
        "SELECT rid FROM registrations WHERE id=? AND lifetime=? AND host=? AND port=?)"
    )
    """A keep-alive: the two times, provided the registration's row holds this lifetime and
    address (read through the id index, not written: only ``registration_times`` gets a dirty
    page); no row when it does not (the subquery is NULL)."""

    _KEEP_ALIVE_BY_RID_SQL = "UPDATE registration_times SET last_update=?, expires_at=? WHERE rid=?"
    """A keep-alive of a registration whose committed row this process knows (``_rids``): the
    guard of ``_KEEP_ALIVE_SQL`` read the row through the id index to learn what the map says
    (the row is this id's, with this lifetime and address), ~1/3 of the statement's
    instructions, and at 100k rows two pages sqlite's page cache rarely holds."""

    def _check_group(self) -> None:
        """Before a write in the open group: has sqlite rolled the group back by itself (a
        failed statement of any store on this connection: SQLITE_FULL, IOERR, NOMEM, BUSY)?
        Then the next statement would begin a transaction of its own (sqlite3 opens one
        before a DML statement; a SAVEPOINT outside a transaction is a BEGIN), whose COMMIT
        succeeds, and ``_commit_group`` could no longer tell that the iteration's earlier
        writes are gone: ``_lose_group`` flags it now."""
        conn = self._conn
        if self._group_open and conn is not None and not conn.in_transaction:
            self._lose_group(conn)

    def _lose_group(self, conn: sqlite3.Connection) -> None:
        """The open group is gone (``_check_group``): the iteration's commit reports failure
        (its replies are withheld, as for a failed COMMIT; ``_failed`` also forgets the
        ``rid`` entries the lost group was to make true, or a ``rid`` it had would be reused
        by a later Register and keyed to two ids), and the rest of the iteration's writes
        go into a new group transaction as usual."""
        self._failed(sqlite3.OperationalError("the transaction was rolled back by sqlite"))
        with suppress(sqlite3.Error):  # if it cannot begin, the write itself will say so
            conn.execute("BEGIN IMMEDIATE")

    def _forget_rids(self) -> None:
        """A group failed (or sqlite rolled it back): what its writes did is undone, so trust
        no entry (each comes back at the next load; meanwhile the guarded statement)."""
        if self._rids is not None:
            self._rids.clear()
        self._rids_pending.clear()

    def _unkeep(self, registration_id: str) -> int | None:
        """A write is about to delete, renumber or rewrite ``registration_id``'s row: its
        entry goes now (the write may commit or not); returns the ``rid`` it had."""
        rids = self._rids
        if rids is None:
            return None
        self._rids_pending.pop(registration_id, None)
        return rids.pop(registration_id, None)

    def _keep_after_commit(self, registration_id: str, rid: int | None) -> None:
        """``registration_id``'s row is ``rid`` in the open group, with what this process wrote
        for it: true once that group commits (``_commit_group``), dropped if it fails. Only
        inside the group (a write outside group commit commits alone: no entry, the guarded
        statement serves)."""
        if rid is not None and self._rids is not None and self._group_open:
            self._rids_pending[registration_id] = rid

    def put_registration(self, registration: Registration) -> Registration | None:
        """Write ``registration``; return the registration of its endpoint it replaces.

        The common case, an endpoint with no row yet, is one INSERT straight in the loop
        iteration's group transaction, ``ON CONFLICT(endpoint) DO NOTHING``: when a row of this
        endpoint is there it inserts nothing (rowcount 0; the unique index is probed first, no
        exception), and only then is the old row looked up, deleted and replaced in a savepoint
        (``write()``). A single statement is atomic by itself, and it runs under the group's
        write lock, so no other process can add a row in between. Before, every Register ran a
        SELECT by endpoint first, then the INSERT (docs/performance.md, "Register path
        (session 5)"). An id already taken (48 random bits: against all odds) raises
        ``IntegrityError``, undone alone (sqlite's ABORT), and the savepoint path upserts.
        The times go to ``registration_times`` with the group's other Registers' in one
        ``executemany`` before anything reads them (``_flush_times``); if that fails, the whole
        group is rolled back (its replies withheld, as for a failed commit), so no
        registration is ever left without its times."""
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        reg_id, endpoint, last_update = (
            registration.registration_id,
            registration.endpoint,
            registration.last_update,
        )
        data = registration_text(registration)
        # ``_reg_columns`` written out (every Register): ``expires_at`` is the property's sum
        address, lifetime, bound = (
            registration.address,
            registration.lifetime,
            registration.identity,
        )
        host, port, expires_at = address.host, address.port, last_update + lifetime
        identity = None if bound is None else _identity_key(bound)
        conn = self._group_connection()
        if conn is not None:
            if not conn.in_transaction:
                self._lose_group(conn)  # ``_check_group`` written out (every Register)
            try:
                if identity is None:
                    cursor = conn.execute(
                        self._INSERT_NEW_NOSEC_SQL,
                        (reg_id, endpoint, data, lifetime, host, port),
                    )
                else:
                    cursor = conn.execute(
                        self._INSERT_NEW_SQL,
                        (reg_id, endpoint, data, lifetime, host, port, identity),
                    )
                new = cursor.rowcount
            except sqlite3.IntegrityError:
                new = 0  # the id is taken (48 random bits: against all odds): upserted below
            except sqlite3.Error as exc:
                self._forget_rids()  # as in ``write``: the group may be gone
                raise StoreError(f"{self.path}: write failed: {exc}") from exc
            if new:
                rid: int = cursor.lastrowid  # type: ignore[assignment]
                # its times: inserted with the group's others before anything reads them
                self._times_new.append((rid, last_update, expires_at))
                if self._rids is not None:  # ``_keep_after_commit`` written out (every Register)
                    self._rids_pending[reg_id] = rid
                return None
            # else the endpoint has a row: replaced below
        self._unkeep(reg_id)
        with self.write() as conn:
            rows = conn.execute(self._REPLACED_SQL, (endpoint, reg_id)).fetchall()
            for row in rows:
                self._unkeep(row[1])
            # a corrupt old row of this endpoint is quarantined (not returned), then replaced
            replaced = next(iter(self._registrations_of(rows, conn)), None)
            in_place = (
                len(rows) == 1
                and replaced is not None
                and self._replace_in_place(conn, rows[0], replaced, registration, data)
            )
            if not in_place:
                for row in rows:
                    self._delete_registration(conn, row[1])
                conn.execute(
                    self._PUT_SQL, (reg_id, endpoint, data, lifetime, host, port, identity)
                )
                conn.execute(_TIMES_PUT_SQL, (last_update, expires_at, reg_id))
        if in_place:  # the endpoint's row, renumbered to this id (the upsert's: not known)
            self._keep_after_commit(reg_id, rows[0][0])
        return replaced

    def _abort_group(self, exc: Exception) -> None:
        """Roll the open group back (a statement of a write that must be whole failed after
        another succeeded, outside a savepoint): the driver withholds the iteration's replies
        (``_failed``), as after a failed commit."""
        with suppress(sqlite3.Error):
            self.conn.rollback()
        self._group_open = False
        self._depth = 0
        self._failed(exc)

    @staticmethod
    def _replace_in_place(
        conn: sqlite3.Connection,
        row: tuple[Any, ...],
        old: Registration,
        new: Registration,
        data: str,
    ) -> bool:
        """A re-Register: the endpoint's row takes the new registration, its observations go.

        Why an UPDATE of the row rather than a DELETE and an INSERT: the row is in five B-trees
        (the table, the id, endpoint, address and identity indexes), and a DELETE plus an
        INSERT changes all ten entries. The UPDATE assigns only the indexed columns that
        differ (sqlite re-files every index whose columns an UPDATE assigns), so the
        endpoint's entry stays and, for a device registering again from its address with its
        identity, only the id entry moves. False when the row is gone (then the caller
        inserts)."""
        rowid, old_id, host_column, port_column = row[0], row[1], row[6], row[7]
        lifetime, host, port, identity, expires_at = _reg_columns(new)
        new_id = new.registration_id
        assignments = "id=?, data=?, lifetime=?"
        values: list[Any] = [new_id, data, lifetime]
        if host_column != host or port_column != port:
            assignments += ", host=?, port=?"
            values += [host, port]
        if identity is not None or old.identity is not None:
            assignments += ", identity=?"
            values.append(identity)
        conn.execute("DELETE FROM observations WHERE registration_id = ?", (old_id,))
        cursor = conn.execute(
            f"UPDATE registrations SET {assignments} WHERE rowid = ? AND id = ?",
            (*values, rowid, old_id),
        )
        if cursor.rowcount <= 0:
            return False
        conn.execute(
            "INSERT OR REPLACE INTO registration_times(rid, last_update, expires_at) "
            "VALUES(?, ?, ?)",
            (rowid, new.last_update, expires_at),
        )
        return True

    def update_registration(self, registration: Registration) -> bool:
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        data = registration_text(registration)
        lifetime, host, port, identity, expires_at = _reg_columns(registration)
        reg_id = registration.registration_id
        rid = self._unkeep(reg_id)
        with self.write() as conn:
            cursor = conn.execute(
                "UPDATE registrations SET data=?, lifetime=?, host=?, port=?, identity=? "
                "WHERE id=? AND endpoint=?",
                (data, lifetime, host, port, identity, reg_id, registration.endpoint),
            )
            if cursor.rowcount <= 0:
                return False
            conn.execute(_TIMES_PUT_SQL, (registration.last_update, expires_at, reg_id))
        self._keep_after_commit(reg_id, rid)
        return True

    def touch_registration(self, registration: Registration, *, moved: bool = True) -> bool:
        """The JSON record not rewritten (issue 10's hot path); a keep-alive (``moved=False``:
        same lifetime, same address, nearly every Update) is one UPDATE of the two times in
        ``registration_times``, provided the registration's row holds that lifetime and
        address.

        Why: sqlite rewrites the entries of every index whose columns an UPDATE assigns,
        changed or not, so assigning host and port re-filed the device in the (host, port)
        index on every Update: a random B-tree page, measured ~15 µs per Update with 100k rows
        in random order (40 µs against 24 µs for the statement and its share of the commit).
        And the times in their narrow table (``_TIMES_SQL``) make the keep-alive dirty a page
        of ~150 small rows instead of one of ~8 wide ones.

        In a file no other process writes (``one_process``, the server's), a registration
        whose committed row this store knows (``_rids``) is touched by that row's ``rid``
        alone (``_KEEP_ALIVE_BY_RID_SQL``): the guard guards against another process's
        writes, and this process's own writes keep the map true (the caller's ``moved=False``
        says lifetime and address are the ones stored). ~10k instructions less per keep-alive
        (of ~30k for the statement and its share of the commit), and no read of the id index
        and the wide row, which at 100k registrations are rarely in sqlite's page cache."""
        reg_id = registration.registration_id
        address = registration.address
        if not moved:
            lifetime = registration.lifetime
            last_update = registration.last_update
            rids = self._rids
            rid = None if rids is None else rids.get(reg_id)
            if rid is not None:
                # the committed row is this id's with this lifetime and address (``_rids``):
                # nothing to guard
                params = (last_update, last_update + lifetime, rid)
                if self._grouping and self._depth <= 1:
                    # in the loop iteration's group (opened if need be), not inside a
                    # ``batch()``: run with the group's others before its commit or any
                    # statement that may see it (``_flush_times``)
                    if self._depth == 0:
                        self._open_group()
                    self._touches.append(params)
                    return True
                cursor = self._execute_one(self._KEEP_ALIVE_BY_RID_SQL, params)
            else:
                # guarded: when the row says otherwise (another process stored another
                # address) the full update below writes what this Update says
                cursor = self._execute_one(
                    self._KEEP_ALIVE_SQL,
                    (
                        last_update,
                        last_update + lifetime,  # ``expires_at``, written out (every keep-alive)
                        reg_id,
                        lifetime,
                        address.host,
                        address.port,
                    ),
                )
            if cursor.rowcount > 0:
                return True
        rid = self._unkeep(reg_id)
        with self.write() as conn:
            cursor = conn.execute(
                "UPDATE registrations SET lifetime=?, host=?, port=? WHERE id=?",
                (registration.lifetime, address.host, address.port, reg_id),
            )
            if cursor.rowcount <= 0:
                return False
            conn.execute(
                _TIMES_PUT_SQL, (registration.last_update, registration.expires_at, reg_id)
            )
        self._keep_after_commit(reg_id, rid)
        return True

    def _execute_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """One statement in the open group transaction, without the savepoint ``write()``
        wraps around every write: a single statement is atomic by itself (sqlite undoes a
        failed one alone, the transaction stays open), and the SAVEPOINT/RELEASE pair costs
        as much as the UPDATE of a keep-alive (issue 10's hot path). Outside group commit, or
        inside a ``batch()``, it is an ordinary ``write()``."""
        if self._touches or self._times_new:
            self._flush_times()  # the guarded keep-alive reads the times: after them
        conn = self._conn
        if conn is None or not self._grouping or self._depth != 1:
            # the group transaction is not open (depth 1) in this iteration yet, or this is
            # not group commit: the general path (with its open group, depth 1, a keep-alive
            # skips two calls: ``_group_connection`` and the ``conn`` property)
            conn = self._group_connection()
        elif not conn.in_transaction:
            self._lose_group(conn)  # ``_check_group`` written out (every keep-alive)
        if conn is None:
            with self.write() as conn:
                return conn.execute(sql, params)
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            self._forget_rids()  # as in ``write``: the group may be gone
            raise StoreError(f"{self.path}: write failed: {exc}") from exc

    def _group_connection(self) -> sqlite3.Connection | None:
        """The connection, when statements may run straight in the loop iteration's group
        transaction (opened here if needed); None outside group commit or inside a
        ``batch()``/``write()``, where the caller uses ``write()``."""
        if not self._grouping or self._depth > 1:
            return None
        if self._depth == 0:
            self._open_group()
        return self.conn

    def put_registrations(self, registrations: Iterable[Registration]) -> int:
        """Many registrations in one transaction; returns how many were written."""
        regs = list(registrations)
        with self.batch():
            for reg in regs:
                self.put_registration(reg)
        return len(regs)

    def remove_registration(
        self, registration_id: str, *, expires_at: float | None = None
    ) -> Registration | None:
        self._unkeep(registration_id)
        with self.write() as conn:
            if expires_at is None:
                rows = conn.execute(
                    f"{self._REG_SELECT} WHERE r.id = ?", (registration_id,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"{self._REG_SELECT} WHERE r.id = ? AND t.expires_at = ?",
                    (registration_id, expires_at),
                ).fetchall()
            if not rows:
                return None
            found = self._registrations_of(rows, conn)
            self._delete_registration(conn, registration_id)
        return found[0] if found else None

    def get_registration(self, registration_id: str) -> Registration | None:
        rows = self.read(f"{self._REG_SELECT} WHERE r.id = ?", (registration_id,))
        return next(iter(self._registrations_of(rows)), None)

    def registration_by_endpoint(self, endpoint: str) -> Registration | None:
        rows = self.read(f"{self._REG_SELECT} WHERE r.endpoint = ?", (endpoint,))
        return next(iter(self._registrations_of(rows)), None)

    def registrations_by_address(self, address: Address) -> list[Registration]:
        rows = self.read(
            f"{self._REG_SELECT} WHERE r.host = ? AND r.port = ? ORDER BY t.last_update, r.id",
            (address.host, address.port),
        )
        return self._registrations_of(rows)

    def registrations_by_identity(self, identity: IdentityBinding) -> list[Registration]:
        rows = self.read(
            f"{self._REG_SELECT} WHERE r.identity = ? ORDER BY t.last_update, r.id",
            (_identity_key(identity),),
        )
        return self._registrations_of(rows)

    def expiring_before(self, t: float, limit: int) -> list[Registration]:
        # the times first (CROSS JOIN fixes the order: through their expiry index, in its
        # order), each joined to its row by id
        rows = self.read(
            f"SELECT {self._REG_COLUMNS} FROM registration_times AS t "
            "CROSS JOIN registrations AS r ON r.rid = t.rid "
            "WHERE t.expires_at < ? ORDER BY t.expires_at, r.id LIMIT ?",
            (t, limit),
        )
        return self._registrations_of(rows)

    def registrations(self) -> list[Registration]:
        """Every readable registration; unreadable rows are quarantined (module docstring)."""
        rows = self.read(self._REG_SELECT)
        try:
            # in (last_update, id) order, sorted here: sqlite's ORDER BY sorts the whole rows
            # (the JSON records too) in its sorter, ~40 % of this read at 100k (the restart)
            rows.sort(key=_last_update_and_id)
        except TypeError:  # a column of another type, or no times: sqlite orders mixed types
            rows = self.read(f"{self._REG_SELECT} ORDER BY t.last_update, r.id")
        registrations = self._registrations_of(rows)
        self._keep_loaded(rows, registrations)
        return registrations

    def _keep_loaded(
        self, rows: Sequence[tuple[Any, ...]], registrations: Sequence[Registration]
    ) -> None:
        """The ``rid`` of every registration read at load (the book restores them, so its
        keep-alives need no guard), when what was read is the committed file: outside any
        transaction. Keyed by the registration's own id object (no second string per
        registration)."""
        rids = self._rids
        conn = self._conn
        if rids is None or conn is None or conn.in_transaction:
            return
        # a row without times (a hand edit) is not kept: its keep-alive goes guarded, finds
        # no times and writes them in full (a deferred one by rid would fail its group)
        rid_of = {row[1]: row[0] for row in rows if row[4] is not None}
        for registration in registrations:
            reg_id = registration.registration_id
            rid = rid_of.get(reg_id)
            if type(rid) is int:
                rids[reg_id] = rid

    @staticmethod
    def _delete_registration(conn: sqlite3.Connection, registration_id: str) -> None:
        conn.execute("DELETE FROM observations WHERE registration_id = ?", (registration_id,))
        conn.execute(
            "DELETE FROM registration_times WHERE rid IN "
            "(SELECT rid FROM registrations WHERE id = ?)",
            (registration_id,),
        )
        conn.execute("DELETE FROM registrations WHERE id = ?", (registration_id,))

    def _registrations_of(
        self, rows: Sequence[tuple[Any, ...]], conn: sqlite3.Connection | None = None
    ) -> list[Registration]:
        def decode(row: tuple[Any, ...]) -> Registration:
            # the touch columns are newer when Updates only touched the row; a migrated row
            # whose columns could not be filled (NULLs) reads from its JSON alone, a row
            # without times (no ``registration_times`` row: a hand edit) its last_update
            _, reg_id, endpoint, data, last_update, lifetime, host, port = row
            record = _json_object(data)
            if last_update is None:
                last_update = record.get("last_update")
            reg = registration_from_json(record, last_update, lifetime, host, port)
            _agree("id", reg_id, reg.registration_id)
            _agree("endpoint", endpoint, reg.endpoint)
            return reg

        return self._decode_rows("registration", "registrations", rows, decode, conn)

    # -- observations ------------------------------------------------------------------------
    _OBS_COLUMNS = "rowid, token, endpoint, data, registration_id"

    def put_observation(self, observation: Observation) -> None:
        if not isinstance(observation, Observation):
            raise StoreError(f"expected an Observation, got {type(observation).__name__}")
        data = dumps(observation_to_json(observation))
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO observations(token, endpoint, registration_id, data) "
                "VALUES(?, ?, ?, ?)",
                (observation.token.hex(), observation.endpoint, observation.registration_id, data),
            )

    def remove_observation(self, token: bytes) -> Observation | None:
        with self.write() as conn:
            rows = conn.execute(
                f"SELECT {self._OBS_COLUMNS} FROM observations WHERE token = ?", (token.hex(),)
            ).fetchall()
            if not rows:
                return None
            found = self._observations_of(rows, conn)
            conn.execute("DELETE FROM observations WHERE token = ?", (token.hex(),))
        return found[0] if found else None

    def observation_by_token(self, token: bytes) -> Observation | None:
        rows = self.read(
            f"SELECT {self._OBS_COLUMNS} FROM observations WHERE token = ?", (token.hex(),)
        )
        return next(iter(self._observations_of(rows)), None)

    def observations_by_endpoint(self, endpoint: str) -> list[Observation]:
        rows = self.read(
            f"SELECT {self._OBS_COLUMNS} FROM observations WHERE endpoint = ? ORDER BY token",
            (endpoint,),
        )
        return self._observations_of(rows)

    def observations(self) -> list[Observation]:
        """Every readable observation; unreadable rows are quarantined (module docstring)."""
        rows = self.read(f"SELECT {self._OBS_COLUMNS} FROM observations ORDER BY token")
        return self._observations_of(rows)

    def _observations_of(
        self, rows: Sequence[tuple[Any, ...]], conn: sqlite3.Connection | None = None
    ) -> list[Observation]:
        def decode(row: tuple[Any, ...]) -> Observation:
            _, token, endpoint, data, registration_id = row
            obs = observation_from_json(_json_object(data))
            _agree("token", token, obs.token.hex())
            _agree("endpoint", endpoint, obs.endpoint)
            _agree("registration_id", registration_id, obs.registration_id)
            return obs

        return self._decode_rows("observation", "observations", rows, decode, conn)

    # -- quarantine --------------------------------------------------------------------------
    def quarantined(self) -> int:
        """How many rows have been quarantined (ever, until an operator deletes them)."""
        return int(self.read("SELECT count(*) FROM quarantine")[0][0])

    def quarantined_rows(self, limit: int = 100) -> list[QuarantinedRow]:
        """The most recently quarantined rows first."""
        rows = self.read(
            "SELECT kind, row_key, endpoint, reason, quarantined_at, data FROM quarantine "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [QuarantinedRow(*row) for row in rows]

    def _decode_rows(
        self,
        kind: str,
        table: str,
        rows: Sequence[tuple[Any, ...]],
        decode: Callable[[tuple[Any, ...]], T],
        conn: sqlite3.Connection | None,
    ) -> list[T]:
        """``decode`` of each row; rows it cannot decode are quarantined (in ``conn``'s
        transaction when the caller is inside one, else in a transaction of their own)."""
        good: list[T] = []
        bad: list[_BadRow] = []
        for row in rows:
            try:
                good.append(decode(row))
            except Exception as exc:  # whatever a corrupt row raises, it is one bad row
                bad.append(_BadRow(row[0], row[1], row[2], row[3], _reason(exc)))
        if bad:
            if conn is not None:
                self._quarantine(conn, kind, table, bad)
            else:
                with self.write() as own:
                    self._quarantine(own, kind, table, bad)
        return good

    def _quarantine(
        self, conn: sqlite3.Connection, kind: str, table: str, bad: Sequence[_BadRow]
    ) -> None:
        now = time.time()
        for row in bad:
            conn.execute(
                "INSERT INTO quarantine(kind, row_key, endpoint, data, reason, quarantined_at) "
                "VALUES(?, ?, ?, ?, ?, ?)",
                (kind, row.key, row.endpoint, row.data, row.reason, now),
            )
            if kind == "registration" and row.key is not None:
                if isinstance(row.key, str):
                    self._unkeep(row.key)
                # its observations cannot be used without it (the device registers again)
                conn.execute("DELETE FROM observations WHERE registration_id = ?", (row.key,))
                conn.execute("DELETE FROM registration_times WHERE rid = ?", (row.rowid,))
            conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (row.rowid,))
            log.warning(
                "%s: corrupt %s row %r (endpoint %r) moved to the quarantine table: %s",
                self.path,
                kind,
                row.key,
                row.endpoint,
                row.reason,
            )

    # -- telemetry ---------------------------------------------------------------------------
    def append_points(self, points: Iterable[TelemetryPoint]) -> int:
        try:
            rows = [check_point(p) for p in points]
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: invalid telemetry point, nothing written: {exc}"
            ) from exc
        if not rows:
            return 0
        if self._grouping:
            pending = self._points
            if pending is not None:
                pending.extend(rows)
                return len(rows)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop (a script, a test): written now
            else:
                self._points = rows
                if not self._group_open:  # an open group has its commit armed already
                    loop.call_soon(self._commit_pending)
                return len(rows)
        with self.write() as conn:
            self._insert_rows(conn, rows)
        return len(rows)

    def _pending_points(self) -> None:
        """A telemetry read sees the rows buffered in the group (inserted now, committed
        with the group)."""
        if self._points:
            self._insert_points()

    def latest(self, endpoint: str) -> dict[str, TelemetryPoint]:
        self._pending_points()
        rows = self.read(
            "SELECT endpoint, path, key, ts_ms, type, value FROM telemetry_latest "
            "WHERE endpoint = ? ORDER BY path",
            (endpoint,),
        )
        return {r[1]: self._decode_point(r) for r in rows}

    def history(
        self,
        endpoint: str,
        key: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        if not 1 <= limit <= MAX_HISTORY:
            raise StoreError(f"history limit must be 1..{MAX_HISTORY}, got {limit}")
        self._pending_points()
        lo = -(2**63) if since_ms is None else since_ms
        hi = 2**63 - 1 if until_ms is None else until_ms
        # the series with points under ``key``, and ``key`` itself as a path: a point matches
        # by its key or by its path (``telemetry_keys``, SCHEMA_VERSION)
        paths = {key}
        paths.update(
            r[0]
            for r in self.read(
                "SELECT path FROM telemetry_keys WHERE endpoint = ? AND key = ?", (endpoint, key)
            )
        )
        series = [
            self.read(_HISTORY_SQL, (endpoint, path, key, key, lo, hi, limit))
            for path in sorted(paths)
        ]
        rows: Iterable[tuple[Any, ...]] = series[0]
        if len(series) > 1:
            try:  # each newest first: merged by (ts_ms, id), as one ORDER BY would
                rows = list(heapq.merge(*series, key=_ts_and_id, reverse=True))
            except TypeError as exc:  # a hand-edited ts_ms of another type
                raise StoreError(f"{self.path}: corrupt telemetry row: {exc}") from exc
        return [self._decode_point(r[:6]) for r in islice(rows, limit)]

    # -- telemetry retention (lwm2m_server.telemetry_retention) ---------------------------------
    def telemetry_endpoints(self, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` endpoints with telemetry, in order, after ``after``: a retention
        pass walks them page by page (the latest-value table is small and keyed by endpoint)."""
        self._pending_points()
        rows = self.read(
            "SELECT DISTINCT endpoint FROM telemetry_latest WHERE endpoint > ? "
            "ORDER BY endpoint LIMIT ?",
            ("" if after is None else after, limit),
        )
        return [str(r[0]) for r in rows]

    def prune_history(self, endpoint: str, before_ms: int, limit: int) -> int:
        """Delete at most ``limit`` history points of ``endpoint`` older than ``before_ms``;
        the number deleted. One small statement (retention runs a batch per loop turn); the
        latest values (``telemetry_latest``) are never touched."""
        with self.write() as conn:
            cursor = conn.execute(_PRUNE_SQL, (endpoint, endpoint, before_ms, limit))
            return max(0, cursor.rowcount)

    def _decode_point(self, row: tuple[Any, ...]) -> TelemetryPoint:
        try:
            return point_from_row(*row)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: corrupt telemetry row: {exc}") from exc


# -- schema migrations (SqliteStore._migrate) ------------------------------------------------------


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Add the version-2 columns to a version-1 file and fill them from each row's JSON
    (a row whose JSON cannot say keeps NULLs: it reads from its JSON alone, and is
    quarantined on read if that is corrupt too)."""
    for column, kind in (
        ("lifetime", "INTEGER"),
        ("host", "TEXT"),
        ("port", "INTEGER"),
        ("identity", "TEXT"),
        ("expires_at", "REAL"),
    ):
        conn.execute(f"ALTER TABLE registrations ADD COLUMN {column} {kind}")
    rows = conn.execute("SELECT id, data FROM registrations").fetchall()
    for reg_id, data in rows:
        try:
            reg = registration_from_json(_json_object(data))
        except Exception:  # left for the reader to quarantine
            continue
        conn.execute(
            "UPDATE registrations SET lifetime=?, host=?, port=?, identity=?, "
            "expires_at=? WHERE id=?",
            (*_reg_columns(reg), reg_id),
        )


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Version 2 → 3: nothing to convert (a version-2 record, its object list in full, is read
    as it is and written compact when next rewritten); the version is recorded so that an older
    server refuses the file rather than quarantine the compact records."""


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Version 3 → 4: ``telemetry_keys`` filled from the history (one pass over the table),
    then the ``(endpoint, key, ts_ms)`` and ``(endpoint, ts_ms)`` indexes dropped (their pages
    go to the file's free list, reused by later writes)."""
    conn.execute(_TELEMETRY_KEYS_SQL)
    has_history = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'telemetry'"
    ).fetchone()
    if has_history:
        conn.execute(
            "INSERT OR IGNORE INTO telemetry_keys(endpoint, key, path) "
            "SELECT DISTINCT endpoint, key, path FROM telemetry"
        )
    conn.execute("DROP INDEX IF EXISTS idx_telemetry_endpoint_key_ts_ms")
    conn.execute("DROP INDEX IF EXISTS idx_telemetry_endpoint_ts_ms")


def _migrate_v4(conn: sqlite3.Connection) -> None:
    """Version 4 → 5: ``registrations`` rebuilt as ``_REGISTRATIONS_SQL`` (each row keeps its
    rowid, now the named ``rid``; no ``last_update``/``expires_at`` columns) and each row's two
    times copied into ``registration_times`` under that ``rid``; the old table and its
    indexes dropped (``_create_schema`` then makes the new indexes). One pass over the rows.

    All of it in the one transaction ``_migrate`` opens, with the new version: a crash
    part-way leaves the version-4 file as it was (sqlite's DDL is transactional; the WAL's
    uncommitted frames are ignored at the next open), and the next open migrates again. A row
    without a ``last_update`` (hand-edited) gets no times: it reads from its JSON, and is
    quarantined on read if that is corrupt too."""
    conn.execute(_TIMES_SQL)
    has_registrations = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'registrations'"
    ).fetchone()
    if not has_registrations:
        return
    conn.execute("ALTER TABLE registrations RENAME TO registrations_v4")
    conn.execute(_REGISTRATIONS_SQL.format(name="registrations"))
    conn.execute(
        "INSERT INTO registrations(rid, id, endpoint, data, lifetime, host, port, identity) "
        "SELECT rowid, id, endpoint, data, lifetime, host, port, identity FROM registrations_v4"
    )
    conn.execute(
        "INSERT INTO registration_times(rid, last_update, expires_at) "
        "SELECT rowid, last_update, expires_at FROM registrations_v4 "
        "WHERE last_update IS NOT NULL"
    )
    conn.execute("DROP TABLE registrations_v4")


# -- row checks -----------------------------------------------------------------------------------


def _ts_and_id(row: tuple[Any, ...]) -> tuple[Any, Any]:
    """The sort key of a ``_HISTORY_SQL`` row (``ORDER BY ts_ms DESC, id DESC``, reversed)."""
    return row[3], row[6]


def _last_update_and_id(row: tuple[Any, ...]) -> tuple[Any, Any]:
    """The sort key of a ``_REG_COLUMNS`` row (``ORDER BY t.last_update, r.id``: numbers by
    value, text by code point, which is sqlite's BINARY order of UTF-8)."""
    return row[4], row[1]


def _identity_key(identity: IdentityBinding) -> str:
    return dumps([identity.mode, identity.identity])


def _reg_columns(reg: Registration) -> tuple[int, str, int, str | None, float]:
    """lifetime, host, port, identity, expires_at: the indexed/touched columns of a record."""
    identity = None if reg.identity is None else _identity_key(reg.identity)
    return (reg.lifetime, reg.address.host, reg.address.port, identity, reg.expires_at)


def _json_object(data: object) -> dict[str, Any]:
    if data is None:
        raise ValueError("the data column is empty")
    if not isinstance(data, str | bytes):
        raise ValueError(f"the data column is a {type(data).__name__}, not JSON text")
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"the data column is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"the data column is a JSON {type(parsed).__name__}, not an object")
    return parsed


def _agree(column: str, stored: object, decoded: object) -> None:
    """The indexed column and the record must say the same: lookups go by the column."""
    if stored is None:
        raise ValueError(f"the {column} column is empty")
    if stored != decoded:
        raise ValueError(f"the {column} column {stored!r} disagrees with the record's {decoded!r}")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"

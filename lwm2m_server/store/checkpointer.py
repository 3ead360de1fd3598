"""``Checkpointer``: WAL checkpoints of a group-commit store in a thread of their own.

Why. A WAL checkpoint copies the pages the WAL holds back into the database file and fsyncs
both files. Run by sqlite's autocheckpoint it happens inside the commit that crosses the
bound, on the event loop, and stalls every request in flight for its whole length
(``lwm2m_server.store.sqlite``, "Checkpoints"). Here a thread with its **own connection** runs
``PRAGMA wal_checkpoint(PASSIVE)``: sqlite releases the GIL for the copy and the fsyncs, so the
loop keeps committing while it runs.

Trigger. After each group commit the loop calls ``after_commit``, which reads two counters of
the WAL index (``mxFrame``, the frames in the WAL, and ``nBackfill``, the frames already copied
back; sqlite.org/walformat.html, "The WAL-Index Format") and wakes the thread when ``pages``
frames or more are not yet copied, or any frame in the lead-in before the writer's backstop
(``closing_in``, below). Two loads and a subtraction: no system call, no thread woken for
nothing, no polling; wake-ups that come during a pass make one more pass, not a queue.
The counters are read **in sqlite's own mapping** of the ``-shm`` file (found once in
``/proc/self/maps``), never through a descriptor of our own: closing any descriptor of a file
drops every POSIX lock the process holds on it, sqlite's included, and another process opening
the database would then take the file for unused, truncate and rebuild the WAL index under
this one (the first version opened and mapped the file itself: the server died of SIGBUS when
``bench/server_load.py`` counted rows from another process). sqlite's mapping lives as long as
the store's connection, which outlives the thread (``close``). Where the mapping cannot be
found (not Linux, another VFS) no thread runs and the loop checkpoints as before.

Never blocking the writer. PASSIVE takes no lock the writer waits for: it copies what no
reader still needs, without waiting; a writer's own checkpoint that meets it gets SQLITE_BUSY
at once and is skipped (the next commit retries). The thread never runs FULL, RESTART or
TRUNCATE, which wait for the writer. Its connection holds no transaction between checkpoints
(autocommit, nothing but the pragma), so it never pins a WAL snapshot: a reader that did
would stop both the copies and the WAL's restart.

What it cannot do: restart the WAL. Under continuous commits new frames arrive while the
thread copies, so it never finds the WAL wholly copied when the next write begins; only
then does the writer start the WAL over from its beginning. The store therefore keeps its
own autocheckpoint as the backstop, at a larger bound: when the WAL reaches it the writer's
checkpoint copies the few frames the thread has not, and the next write restarts the WAL
(and ``journal_size_limit`` cuts the file back).

Durability is the store's: the thread's connection runs the store's ``synchronous`` setting,
so a checkpoint fsyncs the WAL before copying and the database after, as the writer's would.
A checkpoint only copies committed frames; a process killed mid-copy leaves the WAL intact
and the next open replays it.

Errors (a disk error, a file gone read-only, an unreadable file) are logged at ERROR once
(then at most once a minute while they last, and once at INFO when checkpoints work again);
the thread carries on, reopening its connection at the next wake-up. The loop's backstop
keeps the WAL bounded meanwhile.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_MX_FRAME_OFFSET = 16
"""``mxFrame`` in the first copy of the WAL-index header: the last valid frame of the WAL."""
_BACKFILL_OFFSET = 96
"""``nBackfill`` in the checkpoint information that follows the two header copies."""
_HEADER_SIZE = 136
"""The two header copies (48 bytes each) and the checkpoint information (40 bytes)."""
_ERROR_LOG_INTERVAL = 60.0


class Checkpointer:
    """The checkpoint thread of one store (one database file). ``start`` it once, call
    ``after_commit`` on the loop after each commit, ``close`` it before the store's own
    connection closes (it joins the thread and closes the thread's connection)."""

    def __init__(
        self, path: str | Path, *, synchronous: str, pages: int, backstop: int | None = None
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.pages = pages
        """Frames not yet copied back that wake the thread."""
        self.backstop = backstop if backstop is not None and backstop >= 2 * pages else None
        """The writer's own checkpoint bound (its ``wal_autocheckpoint``); None when it has
        none, or one too close to ``pages`` for the lead-in below (then the writer's bound is
        its own business)."""
        self.closing_in = (
            self.backstop - min(pages, self.backstop // 10) if self.backstop is not None else 0
        )
        """From this many frames in the WAL up to ``backstop`` (its last ``pages``, at most a
        tenth of it), any frame not copied back wakes the thread: its passes then keep up commit
        by commit, so the writer's checkpoint finds little left to copy (a commit or two of
        frames instead of up to ``pages``). From the backstop on, the thread is not woken and a
        pending wake-up is withdrawn: the writer's checkpoint, which alone restarts the WAL,
        skips its turn whenever it meets the thread's in the lock they share."""
        self.passes = 0
        """Checkpoints run (failed ones included)."""
        self.backfilled = 0
        """Frames of the WAL copied back when the last successful pass ended (the
        ``checkpointed`` column of ``PRAGMA wal_checkpoint``; -1: the pass found the WAL in
        use by another checkpoint)."""
        self.errors = 0
        """Checkpoints that raised."""
        self._index: tuple[ctypes.c_uint32, ctypes.c_uint32] | None = None
        """``mxFrame`` and ``nBackfill``, read in sqlite's mapping of the WAL index."""
        self._wake = threading.Event()
        self._stopping = False
        self._done = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._failing = False
        self._next_error_log = 0.0

    # -- the loop's side ---------------------------------------------------------------------------
    def start(self) -> bool:
        """Find the WAL index and start the thread; False (nothing started) when the index
        cannot be read (the caller then keeps checkpoints on the loop)."""
        if self._thread is not None:
            return True
        index = self._find_index()
        if index is None:
            return False
        self._index = index
        thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint {self.path.name}", daemon=True
        )
        self._thread = thread
        thread.start()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def pending(self) -> int:
        """Frames in the WAL not yet copied back into the database (0 when not running)."""
        index = self._index
        if index is None:
            return 0
        frames, backfilled = index
        return int(frames.value - backfilled.value)

    def after_commit(self) -> None:
        """Wake the thread when ``pages`` or more frames wait to be copied back, or any when
        the WAL nears the writer's backstop (``closing_in``). Only while the store's connection
        is open: the counters are in its mapping."""
        index = self._index
        if index is None:
            return
        frames = index[0].value
        pending = frames - index[1].value
        backstop = self.backstop
        if backstop is None:
            if pending >= self.pages:
                self._wake.set()
        elif frames >= backstop:
            # the writer's checkpoint is due: a pass woken by an earlier commit and not begun
            # yet would hold it off once more (it skips its turn when it meets the thread's)
            self._wake.clear()
        elif pending >= self.pages or (pending > 0 and frames >= self.closing_in):
            self._wake.set()

    def request(self) -> None:
        """Wake the thread now, whatever the WAL holds (tests, a shutdown that wants the file
        compact)."""
        if self._thread is not None:
            self._wake.set()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the thread is neither running a checkpoint nor woken for one; False on
        ``timeout`` (a guard, as for ``wait_passes``)."""
        with self._done:
            return self._done.wait_for(lambda: not self._busy and not self._wake.is_set(), timeout)

    def wait_passes(self, count: int, timeout: float = 30.0) -> bool:
        """Block until the thread has run ``count`` checkpoints in all; False on ``timeout``
        (a guard against a hang, not a measure: tests wait on this, never on sleeps)."""
        with self._done:
            return self._done.wait_for(lambda: self.passes >= count, timeout)

    def close(self) -> None:
        """Stop and join the thread (a checkpoint under way finishes first), close its
        connection and forget the WAL index (before the store's connection closes: the index
        is in its mapping). Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join()
        self._index = None  # sqlite unmaps it when the store's connection closes

    def _find_index(self) -> tuple[ctypes.c_uint32, ctypes.c_uint32] | None:
        """``mxFrame`` and ``nBackfill`` in sqlite's mapping of the WAL index (module
        docstring), or None. The mapping is the one of offset 0 of the ``-shm`` file, matched
        by inode and file name (the folder's path may be spelt otherwise)."""
        try:
            shm = os.stat(f"{self.path}-shm")
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                lines = maps.readlines()
        except OSError:
            return None
        name = f"{self.path.name}-shm"
        for line in lines:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or fields[4] != str(shm.st_ino) or int(fields[2], 16) != 0:
                continue
            if not fields[5].rstrip("\n").endswith(name):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if end - start < _HEADER_SIZE or not fields[1].startswith("r"):
                continue
            return (
                ctypes.c_uint32.from_address(start + _MX_FRAME_OFFSET),
                ctypes.c_uint32.from_address(start + _BACKFILL_OFFSET),
            )
        return None

    # -- the thread's side -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """The thread's own connection: read-write on the existing file (never creating one),
        autocommit (no transaction left open), the store's durability."""
        uri = f"{Path(os.path.abspath(self.path)).as_uri()}?mode=rw"  # quoted: '?', '#', '%'
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
        try:
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                with self._done:
                    self._busy = True
                    self._wake.clear()
                if self._stopping:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except Exception as exc:  # logged: the thread must outlive any error
                    self._failed(exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                else:
                    self.backfilled = int(row[2])
                    self._recovered()
                with self._done:
                    self.passes += 1
                    self._busy = False
                    self._done.notify_all()
        finally:
            if conn is not None:
                conn.close()

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._failing = True
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + _ERROR_LOG_INTERVAL
            log.error(
                "%s: WAL checkpoint in the background failed (%d so far; the store keeps "
                "working, its commits checkpoint the WAL meanwhile): %s",
                self.path,
                self.errors,
                exc,
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("%s: WAL checkpoints in the background work again", self.path)

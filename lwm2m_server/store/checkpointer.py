"""``Checkpointer``: WAL checkpoints of a group-commit store in a thread of their own.

Why. A WAL checkpoint copies the pages the WAL holds back into the database file and fsyncs
both files. Run by sqlite's autocheckpoint it happens inside the commit that crosses the
bound, on the event loop, and stalls every request in flight for its whole length
(``lwm2m_server.store.sqlite``, "Checkpoints"). Here a thread with its **own connection** runs
``PRAGMA wal_checkpoint(PASSIVE)``: sqlite releases the GIL for the copy and the fsyncs, so the
loop keeps committing while it runs.

Trigger. After each group commit the loop calls ``after_commit``, which counts commits and
sets the thread's ``Event`` every ``every`` of them (an integer compare, and an ``Event.set``
once per ``every`` commits: no system call, no memory of sqlite's read). The thread learns the
WAL's size from the result row of its own ``PRAGMA wal_checkpoint(PASSIVE)`` (busy, frames in
the WAL, frames copied back) and sets ``every`` so that the next wake-up comes when about
``pages`` new frames wait: the frames that arrived since its last pass over the commits that
brought them. So the thread is woken about once per ``pages`` WAL frames whatever a commit
writes (one registration or 64 points), and a load that slows down stretches the interval in
commits, not in frames. Given the writer's backstop (``backstop``), the last wake-up before it
is timed to come a commit short of it, so that the writer's checkpoint on the loop finds a
commit or two to copy rather than up to ``pages``. No polling; wake-ups that come during a
pass make one more pass, not a queue. (The first version read ``mxFrame`` and ``nBackfill``
in sqlite's shared mapping of the WAL index, found in ``/proc/self/maps``: Linux only, and a
remap by sqlite would have been a crash.)

Never blocking the writer. PASSIVE takes no lock the writer waits for: it copies what no
reader still needs, without waiting; a writer's own checkpoint that meets it gets SQLITE_BUSY
at once and is skipped (the next commit retries). The thread never runs FULL, RESTART or
TRUNCATE, which wait for the writer. Its connection holds no transaction between checkpoints
(autocommit, nothing but the pragma), so it never pins a WAL snapshot: a reader that did
would stop both the copies and the WAL's restart.

What it cannot always do: restart the WAL. The writer starts the WAL over from its beginning
only when a write begins with the WAL wholly copied back. A pass that ends in a quiet moment
leaves it so (then the next commit restarts it); under continuous commits new frames arrive
while the thread copies, and it never does. The store therefore keeps its own autocheckpoint
as the backstop, at a larger bound (``SqliteStore.GROUP_CHECKPOINT_PAGES``): when the WAL
reaches it the writer's checkpoint copies what the thread has not (at most one interval), and
the next write restarts the WAL (``journal_size_limit`` cuts the file back).

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

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

MAX_EVERY = 10_000
INITIAL_EVERY = 16
"""Commits before the first wake-up (a few dozen to a few hundred frames): from there the
interval only doubles at a time, and it only shrinks over a WAL restart, where what arrived
is partly unseen."""
"""The most commits between two wake-ups (a store that commits one tiny row at a time)."""
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
        """WAL frames (about) between two wake-ups of the thread."""
        self.backstop = backstop
        """The writer's own checkpoint bound (its ``wal_autocheckpoint``), when it has one:
        the thread times its last pass before it to just short of it (``_adapt``)."""
        self.every = INITIAL_EVERY
        """Commits between two wake-ups; the thread adapts it after each pass."""
        self.passes = 0
        """Checkpoints run (failed ones included)."""
        self.log_frames = 0
        """Frames in the WAL at the last successful pass (``log`` of ``PRAGMA
        wal_checkpoint``)."""
        self.backfilled = 0
        """Frames of the WAL copied back when the last successful pass ended (its
        ``checkpointed`` column; -1: the pass found the WAL in use by another checkpoint)."""
        self.errors = 0
        """Checkpoints that raised."""
        self.commits = 0
        """Commits counted by ``after_commit``."""
        self._due = INITIAL_EVERY
        self._steady = INITIAL_EVERY
        self._last_commits = 0
        self._wake = threading.Event()
        self._stopping = False
        self._done = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._failing = False
        self._next_error_log = 0.0

    # -- the loop's side ---------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the thread (True: the caller counts on it and leaves checkpoints to it and to
        its own backstop)."""
        if self._thread is None:
            thread = threading.Thread(
                target=self._run, name=f"wal-checkpoint {self.path.name}", daemon=True
            )
            self._thread = thread
            thread.start()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def after_commit(self) -> None:
        """Count a commit; every ``every`` commits wake the thread (module docstring,
        "Trigger")."""
        commits = self.commits + 1
        self.commits = commits
        if commits >= self._due and self._thread is not None:
            self._due = commits + self.every
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
        """Stop and join the thread (a checkpoint under way finishes first) and close its
        connection, before the store's connection closes (the last connection to close
        checkpoints and removes the WAL). Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join()

    # -- the thread's side -------------------------------------------------------------------------
    def _adapt(self, log_frames: int, backfilled: int) -> None:
        """``every`` from this pass's result row: the frames that arrived since the last pass
        over the commits that brought them (at most twice the last interval at a time). Fewer
        frames in the WAL than at the last pass: the WAL restarted meanwhile (after a pass
        that found it wholly copied in a quiet moment, or at the writer's backstop), and at
        least those now in it arrived: the interval can only shrink. No commit since (a
        ``request``) or a pass that met another checkpoint (-1): nothing learnt. Near the
        writer's backstop the next wake-up is timed to come just before it."""
        commits = self.commits
        counted = commits - self._last_commits
        self._last_commits = commits
        restarted = log_frames < self.log_frames
        arrived = log_frames if restarted else log_frames - self.log_frames
        if log_frames >= 0 and backfilled >= 0:
            self.log_frames, self.backfilled = log_frames, backfilled
        if counted > 0 and arrived > 0:
            steady = self.pages * counted // arrived
            # restarted: at least ``arrived`` came, a bound from above only; otherwise at most
            # twice the last (a WAL restarted and grown past the last count looks quiet)
            limit = self._steady if restarted else 2 * self._steady
            steady = min(limit, steady)
            self._steady = max(1, min(MAX_EVERY, steady))
        every = self._steady
        backstop = self.backstop
        if backstop is not None and counted > 0 and arrived > 0 and log_frames >= 0:
            # the next wake-up would cross the writer's bound (or leave less than half an
            # interval before it): wake one commit short of it instead, so that the writer's
            # checkpoint, which alone can restart the WAL under continuous commits, finds a
            # commit or two to copy rather than up to an interval's pages on the loop
            room = backstop - log_frames
            if 0 < room < self.pages + self.pages // 2:
                every = max(1, room * counted // arrived - 1)
        self.every = every
        self._due = commits + every

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
                    self._adapt(int(row[1]), int(row[2]))
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

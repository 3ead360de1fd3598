"""The group-commit store's checkpoint thread (``lwm2m_server.store.checkpointer``): it copies
the WAL back into the database while the loop keeps committing, the loop's backstop keeps the
WAL bounded, ``close()`` leaves no thread, a failing checkpoint is logged once and changes
nothing the store's users see, and a process killed mid-load keeps every acknowledged commit.

No test sleeps to synchronise: the tests wait on the thread's pass counter
(``Checkpointer.wait_passes``, whose timeout only guards against a hang)."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.store.checkpointer import Checkpointer
from lwm2m_server.store.sqlite import SqliteStore
from object_models.types import ResourceType

ADDRESS = Address("127.0.0.1", 5683)
ROOT = Path(__file__).resolve().parents[3]


def points(batch: int, series: int = 64) -> list[TelemetryPoint]:
    return [
        TelemetryPoint(
            f"dev-{i}",
            "/3303/0/5700",
            "sensorValue",
            1000 * batch + i,
            float(i),
            ResourceType.FLOAT,
        )
        for i in range(series)
    ]


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wal-checkpoint")]


class SmallThreadStore(SqliteStore):
    """The thread woken every 20 pages, the loop's backstop far away (never reached)."""

    THREAD_CHECKPOINT_PAGES = 20
    GROUP_CHECKPOINT_PAGES = 100_000


class SmallBoundsStore(SqliteStore):
    THREAD_CHECKPOINT_PAGES = 20
    GROUP_CHECKPOINT_PAGES = 200


def test_the_thread_copies_the_wal_into_the_database_while_the_loop_commits(
    tmp_path: Path,
) -> None:
    # a folder name that a URI must quote (the thread opens the file by URI)
    store = SmallThreadStore(tmp_path / "data ?#%20 dir" / "db.sqlite")
    store.enable_group_commit()
    try:
        checkpointer = store.checkpointer
        assert checkpointer is not None
        before = store.path.stat().st_size
        for batch in range(40):  # the thread is woken after a few of these, the rest go on
            assert store.append_points(points(batch)) == 64
            assert store.commit() is True
        assert checkpointer.wait_passes(1)
        assert checkpointer.errors == 0
        assert checkpointer.backfilled > 0
        # the telemetry's pages reached the database file; the loop's connection never
        # checkpointed (its bound is far away), so the thread did it
        assert store.path.stat().st_size > before
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 40 * 64
    finally:
        store.close()


def test_the_wal_stays_bounded_and_restarts(tmp_path: Path) -> None:
    """The thread's PASSIVE checkpoints cannot restart the WAL; the loop's backstop does, after
    copying what the thread has not: the file stays near the bound while ~40x the bound's
    pages are committed. (The loop waits for a pass it woke before its next commit, so the
    bound does not depend on how the threads are scheduled.) The thread is woken about every
    20 pages: it learns how many commits that takes from its checkpoints' result rows."""
    store = SmallBoundsStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    wal = tmp_path / "db.sqlite-wal"
    page = int(store.conn.execute("PRAGMA page_size").fetchone()[0])
    try:
        checkpointer = store.checkpointer
        assert checkpointer is not None
        largest = 0
        for batch in range(300):
            assert store.append_points(points(batch)) == 64
            assert store.commit() is True
            largest = max(largest, wal.stat().st_size)
            assert checkpointer.wait_idle()
        assert checkpointer.passes > 10
        assert checkpointer.errors == 0
        assert checkpointer.every < 20  # a commit of 64 points writes several pages
        # the bound, plus a commit's pages or two past it (the backstop runs after the commit
        # that crossed it; the file is cut back at the restart)
        assert largest <= (200 + 300) * (page + 24) + 32
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 300 * 64
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()


def test_close_stops_and_joins_the_thread(tmp_path: Path) -> None:
    """``close()`` leaves no thread behind, for a store alone and for two handles on one file
    (``shared=True``: each runs its own thread; their checkpoints skip each other's)."""
    assert checkpoint_threads() == []
    one = SmallThreadStore(tmp_path / "db.sqlite", shared=True)
    two = SmallThreadStore(tmp_path / "db.sqlite", shared=True)
    one.enable_group_commit()
    two.enable_group_commit()
    assert len(checkpoint_threads()) == 2
    first, second = one.checkpointer, two.checkpointer
    assert first is not None and second is not None
    for batch in range(20):
        store = one if batch % 2 else two
        store.put_registration(
            Registration(registration_id=f"id-{batch}", endpoint=f"ep-{batch}", address=ADDRESS)
        )
        assert store.append_points(points(batch)) == 64
        assert store.commit() is True
    first.request()
    assert first.wait_passes(1)
    one.close()
    assert one.checkpointer is None and not first.running
    assert len(checkpoint_threads()) == 1
    # the other handle keeps working, its thread too
    assert two.append_points(points(99)) == 64
    assert two.commit() is True
    second.request()
    assert second.wait_passes(1)
    two.close()
    two.close()  # idempotent
    assert checkpoint_threads() == []
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM registrations").fetchone()[0] == 20
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 21 * 64


def test_other_processes_opening_the_database_leave_the_store_and_its_thread_sound(
    tmp_path: Path,
) -> None:
    """Readers in other processes (an operator's ``sqlite3``, a benchmark counting rows) come
    and go while the store commits and its thread checkpoints: each sees every committed row,
    and the store and its thread carry on."""
    store = SmallThreadStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    reader = (
        "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
        "'SELECT count(*) FROM telemetry').fetchone()[0])"
    )
    try:
        checkpointer = store.checkpointer
        assert checkpointer is not None
        for batch in range(30):
            assert store.append_points(points(batch)) == 64
            assert store.commit() is True
            if batch % 10 == 9:
                seen = subprocess.run(
                    [sys.executable, "-c", reader, str(store.path)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                assert int(seen) == (batch + 1) * 64
                checkpointer.request()
                assert checkpointer.wait_idle()
        assert checkpointer.errors == 0
        assert checkpointer.passes >= 3
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 30 * 64
    finally:
        store.close()


class LostFileCheckpointer(Checkpointer):
    """Its connection cannot reach the file (as when its folder was moved or unmounted under a
    running server): every checkpoint fails ("unable to open database file")."""

    def _connect(self) -> sqlite3.Connection:
        lost = self.path.parent / "gone" / self.path.name
        return sqlite3.connect(f"file:{lost}?mode=rw", uri=True, isolation_level=None)


class LostFileCheckpointStore(SmallBoundsStore):
    def _new_checkpointer(self, synchronous: str) -> Checkpointer:
        return LostFileCheckpointer(
            self.path, synchronous=synchronous, pages=self.THREAD_CHECKPOINT_PAGES
        )


def test_a_failing_checkpoint_is_logged_once_and_the_store_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m_server.store.checkpointer")
    store = LostFileCheckpointStore(tmp_path / "db.sqlite")
    store.enable_group_commit()
    wal = tmp_path / "db.sqlite-wal"
    page = int(store.conn.execute("PRAGMA page_size").fetchone()[0])
    try:
        checkpointer = store.checkpointer
        assert checkpointer is not None
        largest = 0
        for batch in range(100):
            assert store.append_points(points(batch)) == 64
            assert store.commit() is True
            largest = max(largest, wal.stat().st_size)
            checkpointer.request()
            assert checkpointer.wait_passes(batch + 1)
        assert checkpointer.errors >= 100  # every pass failed (the loop woke it too)
        assert checkpointer.running
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(errors) == 1
        assert errors[0].levelno == logging.ERROR
        assert "WAL checkpoint in the background failed" in errors[0].getMessage()
        assert str(store.path) in errors[0].getMessage()
        # the backstop alone keeps the WAL bounded, and every commit is there
        assert largest <= (200 + 300) * (page + 24) + 32
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 100 * 64
    finally:
        store.close()
    assert checkpoint_threads() == []


_CHILD = """
import sys
from pathlib import Path
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.store.sqlite import SqliteStore
from object_models.types import ResourceType

class Store(SqliteStore):
    THREAD_CHECKPOINT_PAGES = 20
    GROUP_CHECKPOINT_PAGES = 200

store = Store(Path(sys.argv[1]))
store.enable_group_commit()
batch = 0
while True:
    store.put_registration(Registration(
        registration_id=f"id-{batch}", endpoint=f"ep-{batch}", address=Address("127.0.0.1", 5683)))
    store.append_points([
        TelemetryPoint(f"dev-{i}", "/3303/0/5700", "sensorValue", 1000 * batch + i, float(i),
                       ResourceType.FLOAT)
        for i in range(64)
    ])
    if not store.commit():
        raise SystemExit("commit failed")
    batch += 1
    # acknowledged: this line leaves only after the commit returned
    print(batch, store.checkpointer.passes, flush=True)
"""


def test_a_process_killed_mid_load_keeps_every_acknowledged_commit(tmp_path: Path) -> None:
    """SIGKILL while the loop commits and the thread checkpoints: every batch the child
    acknowledged (printed after its commit) is in the file, and the file is sound."""
    path = tmp_path / "db.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    acknowledged = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            batch, passes = (int(x) for x in line.split())
            acknowledged = batch
            if passes >= 5 and batch >= 300:  # mid-load, with checkpoints behind it
                child.send_signal(signal.SIGKILL)
                break
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert acknowledged >= 300
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        registrations = conn.execute("SELECT count(*) FROM registrations").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    assert registrations >= acknowledged
    assert rows >= acknowledged * 64
    # what committed is whole: a batch's registration and its 64 points together
    assert rows == registrations * 64

"""Corrupt rows are quarantined, not raised: the rest of the store keeps serving.

Rows are corrupted with raw SQL, as a disk error, a hand edit or a downgrade would leave them.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from lwm2m_server.store.sqlite import SqliteStore

from .test_sqlite_store import make_obs, make_reg


def _corrupt(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    with conn:
        assert conn.execute(sql, params).rowcount == 1
    conn.close()


@pytest.fixture
def hundred(tmp_path: Path) -> Path:
    path = tmp_path / "s.sqlite"
    with SqliteStore(path) as store:
        regs = [make_reg(n) for n in range(100)]
        store.put_registrations(regs)
        store.put_observation(make_obs(b"\x01\x02", regs[7], "/3/0"))
        store.put_observation(make_obs(b"\x03\x04", regs[3], "/3/0/1"))
    return path


def test_three_kinds_of_corrupt_row_are_quarantined_and_the_rest_restored(
    hundred: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # invalid JSON
    _corrupt(hundred, "UPDATE registrations SET data = substr(data, 1, 40) WHERE id = 'id3'")
    # a field of the wrong type
    _corrupt(
        hundred,
        "UPDATE registrations SET data = json_set(data, '$.lifetime', 'forever') WHERE id = 'id50'",
    )
    # a missing column value (the id column the lookups go by)
    _corrupt(hundred, "UPDATE registrations SET id = NULL WHERE id = 'id8'")
    caplog.set_level(logging.WARNING, "lwm2m_server.store.sqlite")
    with SqliteStore(hundred) as store:
        restored = store.registrations()
        assert len(restored) == 97
        assert {r.endpoint for r in restored} == {f"ep{n}" for n in range(100)} - {
            "ep3",
            "ep50",
            "ep8",
        }
        assert store.quarantined() == 3
        rows = {r.endpoint: r for r in store.quarantined_rows()}
        assert set(rows) == {"ep3", "ep50", "ep8"}
        assert "not valid JSON" in rows["ep3"].reason
        assert "lifetime" in rows["ep50"].reason and "forever" in rows["ep50"].reason
        assert "id column is empty" in rows["ep8"].reason
        assert all(r.kind == "registration" and r.quarantined_at > 0 for r in rows.values())
        assert rows["ep50"].key == "id50" and '"forever"' in str(rows["ep50"].data)
        # the good observation stays; the quarantined registration's observation goes with it
        assert [o.endpoint for o in store.observations()] == ["ep7"]
        # a second restore reads clean: nothing quarantined twice
        assert len(store.registrations()) == 97
        assert store.quarantined() == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert any("'id50'" in line and "'ep50'" in line and "lifetime" in line for line in lines)
    assert any("None" in line and "'ep8'" in line for line in lines)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE registrations SET data = 42 WHERE id = 'id1'", "not an object"),
        ("UPDATE registrations SET data = X'FFFE00' WHERE id = 'id1'", "not valid JSON"),
        ("UPDATE registrations SET data = '[]' WHERE id = 'id1'", "not an object"),
        ("UPDATE registrations SET endpoint = 'other' WHERE id = 'id1'", "disagrees"),
        (
            "UPDATE registrations SET data = json_remove(data, '$.address') WHERE id = 'id1'",
            "address",
        ),
        (
            "UPDATE registrations SET data = json_set(data, '$.v', 99) WHERE id = 'id1'",
            "version 99",
        ),
        (
            "UPDATE registrations SET data = json_set(data, '$.address', json('[\"h\", 1e999]'))"
            " WHERE id = 'id1'",
            "",
        ),
    ],
)
def test_single_row_readers_quarantine_too(tmp_path: Path, sql: str, reason: str) -> None:
    path = tmp_path / "s.sqlite"
    with SqliteStore(path) as store:
        store.put_registrations([make_reg(0), make_reg(1)])
    _corrupt(path, sql)
    with SqliteStore(path) as store:
        assert store.get_registration("id1") is None
        assert store.quarantined() == 1
        assert reason in store.quarantined_rows()[0].reason
        assert [r.endpoint for r in store.registrations()] == ["ep0"]
        # the device registers again under its endpoint: a fresh row, no conflict
        assert store.put_registration(make_reg(1, registration_id="new1")) is None
        assert store.registration_by_endpoint("ep1") is not None


def test_corrupt_observation_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SqliteStore(path) as store:
        reg = make_reg(0)
        store.put_registration(reg)
        store.put_observation(make_obs(b"\xaa", reg, "/3/0"))
        store.put_observation(make_obs(b"\xbb", reg, "/3/0/1"))
    _corrupt(
        path,
        "UPDATE observations SET data = json_set(data, '$.paths', json('[\"/x\"]')) "
        "WHERE token = 'bb'",
    )
    with SqliteStore(path) as store:
        assert [o.token for o in store.observations()] == [b"\xaa"]
        (row,) = store.quarantined_rows()
        assert (row.kind, row.key, row.endpoint) == ("observation", "bb", "ep0")
        assert store.observation_by_token(b"\xbb") is None
        assert store.get_registration("id0") == reg


def test_replacing_a_corrupt_row_of_the_same_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SqliteStore(path) as store:
        store.put_registration(make_reg(0))
    _corrupt(path, "UPDATE registrations SET data = '{' WHERE id = 'id0'")
    with SqliteStore(path) as store:
        assert store.put_registration(make_reg(0, registration_id="id9")) is None
        assert store.quarantined() == 1
        assert [r.registration_id for r in store.registrations()] == ["id9"]

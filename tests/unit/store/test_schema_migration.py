"""A store file written by schema version 1 (registrations as JSON only) opens as the current
version: the touch/lookup columns are filled from each record, so lookups by address and expiry
and the cheap Update work on registrations made before the upgrade. A version-2 file (records
with the object list in full) opens as the current version with every registration intact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import attrs
import pytest

from keystore.resolver import IdentityBinding
from keystore.store.database import dumps
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks
from lwm2m_server.store import records
from lwm2m_server.store.records import registration_from_json, registration_to_json
from lwm2m_server.store.sqlite import SCHEMA_VERSION, SqliteStore

from .engines import obs, reg
from .legacy import to_v4_layout

V2_COLUMNS = ("lifetime", "host", "port", "identity", "expires_at")


def _full_records(path: Path) -> None:
    """Rewrite every registration record as versions 1 and 2 wrote it: the object list with
    its text *and* the maps it declares (``registration_to_json`` without ``compact_links``)."""
    with sqlite3.connect(path) as conn:
        for reg_id, data in conn.execute("SELECT id, data FROM registrations").fetchall():
            full = dumps(registration_to_json(registration_from_json(json.loads(data))))
            conn.execute("UPDATE registrations SET data = ? WHERE id = ?", (full, reg_id))


def make_v1_file(path: Path) -> None:
    """What version 1 left: the v2 file with the new columns and their indexes dropped."""
    store = SqliteStore(path)
    store.put_registration(reg(1))
    store.put_registration(reg(2, last_update=2000.0, lifetime=50))
    store.put_observation(obs(b"t", reg(1)))
    store.close()
    to_v4_layout(path)
    _full_records(path)  # version 1 wrote the object list in full
    with sqlite3.connect(path) as conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='registrations' "
            "AND name LIKE 'idx_registrations_%' AND name != 'idx_registrations_endpoint'"
        ).fetchall():
            conn.execute(f"DROP INDEX {name}")
        for column in V2_COLUMNS:
            conn.execute(f"ALTER TABLE registrations DROP COLUMN {column}")
        conn.execute(
            "INSERT INTO registrations(id, endpoint, last_update, data) VALUES('bad', 'b', 0, 'x')"
        )
        conn.execute("UPDATE meta SET value='1' WHERE name='schema'")


def test_a_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    make_v1_file(path)
    store = SqliteStore(path)
    try:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        assert store.get_registration("id1") == reg(1)
        assert store.registrations_by_address(reg(1).address) == [reg(1)]
        assert store.expiring_before(2051.0, 10) == [
            reg(1),
            reg(2, last_update=2000.0, lifetime=50),
        ]
        assert store.observation_by_token(b"t") == obs(b"t", reg(1))
        moved = attrs.evolve(reg(1), last_update=3000.0, address=Address("192.0.2.50", 9))
        assert store.touch_registration(moved)
        assert store.get_registration("id1") == moved
        # the unreadable row stays for the reader, which quarantines it
        assert store.get_registration("bad") is None
        assert store.quarantined() == 1
    finally:
        store.close()
    reopened = SqliteStore(path)  # the current version now: opens as is
    assert reopened.get_registration("id1") == moved
    reopened.close()


LOADGEN_LINKS = (
    '</>;rt="oma.lwm2m";ct="0 112 11542",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4/0>,'
    "</5/0>,</6/0>,</3303/0>,</3303/1>"
)


def test_a_version_2_file_opens_with_every_registration_intact(tmp_path: Path) -> None:
    """Schema 3 stores a registration's object list as its text alone (smaller rows, issue 10);
    a file of version 2 — records with the object list in full, one touched by an Update
    since its record was written, one with a hand-built object list that its text does not
    parse to — opens as the current version, reads every registration and observation as it
    was, passes ``integrity_check``, and its rows are written compact when next rewritten."""
    path = tmp_path / "v2.sqlite"
    records._links_read.clear()  # what earlier tests read (both caches are bounded)
    links = ObjectLinks.parse(LOADGEN_LINKS)
    odd = ObjectLinks(text="</3/0>", objects={3: "1.1"}, instances={3: (0, 1)})
    regs = [
        reg(1, object_links=links),
        reg(2, identity=IdentityBinding("psk", "dev-ü"), sms_number="+1", queue_mode=True,
            additional_attributes={"et": "sensor"}, object_links=links),
        reg(3, object_links=odd),
        reg(4),
    ]  # fmt: skip
    store = SqliteStore(path)
    for r in regs:
        store.put_registration(r)
    store.put_observation(obs(b"t", regs[0]))
    touched = attrs.evolve(regs[3], last_update=5000.0, address=Address("192.0.2.9", 7))
    assert store.touch_registration(touched)
    store.close()
    to_v4_layout(path)
    _full_records(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value='2' WHERE name='schema'")
        v2_sizes = dict(conn.execute("SELECT id, length(data) FROM registrations").fetchall())
    expected = [*regs[:3], touched]

    store = SqliteStore(path)
    try:
        assert store.read("SELECT value FROM meta WHERE name='schema'") == [(str(SCHEMA_VERSION),)]
        assert store.read("PRAGMA integrity_check") == [("ok",)]
        assert sorted(store.registrations(), key=lambda r: r.registration_id) == expected
        for r in expected:
            assert store.get_registration(r.registration_id) == r
            assert store.registration_by_endpoint(r.endpoint) == r
        assert store.registrations_by_address(touched.address) == [touched]
        assert store.registrations_by_identity(IdentityBinding("psk", "dev-ü")) == [regs[1]]
        assert store.observation_by_token(b"t") == obs(b"t", regs[0])
        assert store.quarantined() == 0
        for r in regs[:3]:  # rewritten (a re-Register): compact where the text says it all
            assert store.put_registration(attrs.evolve(r, last_update=6000.0)) is None
        sizes = dict(store.read("SELECT id, length(data) FROM registrations"))
        assert sizes["id1"] < v2_sizes["id1"] - 150
        assert sizes["id3"] >= v2_sizes["id3"]  # the hand-built list is kept in full
    finally:
        store.close()
    reopened = SqliteStore(path)  # the current version now: opens as is
    try:
        assert reopened.get_registration("id3") == attrs.evolve(regs[2], last_update=6000.0)
        assert reopened.get_registration("id1") == attrs.evolve(regs[0], last_update=6000.0)
        assert reopened.get_registration("id1").object_links is links  # type: ignore[union-attr]
        assert reopened.read("PRAGMA integrity_check") == [("ok",)]
    finally:
        reopened.close()


def test_a_version_2_server_refuses_the_file_rather_than_misread_it(tmp_path: Path) -> None:
    """What a version-2 server does with this file: ``check_schema`` refuses a version it does
    not know (naming the file), so compact records are never quarantined as unreadable."""
    from keystore.store.errors import StoreError

    path = tmp_path / "current.sqlite"
    SqliteStore(path).close()
    store = SqliteStore(path)
    try:
        with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION}, expected 2"):
            store.check_schema("schema", 2)
    finally:
        store.close()

"""A real ``lwm2m-server`` process starts on a store with corrupt registration rows: the bad
rows are quarantined (named in the log, with the reason), every other registration is restored
and served, and devices keep registering (issue 11, item 4)."""

from __future__ import annotations

import sqlite3
import time

import aiohttp

from keystore.store.database import DATABASE_FILE
from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.store.sqlite import SqliteStore

from .test_persistence import ServerProcess, get_json, http, process

__all__ = ["http", "process"]  # fixtures


def registration(n: int, now: float) -> Registration:
    return Registration(
        registration_id=f"reg{n}",
        endpoint=f"stored-{n}",
        address=Address("127.0.0.1", 40000 + n),
        lifetime=3600,
        object_links=ObjectLinks.parse("</1/0>,</3/0>"),
        registered_at=now,
        last_update=now,
    )


async def test_server_starts_on_a_store_with_corrupt_rows(
    process: ServerProcess, http: aiohttp.ClientSession
) -> None:
    database = process.data_dir / DATABASE_FILE
    now = time.time()
    with SqliteStore(database) as store:
        store.put_registrations(registration(n, now) for n in range(100))
    conn = sqlite3.connect(database)
    with conn:
        conn.execute("UPDATE registrations SET data = '{\"v\": 1, \"id' WHERE id = 'reg17'")
        conn.execute(
            "UPDATE registrations SET data = json_set(data, '$.address', 5683) WHERE id = 'reg63'"
        )
    conn.close()

    process.start()
    listed = await get_json(http, f"{process.api}/clients")
    assert len(listed) == 98
    health = await get_json(http, f"{process.api}/health")
    assert health["quarantined"] == 2 and health["clients"] == 98
    assert {c["endpoint"] for c in listed} == {f"stored-{n}" for n in range(100)} - {
        "stored-17",
        "stored-63",
    }
    log = process.log_file.read_text()
    assert "'reg17' (endpoint 'stored-17')" in log and "not valid JSON" in log
    assert "'reg63' (endpoint 'stored-63')" in log and "field 'address'" in log
    assert "Traceback" not in log

    # the server serves: a new device and the device whose row was quarantined both register
    uri = f"coap://127.0.0.1:{process.coap_port}"
    clients = [Lwm2mClient(name, uri, auto_update=False) for name in ("fresh", "stored-17")]
    try:
        for client in clients:
            await client.start()
            await client.register()
        listed = await get_json(http, f"{process.api}/clients")
        assert len(listed) == 100
    finally:
        for client in clients:
            await client.stop()
    assert process.stop() == 0
    with SqliteStore(database) as store:
        assert store.quarantined() == 2
        assert {r.endpoint for r in store.quarantined_rows()} == {"stored-17", "stored-63"}

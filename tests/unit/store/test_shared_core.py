"""``ServerCore`` on a store that is the source of truth: a new core rebuilds its cache from the
store, and two cores ("nodes", as two server processes) sharing one store agree on every
registration: an Update reaches a registration the other node made, a Deregister on one is seen
by the other on its next lookup, and an expiry is reported exactly once. Run over every engine
(``engine`` fixture); the sqlite one is two connections to one file."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from keystore.resolver import IdentityBinding
from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.events import Deregistered, Expired, Registered, Replaced
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.registrations import EXPIRY_RETRY
from lwm2m_server.core.server import ServerCore
from lwm2m_server.store.base import CoreStore
from lwm2m_server.store.memory import MemoryStore
from lwm2m_server.store.sqlite import SqliteStore
from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from .engines import Engine

ADDR = Address("192.0.2.10", 56830)
LINKS = b"</1/0>,</3/0>,</3303/0>"
T0 = 1_000_000.0


def node(store: CoreStore, name: str, **kw: object) -> ServerCore:
    counter = itertools.count()
    core = ServerCore(
        grace_period=0,
        id_factory=lambda: f"{name}{next(counter)}",
        store=store,
        **kw,  # type: ignore[arg-type]
    )
    core.load()
    return core


def register(core: ServerCore, ep: str, *, now: float = T0, lt: int = 100, **kw: object) -> str:
    result = core.register([f"ep={ep}", f"lt={lt}"], LINKS, now=now, address=ADDR, **kw)  # type: ignore[arg-type]
    assert result.registration is not None
    return result.registration.registration_id


def code_of(exc: pytest.ExceptionInfo[Lwm2mError]) -> ResponseCode:
    return exc.value.code


def test_a_new_core_on_the_store_behaves_identically(engine: Engine) -> None:
    first = node(engine.open(), "a")
    reg_id = register(first, "dev", lt=300)
    first.update(reg_id, ["lt=500"], now=T0 + 10)
    reg = first.registrations.require(reg_id)
    first.observation_started(
        Observation(b"tok1", "dev", reg_id, (LwM2mPath.parse("/3303/0/5700"),))
    )

    again = node(engine.open(), "b")  # a restart: the cache rebuilt from the store
    assert again.registrations.require(reg_id) == reg
    assert again.registrations.by_endpoint("dev") == reg
    assert [o.token for o in again.observations] == [b"tok1"]
    assert again.next_deadline() == first.next_deadline() == T0 + 10 + 500
    assert again.update(reg_id, [], now=T0 + 20).registration is not None
    events = again.deregister(reg_id, now=T0 + 30).events
    assert isinstance(events[0], Deregistered)


def test_update_on_b_of_a_registration_made_on_a(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    reg_id = register(a, "dev")
    assert b.registrations.cached(reg_id) is None  # b has never seen it
    result = b.update(reg_id, ["lt=200"], now=T0 + 50, address=Address("192.0.2.99", 1))
    assert result.registration is not None  # the adapter answers 2.04
    assert result.registration.lifetime == 200
    # a's cache is stale but its expiry asks the store: refreshed, so not expired
    assert a.tick(T0 + 100) == []
    assert a.registrations.require(reg_id).lifetime == 200
    assert a.next_deadline() == T0 + 50 + 200


def test_deregister_on_b_is_seen_by_a_on_its_next_lookup(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    reg_id = register(a, "dev")
    events = b.deregister(reg_id, now=T0 + 1).events
    assert isinstance(events[0], Deregistered)
    with pytest.raises(Lwm2mError) as update:
        a.update(reg_id, [], now=T0 + 2)  # a's cache still held it
    assert code_of(update) == ResponseCode.NOT_FOUND
    assert a.registrations.cached(reg_id) is None
    with pytest.raises(Lwm2mError) as again:
        a.deregister(reg_id, now=T0 + 3)
    assert code_of(again) == ResponseCode.NOT_FOUND
    assert a.registrations.by_endpoint("dev") is None


def test_a_stale_deregister_is_404_not_a_second_event(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    reg_id = register(a, "dev")
    b.registrations.require(reg_id)  # both cache it
    b.deregister(reg_id, now=T0 + 1)
    with pytest.raises(Lwm2mError) as stale:
        a.deregister(reg_id, now=T0 + 2)
    assert code_of(stale) == ResponseCode.NOT_FOUND


def test_register_again_on_b_replaces_the_registration_a_made(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    old = register(a, "dev")
    a.observation_started(Observation(b"tok", "dev", old, (LwM2mPath.parse("/3/0/1"),)))
    result = b.register(["ep=dev", "lt=100"], LINKS, now=T0 + 5, address=ADDR)
    assert [type(e) for e in result.events][:2] == [Replaced, Registered]
    assert isinstance(result.events[0], Replaced)
    assert result.events[0].old.registration_id == old
    with pytest.raises(Lwm2mError) as stale:
        a.update(old, [], now=T0 + 6)
    assert code_of(stale) == ResponseCode.NOT_FOUND
    new = a.registrations.by_endpoint("dev")  # a's next lookup finds b's registration
    assert new is not None and new.registration_id != old
    # the old registration's observation is gone with it: its notification is refused (RST)
    assert a.notification(b"tok", b"", None, now=T0 + 7).registration is None
    assert a.observations.by_token(b"tok") is None


def test_expiry_is_reported_once_by_two_nodes(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    reg_id = register(a, "dev", lt=100)
    b.registrations.require(reg_id)  # both cache it, both have its deadline
    assert a.next_deadline() == b.next_deadline() == T0 + 100
    expired = [e for core in (a, b) for e in core.tick(T0 + 100) if isinstance(e, Expired)]
    assert [e.registration.registration_id for e in expired] == [reg_id]
    assert a.registrations.cached(reg_id) is None
    assert b.registrations.cached(reg_id) is None
    assert a.registrations.get(reg_id) is None
    assert a.next_deadline() is None and b.next_deadline() is None


def test_the_sweep_expires_what_no_cache_holds_once(engine: Engine) -> None:
    dead = node(engine.open(), "a")
    reg_id = register(dead, "dev", lt=100)  # then this node stops ticking (killed)
    b = node(engine.open(), "b", sweep_interval=60.0)
    c = node(engine.open(), "c", sweep_interval=60.0)
    for core in (b, c):  # fresh caches: forget what load() read, as another process's
        core.registrations = type(core.registrations)(grace_period=0, store=core.store)
    assert b.next_deadline() == 0.0  # the first tick sweeps
    assert b.tick(T0 + 50) == [] and c.tick(T0 + 50) == []  # not due yet
    assert b.next_deadline() == T0 + 50 + 60
    expired = [e for core in (b, c) for e in core.tick(T0 + 110) if isinstance(e, Expired)]
    assert [e.registration.registration_id for e in expired] == [reg_id]
    assert b.store.get_registration(reg_id) is None


def test_send_from_a_registration_another_node_made(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    register(a, "nosec")
    psk = IdentityBinding("psk", "dev-psk")
    register(a, "secure", transport="coaps", identity=psk)
    assert b.sender(ADDR).endpoint == "nosec"
    assert b.sender(Address("198.51.100.1", 1), psk).endpoint == "secure"
    with pytest.raises(Lwm2mError) as unknown:
        b.sender(Address("198.51.100.2", 2))
    assert code_of(unknown) == ResponseCode.NOT_FOUND


def test_notification_on_b_of_an_observation_started_on_a(engine: Engine) -> None:
    a, b = node(engine.open(), "a"), node(engine.open(), "b")
    reg_id = register(a, "dev")
    a.observation_started(Observation(b"tok", "dev", reg_id, (LwM2mPath.parse("/3/0/1"),)))
    result = b.notification(b"tok", b"x", 0, now=T0 + 1)
    assert result.registration is not None and result.registration.registration_id == reg_id
    assert b.cancel_observation(b"tok") is not None
    assert a.store.observation_by_token(b"tok") is None


def test_an_update_of_lifetime_and_address_only_touches_the_row(tmp_path: Path) -> None:
    """The hot path: no rewrite of the JSON record for an Update that moves the device or
    changes its lifetime: the row's lifetime and address columns, and its times in
    ``registration_times`` (schema 5)."""
    path = tmp_path / "s.sqlite"
    store = SqliteStore(path)
    core = node(store, "a")
    reg_id = register(core, "dev")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    before = _json(path, reg_id)
    core.update(reg_id, ["lt=900"], now=T0 + 5, address=Address("192.0.2.77", 5))
    store.conn.set_trace_callback(None)
    assert _json(path, reg_id) == before
    writes = [s for s in statements if s.split()[0] in ("UPDATE", "INSERT", "DELETE")]
    assert len(writes) == 2, writes
    assert writes[0].startswith("UPDATE registrations SET lifetime=900, host=")
    assert "data" not in writes[0].split(" WHERE ")[0]
    assert writes[1].startswith("INSERT OR REPLACE INTO registration_times(")
    assert not [s for s in statements if s.startswith("SELECT")]  # the cache answered
    reread = SqliteStore(path).get_registration(reg_id)
    assert isinstance(reread, Registration)
    assert (reread.lifetime, reread.address, reread.last_update) == (
        900,
        Address("192.0.2.77", 5),
        T0 + 5,
    )
    # an Update that changes more (the object list) rewrites the record
    core.update(reg_id, [], b"</3/0>", 40, now=T0 + 6)
    assert _json(path, reg_id) != before
    store.close()


def test_a_keep_alive_update_assigns_only_the_times(tmp_path: Path) -> None:
    """A keep-alive (same lifetime, same address) writes last_update and expires_at only, so
    sqlite leaves the address index alone (issue 10: re-filing it cost ~15 µs per Update at
    100k rows); when the row holds another address than this core's cache (another process
    moved the device), the Update's own address is what is stored."""
    path = tmp_path / "s.sqlite"
    store_a, store_b = SqliteStore(path), SqliteStore(path)
    a, b = node(store_a, "a"), node(store_b, "b")
    reg_id = register(a, "dev")
    assert b.registrations.get(reg_id) is not None  # b caches it at ADDR
    statements: list[str] = []
    store_a.conn.set_trace_callback(statements.append)
    a.update(reg_id, [], now=T0 + 5, address=ADDR)
    store_a.conn.set_trace_callback(None)
    writes = [s for s in statements if s.split()[0] in ("UPDATE", "INSERT", "DELETE")]
    assert len(writes) == 1
    assigned = writes[0].split(" WHERE ")[0]
    assert assigned.startswith("UPDATE registration_times SET ")  # the narrow table alone
    assert "last_update" in assigned and "host" not in assigned and "port" not in assigned
    elsewhere = Address("198.51.100.3", 7)
    a.update(reg_id, [], now=T0 + 6, address=elsewhere)  # the device moved, seen by a
    b.update(reg_id, [], now=T0 + 7, address=ADDR)  # b's cache: ADDR; the device is back
    reread = SqliteStore(path).get_registration(reg_id)
    assert reread is not None and (reread.address, reread.last_update) == (ADDR, T0 + 7)
    store_a.close()
    store_b.close()


def _json(path: Path, reg_id: str) -> str:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT data FROM registrations WHERE id=?", (reg_id,)).fetchone()
    return str(row[0])


class FailingStore(MemoryStore):
    """A MemoryStore whose next ``failures`` removals/puts raise ``StoreError``."""

    failures = 0

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("disk full")

    def put_registration(self, registration: Registration) -> Registration | None:
        self._maybe_fail()
        return super().put_registration(registration)

    def remove_registration(
        self, registration_id: str, *, expires_at: float | None = None
    ) -> Registration | None:
        self._maybe_fail()
        return super().remove_registration(registration_id, expires_at=expires_at)


def test_a_register_the_store_refuses_changes_nothing() -> None:
    store = FailingStore()
    core = node(store, "a")
    old = register(core, "dev")
    store.failures = 1
    with pytest.raises(StoreError):
        register(core, "dev", now=T0 + 1)
    assert core.registrations.by_endpoint("dev") == store.get_registration(old)
    assert len(core.registrations) == 1


def test_an_expiry_the_store_refuses_is_retried() -> None:
    store = FailingStore()
    core = node(store, "a")
    reg_id = register(core, "dev", lt=100)
    store.failures = 1
    assert core.tick(T0 + 100) == []  # not reported: the store still has it
    assert core.registrations.cached(reg_id) is not None
    assert core.next_deadline() == T0 + 100 + EXPIRY_RETRY
    events = core.tick(T0 + 100 + EXPIRY_RETRY)
    assert [type(e) for e in events] == [Expired]
    assert store.get_registration(reg_id) is None

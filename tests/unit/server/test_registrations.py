"""RegistrationBook: register/update/deregister/replace and expiry through one heap."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.events import Deregistered, Registered, Replaced, Updated
from lwm2m_server.core.registration import Registration, UpdateRequest
from lwm2m_server.core.registrations import RegistrationBook, new_registration_id
from lwm2m_server.core.sorted_book import SortedRegistrationBook
from object_models.errors import Lwm2mError, ResponseCode

from .helpers import ADDR, Clock, request


def counting_ids() -> RegistrationBook:
    counter = itertools.count()
    return RegistrationBook(grace_period=0, id_factory=lambda: f"r{next(counter)}")


def test_register_then_lookup(clock: Clock) -> None:
    book = RegistrationBook()
    out = book.register(request("a", lifetime=60), now=clock.now, address=ADDR)
    reg = out.registration
    assert out.replaced is None
    assert out.events == (Registered(reg, None),)
    assert book.get(reg.registration_id) is reg
    assert book.by_endpoint("a") is reg
    assert book.by_address(ADDR) is reg
    assert reg.location == f"rd/{reg.registration_id}"
    assert reg.registered_at == reg.last_update == clock.now
    assert book.next_deadline() == clock.now + 60 + book.grace_period


def test_an_address_shared_by_several_registrations_names_none(clock: Clock) -> None:
    """NoSec devices behind one NAT binding share an address: ``by_address`` must not pick the
    latest of them; ``at_address`` lists them all, and leaving one makes the other unique."""
    book = counting_ids()
    a = book.register(request("a"), now=clock.now, address=ADDR).registration
    b = book.register(request("b"), now=clock.now, address=ADDR).registration
    assert book.by_address(ADDR) is None
    assert book.at_address(ADDR) == [a, b]
    book.deregister(b.registration_id, now=clock.now)
    assert book.by_address(ADDR) is a
    assert book.at_address(ADDR) == [a]


def test_registrations_are_indexed_by_identity(clock: Clock) -> None:
    book = counting_ids()
    ident = IdentityBinding("psk", "id-a")
    a = book.register(request("a"), now=clock.now, address=ADDR, identity=ident).registration
    assert book.with_identity(ident) == [a]
    moved = book.update(
        a.registration_id, UpdateRequest(), now=clock.now, address=Address("h", 2), identity=ident
    ).registration
    assert book.with_identity(ident) == [moved]
    book.register(request("a"), now=clock.now, address=ADDR)  # re-Register over NoSec
    assert book.with_identity(ident) == []


def test_registration_ids_are_short_and_distinct() -> None:
    ids = {new_registration_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 10 and "/" not in i for i in ids)


def test_colliding_id_factory_is_retried(clock: Clock) -> None:
    ids = iter(["x", "x", "y"])
    book = RegistrationBook(id_factory=lambda: next(ids))
    book.register(request("a"), now=clock.now, address=ADDR)
    reg = book.register(request("b"), now=clock.now, address=ADDR).registration
    assert reg.registration_id == "y"


def test_second_register_replaces(clock: Clock) -> None:
    book = counting_ids()
    first = book.register(request("a"), now=clock.now, address=ADDR).registration
    out = book.register(request("a", lifetime=30), now=clock.advance(1), address=ADDR)
    assert out.replaced == first
    assert out.events == (Replaced(first, out.registration), Registered(out.registration, first))
    assert book.get(first.registration_id) is None
    assert len(book) == 1
    # the old registration's heap entry is stale: only the new deadline counts
    assert book.next_deadline() == clock.now + 30
    assert book.expire(clock.now + 29) == []
    assert book.expire(clock.now + 30) == [out.registration]


def test_update_and_deregister(clock: Clock) -> None:
    book = counting_ids()
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    new_addr = Address("198.51.100.7", 40000)
    out = book.update(
        reg.registration_id, UpdateRequest(lifetime=120), now=clock.advance(50), address=new_addr
    )
    assert out.events == (Updated(out.registration, reg),)
    assert out.registration.lifetime == 120
    assert out.registration.address == new_addr
    assert book.by_address(ADDR) is None
    assert book.by_address(new_addr) is out.registration
    assert book.next_deadline() == clock.now + 120
    gone = book.deregister(reg.registration_id, now=clock.now)
    assert gone.events == (Deregistered(out.registration),)
    assert len(book) == 0
    assert book.next_deadline() is None


@pytest.mark.parametrize("op", ["update", "deregister"])
def test_unknown_id_is_4_04(clock: Clock, op: str) -> None:
    book = RegistrationBook()
    with pytest.raises(Lwm2mError) as info:
        if op == "update":
            book.update("nope", UpdateRequest(), now=clock.now)
        else:
            book.deregister("nope", now=clock.now)
    assert info.value.code is ResponseCode.NOT_FOUND


def test_other_identity_is_4_03(clock: Clock) -> None:
    book = RegistrationBook()
    alice = IdentityBinding("psk", "alice")
    reg = book.register(request("a"), now=clock.now, address=ADDR, identity=alice).registration
    for identity in (None, IdentityBinding("psk", "mallory")):
        with pytest.raises(Lwm2mError) as info:
            book.update(reg.registration_id, UpdateRequest(), now=clock.now, identity=identity)
        assert info.value.code is ResponseCode.FORBIDDEN
        with pytest.raises(Lwm2mError):
            book.deregister(reg.registration_id, now=clock.now, identity=identity)
    book.update(reg.registration_id, UpdateRequest(), now=clock.now, identity=alice)


def test_grace_period(clock: Clock) -> None:
    book = RegistrationBook(grace_period=15)
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    assert reg.expires_at == clock.now + 60
    assert book.expire(clock.now + 74.9) == []
    assert book.expire(clock.now + 75) == [reg]
    with pytest.raises(ValueError):
        RegistrationBook(grace_period=-1)


def test_update_postpones_expiry(clock: Clock) -> None:
    book = counting_ids()
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    for _ in range(100):
        clock.advance(50)
        assert book.expire(clock.now) == []
        book.update(reg.registration_id, UpdateRequest(), now=clock.now)
    assert book.expire(clock.now + 59) == []
    assert [r.endpoint for r in book.expire(clock.now + 60)] == ["a"]


def test_keep_alive_updates_leave_the_expiry_heap_alone_and_still_postpone(clock: Clock) -> None:
    """A keep-alive Update moves the deadline later without a heap operation (the old entry is
    re-filed when it comes due); a shorter lifetime takes effect at once."""
    book = counting_ids()
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    other = book.register(request("b", lifetime=90), now=clock.now, address=ADDR).registration
    for _ in range(100):
        clock.advance(50)
        assert book.expire(clock.now) == []
        book.update(reg.registration_id, UpdateRequest(), now=clock.now)
        book.update(other.registration_id, UpdateRequest(), now=clock.now)
    assert len(book._heap) == 2  # nothing pushed per Update
    assert book.next_deadline() is not None and book.next_deadline() <= clock.now + 60
    book.update(other.registration_id, UpdateRequest(lifetime=10), now=clock.now)
    assert book.next_deadline() == clock.now + 10
    assert [r.endpoint for r in book.expire(clock.now + 10)] == ["b"]
    assert book.expire(clock.now + 59) == []
    assert book.next_deadline() == clock.now + 60
    assert [r.endpoint for r in book.expire(clock.now + 60)] == ["a"]


def test_ten_thousand_registrations_expire_in_deadline_order(clock: Clock) -> None:
    """10k clients, random lifetimes, a mix of updates, deregistrations and replacements; the
    single heap must hand back exactly the live ones, in deadline order, each once."""
    rng = random.Random(7)
    book = counting_ids()
    t0 = clock.now
    expected: dict[str, float] = {}  # endpoint -> deadline
    ids: dict[str, str] = {}
    for n in range(10_000):
        ep = f"ep{n}"
        reg = book.register(
            request(ep, lifetime=rng.randint(10, 5000)), now=t0 + n * 0.01, address=ADDR
        ).registration
        ids[ep] = reg.registration_id
        expected[ep] = reg.expires_at
    for n in rng.sample(range(10_000), 3000):  # updates with new lifetimes
        ep = f"ep{n}"
        reg = book.update(
            ids[ep], UpdateRequest(lifetime=rng.randint(10, 5000)), now=t0 + 200
        ).registration
        expected[ep] = reg.expires_at
    for n in rng.sample(range(10_000), 1000):  # deregistrations (some ids updated above)
        ep = f"ep{n}"
        book.deregister(ids[ep], now=t0 + 300)
        del expected[ep]
    for ep in rng.sample(sorted(expected), 500):  # re-registrations replace the old entry
        reg = book.register(request(ep, lifetime=rng.randint(10, 5000)), now=t0 + 400, address=ADDR)
        expected[ep] = reg.registration.expires_at
    assert len(book) == len(expected) == 9000
    # heap compaction keeps it bounded despite stale entries
    assert len(book._heap) <= 2 * len(book) + 1024

    seen: list[tuple[float, str]] = []
    now = t0
    while (deadline := book.next_deadline()) is not None:
        now = max(now, deadline) + rng.random() * 50
        for reg in book.expire(now):
            assert reg.expires_at <= now
            seen.append((reg.expires_at, reg.endpoint))
    assert sorted(ep for _, ep in seen) == sorted(expected)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all(expected[ep] == d for d, ep in seen)
    assert len(book) == 0


def test_restore_keeps_newest_per_endpoint(clock: Clock) -> None:
    src = counting_ids()
    old = src.register(request("a", lifetime=10), now=clock.now, address=ADDR).registration
    new = src.register(request("a", lifetime=10), now=clock.now + 5, address=ADDR).registration
    other = src.register(request("b", lifetime=10), now=clock.now, address=ADDR).registration
    book = RegistrationBook(grace_period=0)
    book.restore([new, old, other])
    assert book.by_endpoint("a") is new
    assert len(book) == 2
    assert book.expire(clock.now + 1000) == [other, new]


def test_registration_ids_are_random_url_safe_and_not_shared_with_a_forked_child() -> None:
    """Ids come from a pool of random bytes (one ``os.urandom`` per 1,024 ids): distinct,
    10 URL-safe characters (a prefix shared by runs of ids, then 48 random bits), and a forked
    worker (``--workers``) never hands out its parent's."""
    import os
    import re

    ids = {new_registration_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{10}", i) for i in ids)
    assert len({i[2:] for i in ids}) == 5000  # the random part alone tells them apart
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write_end, new_registration_id().encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 10 and child != new_registration_id()


def test_ids_made_in_a_row_share_their_prefix() -> None:
    """The store's id index takes a loop iteration's Registers on neighbouring entries: ids
    made one after the other sort together (a handful of prefixes per thousand ids)."""
    ids = [new_registration_id() for _ in range(1000)]
    assert len({i[:2] for i in ids}) <= 1000 // 256 + 2


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),  # endpoints repeat: the newest must stay
            st.integers(0, 3),  # last_update (ties too)
            st.integers(1, 50),  # lifetime
            st.sampled_from([ADDR, Address("h", 2)]),  # shared addresses
            st.sampled_from([None, IdentityBinding("psk", "x")]),
        ),
        max_size=12,
    )
)
def test_a_start_up_restore_indexes_what_a_restore_one_at_a_time_does(
    rows: list[tuple[str, int, int, Address, IdentityBinding | None]],
) -> None:
    """An empty book is restored in bulk (start-up, issue 10's restart at 100k); the result is
    the book that restoring the registrations one at a time makes: the same registrations in
    the same order, lookups, address and identity order, deadlines, expiry order, and the
    sorted endpoint list the API pages."""
    regs = [
        Registration(f"r{i}", ep, addr, lifetime=lt, identity=ident, registered_at=t, last_update=t)
        for i, (ep, t, lt, addr, ident) in enumerate(rows)
    ]
    bulk = SortedRegistrationBook(grace_period=1)
    bulk.restore(regs)
    one_by_one = SortedRegistrationBook(grace_period=1)
    for reg in regs:
        one_by_one.restore([reg])
    assert list(bulk) == list(one_by_one)
    for ep in "abcd":
        assert bulk.by_endpoint(ep) == one_by_one.by_endpoint(ep)
    for addr in (ADDR, Address("h", 2)):
        assert bulk.at_address(addr) == one_by_one.at_address(addr)
    assert bulk.with_identity(IdentityBinding("psk", "x")) == one_by_one.with_identity(
        IdentityBinding("psk", "x")
    )
    assert bulk.clients_page(None, 10) == one_by_one.clients_page(None, 10)
    assert bulk.next_deadline() == one_by_one.next_deadline()
    assert bulk.expire(100.0) == one_by_one.expire(100.0)
    assert len(bulk) == len(one_by_one) == 0

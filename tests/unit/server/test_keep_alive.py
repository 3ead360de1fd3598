"""The keep-alive Update (``POST /rd/{id}``, nothing in it, from the registered address) and
the branches the core takes for it (issue 10's hot path): the registration the adapter looked
up is used as given, an equal address keeps the registered ``Address`` object, a bare Update
only touches the store. Each branch must give what the general path gives: an Update that
changes the lifetime, the address or the identity is stored and indexed in full."""

from __future__ import annotations

import itertools

import pytest

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.events import Updated
from lwm2m_server.core.registration import BARE_UPDATE, Registration, UpdateRequest
from lwm2m_server.core.registrations import RegistrationBook
from lwm2m_server.core.server import ServerCore
from lwm2m_server.store.memory import MemoryStore
from object_models.errors import Lwm2mError, ResponseCode

from .helpers import ADDR, Clock, request


class TouchCounting(MemoryStore):
    """A memory store that records how each Update reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.touched: list[bool] = []  # ``moved`` of each touch
        self.rewritten = 0

    def touch_registration(self, registration: Registration, *, moved: bool = True) -> bool:
        self.touched.append(moved)
        return super().touch_registration(registration, moved=moved)

    def update_registration(self, registration: Registration) -> bool:
        self.rewritten += 1
        return super().update_registration(registration)


def book_on(store: MemoryStore) -> RegistrationBook:
    counter = itertools.count()
    return RegistrationBook(grace_period=0, id_factory=lambda: f"r{next(counter)}", store=store)


def test_a_bare_update_is_the_shared_request_and_only_touches_the_store(clock: Clock) -> None:
    assert UpdateRequest.parse([], b"") is BARE_UPDATE
    store = TouchCounting()
    book = book_on(store)
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    same_place = Address(ADDR.host, ADDR.port)  # equal, another object (as every request's)
    out = book.update(reg.registration_id, BARE_UPDATE, now=clock.advance(10), address=same_place)
    assert out.registration.address is reg.address  # not moved: the indexes are left alone
    assert out.events == (Updated(out.registration, reg),)
    assert store.touched == [False] and store.rewritten == 0
    assert store.get_registration(reg.registration_id) == out.registration
    assert book.by_address(ADDR) is out.registration
    assert book.next_deadline() == clock.now + 60


@pytest.mark.parametrize(
    ("update", "address"),
    [
        (UpdateRequest(lifetime=120), ADDR),
        (BARE_UPDATE, Address("198.51.100.7", 40000)),
        (UpdateRequest(lifetime=30), Address(ADDR.host, ADDR.port + 1)),
    ],
)
def test_an_update_that_changes_lifetime_or_address_is_stored_and_indexed(
    clock: Clock, update: UpdateRequest, address: Address
) -> None:
    store = TouchCounting()
    book = book_on(store)
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    out = book.update(reg.registration_id, update, now=clock.advance(10), address=address)
    stored = store.get_registration(reg.registration_id)
    assert stored == out.registration
    assert stored is not None and stored.address == address
    assert stored.lifetime == (update.lifetime or 60)
    assert store.touched == [True]
    assert book.at_address(address) == [out.registration]
    if address != ADDR:
        assert book.at_address(ADDR) == []
    assert book.next_deadline() == clock.now + (update.lifetime or 60)


def test_an_update_that_changes_more_is_rewritten(clock: Clock) -> None:
    store = TouchCounting()
    book = book_on(store)
    reg = book.register(request("a", lifetime=60), now=clock.now, address=ADDR).registration
    out = book.update(reg.registration_id, UpdateRequest(binding="UQ"), now=clock.advance(1))
    assert out.registration.queue_mode
    assert store.touched == [] and store.rewritten == 1
    assert store.get_registration(reg.registration_id) == out.registration


def test_the_registration_the_caller_looked_up_gives_the_same_update(clock: Clock) -> None:
    looked_up, by_id = book_on(MemoryStore()), book_on(MemoryStore())
    for book in (looked_up, by_id):
        book.register(request("a", lifetime=60), now=clock.now, address=ADDR)
    previous = looked_up.get("r0")
    a = looked_up.update("r0", BARE_UPDATE, now=clock.now + 5, address=ADDR, previous=previous)
    b = by_id.update("r0", BARE_UPDATE, now=clock.now + 5, address=ADDR)
    assert a.registration == b.registration and a.previous is previous
    assert looked_up.get("r0") is a.registration


def test_an_identity_equal_to_the_registered_one_is_accepted_another_refused(
    clock: Clock,
) -> None:
    """The identity is compared by value: the resolver makes a new binding per request."""
    book = book_on(MemoryStore())
    alice = IdentityBinding("psk", "alice")
    reg = book.register(request("a"), now=clock.now, address=ADDR, identity=alice).registration
    again = IdentityBinding("psk", "alice")
    out = book.update(reg.registration_id, BARE_UPDATE, now=clock.advance(1), identity=again)
    assert out.registration.identity is alice
    for other in (IdentityBinding("psk", "mallory"), None):
        with pytest.raises(Lwm2mError) as refused:
            book.update(reg.registration_id, BARE_UPDATE, now=clock.now, identity=other)
        assert refused.value.code == ResponseCode.FORBIDDEN


def test_core_update_with_the_looked_up_registration(clock: Clock) -> None:
    core = ServerCore(grace_period=0)
    reg = core.register(["ep=a", "lt=60"], b"</3/0>", now=clock.now, address=ADDR).registration
    assert reg is not None
    result = core.update(
        reg.registration_id, [], now=clock.advance(5), address=ADDR, registration=reg
    )
    assert result.registration is not None
    assert result.registration.last_update == clock.now
    assert result.events == (Updated(result.registration, reg),)
    assert core.store.get_registration(reg.registration_id) == result.registration
    with pytest.raises(Lwm2mError) as gone:
        core.update("nope", [], now=clock.now, address=ADDR, registration=None)
    assert gone.value.code == ResponseCode.NOT_FOUND

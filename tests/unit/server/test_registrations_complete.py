"""A registration book that holds every registration of its store (``RegistrationBook.complete``:
a store only this process writes, loaded at start-up) answers lookups by address from memory;
it must answer exactly what the general path, which reads the store through on a miss, does."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import RegistrationRequest, UpdateRequest
from lwm2m_server.core.registrations import RegistrationBook
from lwm2m_server.core.server import ServerCore
from lwm2m_server.store.sqlite import SqliteStore
from object_models.errors import Lwm2mError

from .helpers import Clock

ADDRESSES = [Address("192.0.2.1", 5683), Address("192.0.2.1", 5684), Address("198.51.100.7", 9)]
NEVER_USED = Address("203.0.113.9", 5683)
IDENTITY = IdentityBinding("psk", "dev-key")


class CountingStore(SqliteStore):
    """The sqlite store, counting its reads by address. Opened ``shared=True`` it says another
    process may write it; opened as the server opens it, that nobody else does (what
    ``ServerCore.load`` looks for)."""

    address_reads = 0

    def registrations_by_address(self, address: Address) -> list:  # type: ignore[type-arg]
        self.address_reads += 1
        return super().registrations_by_address(address)


@contextmanager
def stores() -> Iterator[tuple[CountingStore, CountingStore]]:
    with tempfile.TemporaryDirectory() as tmp:
        general = CountingStore(Path(tmp) / "general.db", shared=True)
        complete = CountingStore(Path(tmp) / "complete.db")  # as the server opens it
        try:
            yield general, complete
        finally:
            general.close()
            complete.close()


def books(
    general_store: CountingStore, complete_store: CountingStore
) -> tuple[RegistrationBook, RegistrationBook]:
    ids = iter(range(10**6))
    general = RegistrationBook(
        grace_period=0, store=general_store, id_factory=lambda: f"g{next(ids)}"
    )
    ids2 = iter(range(10**6))
    complete = RegistrationBook(
        grace_period=0, store=complete_store, id_factory=lambda: f"g{next(ids2)}"
    )
    complete.complete = True
    return general, complete


def lookups(book: RegistrationBook) -> list[list[tuple[str, str, Address]]]:
    """What the book says of every address, the never used one included (by value: the two
    books' objects are distinct)."""
    return [
        [(r.registration_id, r.endpoint, r.address) for r in book.at_address(address)]
        for address in [*ADDRESSES, NEVER_USED]
    ]


operation = st.one_of(
    st.tuples(
        st.just("register"),
        st.sampled_from("abcd"),
        st.sampled_from(ADDRESSES),
        st.sampled_from([None, IDENTITY]),
        st.integers(1, 100),
    ),
    st.tuples(st.just("update"), st.integers(0, 20), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("deregister"), st.integers(0, 20)),
    st.tuples(st.just("expire"), st.integers(0, 120)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=25))
def test_a_complete_book_answers_by_address_as_the_general_path(
    operations: list[tuple[object, ...]],
) -> None:
    """Registers (new, replacing, from shared addresses, NoSec or bound), Updates that move a
    device, Deregisters (known ids or not) and expiries, applied to a book that reads the store
    through on a miss and to a complete one: after every step both say the same of every
    address, Send's attribution (``by_address``) included, and the complete one never reads
    the store by address. New cores loading the two stores then agree too (a restart)."""
    clock = Clock()
    with stores() as (general_store, complete_store):
        general, complete = books(general_store, complete_store)
        made: list[str] = []
        for op in operations:
            outcomes = []
            for book in (general, complete):
                try:
                    outcomes.append(apply(book, op, clock, made))
                except Lwm2mError as exc:
                    outcomes.append(exc.code)
            assert outcomes[0] == outcomes[1]
            if op[0] == "register" and isinstance(outcomes[0], str):
                made.append(outcomes[0])
            if op[0] == "expire":
                clock.advance(float(op[1]))  # type: ignore[arg-type]
            assert lookups(general) == lookups(complete)
            for address in [*ADDRESSES, NEVER_USED]:
                one, other = general.by_address(address), complete.by_address(address)
                assert (one and one.registration_id) == (other and other.registration_id)
        assert complete_store.address_reads == 0
        # a restart: each store loaded by a new core (the load orders what the live books
        # filed in the same second by id, so the reloaded books are compared with each other)
        restarted, restarted_complete = ServerCore(grace_period=0), ServerCore(grace_period=0)
        restarted.use_store(general_store)
        restarted_complete.use_store(complete_store)
        assert not restarted.registrations.complete
        assert restarted_complete.registrations.complete
        assert lookups(restarted.registrations) == lookups(restarted_complete.registrations)
        assert complete_store.address_reads == 0


def apply(book: RegistrationBook, op: tuple[object, ...], clock: Clock, made: list[str]) -> object:
    """One operation; its outcome by value (the new id, the moved id, the expired ids)."""
    kind = op[0]
    if kind == "register":
        _, endpoint, address, identity, lifetime = op
        outcome = book.register(
            RegistrationRequest(endpoint=str(endpoint), lifetime=int(lifetime)),  # type: ignore[call-overload]
            now=clock.now,
            address=address,  # type: ignore[arg-type]
            identity=identity,  # type: ignore[arg-type]
        )
        return outcome.registration.registration_id
    if kind == "update":
        _, index, address = op
        reg_id = made[int(index) % len(made)] if made else "nobody"  # type: ignore[call-overload]
        updated = book.update(reg_id, UpdateRequest(), now=clock.now, address=address)  # type: ignore[arg-type]
        return updated.registration.registration_id
    if kind == "deregister":
        reg_id = made[int(op[1]) % len(made)] if made else "nobody"  # type: ignore[call-overload]
        book.deregister(reg_id, now=clock.now)
        return reg_id
    return [r.registration_id for r in book.expire(clock.now + float(op[1]))]  # type: ignore[arg-type]


def test_a_shared_store_is_read_through_by_address() -> None:
    """A store that does not say ``one_process`` (Redis, several workers; here the sqlite store
    opened ``shared=True``) may hold another process's registration: the book finds it there."""
    with stores() as (general_store, _):
        core = ServerCore(grace_period=0)
        core.use_store(general_store)
        assert not core.registrations.complete
        other = ServerCore(grace_period=0)
        other.use_store(general_store)
        address = ADDRESSES[0]
        mine = other.registrations.register(
            RegistrationRequest(endpoint="elsewhere"), now=1.0, address=address
        ).registration
        assert [r.registration_id for r in core.registrations.at_address(address)] == [
            mine.registration_id
        ]
        assert general_store.address_reads >= 1


def test_an_address_nobody_registered_from_is_not_read_from_a_one_process_store() -> None:
    """The point of ``complete``: a Send from an unknown address (4.04) costs no store read, so
    the store needs no index by address."""
    with stores() as (_, complete_store):
        core = ServerCore(grace_period=0)
        core.use_store(complete_store)
        assert core.registrations.at_address(NEVER_USED) == []
        try:
            core.sender(NEVER_USED)
        except Lwm2mError as exc:
            assert exc.code.dotted == "4.04"
        else:
            raise AssertionError("a Send from nowhere was attributed")
        assert complete_store.address_reads == 0

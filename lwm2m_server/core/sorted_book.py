"""``SortedRegistrationBook``: a ``RegistrationBook`` that also keeps its endpoint names sorted,
so the HTTP API can serve ``GET /api/clients`` a page at a time (``clients_page``) without
walking or sorting every registration per request.

With 100k clients, listing them all in one response took 8-36 s of event-loop time (issue 11):
CoAP was frozen meanwhile. A page is ``bisect`` into the sorted names plus ``limit`` lookups,
so its cost does not grow with the number of clients. The sorted list is maintained where the
book changes (``_put``/``_forget``), so registrations restored at start-up, expiries and
replacements are all reflected without events.

The names are a ``sortedcontainers.SortedList`` (a list of sorted blocks of about ``load``
names), not one flat sorted list: inserting into a flat list moves every name after the slot,
a ``memmove`` that grew with the fleet (18 µs per Register at 100k random endpoint names,
more than a tenth of the Register). A block insert moves at most ``2 * load`` pointers, so
the cost stays flat to 100k clients and beyond (docs/performance.md, "Register path (session
5)").

Pages are keyed on the endpoint name (the API's cursor is the last name of the previous page),
so they are stable under concurrent change: a client that registers between two pages appears
on a later page when its name sorts after the cursor, and is never listed twice.

``ServerCore`` keeps its registrations in this book; ``replacing`` swaps one in for an existing
plain book (tests that compare the two listing paths).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from .registration import Registration
from .registrations import DEFAULT_GRACE_PERIOD, RegistrationBook, new_registration_id

if TYPE_CHECKING:
    from lwm2m_server.store.base import RegistrationStore


class SortedRegistrationBook(RegistrationBook):
    """A ``RegistrationBook`` with its endpoint names in sorted order (``clients_page``)."""

    def __init__(
        self,
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        id_factory: Callable[[], str] = new_registration_id,
        store: RegistrationStore | None = None,
        load: int = 1000,
    ) -> None:
        super().__init__(grace_period=grace_period, id_factory=id_factory, store=store)
        self._endpoints = SortedList()
        if load != self._endpoints._load:
            # block size; tests make it tiny so that a few dozen names split and merge blocks
            self._endpoints._reset(load)

    @classmethod
    def replacing(cls, book: RegistrationBook) -> SortedRegistrationBook:
        """A sorted book with ``book``'s settings and registrations (so swapping it in after
        the core is built loses nothing)."""
        sorted_book = cls(grace_period=book.grace_period, id_factory=book._new_id, store=book.store)
        sorted_book.restore(book)
        return sorted_book

    # -- the API's ClientPages -----------------------------------------------------------------
    def clients_page(self, after: str | None, limit: int) -> list[Registration]:
        """Up to ``limit`` registrations whose endpoint sorts after ``after`` (from the first
        when None), in endpoint order."""
        names = self._endpoints
        start = 0 if after is None else names.bisect_right(after)
        page: list[Registration] = []
        for name in names.islice(start, start + limit):
            registration = self.by_endpoint(name)
            if registration is not None:  # pragma: no branch - the list tracks the book
                page.append(registration)
        return page

    def client_count(self) -> int:
        return len(self)

    # -- keeping the names sorted --------------------------------------------------------------
    def _put(self, registration: Registration) -> None:
        name = registration.endpoint
        listed = name in self._by_endpoint  # the names are exactly the book's endpoints
        RegistrationBook._put(self, registration)  # (no ``super()`` object: every Register)
        if not listed:
            self._endpoints.add(name)

    def _restored(self) -> None:
        # a bulk restore fills an empty book: one sort (``update`` of an empty SortedList)
        # instead of a block insert each
        self._endpoints.clear()
        self._endpoints.update(self._by_endpoint)

    def _forget(self, registration_id: str) -> None:
        registration = self.cached(registration_id)
        super()._forget(registration_id)
        if registration is None or registration.endpoint in self._by_endpoint:
            return
        self._endpoints.discard(registration.endpoint)

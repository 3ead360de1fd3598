"""Property test: ``SortedRegistrationBook``'s pages (the API's ``GET /api/clients``) agree with
a plain sorted list of the book's endpoints under random Registers (new names and
replacements), Deregisters, expiries and page cuts. The book's sorted index is a blocked list
(``sortedcontainers``); a block size of 4 makes a few dozen names split and merge blocks, the
code paths a 1000-name block reaches only at fleet size."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m_server.core.sorted_book import SortedRegistrationBook

from .helpers import ADDR, request

names = st.text(alphabet="abcxyz019-", min_size=1, max_size=4)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("register"), names, st.integers(1, 100)),
        st.tuples(st.just("deregister"), names, st.just(0)),
        st.tuples(st.just("advance"), st.just(""), st.integers(0, 60)),
        st.tuples(st.just("page"), st.one_of(st.just(""), names), st.integers(1, 9)),
    ),
    max_size=150,
)


def _page(book: SortedRegistrationBook, after: str | None, limit: int) -> list[str]:
    return [r.endpoint for r in book.clients_page(after, limit)]


@settings(max_examples=150, deadline=None)
@given(ops, st.sampled_from([4, 1000]))
def test_pages_match_a_sorted_model(operations: list[tuple[str, str, int]], load: int) -> None:
    counter = itertools.count()
    book = SortedRegistrationBook(grace_period=0, id_factory=lambda: f"r{next(counter)}", load=load)
    model: dict[str, tuple[str, float]] = {}  # endpoint -> (registration id, deadline)
    now = 0.0
    for op, name, value in operations:
        if op == "register":
            reg = book.register(request(name, lifetime=value), now=now, address=ADDR).registration
            model[name] = (reg.registration_id, now + value)
        elif op == "deregister" and name in model:
            book.deregister(model[name][0], now=now)
            del model[name]
        elif op == "advance":
            now += value
            for reg in book.expire(now):
                del model[reg.endpoint]
        elif op == "page":
            after = name or None
            expected = sorted(ep for ep in model if after is None or ep > after)[:value]
            assert _page(book, after, value) == expected
        assert book.client_count() == len(model)
    # walking every page with the cursor lists each endpoint once, in order
    walked: list[str] = []
    cursor: str | None = None
    while page := _page(book, cursor, 3):
        walked += page
        cursor = page[-1]
    assert walked == sorted(model)
    assert [r.registration_id for r in book.clients_page(None, len(model) + 1)] == [
        model[ep][0] for ep in sorted(model)
    ]

"""Property test: the heap-based RegistrationBook agrees with a naive model (a dict scanned on
every expiry) under random Register/Update/Deregister/expire sequences."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m_server.core.registration import UpdateRequest
from lwm2m_server.core.registrations import RegistrationBook

from .helpers import ADDR, request

ops = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, 9), st.integers(1, 100)),
        st.tuples(st.just("update"), st.integers(0, 9), st.integers(1, 100)),
        st.tuples(st.just("deregister"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("advance"), st.integers(0, 60), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=100, deadline=None)
@given(ops, st.sampled_from([0.0, 5.0]))
def test_book_matches_naive_model(operations: list[tuple[str, int, int]], grace: float) -> None:
    counter = itertools.count()
    book = RegistrationBook(grace_period=grace, id_factory=lambda: f"r{next(counter)}")
    model: dict[str, tuple[str, float]] = {}  # endpoint -> (id, deadline)
    now = 0.0
    for op, n, value in operations:
        ep = f"ep{n}"
        if op == "register":
            reg = book.register(request(ep, lifetime=value), now=now, address=ADDR).registration
            model[ep] = (reg.registration_id, now + value + grace)
        elif op == "update" and ep in model:
            book.update(model[ep][0], UpdateRequest(lifetime=value), now=now)
            model[ep] = (model[ep][0], now + value + grace)
        elif op == "deregister" and ep in model:
            book.deregister(model[ep][0], now=now)
            del model[ep]
        elif op == "advance":
            now += value
            expired = book.expire(now)
            due = sorted((d, i) for (i, d) in model.values() if d <= now)
            assert [(book.deadline(r), r.registration_id) for r in expired] == due
            for r in expired:
                del model[r.endpoint]
        assert len(book) == len(model)
        expected_next = min((d for _, d in model.values()), default=None)
        assert book.next_deadline() == expected_next

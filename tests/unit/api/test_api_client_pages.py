"""``GET /api/clients`` a page at a time (issue 11: one response with 100k clients froze CoAP):
limits, cursors, pages stable under concurrent (de)registrations, and the sorted index the real
server pages with (``SortedRegistrationBook``)."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_runtime.address import Address
from lwm2m_server.api import create_app
from lwm2m_server.api.listing import MAX_PAGE, SnapshotPages
from lwm2m_server.core.registration import RegistrationRequest, UpdateRequest
from lwm2m_server.core.sorted_book import SortedRegistrationBook

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]
ADDR = Address("192.0.2.1", 5683)


async def _page(api: Client, url: str) -> tuple[list[str], str | None]:
    """The endpoints of one page and the URL of the next (from the Link header), if any."""
    resp = await api.get(url)
    assert resp.status == 200, await resp.text()
    names = [c["endpoint"] for c in await resp.json()]
    link = resp.headers.get("Link")
    if link is None:
        assert "X-Next-Cursor" not in resp.headers
        return names, None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match is not None, link
    assert f"cursor={resp.headers['X-Next-Cursor']}" in match.group(1)
    return names, match.group(1)


@pytest.fixture
def book() -> SortedRegistrationBook:
    return SortedRegistrationBook(grace_period=0)


def _register(book: SortedRegistrationBook, name: str, now: float = 1000.0) -> str:
    out = book.register(RegistrationRequest(endpoint=name), now=now, address=ADDR)
    return out.registration.registration_id


@pytest.fixture
async def book_api(book: SortedRegistrationBook) -> AsyncIterator[Client]:
    """The API paging with the sorted book, as the real server does once it keeps one."""
    ops = FakeOps()
    app = create_app(ops, pages=book)
    async with TestServer(app) as server, TestClient(server) as client:
        yield client


async def test_default_page_is_the_whole_list_when_small(api: Client, ops: FakeOps) -> None:
    """Callers that expect a plain list (Leshan's UI, older scripts) still get one."""
    ops.add_client("dev-0")
    resp = await api.get("/api/clients")
    assert [c["endpoint"] for c in await resp.json()] == ["dev-0", "dev-1"]
    assert resp.headers["X-Total-Count"] == "2"
    assert "Link" not in resp.headers


async def test_pages_follow_the_link_header_to_every_client(api: Client, ops: FakeOps) -> None:
    for i in range(2, 12):
        ops.add_client(f"dev-{i:02d}")
    seen: list[str] = []
    url: str | None = "/api/clients?limit=3"
    pages = 0
    while url is not None:
        names, url = await _page(api, url)
        assert len(names) <= 3
        seen += names
        pages += 1
    assert seen == sorted(["dev-1"] + [f"dev-{i:02d}" for i in range(2, 12)])
    assert pages == 4


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=0", "limit=0 is outside 1..10000"),
        (f"limit={MAX_PAGE + 1}", f"limit={MAX_PAGE + 1} is outside 1..10000"),
        ("limit=ten", "limit='ten' is not a non-negative integer"),
        ("cursor=zzzz", "cursor='zzzz' is not a cursor this API issued"),
        ("cursor=%FF%FE", "is not a cursor this API issued"),
    ],
)
async def test_bad_limit_or_cursor_is_400_with_the_reason(
    api: Client, query: str, reason: str
) -> None:
    resp = await api.get(f"/api/clients?{query}")
    assert resp.status == 400
    assert reason in (await resp.json())["error"]


async def test_concurrent_changes_between_pages(
    book_api: Client, book: SortedRegistrationBook
) -> None:
    """A client registering between pages is listed once if it sorts after the cursor, a
    deregistered one is not listed, a re-registered (replaced) one is listed once."""
    ids = {name: _register(book, name) for name in ("a", "c", "e", "g", "i", "k")}
    first, url = await _page(book_api, "/api/clients?limit=2")
    assert first == ["a", "c"]
    _register(book, "b")  # before the cursor: already past, not listed
    _register(book, "d")  # after the cursor: on a later page
    book.deregister(ids["e"], now=1001.0)
    _register(book, "g", now=1002.0)  # replaced by a new registration: still once
    rest: list[str] = []
    while url is not None:
        names, url = await _page(book_api, url)
        rest += names
        _register(book, "h")  # registering again and again does not duplicate it
    assert first + rest == ["a", "c", "d", "g", "h", "i", "k"]


async def test_the_cursor_survives_its_client_leaving(
    book_api: Client, book: SortedRegistrationBook
) -> None:
    ids = {name: _register(book, name) for name in ("a", "b", "c", "d")}
    first, url = await _page(book_api, "/api/clients?limit=2")
    assert first == ["a", "b"] and url is not None
    book.deregister(ids["b"], now=1001.0)  # the cursor's own client
    assert (await _page(book_api, url))[0] == ["c", "d"]


async def test_health_counts_without_listing(
    book_api: Client, book: SortedRegistrationBook
) -> None:
    for name in ("x", "y"):
        _register(book, name)
    assert (await (await book_api.get("/api/health")).json())["clients"] == 2


def test_sorted_book_tracks_every_change_like_a_sort_of_the_book() -> None:
    """Random registers, replacements, updates, deregisters, expiries and a restore: the
    sorted names always equal sorting the book, and pages cut it without gaps."""
    rng = random.Random(11)
    book = SortedRegistrationBook(grace_period=0)
    now = 0.0
    for step in range(3000):
        now += 1
        roll = rng.random()
        names = [r.endpoint for r in book]
        if roll < 0.5 or not names:
            name = f"ep-{rng.randrange(400)}"
            lifetime = rng.randrange(30, 600)
            book.register(
                RegistrationRequest(endpoint=name, lifetime=lifetime), now=now, address=ADDR
            )
        elif roll < 0.7:
            reg = book.by_endpoint(rng.choice(names))
            assert reg is not None
            book.update(reg.registration_id, UpdateRequest(), now=now)
        elif roll < 0.9:
            reg = book.by_endpoint(rng.choice(names))
            assert reg is not None
            book.deregister(reg.registration_id, now=now)
        else:
            book.expire(now)
        if step % 250 == 0:
            book = SortedRegistrationBook.replacing(book)
        expected = sorted(r.endpoint for r in book)
        assert [r.endpoint for r in book.clients_page(None, 10_000)] == expected
        assert book.client_count() == len(expected)
    paged: list[str] = []
    after: str | None = None
    while page := book.clients_page(after, 7):
        paged += [r.endpoint for r in page]
        after = page[-1].endpoint
    assert paged == sorted(r.endpoint for r in book)


def test_snapshot_pages_serve_any_operations() -> None:
    """Without an index (a test double, another ``ServerOperations``) pages still work."""
    ops = FakeOps()
    for name in ("m", "b", "x", "a"):
        ops.add_client(name)
    pages = SnapshotPages(ops)
    assert [r.endpoint for r in pages.clients_page(None, 3)] == ["a", "b", "m"]
    assert [r.endpoint for r in pages.clients_page("b", 3)] == ["m", "x"]
    assert [r.endpoint for r in pages.clients_page("c", 3)] == ["m", "x"]
    assert pages.client_count() == 4


async def test_history_is_capped_like_a_page(api: Client) -> None:
    """A history is one response too: at most 10,000 points, or a 400 naming the bound."""
    resp = await api.get("/api/clients/dev-1/telemetry?limit=10001")
    assert resp.status == 400
    assert "limit=10001 is outside 1..10000" in (await resp.json())["error"]

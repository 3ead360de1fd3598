"""Paging ``GET /api/clients``: the ``ClientPages`` view of the server, its cursors and limits.

Why pages: the API shares the event loop with CoAP, and one response listing 100k clients held
it for 8-36 s (issue 11). A page is built from a sorted index (``ClientPages``) in time that
does not grow with the number of clients, and its JSON is at most ``MAX_PAGE`` registrations.

Why this shape: the body stays a plain JSON list (what Leshan's UI and scripts and our own
earlier callers read); the next page is announced in headers, as GitHub's API does —
``Link: <...>; rel="next"`` and ``X-Next-Cursor`` — and ``X-Total-Count`` gives the number of
registrations when the page was built.

The cursor is opaque to callers but is the last endpoint name of the page (base64url), so a
page is "the next ``limit`` names after this one": stable while clients come and go. A client
that registers between two pages is listed on a later page if its name sorts after the cursor
(and on none if before: it arrived after that part of the list was read); none is listed twice.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from lwm2m_runtime.http_errors import bad_request

from ..core.registration import Registration
from ..operations import ServerOperations
from . import params

DEFAULT_PAGE = 1000
"""Registrations per page without ``?limit=``: ~90 ms per page on this 2-core machine at 100k
clients (``bench/api_list.py``), rendered in a worker thread."""

MAX_PAGE = 10_000
"""The largest ``?limit=`` (~7.5 MB, ~0.7 s to answer): bounds the work of one request."""

_CURSOR_PREFIX = b"ep:"


@runtime_checkable
class ClientPages(Protocol):
    """What the API needs to page through the registrations in endpoint order; the real server
    provides it with ``lwm2m_server.core.sorted_book.SortedRegistrationBook``."""

    def clients_page(self, after: str | None, limit: int) -> Sequence[Registration]:
        """Up to ``limit`` registrations whose endpoint sorts after ``after``, in order."""
        ...

    def client_count(self) -> int: ...


class SnapshotPages:
    """``ClientPages`` over any ``ServerOperations`` that has no index: sorts ``clients()``
    per page. Correct but O(n log n) per page — the real server plugs in its sorted book."""

    def __init__(self, ops: ServerOperations) -> None:
        self.ops = ops

    def clients_page(self, after: str | None, limit: int) -> list[Registration]:
        regs = sorted(self.ops.clients(), key=lambda r: r.endpoint)
        start = 0 if after is None else bisect_right(regs, after, key=lambda r: r.endpoint)
        return regs[start : start + limit]

    def client_count(self) -> int:
        return len(self.ops.clients())


def pages_of(ops: ServerOperations, pages: ClientPages | None = None) -> ClientPages:
    """The index to page with: ``pages`` if given, ``ops`` itself if it pages, else a
    snapshot of ``ops.clients()``."""
    if pages is not None:
        return pages
    if isinstance(ops, ClientPages):
        return ops
    return SnapshotPages(ops)


def encode_cursor(endpoint: str) -> str:
    raw = base64.urlsafe_b64encode(_CURSOR_PREFIX + endpoint.encode("utf-8"))
    return raw.rstrip(b"=").decode("ascii")


def decode_cursor(query: Mapping[str, str]) -> str | None:
    """``?cursor=`` → the endpoint name to continue after; 400 for anything this API did not
    issue (so a typo is not silently "from the start")."""
    text = query.get("cursor")
    if text is None or text == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError("no prefix")
        return raw[len(_CURSOR_PREFIX) :].decode("utf-8")
    except (binascii.Error, ValueError):
        raise bad_request(
            f"cursor={text[:64]!r} is not a cursor this API issued (take it from the "
            "X-Next-Cursor or Link header of the previous page)"
        ) from None


def page_limit(query: Mapping[str, str]) -> int:
    return params.integer(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE)

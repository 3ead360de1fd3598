"""A tiny synchronous client of a server's HTTP API, for the operator commands of both servers
(``lwm2m-server clients|read|…``, ``lwm2m-bootstrap configs|…``).

Only the standard library (``urllib``): the commands are synchronous, one request each, and
need no event loop. A body that is not JSON comes back as text; an API that cannot be reached
or refuses a stream is an ``ApiFailure`` (the CLIs' exit code 1).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

Json = Any


class ApiFailure(Exception):
    """The API could not be reached or refused the request: exit code 1."""

    def __init__(self, message: str, body: Json = None) -> None:
        super().__init__(message)
        self.body = body


TOKEN_ENV = "LWM2M_API_TOKEN"
TOKEN_FILE_ENV = "LWM2M_API_TOKEN_FILE"
TOKEN_FILE = "api-token"


def default_token(
    *,
    token_file: str | None = None,
    data_dir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """The bearer token the operator commands send, first found of: ``$LWM2M_API_TOKEN``;
    the file ``--token-file`` / ``$LWM2M_API_TOKEN_FILE``; ``<data_dir>/api-token`` (the
    first admin token a server writes at its first start; ``data_dir`` is the server's data
    folder, ``./data`` by default) — so the README's commands work from the folder the server
    was started in. None when there is none (an API with auth off needs none)."""
    environ = os.environ if env is None else env
    if environ.get(TOKEN_ENV):
        return environ[TOKEN_ENV].strip()
    explicit = token_file or environ.get(TOKEN_FILE_ENV)
    path = Path(explicit) if explicit else Path(data_dir or "data") / TOKEN_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        if explicit:
            raise ApiFailure(f"cannot read the API token file {path}") from None
        return None
    return text or None


class ApiClient:
    """A tiny synchronous client of a server's HTTP API; ``token`` is sent as
    ``Authorization: Bearer`` (docs/http-api.md, Authentication)."""

    def __init__(self, base: str, timeout: float = 30.0, *, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.token = token

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def url(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        text = urllib.parse.urlencode(list(query), safe="/,:")
        return self.base + path + (f"?{text}" if text else "")

    def call(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        *,
        json_body: Json = None,
        text_body: str | None = None,
        raw_body: bytes | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Json]:
        """``raw_body``: sent as ``application/octet-stream`` (a firmware package)."""
        data: bytes | None = None
        headers = self._headers("application/json")
        if raw_body is not None:
            data = raw_body
            headers["Content-Type"] = "application/octet-stream"
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif text_body is not None:
            data = text_body.encode()
            headers["Content-Type"] = "text/plain; charset=utf-8"
        status, _, body = self._send(method, self.url(path, query), data, headers, timeout)
        return status, body

    def list_all(
        self, path: str, query: Sequence[tuple[str, str]] = (), *, page_size: int = 1000
    ) -> tuple[int, Json]:
        """Every item of a paged list (``GET /api/clients``): follows ``X-Next-Cursor`` page
        by page, so no single response is large, and returns the concatenated list — or the
        first error status and body."""
        items: list[Json] = []
        cursor: str | None = None
        while True:
            page_query = [*query, ("limit", str(page_size))]
            if cursor is not None:
                page_query.append(("cursor", cursor))
            status, headers, body = self._send(
                "GET", self.url(path, page_query), None, self._headers("application/json"), None
            )
            if status != 200 or not isinstance(body, list):
                return status, body
            items += body
            previous, cursor = cursor, headers.get("x-next-cursor")
            if not cursor or not body or cursor == previous:  # a cursor that does not advance
                return status, items

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
    ) -> tuple[int, Mapping[str, str], Json]:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as resp:
                return resp.status, _lower(resp.headers.items()), parse_json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _lower(exc.headers.items()), parse_json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiFailure(f"cannot reach the API at {self.base}: {reason}") from None

    def stream(
        self, path: str, query: Sequence[tuple[str, str]] = ()
    ) -> Iterator[tuple[str, Json]]:
        """Server-sent events as ``(kind, data)``; comments (keep-alives) are skipped. The
        socket timeout is well above the server's 15 s keep-alive, so a dead server ends it."""
        request = urllib.request.Request(
            self.url(path, query), headers=self._headers("text/event-stream")
        )
        try:
            resp = urllib.request.urlopen(request, timeout=max(self.timeout, 60.0))
        except urllib.error.HTTPError as exc:
            body = parse_json(exc.read())
            raise ApiFailure(error_text(exc.code, body), body) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiFailure(f"cannot reach the API at {self.base}: {reason}") from None
        with resp:
            kind = "message"
            data_lines: list[str] = []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data_lines:
                        yield kind, parse_json("\n".join(data_lines).encode())
                    kind, data_lines = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        kind = value
                    elif field == "data":
                        data_lines.append(value)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Response headers by lower-case name (HTTP names are case-insensitive)."""
    return {name.lower(): value for name, value in items}


def parse_json(raw: bytes) -> Json:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def error_text(status: int, body: Json) -> str:
    if isinstance(body, dict) and "error" in body:
        message = str(body["error"])
        if body.get("message"):
            message += f": {body['message']}"
        return f"{message} (HTTP {status})"
    return f"HTTP {status}: {body}"

"""Parsing of what an HTTP request says: LwM2M paths, query parameters, bodies.

Every function raises ``ApiError`` (400) with a message naming the parameter, so handlers can
call them in a row without checks of their own.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping

from aiohttp import web

from lwm2m_runtime.http_errors import bad_request
from object_models.content_format import ContentFormat
from object_models.errors import InvalidPathError
from object_models.path import LwM2mPath

DEFAULT_TIMEOUT = 10.0
"""Seconds the API waits for a device unless ``?timeout=`` says otherwise (the Protocol's)."""

MAX_TIMEOUT = 600.0
"""Longer waits would pin an HTTP connection for no good reason; queue mode exists for that."""


def lwm2m_path(text: str, *, min_depth: int = 1, max_depth: int = 4) -> LwM2mPath:
    """``3/0/1`` (from the URL, without its leading slash) → ``LwM2mPath``."""
    try:
        path = LwM2mPath.parse("/" + text.lstrip("/"))
    except InvalidPathError as exc:
        raise bad_request(f"invalid LwM2M path {text!r}: {exc.message}") from None
    if not min_depth <= path.depth <= max_depth:
        raise bad_request(_depth_message(path, min_depth, max_depth))
    return path


_DEPTH_NAMES = ["the root", "an object", "an object instance", "a resource", "a resource instance"]


def _depth_message(path: LwM2mPath, min_depth: int, max_depth: int) -> str:
    allowed = ", ".join(_DEPTH_NAMES[d] for d in range(min_depth, max_depth + 1))
    return f"path {path} is {_DEPTH_NAMES[path.depth]}; this operation takes {allowed}"


def content_format(query: Mapping[str, str], *names: str) -> ContentFormat | None:
    """``?format=tlv`` (or a number, or a media type); the first of ``names`` given wins."""
    for name in names or ("format",):
        raw = query.get(name)
        if raw is None or raw == "":
            continue
        try:
            return ContentFormat.from_name(raw)
        except ValueError:
            known = ", ".join(f.name.lower().replace("_", "-") for f in ContentFormat)
            raise bad_request(f"unknown content format {raw!r} in {name}= ({known})") from None
    return None


def timeout(
    query: Mapping[str, str], default: float = DEFAULT_TIMEOUT, *, maximum: float = MAX_TIMEOUT
) -> float:
    """``?timeout=`` in seconds (Leshan's unit), ``0 < t <= maximum`` (600 s; the Leshan
    dialect allows the 30 minutes its UI offers)."""
    raw = query.get("timeout")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"timeout={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= maximum:
        raise bad_request(f"timeout={raw!r} must be > 0 and <= {maximum:g} seconds")
    return value


def boolean(query: Mapping[str, str], name: str, default: bool) -> bool:
    """``true/false/1/0/yes/no``; a bare ``?name`` (empty value) means true, as in Leshan's
    ``?active``."""
    if name not in query:
        return default
    raw = query[name].strip().lower()
    if raw in ("", "true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise bad_request(f"{name}={query[name]!r} is not a boolean (true or false)")


def paths(request: web.Request) -> list[LwM2mPath]:
    """``?paths=/3/0/1,/3303/0/5700`` (repeating ``paths=`` works too), in order, no duplicates."""
    raw = [p for value in request.query.getall("paths", []) for p in value.split(",")]
    result: list[LwM2mPath] = []
    for text in raw:
        text = text.strip()
        if not text:
            continue
        path = lwm2m_path(text, min_depth=1)
        if path not in result:
            result.append(path)
    if not result:
        raise bad_request("paths= needs at least one LwM2M path, e.g. paths=/3/0/1,/3303/0/5700")
    return result


def epoch_ms(query: Mapping[str, str], name: str) -> int | None:
    """A time as milliseconds since the epoch or ISO 8601 (``2024-05-01T12:00:00Z``)."""
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name}={raw!r} is neither epoch milliseconds nor ISO 8601") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return round(stamp.timestamp() * 1000)


def integer(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d+", raw.strip()):
        raise bad_request(f"{name}={raw!r} is not a non-negative integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise bad_request(f"{name}={value} is outside {lo}..{hi}")
    return value


async def text_body(request: web.Request) -> str:
    """The request body as UTF-8 text (LwM2M strings are UTF-8 whatever the charset says);
    bytes that are not UTF-8 are a 400, not an exception in a handler."""
    raw = await request.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the request body is not valid UTF-8 (byte {exc.start})") from None


async def json_body(request: web.Request) -> object:
    """The request body as JSON; 400 naming the position of a syntax error."""
    text = await text_body(request)
    if not text.strip():
        raise bad_request("the request needs a JSON body")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad_request(f"invalid JSON body: {exc}") from None
    except RecursionError:
        raise bad_request("the JSON body is nested too deeply") from None

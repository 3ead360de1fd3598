"""Pull delivery: fetch a package from its Package URI (``/5/0/1``, ``/9/x/3``), block by block.

CoAP(S) downloads drive Block2 (RFC 7959) here, one block request at a time, instead of letting
aiocoap reassemble the body: a device must notice a silent server after one block's timeout (not
after aiocoap's 93 s of retransmissions), and the simulation knobs act between blocks ("go silent
after K blocks"). HTTP(S) downloads read the body in chunks with aiohttp for the same reasons.

Errors are ``DownloadError`` with a ``DownloadFailure`` kind; the object (5 or 9) maps the kind
to its own Update Result code (object 5: 7 invalid URI, 9 unsupported protocol, 4 connection
lost; object 9: 56, 56, 52).

``https://`` is verified against the system's trust store, or against ``ca_file`` (a PEM bundle
given with ``--ca-file``: a server with a private or self-signed certificate); verification is
never turned off. A certificate the device does not trust fails the download as a lost connection
(object 5: Update Result 4), the closest code the object has.

The URI's ``sha256`` query parameter is what the server says the package's digest is
(``lwm2m_server.firmware`` writes ``?sha256=<hex>``); ``expected_sha256`` extracts it so the
object can compare it with the SHA-256 of what was actually received.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import aiocoap
import aiocoap.error
import aiohttp
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

log = logging.getLogger(__name__)

COAP_SCHEMES = ("coap", "coaps")
HTTP_SCHEMES = ("http", "https")
PROTOCOL_NUMBERS = {"coap": 0, "coaps": 1, "http": 2, "https": 3}
"""Firmware Update Protocol Support (``/5/0/8``) values by URI scheme."""

BLOCK_SZX = 6
"""1024-byte blocks (the largest RFC 7959 size; the server may answer with smaller ones)."""
HTTP_CHUNK = 1024
"""An HTTP download counts as one "block" per KiB read, so the knobs mean the same thing."""


class DownloadFailure(enum.Enum):
    INVALID_URI = "invalid URI"
    """Not a URI, no host, or the server answered that it has no such package (4.04, 404)."""
    UNSUPPORTED_PROTOCOL = "unsupported protocol"
    CONNECTION_LOST = "connection lost"
    """No answer within the block timeout, a network error, or a server error mid-way."""


class DownloadError(Exception):
    def __init__(self, kind: DownloadFailure, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


BlockHook = Callable[[int], Awaitable[None]]
"""Awaited after each block with the number of blocks received so far (the simulation knobs);
raising ``DownloadError`` there aborts the download."""

CoapContextFor = Callable[[str], Awaitable[Any]]
"""The aiocoap context to use for a ``coap``/``coaps`` URI: the client's own (so DTLS requests
go over the device's own credentials and session) or a temporary one. Raises
``DownloadError(UNSUPPORTED_PROTOCOL)`` when the device cannot speak that scheme."""


def https_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """The TLS client context of ``https://`` downloads: certificate and host name checked,
    TLS 1.2 at least; ``ca_file`` (PEM) replaces the system trust store. ``OSError`` or
    ``ssl.SSLError`` when the file cannot be read or holds no certificate."""
    if ca_file is None:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=os.fspath(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def parse_package_uri(uri: str, supported: tuple[str, ...]) -> urllib.parse.SplitResult:
    """The URI split, or ``DownloadError`` (invalid URI / unsupported protocol)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise DownloadError(DownloadFailure.INVALID_URI, f"{uri!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        raise DownloadError(DownloadFailure.INVALID_URI, f"{uri!r} has no scheme or host")
    if scheme not in supported:
        raise DownloadError(DownloadFailure.UNSUPPORTED_PROTOCOL, f"scheme {scheme!r}")
    return parts


def expected_sha256(uri: str) -> str | None:
    """The lowercase hex digest in the URI's ``sha256`` query parameter, if any."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)
    values = query.get("sha256")
    return values[0].strip().lower() if values else None


async def fetch(
    uri: str,
    *,
    supported: tuple[str, ...],
    coap_context: CoapContextFor,
    block_timeout: float,
    on_block: BlockHook | None = None,
    tls: ssl.SSLContext | None = None,
) -> bytes:
    """The whole package at ``uri`` (``DownloadError`` when it cannot be had). ``tls``: the
    context ``https://`` is verified with (``https_context``; None: the system's trust)."""
    parts = parse_package_uri(uri, supported)
    scheme = parts.scheme.lower()
    if scheme in COAP_SCHEMES:
        context = await coap_context(scheme)
        return await _fetch_coap(context, uri, block_timeout, on_block)
    return await _fetch_http(uri, block_timeout, on_block, tls)


async def _fetch_coap(
    context: Any, uri: str, block_timeout: float, on_block: BlockHook | None
) -> bytes:
    body = bytearray()
    number, szx, blocks = 0, BLOCK_SZX, 0
    while True:
        request = aiocoap.Message(code=Code.GET, uri=uri)
        request.opt.block2 = BlockOption.BlockwiseTuple(number, False, szx)
        try:
            pending = context.request(request, handle_blockwise=False)
            response = await asyncio.wait_for(pending.response, block_timeout)
        except TimeoutError:
            raise DownloadError(
                DownloadFailure.CONNECTION_LOST, f"no answer to block {number} in {block_timeout}s"
            ) from None
        except aiocoap.error.Error as exc:
            raise DownloadError(DownloadFailure.CONNECTION_LOST, repr(exc)) from None
        if not response.code.is_successful():
            kind = (
                DownloadFailure.INVALID_URI
                if response.code in (Code.NOT_FOUND, Code.FORBIDDEN, Code.UNAUTHORIZED)
                or response.code == Code.BAD_REQUEST
                else DownloadFailure.CONNECTION_LOST
            )
            raise DownloadError(kind, f"the server answered {response.code}")
        block2 = response.opt.block2
        if block2 is None:
            if number != 0:
                raise DownloadError(DownloadFailure.CONNECTION_LOST, "Block2 dropped mid-way")
            body += response.payload
            blocks += 1
            if on_block is not None:
                await on_block(blocks)
            return bytes(body)
        if block2.start != len(body):
            raise DownloadError(
                DownloadFailure.CONNECTION_LOST,
                f"block {block2.block_number} starts at {block2.start}, we have {len(body)}",
            )
        body += response.payload
        blocks += 1
        if on_block is not None:
            await on_block(blocks)
        if not block2.more:
            return bytes(body)
        szx = min(szx, block2.size_exponent)
        number = len(body) // (1 << (szx + 4))


async def _fetch_http(
    uri: str, block_timeout: float, on_block: BlockHook | None, tls: ssl.SSLContext | None
) -> bytes:
    body = bytearray()
    blocks = 0
    timeout = aiohttp.ClientTimeout(sock_connect=block_timeout, sock_read=block_timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(uri, ssl=True if tls is None else tls) as response,
        ):
            if response.status >= 400:
                kind = (
                    DownloadFailure.INVALID_URI
                    if response.status < 500
                    else DownloadFailure.CONNECTION_LOST
                )
                raise DownloadError(kind, f"HTTP {response.status}")
            async for chunk in response.content.iter_chunked(HTTP_CHUNK):
                body += chunk
                blocks += 1
                if on_block is not None:
                    await on_block(blocks)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DownloadError(DownloadFailure.CONNECTION_LOST, repr(exc)) from None
    except ValueError as exc:  # yarl/aiohttp refusing the URL itself
        raise DownloadError(DownloadFailure.INVALID_URI, str(exc)) from None
    return bytes(body)


__all__ = [
    "PROTOCOL_NUMBERS",
    "DownloadError",
    "DownloadFailure",
    "expected_sha256",
    "fetch",
    "https_context",
    "parse_package_uri",
]

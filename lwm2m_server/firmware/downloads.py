"""The download server: ``GET /fw/<token>`` over CoAP (the server's NoSec and DTLS listeners,
Block2) and over HTTP (the API's aiohttp app), for devices told to pull a package
(docs/firmware.md, "Download server").

A **grant** is a device's right to fetch one package until it expires: its token (32 random
URL-safe characters from ``secrets``, 192 bits) is the last segment of the Package URI written
to ``/5/0/1`` or ``/9/x/3``, followed by ``?sha256=<hex>`` so the device can check what it
received. Grants live in the server's store (sqlite or Redis): they survive a restart and any
node of a cluster redeems them.

Who may fetch:

* over DTLS, the peer's identity must be the one bound to the grant's endpoint (the same
  ``Resolver`` decision a Register gets): a device holding another device's URI gets 4.03;
* over NoSec the token is the capability, but an endpoint whose credentials require DTLS is
  refused (4.03), as its Register would be;
* over HTTP the token is the capability (no device identity exists there; put TLS in front).

Answers, and why these codes (RFC 7252 §5.9 has no "Gone", and LwM2M clients map any 4.xx of
their Package URI fetch to Update Result 7 "Invalid URI"):

* unknown token: 4.04 "unknown download token" (HTTP 404);
* expired token: 4.04 "download token expired" (HTTP 404); remembered for a day after expiry
  so the diagnostic is the true one;
* the package was deleted meanwhile: 4.04 "package no longer available";
* another device's identity (or NoSec for a secured endpoint): 4.03 (HTTP has no identity);
* a Block2 number past the end: 4.02 Bad Option (what the CoAP layer answers for its own
  cached bodies); any method but GET: 4.05.

Block2 is served **by offset from the blob**: each request reads only the block asked for
(one ``pread``, or one ``GETRANGE`` on Redis) and answers with its own Block2 option, which the
CoAP layer sends untouched (nothing of the package is held in memory per device). Block 0
carries Size2 (RFC 7959 §4); every block carries ETag = the first 8 bytes of the SHA-256
(RFC 7252 §5.10.6: the same representation, whatever node serves it) and Content-Format 42
(application/octet-stream). HTTP downloads support Range (``sendfile`` from the data dir; by
ranges from Redis).

The job manager subscribes to ``DownloadEvent``: STARTED when block 0 (or an HTTP body from
byte 0) is served, COMPLETED when the last block is, REFUSED with the reason. Refusals are
logged once per peer host a minute, never with the whole token (it is a credential): with its
first 6 characters.

Lookups are cached for ``CACHE_SECONDS`` per token (a 1 MiB download at 1024-byte blocks is a
thousand requests): a revoke on this node takes effect at once, one on another cluster node
within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs
from aiohttp import web

from keystore.log_limit import PerPeerLimit
from keystore.resolver import IdentityRefused, Resolver
from keystore.store.errors import StoreError
from lwm2m_runtime.coap import Block, Code, Message, OptionNumber, Type, encode_uint
from lwm2m_runtime.server import IncomingRequest
from object_models.errors import Lwm2mError, ResponseCode

from .contracts import DownloadEvent, DownloadGrant, DownloadOutcome, Package
from .package_store import GrantRecords
from .packages import Library

log = logging.getLogger(__name__)

PATH = "fw"
"""The first Uri-Path segment (CoAP) and path segment (HTTP) of the download resource."""
OCTET_STREAM = 42
DEFAULT_SZX = 6
"""1024-byte blocks unless the device asks for smaller ones (the CoAP layer's ``block_szx``)."""
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 10_000
TOKEN_BYTES = 24
SCHEMES = ("coap", "coaps", "http", "https")


_ETAG = int(OptionNumber.ETAG)
_BLOCK2 = int(OptionNumber.BLOCK2)
_SIZE2 = int(OptionNumber.SIZE2)
_CF_OCTET_STREAM = (int(OptionNumber.CONTENT_FORMAT), encode_uint(OCTET_STREAM))


def token_hint(token: str) -> str:
    """What a log line may show of a token: its first 6 characters."""
    return token[:6] + "…" if len(token) > 6 else token


def etag_of(package_id: str) -> bytes:
    """The first 8 bytes of the SHA-256 (an ETag is 1 to 8 bytes, RFC 7252 §5.10.6)."""
    return bytes.fromhex(package_id[:16])


@attrs.define
class _Entry:
    grant: DownloadGrant
    package: Package
    until: float
    remote: Hashable | None = None
    """The DTLS session already checked against the grant's endpoint."""


class Refusal(Exception):
    """Why a download is refused: the CoAP code, the HTTP status and the diagnostic."""

    def __init__(self, code: ResponseCode, status: int, reason: str, grant: DownloadGrant | None):
        super().__init__(reason)
        self.code = code
        self.status = status
        self.reason = reason
        self.grant = grant


class DownloadServer:
    """``contracts.DownloadGrants`` plus the CoAP and HTTP download resources."""

    def __init__(
        self,
        records: GrantRecords,
        library: Library,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
        default_ttl: float = 24 * 3600.0,
    ) -> None:
        self.records = records
        self.library = library
        self.resolver = resolver
        self.clock = clock
        self.default_ttl = default_ttl
        self.bases: dict[str, str] = {}
        """The URL prefix devices reach each scheme at (``coap://192.0.2.7:5683``); set by the
        service once its listeners are bound (``set_base``)."""
        self.loopback_bases: dict[str, str] = {}
        self._listeners: list[Callable[[DownloadEvent], None]] = []
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._refusals = PerPeerLimit(60.0)
        self._last_prune = 0.0
        self.served_bytes = 0
        self.counts: dict[str, int] = {"started": 0, "completed": 0, "refused": 0, "blocks": 0}

    # -- DownloadGrants --------------------------------------------------------------------------
    def grant(self, package_id: str, endpoint: str, ttl_s: float | None = None) -> DownloadGrant:
        """A new grant (a new token every call: the previous ones of the endpoint stay valid
        until revoked or expired). 4.04 for an unknown package, 4.00 for a ttl ≤ 0."""
        ttl = self.default_ttl if ttl_s is None else ttl_s
        if not ttl > 0:
            raise Lwm2mError(f"a download grant needs a positive ttl, not {ttl}")
        if self.library.get(package_id) is None:
            raise Lwm2mError(f"no package {package_id[:80]}", code=ResponseCode.NOT_FOUND)
        now = self.clock()
        grant = DownloadGrant(
            token=secrets.token_urlsafe(TOKEN_BYTES),
            package_id=package_id,
            endpoint=endpoint,
            expires_ms=int((now + ttl) * 1000),
        )
        self.records.put_grant(grant)
        if now - self._last_prune > 3600.0:
            self._last_prune = now
            self.records.prune_grants(int(now * 1000))
        log.debug("download grant %s for %s: package %s", token_hint(grant.token), endpoint,
                  package_id[:12])  # fmt: skip
        return grant

    def revoke(self, endpoint: str) -> None:
        self.records.remove_grants(endpoint)
        for token in [t for t, e in self._cache.items() if e.grant.endpoint == endpoint]:
            del self._cache[token]

    def forget_package(self, package_id: str) -> None:
        """Drop cached lookups of a deleted package (its blocks would fail to read)."""
        for token in [t for t, e in self._cache.items() if e.package.id == package_id]:
            del self._cache[token]

    def set_base(self, scheme: str, base: str, *, loopback: str | None = None) -> None:
        """``loopback``: the prefix for a device on this host (its address is loopback), when
        ``base`` names the outward address only because the listener binds a wildcard."""
        self.bases[scheme] = base.rstrip("/")
        if loopback is None:
            self.loopback_bases.pop(scheme, None)
        else:
            self.loopback_bases[scheme] = loopback.rstrip("/")

    def served_schemes(self) -> frozenset[str]:
        """The schemes a Package URI can be given for now (their listeners are bound)."""
        return frozenset(self.bases)

    def package_uri(
        self, grant: DownloadGrant, scheme: str, *, device_host: str | None = None
    ) -> str:
        """``<base>/fw/<token>?sha256=<hex>``: about 170 characters with an IPv4 host, within
        the 255 of object 5's Package URI resource. ``device_host``: the address the device
        registered from; one on loopback gets a loopback URI when the base was guessed (a
        device bound to 127.0.0.1 cannot reach the outward address: the local demo)."""
        if scheme not in SCHEMES:
            raise Lwm2mError(f"no download over {scheme!r} (one of {', '.join(SCHEMES)})")
        base = self.bases.get(scheme)
        if device_host is not None and scheme in self.loopback_bases and _loopback(device_host):
            base = self.loopback_bases[scheme]
        if base is None:
            hint = " (set http_tls, or firmware.http_download_url to an https:// prefix)"
            raise Lwm2mError(
                f"this server does not serve downloads over {scheme}"
                + (hint if scheme == "https" else ""),
                code=ResponseCode.NOT_FOUND,
            )
        return f"{base}/{PATH}/{grant.token}?sha256={grant.package_id}"

    def subscribe(self, listener: Callable[[DownloadEvent], None]) -> None:
        self._listeners.append(listener)

    def _emit(self, event: DownloadEvent) -> None:
        self.counts[event.outcome.value] += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("download event listener failed on %r", event)

    # -- lookup ----------------------------------------------------------------------------------
    def _lookup(self, token: str) -> _Entry:
        """The cached grant and package of ``token``; ``Refusal`` when it may not be served."""
        now = self.clock()
        entry = self._cache.get(token)
        if entry is not None and entry.until > now:
            if entry.grant.expires_ms <= now * 1000:
                raise Refusal(ResponseCode.NOT_FOUND, 404, "download token expired", entry.grant)
            return entry
        try:
            grant = self.records.get_grant(token) if _plausible(token) else None
            if grant is None:
                raise Refusal(ResponseCode.NOT_FOUND, 404, "unknown download token", None)
            if grant.expires_ms <= now * 1000:
                raise Refusal(ResponseCode.NOT_FOUND, 404, "download token expired", grant)
            package = self.library.get(grant.package_id)
        except StoreError as exc:
            raise Refusal(
                ResponseCode.SERVICE_UNAVAILABLE, 503, f"store unavailable: {exc}", None
            ) from exc
        if package is None:
            raise Refusal(ResponseCode.NOT_FOUND, 404, "package no longer available", grant)
        entry = _Entry(grant, package, now + CACHE_SECONDS)
        self._cache[token] = entry
        self._cache.move_to_end(token)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return entry

    def _check_peer(self, entry: _Entry, request: IncomingRequest) -> None:
        """The identity binding a Register gets, for the grant's endpoint (see the module
        docstring); the peer that passed (its DTLS session, or its address over NoSec) is
        remembered with the cached entry, so a download is one check, not one per block."""
        if self.resolver is None or (entry.remote is not None and entry.remote == request.remote):
            return
        try:
            self.resolver.resolve(request.identity, entry.grant.endpoint)
        except IdentityRefused as exc:
            raise Refusal(
                ResponseCode.FORBIDDEN,
                403,
                f"not a download for this peer ({exc.message})",
                entry.grant,
            ) from None
        except StoreError as exc:
            raise Refusal(
                ResponseCode.SERVICE_UNAVAILABLE, 503, f"store unavailable: {exc}", entry.grant
            ) from exc
        entry.remote = request.remote

    def _refused(self, refusal: Refusal, token: str, host: str, via: str) -> None:
        grant = refusal.grant
        level = logging.INFO if self._refusals.allow(host, time.monotonic()) else logging.DEBUG
        log.log(
            level,
            "download %s/%s… refused to %s over %s with %s: %s%s",
            PATH,
            token[:6],
            host,
            via,
            refusal.code.dotted,
            refusal.reason,
            f" (grant of {grant.endpoint})" if grant is not None else "",
        )
        self._emit(
            DownloadEvent(
                DownloadOutcome.REFUSED,
                grant.endpoint if grant is not None else None,
                grant.package_id if grant is not None else None,
                refusal.reason,
            )
        )

    # -- CoAP ------------------------------------------------------------------------------------
    def coap(self, request: IncomingRequest) -> Message:
        """Answer a request to ``/fw/...`` (``RegistrationSite`` hands them here). Never
        raises: every refusal is answered and logged here (the site's own refusal log would
        print the path, which holds the token)."""
        message = request.message
        path = message.uri_path
        token = path[1] if len(path) == 2 else ""
        try:
            if len(path) != 2:
                raise Refusal(ResponseCode.NOT_FOUND, 404, "no resource here", None)
            if message.code != Code.GET:
                raise Refusal(
                    ResponseCode.METHOD_NOT_ALLOWED, 405, "only GET fetches a package", None
                )
            entry = self._lookup(token)
            self._check_peer(entry, request)
            return self._block(entry, request.block2)
        except Refusal as refusal:
            host = str(request.address[0])
            self._refused(refusal, token, host, "coaps" if request.secure else "coap")
            return Message.response(int(refusal.code), refusal.reason.encode())

    def _block(self, entry: _Entry, asked: Block | None) -> Message:
        package = entry.package
        size = package.size
        szx = DEFAULT_SZX if asked is None else min(asked.szx, DEFAULT_SZX)
        num = 0 if asked is None else asked.num
        block_size = 16 << szx
        offset = num * block_size
        if offset >= size and num:
            raise Refusal(
                ResponseCode.BAD_OPTION,
                400,
                f"block {num} is past the end ({size} bytes)",
                entry.grant,
            )
        try:
            chunk = self.library.read_block(package, offset, block_size)
        except StoreError as exc:
            raise Refusal(
                ResponseCode.SERVICE_UNAVAILABLE, 503, f"cannot read the package: {exc}",
                entry.grant,
            ) from exc  # fmt: skip
        more = offset + len(chunk) < size
        # the options in number order, built directly: this runs once per block (a thousand
        # times per MiB per device), where ``options()``'s generality costs as much as the read
        opts: list[tuple[int, bytes]] = [(_ETAG, etag_of(package.id)), _CF_OCTET_STREAM]
        if asked is not None or more:
            opts.append((_BLOCK2, Block(num, more, szx).encode()))
        if num == 0:
            opts.append((_SIZE2, encode_uint(size)))
        self.counts["blocks"] += 1
        self.served_bytes += len(chunk)
        if num == 0:
            self._emit(DownloadEvent(DownloadOutcome.STARTED, entry.grant.endpoint, package.id))
        if not more:
            self._emit(DownloadEvent(DownloadOutcome.COMPLETED, entry.grant.endpoint, package.id))
        return Message(Type.ACK, Code.CONTENT, 0, b"", tuple(opts), chunk)

    # -- HTTP ------------------------------------------------------------------------------------
    def add_http_route(self, app: web.Application) -> None:
        """``GET /fw/{token}`` (public: the token is the credential; see ``http_auth``'s
        public prefixes)."""
        app.router.add_route("GET", f"/{PATH}/{{token}}", self.http_get)

    async def http_get(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        host = request.remote or "?"
        try:
            entry = self._lookup(token)
        except Refusal as refusal:
            self._refused(refusal, token, host, "http")
            return web.json_response(
                {"error": refusal.reason, "code": refusal.code.dotted}, status=refusal.status
            )
        package = entry.package
        try:
            rng = request.http_range
        except ValueError:
            rng = slice(None, None)
        start = rng.start or 0
        if start < 0:
            start = max(0, package.size + start)
        stop = package.size if rng.stop is None else min(rng.stop, package.size)
        headers = {
            "Content-Type": "application/octet-stream",
            "Repr-Digest": f"sha-256=:{_b64(package.id)}:",
            "Content-Disposition": f'attachment; filename="{package.id[:16]}.bin"',
        }
        path = self.library.path(package.id)
        response: web.StreamResponse
        if path is not None:
            response = web.FileResponse(path, headers=headers)
            await response.prepare(request)
        else:
            response = await self._ranges(request, package, headers)
        if response.status in (200, 206):
            if start == 0:
                self._emit(DownloadEvent(DownloadOutcome.STARTED, entry.grant.endpoint, package.id))
            if stop >= package.size:
                self._emit(
                    DownloadEvent(DownloadOutcome.COMPLETED, entry.grant.endpoint, package.id)
                )
        return response

    async def _ranges(
        self, request: web.Request, package: Package, headers: dict[str, str]
    ) -> web.StreamResponse:
        """The body from a blob location without files (Redis): one byte range at most, read
        in 256 KiB pieces off the event loop."""
        size = package.size
        etag = f'"{package.id[:16]}"'
        headers = {**headers, "ETag": etag, "Accept-Ranges": "bytes"}
        try:
            rng = request.http_range
        except ValueError:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            rng = slice(None, None)
        start, stop, status = 0, size, 200
        if rng.start is not None or rng.stop is not None:
            start = rng.start or 0
            if start < 0:
                start = max(0, size + start)
            stop = size if rng.stop is None else min(rng.stop, size)
            if start >= size or start >= stop:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stop - start
        await response.prepare(request)
        offset = start
        while offset < stop:
            length = min(256 * 1024, stop - offset)
            chunk = await asyncio.to_thread(self.library.read_block, package, offset, length)
            if not chunk:
                break
            await response.write(chunk)
            offset += len(chunk)
        await response.write_eof()
        return response


def _plausible(token: str) -> bool:
    """Could be one of our tokens (URL-safe base64, at most 64 characters): anything else is
    not looked up in the store at all."""
    return 0 < len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)


def _b64(package_id: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(package_id)).decode()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

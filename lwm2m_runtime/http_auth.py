"""Who may call a server's HTTP API, and the audit log of what they changed — shared by
``lwm2m-server`` and ``lwm2m-bootstrap``.

Bearer tokens (RFC 6750): ``Authorization: Bearer <token>``. Without a valid token every route
answers **401** with ``WWW-Authenticate: Bearer`` (the API can reboot every device: nothing is
open by default), except liveness/readiness and metrics, which orchestrators and scrapers poll
without credentials and which reveal no device data. A ``read`` token may GET; anything else
needs ``admin`` (**403** otherwise). Tokens are the keystore's (``keystore.api_tokens``) plus
the ones given in the configuration (``api_auth.admin_token`` / ``read_token``: secrets
injected by the environment in container deployments).

Every request that may change something (any method but GET/HEAD/OPTIONS), allowed or refused,
is written to the audit log: when, who (the token's name), what (method and path), the HTTP
status and how it ended. The log is a sqlite table on the server's own store connection (no
second connection: with group commit a second one would wait for the loop's open
transaction), queryable at ``GET /api/audit``.

Browser sessions (the web UI, ``lwm2m_server.ui``): ``POST /api/session`` with the bearer header
swaps the token for an opaque session id in an ``HttpOnly; SameSite=Strict`` cookie, because an
``EventSource`` cannot send headers and a token kept in page JavaScript is one XSS away from
being stolen. The cookie authenticates like the token it was made from (same name, same role,
revoked with it). Cookies are sent by the browser on its own, so a request that changes
something and is authenticated by the cookie must also carry ``X-Requested-With`` (CSRF: a
cross-site form cannot set a custom header, and a cross-site ``fetch`` with one needs a CORS
preflight this server never grants); the session routes themselves always want it.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web
from aiohttp.typedefs import Middleware

from keystore.api_tokens import ApiToken, ApiTokenStore, Role, digest, new_secret
from keystore.secrets_io import write_private
from keystore.store.database import SqliteDatabase
from keystore.store.errors import StoreError

from .http_errors import error_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_ROUTES = frozenset(
    {("GET", "/api/health"), ("GET", "/api/ready"), ("GET", "/metrics"), ("GET", "/")}
)
"""Polled by orchestrators and scrapers without credentials; no device data in them (``/`` is
the web UI's page, which asks for a token itself)."""

PUBLIC_PREFIXES = ("/ui/",)
"""Static assets of the web UI (``GET /`` is in ``PUBLIC_ROUTES``): the login page must load
without credentials; they hold no device data."""

SESSION_PATH = "/api/session"
SESSION_COOKIE = "pylwm2m_session"
CSRF_HEADER = "X-Requested-With"

PRINCIPAL = web.RequestKey("principal", str)
"""The name of the token a request was made with (see ``who``)."""

ROLE = web.RequestKey("role", str)
"""The role (``read``/``admin``) of the token or session a request was made with."""

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANONYMOUS = "anonymous"
REALM = "pylwm2m"


def who(request: web.Request) -> str:
    """The name of the token the request was made with (``anonymous`` when auth is off)."""
    return str(request.get(PRINCIPAL, ANONYMOUS))


class Authenticator:
    """Maps a presented bearer token to its ``ApiToken``: the configured ones first (a dict),
    then the keystore's (one indexed read: a revoked token stops working at once)."""

    def __init__(
        self,
        store: ApiTokenStore | None,
        configured: Iterable[ApiToken] = (),
        *,
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.configured = {t.sha256: t for t in configured}
        self.enabled = enabled
        self.sessions = SessionStore()

    def identify(self, secret: str) -> ApiToken | None:
        return self.identify_digest(digest(secret))

    def identify_digest(self, sha256: str) -> ApiToken | None:
        """The token with that SHA-256, looked up again on every request: a browser session
        ends the moment its token is revoked."""
        token = self.configured.get(sha256)
        if token is None and self.store is not None:
            token = self.store.token_by_digest(sha256)
        return token

    def has_admin(self) -> bool:
        if any(t.role is Role.ADMIN for t in self.configured.values()):
            return True
        return self.store is not None and any(t.role is Role.ADMIN for t in self.store.tokens())


class SessionStore:
    """Browser sessions: opaque random ids mapped to the digest of the token that opened them.

    In memory on purpose: a restart logs browsers out (they log in again with their token),
    and no session id is ever written to disk. Bounded (the oldest session goes first) and
    expiring, so a script looping on ``POST /api/session`` cannot grow memory."""

    def __init__(self, *, ttl: float = 12 * 3600.0, limit: int = 10_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def open(self, token: ApiToken) -> str:
        while len(self._sessions) >= self.limit:
            self._sessions.popitem(last=False)
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = (token.sha256, time.monotonic() + self.ttl)
        return session_id

    def digest_of(self, session_id: str) -> str | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        sha256, expires = entry
        if time.monotonic() >= expires:
            del self._sessions[session_id]
            return None
        return sha256

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


@attrs.frozen
class ApiAuthSettings:
    """The ``api_auth`` section of both servers' configuration (docs/configuration.md)."""

    enabled: bool = True
    admin_token: str = attrs.field(default="", repr=False)
    read_token: str = attrs.field(default="", repr=False)
    token_file: str = "api-token"
    """Where the first admin token is written (relative to the data folder)."""


def check_secret(value: str) -> str | None:
    """A configured token must be a secret, not a password someone can guess."""
    if value and len(value) < 24:
        return "a token is at least 24 characters (make one with `lwm2m-keystore api-token create`)"
    return None


def configured_tokens(admin_token: str, read_token: str) -> list[ApiToken]:
    """The tokens of the configuration (``api_auth.admin_token``/``read_token``)."""
    tokens = []
    if admin_token:
        tokens.append(ApiToken("config-admin", Role.ADMIN, digest(admin_token)))
    if read_token:
        tokens.append(ApiToken("config-read", Role.READ, digest(read_token)))
    return tokens


def ensure_first_admin(
    auth: Authenticator,
    tokens: ApiTokenStore,
    path: Path,
    *,
    commit: Callable[[], object] | None = None,
) -> Path | None:
    """At a start with auth on and no admin token anywhere, make one named ``admin`` and write
    it to ``path`` (0600) for the operator, like a database's first superuser password: the
    README's commands find it there (``lwm2m_runtime.api_client.default_token``). Returns the
    path when a token was made. The token itself is never logged."""
    if not auth.enabled or auth.has_admin():
        return None
    secret = new_secret()
    write_private(path, (secret + "\n").encode())
    tokens.put_token(ApiToken("admin", Role.ADMIN, digest(secret)))
    if commit is not None:
        commit()
    log.warning(
        "API authentication: created the admin token 'admin' in %s (owner-only); "
        "manage tokens with `lwm2m-keystore api-token`",
        path,
    )
    return path


# -- the audit log ---------------------------------------------------------------------------


@attrs.frozen
class AuditEntry:
    id: int
    time_ms: int
    principal: str
    method: str
    path: str
    status: int
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class AuditLog:
    """The ``audit_log`` table on a store's connection; ``record`` never raises (a full disk
    must not turn a device command that succeeded into an HTTP 500: it is logged instead)."""

    def __init__(self, store: SqliteDatabase) -> None:
        self._store = store
        try:
            table = store.db.table("audit_log")
            table.create(
                {
                    "id": int,
                    "time_ms": int,
                    "principal": str,
                    "method": str,
                    "path": str,
                    "status": int,
                    "outcome": str,
                },
                pk="id",
                not_null={"time_ms", "principal", "method", "path", "status", "outcome"},
                if_not_exists=True,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{store.path}: cannot create the audit_log table: {exc}") from exc

    def record(self, principal: str, method: str, path: str, status: int, outcome: str) -> None:
        try:
            with self._store.write() as conn:
                conn.execute(
                    "INSERT INTO audit_log(time_ms, principal, method, path, status, outcome) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (int(time.time() * 1000), principal, method, path, status, outcome),
                )
        except StoreError as exc:
            log.error("audit: could not record %s %s by %s: %s", method, path, principal, exc)
        log.info("audit: %s %s %s -> %d %s", principal, method, path, status, outcome)

    def entries(
        self, *, limit: int = 100, before: int | None = None, principal: str | None = None
    ) -> list[AuditEntry]:
        """Newest first; ``before`` an entry id (paging back), ``principal`` one token name."""
        where: list[str] = []
        params: list[int | str] = []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if principal is not None:
            where.append("principal = ?")
            params.append(principal)
        sql = "SELECT id, time_ms, principal, method, path, status, outcome FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self._store.read(sql, (*params, limit))
        return [AuditEntry(*row) for row in rows]


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "forbidden"
    return "failed"


# -- the middleware ------------------------------------------------------------------------


def _refuse(status: int, message: str) -> web.Response:
    response = error_response(status, {"error": message, "code": f"4.0{status - 400}"})
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
    return response


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def make_auth_middleware(
    auth: Authenticator,
    audit: AuditLog | None,
    *,
    public: Sequence[tuple[str, str]] = (),
    public_prefixes: Sequence[str] = (),
) -> Middleware:
    """Authenticate (bearer header, else session cookie), authorise and audit; placed
    outermost, so the audited status is the one the caller got (after the error middleware
    turned exceptions into responses). ``public_prefixes``: more paths read without a bearer
    token (the LwM2M server's ``/fw/`` downloads, whose URL carries its own credential)."""
    open_routes = PUBLIC_ROUTES | frozenset(public)
    open_prefixes = PUBLIC_PREFIXES + tuple(public_prefixes)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method
        path = request.path
        mutating = method not in READ_METHODS
        if (
            not auth.enabled
            or (method, path) in open_routes
            or (method in READ_METHODS and path.startswith(open_prefixes))
        ):
            return await _audited(request, handler, audit if mutating else None)
        secret = bearer(request)
        by_cookie = False
        if secret is not None:
            token = auth.identify(secret)
            reason = "unknown token"
        else:
            session_id = request.cookies.get(SESSION_COOKIE)
            sha256 = auth.sessions.digest_of(session_id) if session_id else None
            token = auth.identify_digest(sha256) if sha256 is not None else None
            by_cookie = session_id is not None
            reason = "session expired or logged out" if by_cookie else "a bearer token is required"
        if token is None:
            if mutating and audit is not None:
                audit.record(ANONYMOUS, method, path, 401, _outcome(401))
            return _refuse(401, f"{reason} (Authorization: Bearer <token>)")
        request[PRINCIPAL] = token.name
        request[ROLE] = token.role.value
        session_route = path == SESSION_PATH
        needs_csrf = mutating and (by_cookie or session_route)
        if needs_csrf and not request.headers.get(CSRF_HEADER):
            if audit is not None:
                audit.record(token.name, method, path, 403, _outcome(403))
            return _refuse(
                403,
                f"{method} {path} needs the {CSRF_HEADER} header with a session, read-only or "
                "admin (a cross-site page cannot set it, so it proves the request is the UI's)",
            )
        if not session_route and not token.role.allows(method):
            if audit is not None:
                audit.record(token.name, method, path, 403, _outcome(403))
            return _refuse(403, f"token {token.name!r} is read-only: {method} needs an admin token")
        return await _audited(request, handler, audit if mutating else None)

    return auth_middleware


async def _audited(
    request: web.Request, handler: Handler, audit: AuditLog | None
) -> web.StreamResponse:
    if audit is None:
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        audit.record(who(request), request.method, request.path, status, _outcome(status))


# -- GET /api/audit ---------------------------------------------------------------------------

AUDIT = web.AppKey("audit", AuditLog)


def add_audit_route(app: web.Application, audit: AuditLog) -> None:
    """``GET /api/audit[?limit=100&before=ID&principal=NAME]``: entries newest first; a read
    token may read it (auditors are typically read-only)."""
    app[AUDIT] = audit
    app.router.add_route("GET", "/api/audit", _audit_entries)


async def _audit_entries(request: web.Request) -> web.Response:
    query = request.query
    try:
        limit = int(query.get("limit", "100"))
        before = int(query["before"]) if "before" in query else None
    except ValueError:
        return error_response(400, {"error": "limit and before are integers", "code": "4.00"})
    if not 1 <= limit <= 10_000:
        return error_response(400, {"error": "limit is 1..10000", "code": "4.00"})
    entries = request.app[AUDIT].entries(
        limit=limit, before=before, principal=query.get("principal")
    )
    return web.json_response([e.to_json() for e in entries])


# -- /api/session: browser sessions --------------------------------------------------------

AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


def add_session_routes(app: web.Application, auth: Authenticator | None) -> None:
    """``GET|POST|DELETE /api/session`` (see the module docstring). ``auth`` None: an API
    without authentication (tests over a test double); the routes then say so."""
    if auth is None:
        auth = Authenticator(None, (), enabled=False)
    app[AUTHENTICATOR] = auth
    app.router.add_route("GET", SESSION_PATH, _session_info)
    app.router.add_route("POST", SESSION_PATH, _session_open)
    app.router.add_route("DELETE", SESSION_PATH, _session_close)


def _session_json(request: web.Request) -> dict[str, Any]:
    auth = request.app[AUTHENTICATOR]
    if not auth.enabled:
        return {"name": ANONYMOUS, "role": Role.ADMIN.value, "auth": False}
    return {"name": who(request), "role": request.get(ROLE, Role.READ.value), "auth": True}


async def _session_info(request: web.Request) -> web.Response:
    """Who the caller is (``name``, ``role``): the UI asks at start whether its cookie is
    still good."""
    return web.json_response(_session_json(request))


async def _session_open(request: web.Request) -> web.Response:
    """Log in: the middleware checked the bearer token (and the CSRF header); the answer sets
    the cookie of a new session for that token."""
    auth = request.app[AUTHENTICATOR]
    response = web.json_response(_session_json(request))
    secret = bearer(request)
    if not auth.enabled or secret is None:
        return response  # auth off, or already a session: nothing to swap
    token = auth.identify(secret)
    if token is None:  # pragma: no cover - the middleware refused it already
        return _refuse(401, "unknown token")
    response.set_cookie(
        SESSION_COOKIE,
        auth.sessions.open(token),
        path="/",
        httponly=True,
        samesite="Strict",
        # behind the TLS reverse proxy docs/server.md asks for, the proxy says it was HTTPS
        # (a forged header only makes the cookie stricter: a browser drops it on plain HTTP)
        secure=request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https",
        max_age=int(auth.sessions.ttl),
    )
    return response


async def _session_close(request: web.Request) -> web.Response:
    """Log out: the session is forgotten server-side (a copied cookie stops working) and the
    browser told to drop it."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        request.app[AUTHENTICATOR].sessions.close(session_id)
    response = web.json_response({"loggedOut": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response

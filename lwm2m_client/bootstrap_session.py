"""One client-initiated bootstrap over the network (Core 1.1/1.2 §6.1.3, §6.1.5).

Classic sequence: a fresh aiocoap context for the bootstrap server (NoSec or DTLS with the
factory credentials, from ``transport.create_context``), ``POST /bs?ep=&pct=``, then the
bootstrap server's Discover/Read/Delete/Write requests are answered by ``bootstrap`` on that
same socket until it sends Bootstrap-Finish. The socket is separate from the one later used for
the LwM2M server because the two peers need different DTLS sessions and credentials.

Bootstrap-Pack (1.2): ``GET /bspack?ep=`` returns the whole configuration in one SenML CBOR
payload; the client applies it like a Delete of ``/`` followed by Bootstrap-Writes, and then
checks it like a Finish.

A session that gets no Finish within ``finish_timeout`` fails; the caller retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiocoap
import aiocoap.resource
import attrs
from aiocoap.numbers.codes import Code

from keystore.dtls import ClientConfig
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, Lwm2mError

from .accounts import security_account
from .bootstrap import BootstrapInterface, bootstrap_accounts, consistency_errors
from .coap_resource import to_message, to_request
from .management import Response
from .objects import ObjectTree
from .transport import ServerAddress, create_context, parse_server_uri

log = logging.getLogger(__name__)


class BootstrapFailed(Exception):
    """This bootstrap attempt did not end with a usable configuration."""


class _BootstrapSite(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """Everything the bootstrap server sends: ``POST /bs`` is Finish, the rest LwM2M paths."""

    def __init__(self, interface: BootstrapInterface) -> None:
        super().__init__()
        self.interface = interface

    async def render(self, request: Any) -> Any:
        segments = [s for s in request.opt.uri_path if s]
        if segments == ["bs"]:
            if request.code != Code.POST:
                return aiocoap.Message(code=Code.METHOD_NOT_ALLOWED)
            response = self.interface.finish()
        else:
            try:
                response = await self.interface.handle(to_request(request))
            except Lwm2mError as exc:
                response = Response.error(exc)
        log.debug("bootstrap %s %s -> %#x", request.code, "/".join(segments), response.code)
        return to_message(response)

    def get_link_description(self) -> Any:
        return None


async def run_session(
    interface: BootstrapInterface,
    server: ServerAddress,
    dtls: ClientConfig | None,
    *,
    endpoint: str,
    preferred_format: int | None,
    bind_host: str | None,
    finish_timeout: float,
    request_timeout: float = 30.0,
) -> None:
    """Bootstrap-Request and serve the session until Finish; ``BootstrapFailed`` otherwise."""
    finished = asyncio.Event()
    refusals: list[str] = []

    def on_finish(errors: list[str]) -> None:
        refusals[:] = errors
        finished.set()

    interface.on_finish = on_finish
    context = await create_context(server, _BootstrapSite(interface), bind_host, dtls)
    try:
        query = [f"ep={endpoint}"]
        if preferred_format is not None:
            query.append(f"pct={preferred_format}")
        answer = await _request(context, server, Code.POST, "bs", query, request_timeout)
        if answer.code != Code.CHANGED:
            raise BootstrapFailed(f"Bootstrap-Request refused: {answer.code} {_text(answer)}")
        try:
            await asyncio.wait_for(finished.wait(), finish_timeout)
        except TimeoutError:
            raise BootstrapFailed(f"no Bootstrap-Finish within {finish_timeout:g} s") from None
        await asyncio.sleep(0.05)  # let the answer to Finish leave before the socket closes
        if refusals:
            raise BootstrapFailed("Bootstrap-Finish refused (4.06): " + "; ".join(refusals))
    finally:
        await context.shutdown()


async def run_pack(
    interface: BootstrapInterface,
    server: ServerAddress,
    dtls: ClientConfig | None,
    *,
    endpoint: str,
    bind_host: str | None,
    request_timeout: float = 30.0,
) -> None:
    """Bootstrap-Pack-Request (1.2): fetch, apply, check; ``BootstrapFailed`` otherwise."""
    context = await create_context(server, _BootstrapSite(interface), bind_host, dtls)
    try:
        answer = await _request(
            context, server, Code.GET, "bspack", [f"ep={endpoint}"], request_timeout,
            accept=ContentFormat.SENML_CBOR,
        )  # fmt: skip
    finally:
        await context.shutdown()
    if answer.code != Code.CONTENT:
        raise BootstrapFailed(f"Bootstrap-Pack-Request refused: {answer.code} {_text(answer)}")
    fmt = answer.opt.content_format
    try:
        nodes = codecs.decode_nodes(bytes(answer.payload), int(fmt), interface.tree.models)
        interface.delete_all()
        interface.write_nodes(nodes)
    except (CodecError, Lwm2mError, ValueError, TypeError) as exc:
        raise BootstrapFailed(f"Bootstrap-Pack not applicable: {exc}") from exc
    errors = consistency_errors(interface.tree)
    if errors:
        raise BootstrapFailed("Bootstrap-Pack inconsistent: " + "; ".join(errors))


async def _request(
    context: Any,
    server: ServerAddress,
    code: Any,
    path: str,
    query: list[str],
    timeout: float,
    accept: int | None = None,
) -> Any:
    message = aiocoap.Message(code=code, uri=f"{server.base_uri}/{path}")
    message.opt.uri_query = tuple(query)
    if accept is not None:
        message.opt.accept = accept
    try:
        return await asyncio.wait_for(context.request(message).response, timeout)
    except (aiocoap.error.Error, TimeoutError, OSError) as exc:
        raise BootstrapFailed(f"{code} /{path} to {server.base_uri} failed: {exc!r}") from exc


def _text(answer: Any) -> str:
    return bytes(answer.payload).decode("utf-8", "replace")


@attrs.frozen
class BootstrapSettings:
    """How the client bootstraps (``Lwm2mClient(bootstrap=…)``, ``from_bootstrap``).

    ``finish_timeout``: a session without Bootstrap-Finish in that time failed.
    ``attempts``: how many sessions before ``bootstrap()`` gives up (None: never), waiting
    ``retry_delay`` doubled after each failure up to ``max_delay`` (Core §6.1.3 leaves the
    schedule to the client; backoff keeps a fleet from hammering a bootstrap server).
    ``preferred_format``: ``pct`` of the Bootstrap-Request (None: TLV for 1.1, SenML CBOR for
    1.2, nothing for 1.0, which has no ``pct``).
    """

    uri: str
    pack: bool = False
    finish_timeout: float = 60.0
    attempts: int | None = 5
    retry_delay: float = 1.0
    max_delay: float = 60.0
    preferred_format: int | None = None

    def pct(self, lwm2m_version: str) -> int | None:
        if self.preferred_format is not None:
            return self.preferred_format
        if lwm2m_version == "1.0":
            return None
        return ContentFormat.SENML_CBOR if lwm2m_version == "1.2" else ContentFormat.TLV


@attrs.define
class Bootstrapper:
    """One client's way to its bootstrap server: where, with which credentials, how often.

    Built from ``BootstrapSettings`` (``from_bootstrap``) or, for a client configured some
    other way, from the Bootstrap-Server account in its Security object (``from_tree``).
    """

    settings: BootstrapSettings
    server: ServerAddress
    dtls: ClientConfig | None

    @classmethod
    def from_tree(cls, tree: ObjectTree) -> Bootstrapper | None:
        """None without a Bootstrap-Server account; ValueError when it is unusable."""
        instances = bootstrap_accounts(tree)
        if not instances:
            return None
        account = security_account(tree, instances[0])
        return cls(BootstrapSettings(account.uri), parse_server_uri(account.uri),
                   account.dtls_config())  # fmt: skip

    async def run(
        self,
        interface: BootstrapInterface,
        *,
        endpoint: str,
        lwm2m_version: str,
        bind_host: str | None,
    ) -> None:
        """Bootstrap until a session succeeds, waiting ``retry_delay`` doubled between
        attempts; ``BootstrapFailed`` (the last reason) after ``settings.attempts``."""
        settings = self.settings
        delay, attempt = settings.retry_delay, 0
        while True:
            attempt += 1
            try:
                if settings.pack:
                    await run_pack(interface, self.server, self.dtls,
                                   endpoint=endpoint, bind_host=bind_host)  # fmt: skip
                else:
                    await run_session(
                        interface, self.server, self.dtls, endpoint=endpoint,
                        preferred_format=settings.pct(lwm2m_version), bind_host=bind_host,
                        finish_timeout=settings.finish_timeout,
                    )  # fmt: skip
                return
            except BootstrapFailed as exc:
                if settings.attempts is not None and attempt >= settings.attempts:
                    raise
                log.warning("bootstrap attempt %d failed: %s; retry in %.1fs", attempt, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.max_delay)

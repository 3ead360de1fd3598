"""One ``lwm2m-server`` process as a node of a cluster on Redis: who holds which device,
downlinks routed to the node that holds it, events shared by every node (docs/cluster.md,
"Downlink routing" and "Events from every node").

Why routing at all: a device answers only the socket it talks to. Over NoSec a NAT in front of
it drops a request from another address; over CoAPs the DTLS session (its keys, its record
sequence numbers in flight) lives in the memory of the node that receives the device's records.
So a request made through any node's API is sent by the node that last heard the device's
Register or Update, the **holder**, and only its answer travels back.

* **Holder record**: ``P:node:{ep}`` (a string in the endpoint's slot) = the node id
  (``host:pid``), written on Register and on an Update from a new address, and at most every
  ``HOLDER_REFRESH`` seconds otherwise (a write per Update would add a round trip to each).
  The write is ``SET … GET``: when the previous holder was another node, that node is told
  (``moved``) so that it forgets its own "written" mark and writes again when the device comes
  back to it.
* **Routing**: ``route()`` reads the holder; when it is another node, the request (the
  ``DownlinkRequest``, plain values as JSON) is PUBLISHed on that node's channel
  ``P:cluster:node:<id>`` with the channel to answer on, and the caller waits up to the
  request's timeout plus ``ROUTE_MARGIN``. PUBLISH returns how many subscribers got it: 0 means
  the holder is gone (killed, restarted under a new pid), and the request is sent from this node
  (the device's next Update makes the sender the holder). The holder sends it as its own
  (``Lwm2mServer.send_routed``: observation kept there, its notifications arrive there) and
  answers with the ``RawResponse``; the caller decodes it with its models, as for a local one.
* **Events**: every event of a node's bus (except REQUEST_RESPONSE, which exists only where
  the request was queued, and carries a Python object) is PUBLISHed on ``P:cluster:events``
  with its origin; every node gives the events of the others to its own SSE subscribers, not to
  its in-process listeners (the profile engine of the holder already acted on it), and never
  publishes them again.

Pub/sub is at-most-once: a node that is disconnected from Redis misses events and requests
meanwhile (a routed request then times out for the caller: 5.04).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from keystore.log_limit import PerPeerLimit
from keystore.store.engines import StoreSettings
from keystore.store.redis_database import RedisDatabase
from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from ..api.events import _json_default as json_default
from ..coap.requests import DownlinkRequest, RawResponse
from ..core.registration import Registration
from ..events_bus import DEREGISTRATION, REQUEST_RESPONSE
from ..operations import DeviceTimeoutError, ServerEvent, UnknownClientError

if TYPE_CHECKING:
    from ..service import Lwm2mServer

log = logging.getLogger(__name__)

HOLDER_REFRESH = 600.0
"""Seconds after which a node writes its holder record again on an Update from the same
address: repairs a record another node overwrote while its ``moved`` message was lost (pub/sub
is at most once). Devices update every few minutes, so a shorter period would cost most Updates
a Redis round trip."""
ROUTE_MARGIN = 5.0
"""Seconds a routed request may take beyond its own timeout (the two hops through Redis)."""
OUTBOX_SIZE = 10_000
"""Events and replies waiting to be published; beyond, the oldest event is dropped."""


_NODES_IN_PROCESS = itertools.count()


def default_node_id() -> str:
    """``host:pid``; a second server in the same process (tests, an embedding application) is
    another node: ``host:pid:2`` and so on."""
    number = next(_NODES_IN_PROCESS)
    suffix = f":{number + 1}" if number else ""
    return f"{socket.gethostname()}:{os.getpid()}{suffix}"


# -- wire form of requests and answers (JSON: never pickle what comes out of Redis) ---------------


def request_to_json(request: DownlinkRequest) -> dict[str, Any]:
    return {
        "operation": request.operation,
        "method": request.method,
        "path": str(request.path),
        "paths": [str(p) for p in request.paths],
        "payload": request.payload.hex(),
        "content_format": request.content_format,
        "accept": request.accept,
        "query": list(request.query),
        "observe": request.observe,
        "token": None if request.token is None else request.token.hex(),
    }


def request_from_json(data: Mapping[str, Any]) -> DownlinkRequest:
    token = data["token"]
    return DownlinkRequest(
        operation=str(data["operation"]),
        method=str(data["method"]),
        path=LwM2mPath.parse(data["path"]),
        paths=tuple(LwM2mPath.parse(p) for p in data["paths"]),
        payload=bytes.fromhex(data["payload"]),
        content_format=data["content_format"],
        accept=data["accept"],
        query=tuple(data["query"]),
        observe=data["observe"],
        token=None if token is None else bytes.fromhex(token),
    )


def raw_to_json(raw: RawResponse) -> dict[str, Any]:
    return {
        "code": raw.code,
        "payload": raw.payload.hex(),
        "content_format": raw.content_format,
        "location_path": list(raw.location_path),
        "observe": raw.observe,
        "token": raw.token.hex(),
        "etag": None if raw.etag is None else raw.etag.hex(),
    }


def raw_from_json(data: Mapping[str, Any]) -> RawResponse:
    etag = data["etag"]
    return RawResponse(
        code=int(data["code"]),
        payload=bytes.fromhex(data["payload"]),
        content_format=data["content_format"],
        location_path=tuple(data["location_path"]),
        observe=data["observe"],
        token=bytes.fromhex(data["token"]),
        etag=None if etag is None else bytes.fromhex(etag),
    )


def error_to_json(exc: Lwm2mError) -> dict[str, Any]:
    kind = (
        "timeout"
        if isinstance(exc, DeviceTimeoutError)
        else "unknown"
        if isinstance(exc, UnknownClientError)
        else "error"
    )
    return {"kind": kind, "code": int(exc.code), "message": exc.message}


def error_from_json(data: Mapping[str, Any]) -> Lwm2mError:
    message = str(data.get("message", ""))
    if data.get("kind") == "timeout":
        return DeviceTimeoutError(message)
    if data.get("kind") == "unknown":
        return UnknownClientError(message)
    try:
        code = ResponseCode(int(data.get("code", int(ResponseCode.INTERNAL_SERVER_ERROR))))
    except ValueError:
        code = ResponseCode.INTERNAL_SERVER_ERROR
    return Lwm2mError(message, code=code)


class ClusterNode:
    """This node's part of the cluster (see the module docstring). ``await start()`` once the
    server listens, ``await stop()`` before it closes."""

    def __init__(
        self,
        server: Lwm2mServer,
        settings: StoreSettings,
        db: RedisDatabase,
        node_id: str | None = None,
    ) -> None:
        self.server = server
        self.settings = settings
        self.db = db
        self.node_id = node_id or default_node_id()
        prefix = settings.prefix
        self.events_channel = f"{prefix}:cluster:events"
        self._prefix = prefix
        self.channel = self.node_channel(self.node_id)
        self._held: dict[str, tuple[object, float]] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._outbox: asyncio.Queue[tuple[str, str | ServerEvent] | None] = asyncio.Queue()
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._redis: Any = None
        self._pubsub: Any = None
        self._unlisten: Any = None
        self._log = PerPeerLimit(60.0)
        self.routed = 0
        """Requests this node routed to another one (for tests and /api/health)."""
        self.served = 0
        """Requests other nodes routed to this one."""
        self.events_dropped = 0
        self.gained: list[Callable[[str], None]] = []
        """Called with an endpoint when this node becomes its holder, taking it from another
        node (the firmware jobs follow the device: docs/firmware.md, "Updates in a cluster")."""
        self.handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {}
        """Handlers of further ops on this node's channel (``post`` sends them)."""
        self.remote_listeners: list[Callable[[ServerEvent], None]] = []
        """Called with each event of another node (after it went to the SSE subscribers):
        for consumers that opt in (the firmware job manager, for the FIRMWARE events of the
        jobs other nodes drive); at most once, like everything on pub/sub."""

    def node_channel(self, node_id: str) -> str:
        return f"{self._prefix}:cluster:node:{node_id}"

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe (and wait for Redis to confirm it, so nothing routed to this node after
        ``start`` returns is missed), then relay the bus's events."""
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(self.settings.url)
        await self._subscribe()
        self._spawn(self._read())
        self._spawn(self._publish())
        self._unlisten = self.server.bus.listen(self._on_local_event)
        log.info("cluster node %s (channel %s)", self.node_id, self.channel)

    async def _subscribe(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.channel, self.events_channel)
        confirmed = 0
        deadline = time.monotonic() + 10.0
        while confirmed < 2:
            if time.monotonic() > deadline:
                raise ConnectionError("Redis did not confirm the cluster subscriptions")
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                confirmed += 1
        self._pubsub = pubsub

    async def stop(self) -> None:
        """Stop reading and publishing. A flag and a sentinel, not only ``cancel()``: redis-py
        may absorb a cancellation that arrives inside one of its calls, and a loop that lost
        its CancelledError would wait forever (a stop that hung, seen in the tests)."""
        self._closing = True
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._outbox.put_nowait(None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- holder records --------------------------------------------------------------------------
    def holder_key(self, endpoint: str) -> str:
        return self.db.endpoint_key("node", endpoint)

    def holding(self, registration: Registration) -> None:
        """A Register/Update of ``registration`` reached this node: it holds the device."""
        endpoint = registration.endpoint
        now = time.monotonic()
        known = self._held.get(endpoint)
        if (
            known is not None
            and known[0] == registration.address
            and now - known[1] < HOLDER_REFRESH
        ):
            return
        try:
            old = self.db.client.set(self.holder_key(endpoint), self.node_id, get=True)
        except Exception as exc:  # redis-py errors: routing falls back to sending from here
            if self._log.allow("holder", now):
                log.warning("cannot record that this node holds %s: %s", endpoint, exc)
            return
        self._held[endpoint] = (registration.address, now)
        previous = None if old is None else (old.decode() if isinstance(old, bytes) else str(old))
        if previous is not None and previous != self.node_id:
            message = json.dumps({"op": "moved", "endpoint": endpoint})
            self._post(self.node_channel(previous), message)
            for hook in list(self.gained):
                try:
                    hook(endpoint)
                except Exception:
                    log.exception("a holder hook failed for %s", endpoint)

    def post(self, node_id: str, message: Mapping[str, Any]) -> None:
        """Send ``message`` (with an ``op`` in ``handlers`` there) to a node's channel."""
        self._post(self.node_channel(node_id), json.dumps(message))

    def holder(self, endpoint: str) -> str | None:
        value = self.db.client.get(self.holder_key(endpoint))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    # -- routing -----------------------------------------------------------------------------------
    async def route(
        self, registration: Registration, request: DownlinkRequest, timeout: float
    ) -> RawResponse | None:
        """The device's answer through the node that holds it, or None when this node is to
        send it itself (it holds the device, nobody does, or the holder is gone)."""
        endpoint = registration.endpoint
        try:
            holder = self.holder(endpoint)
        except Exception as exc:
            if self._log.allow("route", time.monotonic()):
                log.warning("cannot read which node holds %s: %s", endpoint, exc)
            return None
        if holder is None or holder == self.node_id:
            return None
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        message = {
            "op": "exec",
            "id": request_id,
            "reply": self.channel,
            "endpoint": endpoint,
            "request": request_to_json(request),
            "timeout": timeout,
        }
        try:
            receivers = await self._redis.publish(self.node_channel(holder), json.dumps(message))
            if not receivers:
                log.info(
                    "node %s that held %s is gone: sending %s from this node",
                    holder,
                    endpoint,
                    request.describe(),
                )
                return None
            self.routed += 1
            log.debug("%s of %s routed to node %s", request.describe(), endpoint, holder)
            try:
                reply = await asyncio.wait_for(future, timeout + ROUTE_MARGIN)
            except TimeoutError:
                raise DeviceTimeoutError(
                    f"node {holder}, which holds {endpoint!r}, did not answer "
                    f"{request.describe()} within {timeout + ROUTE_MARGIN:g} s"
                ) from None
        finally:
            self._waiting.pop(request_id, None)
        if "raw" in reply:
            return raw_from_json(reply["raw"])
        raise error_from_json(reply.get("error", {}))

    async def _serve(self, message: Mapping[str, Any]) -> None:
        """Execute a request another node routed here; answer on its channel."""
        reply: dict[str, Any] = {"op": "reply", "id": message.get("id")}
        try:
            registration = self.server.client(str(message["endpoint"]))
            request = request_from_json(message["request"])
            log.debug(
                "sending %s to %s for node %s (routed)",
                request.describe(),
                registration.endpoint,
                message.get("reply"),
            )
            raw = await self.server.send_routed(registration, request, float(message["timeout"]))
            reply["raw"] = raw_to_json(raw)
        except Lwm2mError as exc:
            reply["error"] = error_to_json(exc)
        except Exception as exc:  # a bug or a malformed message: the caller gets a 5.00
            log.exception("a request routed from another node failed")
            reply["error"] = {"kind": "error", "code": 0xA0, "message": f"routed request: {exc}"}
        self.served += 1
        self._post(str(message.get("reply")), json.dumps(reply))

    # -- pub/sub -----------------------------------------------------------------------------------
    async def _read(self) -> None:
        """Read both channels; on a lost connection, subscribe again (logged once a minute)."""
        while not self._closing:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._log.allow("pubsub", time.monotonic()):
                    log.warning("cluster pub/sub connection lost (%s): subscribing again", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self._subscribe()

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            name = channel.decode() if isinstance(channel, bytes) else channel
            if name == self.events_channel:
                if message.get("origin") != self.node_id:
                    event = self.server.bus.publish(
                        str(message["kind"]),
                        str(message["endpoint"]),
                        dict(message["data"]),
                        listeners=False,
                    )
                    for listener in list(self.remote_listeners):
                        try:
                            listener(event)
                        except Exception:
                            log.exception("a listener of remote events failed on %s", event.kind)
                return
            op = message.get("op")
            if op == "exec":
                self._spawn(self._serve(message))
            elif op == "reply":
                future = self._waiting.get(str(message.get("id")))
                if future is not None and not future.done():
                    future.set_result(message)
            elif op == "moved":
                self._held.pop(str(message.get("endpoint")), None)
            elif isinstance(op, str) and op in self.handlers:
                self.handlers[op](message)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if self._log.allow("message", time.monotonic()):
                log.warning("malformed cluster message on %r: %s", channel, exc)

    def _on_local_event(self, event: ServerEvent) -> None:
        """A bus listener: the event goes out (built and sent by the publisher task, after the
        replies of this loop iteration)."""
        if event.kind == REQUEST_RESPONSE:
            return
        if event.kind == DEREGISTRATION:  # also expiry: its "written" mark goes with it
            self._held.pop(event.endpoint, None)
        self._enqueue((self.events_channel, event))

    def _post(self, channel: str, message: str) -> None:
        self._enqueue((channel, message))

    def _enqueue(self, item: tuple[str, str | ServerEvent]) -> None:
        if self._closing:
            return
        if self._outbox.qsize() >= OUTBOX_SIZE:
            self._outbox.get_nowait()
            self.events_dropped += 1
        self._outbox.put_nowait(item)

    async def _publish(self) -> None:
        while not self._closing:
            entry = await self._outbox.get()
            if entry is None:
                return
            channel, item = entry
            if isinstance(item, ServerEvent):
                try:  # the SSE's JSON forms (points, paths): what the other node's stream shows
                    text = json.dumps(
                        {
                            "origin": self.node_id,
                            "kind": item.kind,
                            "endpoint": item.endpoint,
                            "data": dict(item.data),
                        },
                        default=json_default,
                    )
                except (TypeError, ValueError) as exc:
                    log.debug("event %s not shared: %s", item.kind, exc)
                    continue
            else:
                text = item
            try:
                await self._redis.publish(channel, text)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._log.allow("publish", time.monotonic()):
                    log.warning("cannot publish to the cluster: %s", exc)

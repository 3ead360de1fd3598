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
  back to it. On one Redis the write travels in the loop iteration's group commit
  (``RedisStore.write_later``), not on a round trip of its own before the reply: the record is
  advisory (a request routed by a stale one falls back, see below), so it need not be stored
  before the device's reply leaves.
* **Routing**: ``route()`` reads the holder; when it is another node, the request (the
  ``DownlinkRequest``, plain values as JSON) is PUBLISHed on that node's channel
  ``P:cluster:node:<id>`` with the channel to answer on, and the caller waits up to the
  request's timeout plus ``ROUTE_MARGIN``. PUBLISH returns how many subscribers got it: 0 means
  the holder is gone (killed, restarted under a new pid), and the request is sent from this node
  (the device's next Update makes the sender the holder). The holder sends it as its own
  (``Lwm2mServer.send_routed``: observation kept there, its notifications arrive there) and
  answers with the ``RawResponse``; the caller decodes it with its models, as for a local one.
* **Observations**: the holder keeps an Observe's observation (its notifications arrive there),
  so a cancel through another node is done there too (docs/cluster.md, "Observations across
  nodes"): an active cancel is routed like any downlink (the sender forgets the observation and
  removes its record before sending), a passive one is a ``forget`` message
  (``route_forget``); the lists come from the store.
* **Queued requests**: a node that sees a queue-mode device wake (Register/Update) takes the
  requests any node queued for it (``RedisQueuedRequestStore.take``: one script, in the group
  commit on one Redis), delivers them, and tells each previous owner (``taken``) to drop its
  in-memory copies without answering them; their REQUEST_RESPONSE events are shared, so the
  caller who got the 202 from the other node's API sees the answer there.
* **Events**: every event of a node's bus (except REQUEST_RESPONSE, which exists only where
  the request was queued, and carries a Python object — but see the queued requests above) is
  PUBLISHed on ``P:cluster:events``
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
from ..events_bus import CAMPAIGN, DEREGISTRATION, FIRMWARE, REQUEST_RESPONSE
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
PUBLISH_BATCH = 500
"""Outbox entries sent in one pipeline at most (one round trip)."""
HEARTBEAT = 15.0
"""Seconds between two ``alive`` messages of a node (and PINGs of Redis, timed): what
/api/health and /metrics show as the peers seen and the Redis latency."""
PEER_SEEN = 3 * HEARTBEAT
"""A node heard from within this many seconds counts as a peer."""
ALWAYS_SHARED = frozenset({REQUEST_RESPONSE, FIRMWARE, CAMPAIGN})
"""Event kinds shared even when no other node has a reader: other nodes' logic consumes them
(a caller waiting for a request's answer, the firmware job managers' remote listeners), and
they are rare. Every other kind is shared only while some other node has an event reader."""
ALIVE = "_alive"
"""The op of a node's heartbeat message (``alive``) on the events channel."""


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
        self.holder_writes = 0
        """Holder records written (most with the group commit, not on a round trip of their own)."""
        self.queued_taken = 0
        """Queued requests of other nodes this node took over and delivered."""
        self._listening: dict[str, float] = {}
        """Other nodes that said they have event readers → ``time.monotonic()`` when they said
        it (their alive messages; a claim older than ``PEER_SEEN`` has lapsed)."""
        self._peers: dict[str, float] = {}
        """Other nodes' ids → ``time.monotonic()`` when last heard (events, alive messages)."""
        self.redis_ping: float | None = None
        """Seconds the last PING of Redis took (the heartbeat's), None before the first."""
        self._adopted: set[str] = set()
        """Request ids taken over from other nodes: their REQUEST_RESPONSE is shared."""
        queued: Any = server.stores.queued_requests
        self._queued: Any = queued if hasattr(queued, "take") else None
        if self._queued is not None:
            self._queued.node = self.node_id  # the owner of what this node queues
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
        self._spawn(self._heartbeat())
        self._unlisten = self.server.bus.listen(self._on_local_event)
        self.server.bus.subscribed_hooks.append(self._on_subscribed)
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
        with contextlib.suppress(ValueError):
            self.server.bus.subscribed_hooks.remove(self._on_subscribed)
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
        """A Register/Update of ``registration`` reached this node: it holds the device (and,
        in queue mode, takes over what other nodes queued for it)."""
        endpoint = registration.endpoint
        if registration.queue_mode and self._queued is not None:
            self._take_queue(endpoint)
        now = time.monotonic()
        known = self._held.get(endpoint)
        if (
            known is not None
            and known[0] == registration.address
            and now - known[1] < HOLDER_REFRESH
        ):
            return
        self._held[endpoint] = (registration.address, now)
        key = self.holder_key(endpoint)
        store = self._grouping_store()
        if store is not None and store.write_later(
            lambda pipe: pipe.set(key, self.node_id, get=True),
            lambda old: self._written(endpoint, old),
        ):
            self.holder_writes += 1
            return  # sent with the iteration's group commit: no round trip of its own
        try:
            old = self.db.client.set(key, self.node_id, get=True)
        except Exception as exc:  # redis-py errors: routing falls back to sending from here
            self._held.pop(endpoint, None)
            if self._log.allow("holder", now):
                log.warning("cannot record that this node holds %s: %s", endpoint, exc)
            return
        self.holder_writes += 1
        self._written(endpoint, old)

    # -- queued requests (docs/cluster.md, "Queued requests across nodes") ---------------------
    def _take_queue(self, endpoint: str) -> None:
        """The device woke up here: take the requests queued for it by any node, atomically
        (with the iteration's group commit on one Redis, else at once)."""
        queued = self._queued
        assert queued is not None
        store = self._grouping_store()
        if store is not None and store.write_later(
            lambda pipe: queued.queue_take(pipe, endpoint),
            lambda raw: self._taken(endpoint, raw),
        ):
            return
        try:
            entries = queued.take(endpoint)
        except Exception as exc:  # StoreError: the entries stay, the next wake-up takes them
            if self._log.allow("take", time.monotonic()):
                log.warning("cannot take the queued requests of %s: %s", endpoint, exc)
            return
        self._adopt(endpoint, entries)

    def _taken(self, endpoint: str, raw: object) -> None:
        assert self._queued is not None
        if isinstance(raw, Exception):
            if self._log.allow("take", time.monotonic()):
                log.warning("cannot take the queued requests of %s: %s", endpoint, raw)
            return
        self._adopt(endpoint, self._queued.taken_entries(endpoint, raw))

    def _adopt(self, endpoint: str, entries: list[tuple[Any, str | None]]) -> None:
        """Deliver what other nodes had queued; tell each of them to let go of its copies."""
        others = [(entry, owner) for entry, owner in entries if owner != self.node_id]
        if not others:
            return
        self.queued_taken += len(others)
        if len(self._adopted) > OUTBOX_SIZE:
            self._adopted.clear()
        self._adopted.update(entry.request_id for entry, _ in others)
        self.server.adopt_queued(endpoint, [entry for entry, _ in others])
        by_owner: dict[str, list[str]] = {}
        for entry, owner in others:
            if owner is not None:
                by_owner.setdefault(owner, []).append(entry.request_id)
        for owner, ids in by_owner.items():
            message = json.dumps({"op": "taken", "endpoint": endpoint, "ids": ids})
            self._post(self.node_channel(owner), message)

    def _grouping_store(self) -> Any:
        """The server's Redis store when it group-commits (one Redis), else None."""
        stores = getattr(self.server, "_stores", None)
        core = getattr(stores, "core", None)
        return core if hasattr(core, "write_later") else None

    def _written(self, endpoint: str, old: object) -> None:
        """The holder record is ours; the node it was taken from forgets its own mark. (``old``
        is the exception when the group commit could not send it: written again next time.)"""
        if isinstance(old, Exception):
            self._held.pop(endpoint, None)
            return
        if old is None:
            return
        previous = old.decode() if isinstance(old, bytes) else str(old)
        if previous != self.node_id:
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
        message = {"op": "exec", "request": request_to_json(request)}
        reply = await self._ask(registration.endpoint, message, timeout, request.describe())
        if reply is None:
            return None
        if "raw" in reply:
            return raw_from_json(reply["raw"])
        raise error_from_json(reply.get("error", {}))

    async def route_forget(self, registration: Registration, token: bytes, timeout: float) -> bool:
        """A passive cancel of the observation ``token`` done by the node that holds the
        device (it has the observation live in its CoAP layer: only there can the next
        notification get its RST); the holder removes the store's record in the same step.
        False when this node is to do it itself (it holds the device, nobody does, or the
        holder is gone: the record is then removed here, and the device's next notification,
        wherever it lands, finds no observation and gets a RST)."""
        endpoint = registration.endpoint
        what = f"passive cancel of observation {token.hex()}"
        message = {"op": "forget", "token": token.hex()}
        reply = await self._ask(endpoint, message, timeout, what)
        if reply is None:
            return False
        if "error" in reply:
            raise error_from_json(reply["error"])
        return True

    async def _ask(
        self, endpoint: str, message: dict[str, Any], timeout: float, what: str
    ) -> dict[str, Any] | None:
        """Send ``message`` to the node that holds ``endpoint`` and wait for its reply (up to
        ``timeout`` plus ``ROUTE_MARGIN``); None when there is no other holder to ask (this
        node, none, or gone: no subscriber on its channel)."""
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
            **message,
            "id": request_id,
            "reply": self.channel,
            "endpoint": endpoint,
            "timeout": timeout,
        }
        channel = self.node_channel(holder)
        try:
            # one deadline for the PUBLISH too: the pub/sub client has no socket timeout (its
            # subscriptions are idle for long), and a Redis that hangs must not hold the caller
            async with asyncio.timeout(timeout + ROUTE_MARGIN):
                receivers = await self._redis.publish(channel, json.dumps(message))
                if not receivers:
                    log.info(
                        "node %s that held %s is gone: %s done by this node", holder, endpoint, what
                    )
                    return None
                self.routed += 1
                log.debug("%s of %s routed to node %s", what, endpoint, holder)
                return await future
        except TimeoutError:
            raise DeviceTimeoutError(
                f"node {holder}, which holds {endpoint!r}, did not answer "
                f"{what} within {timeout + ROUTE_MARGIN:g} s"
            ) from None
        finally:
            self._waiting.pop(request_id, None)

    async def _serve(self, message: Mapping[str, Any]) -> None:
        """Execute a request another node routed here; answer on its channel."""
        reply: dict[str, Any] = {"op": "reply", "id": message.get("id")}
        try:
            registration = self.server.client(str(message["endpoint"]))
            if message.get("op") == "forget":
                token = bytes.fromhex(str(message["token"]))
                log.debug(
                    "passive cancel of observation %s of %s for node %s (routed)",
                    token.hex(),
                    registration.endpoint,
                    message.get("reply"),
                )
                self.server.forget_observation(token)
                reply["forgot"] = True
            else:
                request = request_from_json(message["request"])
                log.debug(
                    "sending %s to %s for node %s (routed)",
                    request.describe(),
                    registration.endpoint,
                    message.get("reply"),
                )
                timeout = float(message["timeout"])
                raw = await self.server.send_routed(registration, request, timeout)
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
                origin = message.get("origin")
                if origin != self.node_id:
                    self._peers[str(origin)] = time.monotonic()
                    if message.get("kind") == ALIVE:
                        data = message.get("data")
                        if isinstance(data, dict) and data.get("listening"):
                            self._listening[str(origin)] = time.monotonic()
                        else:
                            self._listening.pop(str(origin), None)
                        return
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
            if op in ("exec", "forget"):
                self._spawn(self._serve(message))
            elif op == "reply":
                future = self._waiting.get(str(message.get("id")))
                if future is not None and not future.done():
                    future.set_result(message)
            elif op == "moved":
                self._held.pop(str(message.get("endpoint")), None)
            elif op == "taken":
                ids = [str(i) for i in message["ids"]]
                self.server.release_queued(str(message["endpoint"]), ids)

            elif isinstance(op, str) and op in self.handlers:
                self.handlers[op](message)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if self._log.allow("message", time.monotonic()):
                log.warning("malformed cluster message on %r: %s", channel, exc)

    def _on_local_event(self, event: ServerEvent) -> None:
        """A bus listener: the event goes out (built and sent by the publisher task, after the
        replies of this loop iteration)."""
        if event.kind == REQUEST_RESPONSE:
            request_id = event.data.get("requestId")
            if request_id not in self._adopted:
                return  # answered where it was queued: its caller is here
            self._adopted.discard(str(request_id))  # taken from another node: shared (JSON)
        if event.kind == DEREGISTRATION:  # also expiry: its "written" mark goes with it
            self._held.pop(event.endpoint, None)
        if event.kind not in ALWAYS_SHARED and not (self._listening and self.listening_peers()):
            return  # no other node has a reader: building and sending it would be for nobody
        self._enqueue((self.events_channel, event))

    def listening_peers(self) -> list[str]:
        """The other nodes whose event readers this node's events go to: those whose latest
        alive message, within ``PEER_SEEN`` seconds, said they have one.

        Sharing every event cost a Redis node ~105 µs of CPU per Update (building, encoding
        and PUBLISHing each UPDATED event: docs/performance.md, "Idle run at the end of
        session 5") whether or not anyone read them, so a node shares the ordinary kinds only
        while another node says it has a reader. A reader on node B sees node A's events from
        the moment A heard B's announcement, sent when B's reader subscribed (milliseconds of
        pub/sub; B's routed requests to A, sent later, arrive after it)."""
        now = time.monotonic()
        for node, said in list(self._listening.items()):
            if now - said > PEER_SEEN:
                del self._listening[node]
        return sorted(self._listening)

    def _alive_text(self) -> str:
        listening = self.server.bus.has_subscribers
        return json.dumps(
            {
                "origin": self.node_id,
                "kind": ALIVE,
                "endpoint": "",
                "data": {"listening": listening},
            }
        )

    def _on_subscribed(self) -> None:
        """A reader subscribed to this node's bus: tell the other nodes at once (not at the
        next heartbeat), so that they share their events from now on."""
        self._post(self.events_channel, self._alive_text())

    def _post(self, channel: str, message: str) -> None:
        self._enqueue((channel, message))

    def _enqueue(self, item: tuple[str, str | ServerEvent]) -> None:
        if self._closing:
            return
        if self._outbox.qsize() >= OUTBOX_SIZE:
            self._outbox.get_nowait()
            self.events_dropped += 1
        self._outbox.put_nowait(item)

    async def _heartbeat(self) -> None:
        """Say this node is alive, and time a PING of Redis, every ``HEARTBEAT`` seconds."""
        while not self._closing:
            self._post(self.events_channel, self._alive_text())
            try:
                started = time.perf_counter()
                await self._redis.ping()
                self.redis_ping = time.perf_counter() - started
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.redis_ping = None
                if self._log.allow("ping", time.monotonic()):
                    log.warning("cluster heartbeat: Redis did not answer PING: %s", exc)
            await asyncio.sleep(HEARTBEAT)

    def peers(self) -> list[str]:
        """The other nodes heard from within ``PEER_SEEN`` seconds."""
        now = time.monotonic()
        for node, seen in list(self._peers.items()):
            if now - seen > PEER_SEEN:
                del self._peers[node]
        return sorted(self._peers)

    def figures(self) -> dict[str, Any]:
        """This node's cluster figures, for /api/health (``cluster``) and /metrics."""
        store = self._grouping_store()
        cache = getattr(getattr(self.server, "resolver", None), "store", None)
        return {
            "node": self.node_id,
            "peers": self.peers(),
            "peersListening": self.listening_peers(),
            "routed": self.routed,
            "served": self.served,
            "queuedTaken": self.queued_taken,
            "holderWrites": self.holder_writes,
            "eventsDropped": self.events_dropped,
            "redis": {
                "down": self.db.down,
                "breakerOpen": self.db.breaker.is_open,
                "breakerTrips": self.db.breaker.trips,
                "failedFast": self.db.breaker.refused,
                "pingMs": None if self.redis_ping is None else round(self.redis_ping * 1e3, 3),
                "groupCommits": None if store is None else store.commits,
                "credentialVersionReads": getattr(cache, "version_reads", None),
                "credentialVersionsFromCommits": getattr(cache, "versions_from_commits", None),
                "credentialCacheHits": getattr(cache, "hits", None),
                "credentialCacheMisses": getattr(cache, "misses", None),
            },
        }

    async def _publish(self) -> None:
        """Send the outbox to Redis, a batch per round trip: everything queued while the
        previous batch was in flight goes in one pipeline of PUBLISH commands.

        One round trip per event could not keep up with a busy node: the publisher runs only
        when the loop is free, so at thousands of Updates/s the outbox overflowed and most
        events were dropped (measured: 833 of 70,000 published) and SSE readers on other
        nodes missed them. A pipeline (not MULTI) keeps each PUBLISH what it was, so nodes of
        an earlier version read the messages unchanged."""
        while not self._closing:
            entry = await self._outbox.get()
            batch: list[tuple[str, str]] = []
            while entry is not None:
                text = self._message_text(entry[1])
                if text is not None:
                    batch.append((entry[0], text))
                if len(batch) >= PUBLISH_BATCH or self._outbox.empty():
                    break
                entry = self._outbox.get_nowait()
            if batch:
                await self._send_batch(batch)
            if entry is None:
                return

    def _message_text(self, item: str | ServerEvent) -> str | None:
        """The JSON text of an outbox entry (the SSE's JSON forms for an event: what the
        other node's stream shows); None for an event whose data cannot be shared."""
        if not isinstance(item, ServerEvent):
            return item
        try:
            return json.dumps(
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
            return None

    async def _send_batch(self, batch: list[tuple[str, str]]) -> None:
        try:
            if len(batch) == 1:
                await self._redis.publish(*batch[0])
                return
            pipe = self._redis.pipeline(transaction=False)
            for channel, text in batch:
                pipe.publish(channel, text)
            await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._log.allow("publish", time.monotonic()):
                log.warning("cannot publish to the cluster: %s", exc)

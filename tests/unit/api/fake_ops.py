"""An in-memory ``ServerOperations``: registered clients with device trees held as LwM2M nodes.

It answers like a device would (2.05 with the node, 4.04 for what is not there, 4.05 for a
write to a read-only resource), so the API can be tested over real HTTP without CoAP. Knobs:

* ``silent``: endpoints that never answer (the operation waits ``timeout`` then raises
  ``DeviceTimeoutError``, as the real service does);
* ``asleep``: queue-mode endpoints whose requests are queued (``DeviceResponse(queued=True)``);
* ``queue_full``: endpoints whose queue is full (``QueueFullError``).

Every call is appended to ``calls`` as ``(method, endpoint, args...)`` so tests can check what
the API passed on (formats, replace flag, arguments).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from lwm2m_runtime.address import Address
from lwm2m_server.core.queue import QueueFullError
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.core.telemetry import TelemetryPoint, points_from_nodes
from lwm2m_server.events_bus import EventBus, Subscription
from lwm2m_server.json_nodes import node_to_json
from lwm2m_server.operations import (
    DeviceResponse,
    DeviceTimeoutError,
    ServerEvent,
    UnknownClientError,
)
from object_models.content_format import ContentFormat
from object_models.model import ModelProvider
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ResourceType

CONTENT, CHANGED, CREATED, DELETED = 0x45, 0x44, 0x41, 0x42
NOT_FOUND, METHOD_NOT_ALLOWED, BAD_REQUEST = 0x84, 0x85, 0x80

Tree = dict[int, dict[int, dict[int, LwM2mResource]]]


def device_tree() -> Tree:
    s, i, f = ResourceType.STRING, ResourceType.INTEGER, ResourceType.FLOAT
    device: dict[int, LwM2mResource] = {
        0: LwM2mSingleResource(0, "Acme", s),
        1: LwM2mSingleResource(1, "Model 500", s),
        2: LwM2mSingleResource(2, "SN-0001", s),
        3: LwM2mSingleResource(3, "1.0.2", s),
        6: LwM2mMultipleResource.from_values(6, {0: 1, 1: 5}, i),
        9: LwM2mSingleResource(9, 87, i),
        11: LwM2mMultipleResource.from_values(11, {0: 0}, i),
        13: LwM2mSingleResource(13, 1_700_000_000, ResourceType.TIME),
        14: LwM2mSingleResource(14, "+01:00", s),
        16: LwM2mSingleResource(16, "UQ", s),
    }
    server: dict[int, LwM2mResource] = {
        0: LwM2mSingleResource(0, 101, i),
        1: LwM2mSingleResource(1, 300, i),
        7: LwM2mSingleResource(7, "U", s),
    }
    temperature: dict[int, LwM2mResource] = {
        5700: LwM2mSingleResource(5700, 21.5, f),
        5701: LwM2mSingleResource(5701, "Cel", s),
    }
    return {1: {0: server}, 3: {0: device}, 3303: {0: temperature}}


class FakeOps:
    def __init__(self, registry: ModelRegistry | None = None) -> None:
        self.registry = registry or ModelRegistry.builtin()
        self.registrations: dict[str, Registration] = {}
        self.quarantined_rows = 0
        self.trees: dict[str, Tree] = {}
        self.attributes: dict[tuple[str, str], dict[str, str | None]] = {}
        self.observed: dict[str, list[tuple[LwM2mPath, ...]]] = {}
        self.points: list[TelemetryPoint] = []
        self.bus = EventBus(first_id=1)
        """The real bus (ids from 1, replay buffer, GAP): ``emit`` publishes on it."""
        self.sleeping: dict[str, bool] = {}
        """``is_sleeping`` answers for queue-mode clients (absent: None, not known)."""
        self.calls: list[tuple[Any, ...]] = []
        self.silent: set[str] = set()
        self.asleep: set[str] = set()
        self.queue_full: set[str] = set()
        self.executed: list[tuple[str, str, str | None]] = []

    # -- setup helpers ------------------------------------------------------------------------
    def add_client(
        self,
        endpoint: str,
        *,
        queue_mode: bool = False,
        lwm2m_version: str = "1.1",
        tree: Tree | None = None,
        now: float = 1_700_000_000.0,
    ) -> Registration:
        tree = device_tree() if tree is None else tree
        links = ",".join(
            ['</>;rt="oma.lwm2m";ct=11543', "</3>;ver=1.2"]
            + [f"</{o}/{i}>" for o in sorted(tree) for i in sorted(tree[o])]
        )
        reg = Registration(
            registration_id=f"reg-{endpoint}",
            endpoint=endpoint,
            address=Address("127.0.0.1", 56830 + len(self.registrations)),
            lifetime=300,
            lwm2m_version=lwm2m_version,
            binding="U",
            queue_mode=queue_mode,
            object_links=ObjectLinks.parse(links),
            registered_at=now,
            last_update=now,
        )
        self.registrations[endpoint] = reg
        self.trees[endpoint] = tree
        return reg

    @property
    def subscribers(self) -> list[Subscription]:
        return list(self.bus._subscribers)

    def emit(self, kind: str, endpoint: str, data: Mapping[str, object]) -> ServerEvent:
        return self.bus.publish(kind, endpoint, data)

    def notify(self, endpoint: str, path: LwM2mPath) -> None:
        node = self._find(endpoint, path)
        assert node is not None
        self.emit(
            "NOTIFICATION",
            endpoint,
            {"kind": "single", "res": str(path), "val": node_to_json(node)},
        )

    def end_events(self) -> None:
        self.bus.close()

    def record(self, endpoint: str, path: LwM2mPath, ts: float) -> None:
        node = self._find(endpoint, path)
        assert node is not None
        self.points.extend(points_from_nodes(endpoint, {path: node}, now=ts, models=self.registry))

    # -- registrations ------------------------------------------------------------------------
    def clients(self) -> list[Registration]:
        return list(self.registrations.values())

    def quarantined(self) -> int:
        return self.quarantined_rows

    def limit_counters(self) -> dict[str, int]:
        return {"register_rate": 0}

    def client(self, endpoint: str) -> Registration:
        try:
            return self.registrations[endpoint]
        except KeyError:
            raise UnknownClientError(f"no client registered as {endpoint!r}") from None

    def models_for(self, endpoint: str) -> ModelProvider:
        self.client(endpoint)
        return self.registry

    # -- plumbing -----------------------------------------------------------------------------
    async def _exchange(self, endpoint: str, timeout: float) -> DeviceResponse | None:
        """What happens before the device handles a request: 404, timeout, queue."""
        self.client(endpoint)
        if endpoint in self.queue_full:
            raise QueueFullError(f"queue of {endpoint!r} is full (32 requests)")
        if endpoint in self.asleep:
            return DeviceResponse(code=0, queued=True)
        if endpoint in self.silent:
            await asyncio.sleep(timeout)
            raise DeviceTimeoutError(f"{endpoint} did not answer within {timeout:g} s")
        return None

    def _find(self, endpoint: str, path: LwM2mPath) -> LwM2mNode | None:
        tree = self.trees[endpoint]
        ids = path.ids
        if not ids or ids[0] not in tree:
            return None
        obj = tree[ids[0]]
        if len(ids) == 1:
            return LwM2mObject(ids[0], {i: LwM2mObjectInstance(i, res) for i, res in obj.items()})
        if ids[1] not in obj:
            return None
        if len(ids) == 2:
            return LwM2mObjectInstance(ids[1], obj[ids[1]])
        res = obj[ids[1]].get(ids[2])
        if res is None or len(ids) == 3:
            return res
        if isinstance(res, LwM2mMultipleResource):
            return res.instances.get(ids[3])
        return None

    def _readable(self, path: LwM2mPath) -> bool:
        if path.depth < 3:
            return True
        model = self.registry.get_object(path.ids[0])
        res = None if model is None else model.resource(path.ids[2])
        return res is None or res.operations.readable

    # -- device management --------------------------------------------------------------------
    async def read(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("read", endpoint, path, fmt, timeout))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        if not self._readable(path):
            return DeviceResponse(METHOD_NOT_ALLOWED, error_message="not readable")
        node = self._find(endpoint, path)
        if node is None:
            return DeviceResponse(NOT_FOUND, error_message=f"{path} not found")
        return DeviceResponse(CONTENT, content_format=fmt or ContentFormat.TLV, node=node)

    async def discover(
        self, endpoint: str, path: LwM2mPath, *, timeout: float = 10.0
    ) -> DeviceResponse:
        self.calls.append(("discover", endpoint, path))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        node = self._find(endpoint, path)
        if not isinstance(node, LwM2mObjectInstance):
            return DeviceResponse(NOT_FOUND)
        attrs = self.attributes.get((endpoint, str(path)), {})
        head = f"<{path}>" + "".join(f";{k}={v}" for k, v in attrs.items() if v is not None)
        links = [head] + [
            f"<{path}/{r}>"
            + (";dim=" + str(len(res.instances)) if isinstance(res, LwM2mMultipleResource) else "")
            for r, res in sorted(node.resources.items())
        ]
        return DeviceResponse(CONTENT, content_format=ContentFormat.LINK, links=",".join(links))

    async def write(
        self,
        endpoint: str,
        path: LwM2mPath,
        node: LwM2mNode,
        *,
        replace: bool = True,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("write", endpoint, path, node, replace, fmt))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        tree = self.trees[endpoint]
        o, i = path.ids[0], path.ids[1]
        if o not in tree or i not in tree[o]:
            return DeviceResponse(NOT_FOUND)
        instance = tree[o][i]
        model = self.registry.get_object(o)
        if isinstance(node, LwM2mObjectInstance):
            resources = dict(node.resources)
            if replace:
                instance.clear()
            instance.update(resources)
            return DeviceResponse(CHANGED)
        rid = path.ids[2]
        res_model = None if model is None else model.resource(rid)
        if res_model is not None and not res_model.operations.writable:
            return DeviceResponse(METHOD_NOT_ALLOWED, error_message="read-only resource")
        if isinstance(node, LwM2mResourceInstance):
            old = instance.get(rid)
            values = dict(old.instances) if isinstance(old, LwM2mMultipleResource) else {}
            values[node.id] = node
            instance[rid] = LwM2mMultipleResource(rid, values, node.type)
        elif isinstance(node, LwM2mSingleResource | LwM2mMultipleResource):
            instance[rid] = node
        return DeviceResponse(CHANGED)

    async def write_attributes(
        self,
        endpoint: str,
        path: LwM2mPath,
        attributes: Mapping[str, str | None],
        *,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("write_attributes", endpoint, path, dict(attributes)))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        self.attributes.setdefault((endpoint, str(path)), {}).update(attributes)
        return DeviceResponse(CHANGED)

    async def execute(
        self,
        endpoint: str,
        path: LwM2mPath,
        arguments: str | None = None,
        *,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("execute", endpoint, path, arguments))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        model = self.registry.get_object(path.ids[0])
        res = None if model is None else model.resource(path.ids[2])
        if res is None or not res.operations.executable:
            return DeviceResponse(METHOD_NOT_ALLOWED, error_message="not executable")
        self.executed.append((endpoint, str(path), arguments))
        return DeviceResponse(CHANGED)

    async def create(
        self,
        endpoint: str,
        path: LwM2mPath,
        instance: LwM2mObjectInstance,
        *,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("create", endpoint, path, instance, fmt))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        obj = self.trees[endpoint].setdefault(path.ids[0], {})
        iid = instance.id if instance.id is not None else max(obj, default=-1) + 1
        if iid in obj:
            return DeviceResponse(BAD_REQUEST, error_message=f"instance {iid} exists")
        obj[iid] = dict(instance.resources)
        return DeviceResponse(CREATED, location=f"{path}/{iid}")

    async def delete(
        self, endpoint: str, path: LwM2mPath, *, timeout: float = 10.0
    ) -> DeviceResponse:
        self.calls.append(("delete", endpoint, path))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        tree = self.trees[endpoint]
        if path.depth != 2:
            return DeviceResponse(METHOD_NOT_ALLOWED)
        o, i = path.ids
        if o not in tree or i not in tree[o]:
            return DeviceResponse(NOT_FOUND)
        del tree[o][i]
        return DeviceResponse(DELETED)

    async def read_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("read_composite", endpoint, tuple(paths), fmt))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        nodes = {p: self._find(endpoint, p) for p in paths}
        return DeviceResponse(CONTENT, content_format=fmt or ContentFormat.SENML_CBOR, nodes=nodes)

    async def write_composite(
        self,
        endpoint: str,
        nodes: Mapping[LwM2mPath, LwM2mNode | None],
        *,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("write_composite", endpoint, dict(nodes), fmt))
        early = await self._exchange(endpoint, timeout)
        if early is not None:
            return early
        for path, node in nodes.items():
            if node is not None:
                resp = await self.write(endpoint, path, node, replace=False)
                if not resp.success:
                    return resp
        return DeviceResponse(CHANGED)

    # -- information reporting ----------------------------------------------------------------
    async def observe(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        resp = await self.read(endpoint, path, fmt=fmt, timeout=timeout)
        if resp.success:
            self.observed.setdefault(endpoint, []).append((path,))
        return resp

    async def observe_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        fmt: ContentFormat | None = None,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        resp = await self.read_composite(endpoint, paths, fmt=fmt, timeout=timeout)
        if resp.success:
            self.observed.setdefault(endpoint, []).append(tuple(paths))
        return resp

    async def cancel_observation(
        self, endpoint: str, path: LwM2mPath, *, active: bool = True, timeout: float = 10.0
    ) -> DeviceResponse:
        self.calls.append(("cancel_observation", endpoint, path, active))
        if active:
            early = await self._exchange(endpoint, timeout)
            if early is not None:
                return early
        observed = self.observed.get(endpoint, [])
        if (path,) not in observed:
            return DeviceResponse(NOT_FOUND, error_message="no such observation")
        observed.remove((path,))
        node = self._find(endpoint, path) if active else None
        return DeviceResponse(CONTENT, node=node)

    async def cancel_composite_observation(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        active: bool = True,
        timeout: float = 10.0,
    ) -> DeviceResponse:
        self.calls.append(("cancel_composite_observation", endpoint, tuple(paths), active))
        self.client(endpoint)
        observed = self.observed.get(endpoint, [])
        if tuple(paths) not in observed:
            return DeviceResponse(NOT_FOUND)
        observed.remove(tuple(paths))
        return DeviceResponse(CONTENT)

    def observations(self, endpoint: str) -> list[Sequence[LwM2mPath]]:
        self.client(endpoint)
        return list(self.observed.get(endpoint, []))

    # -- telemetry and events -----------------------------------------------------------------
    def telemetry_latest(self, endpoint: str) -> dict[str, TelemetryPoint]:
        self.client(endpoint)
        latest: dict[str, TelemetryPoint] = {}
        for point in self.points:
            if point.endpoint == endpoint:
                latest[point.path] = point
        return latest

    def telemetry_history(
        self,
        endpoint: str,
        *,
        key: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        self.client(endpoint)
        self.calls.append(("telemetry_history", endpoint, key, since_ms, until_ms, limit))
        points = [
            p
            for p in self.points
            if p.endpoint == endpoint
            and (key is None or p.key == key)
            and (since_ms is None or p.ts_ms >= since_ms)
            and (until_ms is None or p.ts_ms < until_ms)
        ]
        return points[:limit]

    def events(self, after: int | None = None) -> Subscription:
        return self.bus.subscribe(after)

    def is_sleeping(self, endpoint: str) -> bool | None:
        registration = self.registrations.get(endpoint)
        if registration is None or not registration.queue_mode:
            return None
        return self.sleeping.get(endpoint)

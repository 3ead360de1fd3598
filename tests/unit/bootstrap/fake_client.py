"""An in-memory LwM2M client's bootstrap side: answers the session's requests like a device
would (Discover, Read, Delete, Write, Finish), keeps its Bootstrap-Server account whatever is
deleted (Core 1.1 §6.1.7.5), and checks at Finish that every Server instance has a Security
instance with its short server id. Shared by the unit tests and the socket tests' client."""

from __future__ import annotations

from collections.abc import Mapping

from bootstrap_server.core.session import Reply, Request
from object_models import codecs
from object_models.codecs.link_format import format_discover
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, ResponseCode
from object_models.model import ModelProvider
from object_models.node import LwM2mObject, LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ResourceType

CONTENT, DELETED, CHANGED = 0x45, 0x42, 0x44


def bootstrap_account(uri: str = "coap://127.0.0.1:5783") -> LwM2mObjectInstance:
    return LwM2mObjectInstance.of(
        None,
        LwM2mSingleResource(0, uri, ResourceType.STRING),
        LwM2mSingleResource(1, True, ResourceType.BOOLEAN),
        LwM2mSingleResource(2, 3, ResourceType.INTEGER),
        LwM2mSingleResource(3, b"", ResourceType.OPAQUE),
        LwM2mSingleResource(4, b"", ResourceType.OPAQUE),
        LwM2mSingleResource(5, b"", ResourceType.OPAQUE),
    )


class FakeClient:
    def __init__(
        self,
        *,
        version: str = "1.1",
        bootstrap_instance: int = 0,
        versions: Mapping[int, str] | None = None,
        discover: bool = True,
        models: ModelProvider | None = None,
    ) -> None:
        self.version = version
        self.bootstrap_instance = bootstrap_instance
        self.versions = dict(versions or {0: "1.1", 1: "1.1", 2: "1.0", 3: "1.1", 21: "1.0"})
        self.discover = discover
        self.models = models or ModelRegistry.builtin().for_client(self.versions)
        self.instances: dict[tuple[int, int], LwM2mObjectInstance] = {
            (0, bootstrap_instance): bootstrap_account(),
            (3, 0): LwM2mObjectInstance.of(0, LwM2mSingleResource.new(0, "pylwm2m")),
        }
        self.errors: dict[tuple[str, str], int] = {}
        self.finished = False
        self.log: list[str] = []

    # -- helpers for tests ----------------------------------------------------------------------
    def add(self, object_id: int, instance_id: int, node: LwM2mObjectInstance) -> None:
        self.instances[(object_id, instance_id)] = node

    def value(self, path: str) -> object:
        p = LwM2mPath.parse(path)
        res = self.instances[(p.ids[0], p.ids[1])].resources[p.ids[2]]
        assert isinstance(res, LwM2mSingleResource)
        return res.value

    def servers(self) -> dict[int, tuple[int, int]]:
        """ssid -> (security instance, server instance)."""
        out: dict[int, tuple[int, int]] = {}
        for (o, i), node in self.instances.items():
            if o == 0 and not _v(node, 1):
                out.setdefault(_int(node, 10), (i, -1))
        for (o, i), node in self.instances.items():
            if o == 1:
                ssid = _int(node, 0)
                out[ssid] = (out.get(ssid, (-1, -1))[0], i)
        return out

    # -- the protocol ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        self.log.append(f"{request.method} {request.target}")
        code = self.errors.get((request.step.value, request.target))
        if code is not None:
            return Reply(code, b"injected failure")
        try:
            if request.method == "GET" and request.path is not None and request.path.is_root:
                if not self.discover:
                    return Reply(ResponseCode.METHOD_NOT_ALLOWED)
                return Reply(CONTENT, self.discover_payload().encode(), ContentFormat.LINK)
            if request.method == "GET":
                assert request.path is not None
                fmt = request.accept or ContentFormat.TLV
                node = self.read(request.path)
                return Reply(CONTENT, codecs.encode(node, request.path, fmt, self.models), fmt)
            if request.method == "DELETE":
                assert request.path is not None
                self.delete(request.path)
                return Reply(DELETED)
            if request.method == "PUT":
                assert request.path is not None and request.content_format is not None
                written = codecs.decode(request.payload, request.path, request.content_format,
                                        self.models)  # fmt: skip
                assert isinstance(written, LwM2mObjectInstance)
                self.instances[(request.path.ids[0], request.path.ids[1])] = written
                return Reply(CHANGED)
            if request.method == "POST" and request.path is None:
                problem = self.inconsistency()
                if problem:
                    return Reply(ResponseCode.NOT_ACCEPTABLE, problem.encode())
                self.finished = True
                return Reply(CHANGED)
        except CodecError as exc:
            return Reply(exc.code, exc.message.encode())
        return Reply(ResponseCode.METHOD_NOT_ALLOWED)

    def discover_payload(self) -> str:
        root: tuple[LwM2mPath, dict[str, object]] = (LwM2mPath(), {"lwm2m": self.version})
        entries = [root]
        for o in sorted({o for o, _ in self.instances} | set(self.versions)):
            ver = self.versions.get(o, "1.0")
            entries.append((LwM2mPath(o), {"ver": ver} if ver != "1.0" else {}))
            for i in sorted(i for oo, i in self.instances if oo == o):
                attrs: dict[str, object] = {}
                node = self.instances[(o, i)]
                if o == 0 and not _v(node, 1):
                    attrs = {"ssid": _v(node, 10), "uri": _v(node, 0)}
                elif o == 1:
                    attrs = {"ssid": _v(node, 0)}
                entries.append((LwM2mPath(o, i), attrs))
        return format_discover(entries)  # type: ignore[arg-type]

    def read(self, path: LwM2mPath) -> LwM2mObject | LwM2mObjectInstance:
        o = path.ids[0]
        if path.is_object:
            return LwM2mObject(o, {i: n for (oo, i), n in self.instances.items() if oo == o})
        return self.instances[(o, path.ids[1])]

    def delete(self, path: LwM2mPath) -> None:
        for o, i in list(self.instances):
            if not LwM2mPath(o, i).starts_with(path):
                continue
            if (o, i) in ((0, self.bootstrap_instance), (3, 0)):
                continue  # never the Bootstrap-Server account nor the Device instance
            del self.instances[(o, i)]

    def inconsistency(self) -> str:
        for ssid, (security, server) in self.servers().items():
            if security < 0:
                return f"server {ssid} has no security instance"
            if server < 0:
                return f"security for {ssid} has no server instance"
        if not self.servers():
            return "no LwM2M server account"
        return ""


def _v(node: LwM2mObjectInstance, rid: int) -> object:
    res = node.resources.get(rid)
    return res.value if isinstance(res, LwM2mSingleResource) else None


def _int(node: LwM2mObjectInstance, rid: int) -> int:
    value = _v(node, rid)
    assert isinstance(value, int), f"resource {rid} is {value!r}, not an integer"
    return value

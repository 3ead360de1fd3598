"""The Device Management and Information Reporting interfaces, without any CoAP library.

``DeviceManagement.handle(request)`` maps one downlink request to one response, the way Core
§6.3/§6.4 and Transport §6.3 lay out the operations on CoAP methods:

| method | target          | operation                                                  |
|--------|-----------------|------------------------------------------------------------|
| GET    | /o … /o/i/r/ri  | Read; Discover when Accept is 40; with Observe=0: Observe  |
| FETCH  | /               | Read-Composite (SenML paths); with Observe=0: Obs.-Composite |
| PUT    | /o/i … /o/i/r/ri| Write (replace); no payload but a query: Write-Attributes  |
| POST   | /o              | Create                                                     |
| POST   | /o/i            | Write (partial update)                                     |
| POST   | /o/i/r          | Execute, or partial update of a multiple resource          |
| DELETE | /o/i            | Delete                                                     |
| iPATCH | /               | Write-Composite                                            |

Keeping this free of aiocoap means every rule (which code for which mistake, which content
format by default) is a plain function of the request, and the aiocoap adapter
(``coap_resource``) stays a thin translation layer.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Sequence

import attrs

from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, Lwm2mError, ResponseCode
from object_models.node import (
    LwM2mNode,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    TimestampedNodes,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from . import link_format
from .attributes import AttributeStore, parse_query
from .objects import ObjectTree, bad_request, not_allowed, not_found


class Success(enum.IntEnum):
    """CoAP success codes (``class << 5 | detail``), next to ``ResponseCode``'s errors."""

    CREATED = 0x41  # 2.01
    DELETED = 0x42  # 2.02
    CHANGED = 0x44  # 2.04
    CONTENT = 0x45  # 2.05


@attrs.frozen
class Request:
    method: str  # "GET", "FETCH", "PUT", "POST", "DELETE", "IPATCH"
    path: LwM2mPath
    query: tuple[str, ...] = ()
    content_format: int | None = None
    accept: int | None = None
    payload: bytes = b""
    observe: int | None = None


@attrs.frozen
class Response:
    code: int
    payload: bytes = b""
    content_format: int | None = None
    location_path: tuple[str, ...] = ()

    @classmethod
    def error(cls, exc: Lwm2mError) -> Response:
        """A diagnostic payload (RFC 7252 §5.5.2) so the server's log says why."""
        return cls(int(exc.code), exc.message.encode("utf-8", "replace"))


ALL_FORMATS: tuple[ContentFormat, ...] = (
    ContentFormat.TEXT,
    ContentFormat.OPAQUE,
    ContentFormat.CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.TLV,
    ContentFormat.JSON,
    ContentFormat.LWM2M_CBOR,
)
"""Every format the client can speak, if its codec module is installed."""

MULTI_PATH_FORMATS = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.LWM2M_CBOR)
_TLV_FORMATS = (ContentFormat.TLV, ContentFormat.OLD_TLV)
NUMERIC_TYPES = (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT)

_EXECUTE_ARGS = re.compile(r"(?:[0-9](?:='[^']*')?)(?:,[0-9](?:='[^']*')?)*")


def available_formats(wanted: Sequence[int] = ALL_FORMATS) -> tuple[int, ...]:
    """The formats of ``wanted`` whose codec can encode (the others are silently skipped)."""
    return tuple(int(f) for f in wanted if codecs.supports(int(f), "encode"))


def registration_formats(formats: Sequence[int]) -> tuple[int, ...]:
    """What the root link's ``ct`` advertises: the structured formats, not text/opaque."""
    skip = {ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.LINK}
    return tuple(sorted(f for f in formats if f not in skip))


class DeviceManagement:
    """Answers the server's downlink requests against an ``ObjectTree``."""

    def __init__(
        self,
        tree: ObjectTree,
        attributes: AttributeStore,
        *,
        lwm2m_version: str = "1.1",
        formats: Sequence[int] | None = None,
    ) -> None:
        self.tree = tree
        self.attributes = attributes
        self.lwm2m_version = lwm2m_version
        self.formats = tuple(formats) if formats is not None else available_formats()

    # -- entry point ----------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except Lwm2mError as exc:
            return Response.error(exc)

    async def _dispatch(self, request: Request) -> Response:
        method, path = request.method.upper(), request.path
        if method == "GET":
            if request.accept == ContentFormat.LINK:
                text = link_format.discover(self.tree, self.attributes, path)
                return Response(Success.CONTENT, text.encode(), ContentFormat.LINK)
            return self.read(path, request.accept)
        if method == "FETCH":
            return self.read_composite(request)
        if method == "PUT":
            if not request.payload and request.content_format is None and request.query:
                return self.write_attributes(path, request.query)
            return self.write(request, replace=True)
        if method == "POST":
            if path.is_object:
                return self.create(request)
            if path.is_object_instance:
                return self.write(request, replace=False)
            if path.is_resource and self._is_executable(path):
                return await self.execute(request)
            if path.is_resource and self._is_multiple(path):
                return self.write(request, replace=False)
            if path.is_resource:
                self._check_target(path)
                raise not_allowed(path, "resource is not executable")
            raise not_allowed(path, "POST targets an object, instance or resource")
        if method == "DELETE":
            self.tree.delete(path)
            self.attributes.forget(path)
            return Response(Success.DELETED)
        if method == "IPATCH":
            return self.write_composite(request)
        raise not_allowed(path, f"method {method} is not an LwM2M operation")

    # -- Read / Observe ---------------------------------------------------------------------------
    def default_format(self, path: LwM2mPath, node: LwM2mNode) -> int:
        """The format when the server sends no Accept.

        A single value goes as text (opaque as octet-stream) in every version; nodes go as TLV
        up to 1.1 (the one structured format every 1.0/1.1 server reads) and as SenML CBOR in 1.2.
        """
        candidates: list[int]
        if isinstance(node, LwM2mSingleResource | LwM2mResourceInstance):
            is_opaque = node.type is ResourceType.OPAQUE
            candidates = [ContentFormat.OPAQUE if is_opaque else ContentFormat.TEXT]
        else:
            candidates = []
        if self.lwm2m_version.startswith("1.2"):
            candidates += [ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR, ContentFormat.TLV]
        else:
            candidates += [ContentFormat.TLV, ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON]
        for fmt in candidates:
            if fmt in self.formats:
                return int(fmt)
        raise CodecError(f"{path}: no content format available", code=ResponseCode.NOT_ACCEPTABLE)

    def read(self, path: LwM2mPath, accept: int | None) -> Response:
        if path.is_root:
            raise bad_request(path, "Read needs an object, instance or resource path")
        node = self.tree.read(path)
        fmt = self._accepted(accept) if accept is not None else self.default_format(path, node)
        payload = codecs.encode(node, path, fmt, self.tree.models)
        return Response(Success.CONTENT, payload, fmt)

    def read_composite(self, request: Request) -> Response:
        if not request.path.is_root:
            raise not_allowed(request.path, "FETCH (Read-Composite) targets the root path")
        paths = self._paths_of(request)
        nodes = self.read_nodes(paths)
        fmt = request.accept
        if fmt is None:
            fmt = request.content_format
            if fmt not in MULTI_PATH_FORMATS or fmt not in self.formats:
                fmt = ContentFormat.SENML_CBOR
        fmt = self._accepted(fmt)
        payload = codecs.encode_nodes(nodes, fmt, self.tree.models)
        return Response(Success.CONTENT, payload, fmt)

    def read_nodes(self, paths: Sequence[LwM2mPath]) -> dict[LwM2mPath, LwM2mNode | None]:
        """The nodes of a composite read; missing paths are left out, all missing is 4.04."""
        nodes: dict[LwM2mPath, LwM2mNode | None] = {}
        for path in paths:
            try:
                nodes[path] = self.tree.read(path)
            except Lwm2mError as exc:
                if exc.code is not ResponseCode.NOT_FOUND:
                    raise
        if not nodes:
            raise Lwm2mError("none of the requested paths exists", code=ResponseCode.NOT_FOUND)
        return nodes

    def composite_paths(self, request: Request) -> list[LwM2mPath]:
        """The paths an Observe-Composite watches (for the observation bookkeeping)."""
        return self._paths_of(request)

    def _paths_of(self, request: Request) -> list[LwM2mPath]:
        fmt = request.content_format
        if fmt is None:
            raise Lwm2mError(
                "FETCH without Content-Format", code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT
            )
        paths = codecs.decode_paths(request.payload, fmt)
        if not paths:
            raise bad_request(request.path, "composite request without any path")
        return paths

    def _accepted(self, fmt: int) -> int:
        if fmt not in self.formats:
            raise CodecError(
                f"content format {fmt} is not supported by this client",
                code=ResponseCode.NOT_ACCEPTABLE,
            )
        return fmt

    # -- Write ----------------------------------------------------------------------------------
    def _decode(self, request: Request, path: LwM2mPath) -> LwM2mNode:
        if request.content_format is None:
            raise bad_request(path, "Write without Content-Format")
        return codecs.decode(request.payload, path, request.content_format, self.tree.models)

    def write(self, request: Request, *, replace: bool) -> Response:
        path = request.path
        if path.is_root or path.is_object:
            raise not_allowed(path, "Write targets an instance or a resource")
        # Existence and access first, so that an unknown path is 4.04 and not a decoding error
        # of a payload we could never have accepted.
        self._check_target(path)
        node = self._decode(request, path)
        if path.is_resource and not replace and isinstance(node, LwM2mSingleResource):
            raise bad_request(path, "partial update of a single resource: use PUT")
        self.tree.write(path, node, replace=replace)
        return Response(Success.CHANGED)

    def _check_target(self, path: LwM2mPath) -> None:
        """4.01 for the Security object, 4.04 for a missing instance or an unknown resource."""
        self.tree.check_access(path)
        instance = LwM2mPath.from_ids(*path.ids[:2])
        if not self.tree.exists(instance):
            raise not_found(instance)
        if path.depth >= 3 and self.tree.object_model(path.ids[0]) is not None:
            assert path.resource_id is not None
            if self.tree.resource_model(path.ids[0], path.resource_id) is None:
                raise not_found(path)

    def write_composite(self, request: Request) -> Response:
        if not request.path.is_root:
            raise not_allowed(request.path, "iPATCH (Write-Composite) targets the root path")
        if request.content_format is None:
            raise bad_request(request.path, "Write-Composite without Content-Format")
        nodes = codecs.decode_nodes(request.payload, request.content_format, self.tree.models)
        with self.tree.transaction():
            for path, node in nodes.items():
                if node is None:
                    raise bad_request(path, "Write-Composite cannot delete")
                self.tree.write(path, node, replace=not path.is_object_instance)
        return Response(Success.CHANGED)

    # -- Write-Attributes -----------------------------------------------------------------------
    def write_attributes(self, path: LwM2mPath, query: Sequence[str]) -> Response:
        changes = parse_query(query)
        if path.is_root:
            raise bad_request(path, "Write-Attributes targets an object, instance or resource")
        self.tree.check_access(path)
        if not self.tree.exists(path):
            raise not_found(path)
        numeric = False
        if path.depth >= 3:
            rmodel = self.tree.resource_model(path.ids[0], path.ids[2])
            if rmodel is not None:
                numeric = rmodel.type in NUMERIC_TYPES
            else:
                value = self.tree.get_value(path)
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
        self.attributes.write(path, changes, numeric=numeric)
        return Response(Success.CHANGED)

    # -- Create / Execute -----------------------------------------------------------------------
    def create(self, request: Request) -> Response:
        path = request.path
        self.tree.check_access(path)
        if not self.tree.exists(path):
            raise not_found(path)
        fmt = request.content_format
        if fmt in _TLV_FORMATS and request.payload and request.payload[0] >> 6 != 0:
            # Bare resource TLVs (no object-instance wrapper): the server lets the client pick
            # the id. Decode them as that instance, so the codec never has to guess one.
            target = path.child(self.tree.free_instance_id(path.ids[0]))
            node = self._decode(request, target)
        else:
            node = self._decode(request, path)
        instance_id = self.tree.create(path, node)
        return Response(Success.CREATED, location_path=(str(path.ids[0]), str(instance_id)))

    def _is_multiple(self, path: LwM2mPath) -> bool:
        assert path.resource_id is not None
        if self.tree.is_multiple(path.ids[0], path.resource_id):
            return True
        try:
            return isinstance(self.tree.get_value(path), dict)
        except (Lwm2mError, ValueError):
            return False

    def _is_executable(self, path: LwM2mPath) -> bool:
        assert path.resource_id is not None
        rmodel = self.tree.resource_model(path.ids[0], path.resource_id)
        if rmodel is not None:
            return rmodel.operations.executable
        try:
            self.tree.execute(path)
        except Lwm2mError:
            return False
        return True

    async def execute(self, request: Request) -> Response:
        path = request.path
        callback = self.tree.execute(path)
        if request.content_format not in (None, ContentFormat.TEXT):
            raise Lwm2mError(
                f"{path}: Execute arguments are text/plain",
                code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
            )
        try:
            args = request.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(path, "Execute arguments are not UTF-8") from None
        if args and not _EXECUTE_ARGS.fullmatch(args):
            raise bad_request(path, f"malformed Execute arguments {args!r}")
        result = callback(args)
        if inspect.isawaitable(result):
            await result
        return Response(Success.CHANGED)


# -- Information Reporting: Send ------------------------------------------------------------------
def send_payload(
    tree: ObjectTree,
    paths: Sequence[LwM2mPath],
    fmt: int,
    timestamp: float,
) -> bytes:
    """The body of a Send (POST /dp): the current values of ``paths``, timestamped.

    Unlike Read-Composite, every path must exist: the device asked to send it, so a missing
    one is a programming error and raises (4.04) rather than being silently dropped.
    """
    nodes = {path: tree.read(path) for path in paths}
    data = TimestampedNodes(((timestamp, nodes),))
    return codecs.encode_timestamped(data, fmt, tree.models)


__all__ = [
    "ALL_FORMATS",
    "DeviceManagement",
    "Request",
    "Response",
    "Success",
    "available_formats",
    "registration_formats",
    "send_payload",
]

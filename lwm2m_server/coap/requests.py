"""Downlink requests as plain values, and their answers decoded into ``DeviceResponse``.

Each LwM2M operation maps to one CoAP request shape (Transport 1.1 §6.3/§6.4, the same table
as ``lwm2m_client.management``):

| operation           | method | target | options / payload                               |
|---------------------|--------|--------|-------------------------------------------------|
| Read                | GET    | path   | Accept                                          |
| Discover            | GET    | path   | Accept 40                                       |
| Write (replace)     | PUT    | path   | Content-Format, node                            |
| Write (partial)     | POST   | path   | Content-Format, node                            |
| Write-Attributes    | PUT    | path   | Uri-Query ``pmin=10&gt=3&st`` (no payload)       |
| Execute             | POST   | path   | text/plain arguments (optional)                 |
| Create              | POST   | object | Content-Format, instance; 2.01 Location-Path   |
| Delete              | DELETE | path   |                                                 |
| Read-Composite      | FETCH  | /      | Content-Format + Accept, body = SenML paths     |
| Write-Composite     | iPATCH | /      | Content-Format, nodes                           |
| Observe             | GET    | path   | Observe 0, Accept                               |
| Observe-Composite   | FETCH  | /      | Observe 0, Content-Format + Accept, paths       |
| Cancel (active)     | GET/FETCH | same | Observe 1, the observation's token             |

No aiocoap here: ``coap.downlink`` turns a ``DownlinkRequest`` into a message. Building is where
the content format is chosen (``formats``) and the payload encoded with the client's models, so
a request that cannot be encoded fails (4.00/4.06) before anything is queued or sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, Lwm2mError, ResponseCode
from object_models.model import ModelProvider
from object_models.node import LwM2mNode, LwM2mObjectInstance
from object_models.path import ROOT, LwM2mPath

from ..core.registration import Registration
from ..operations import DeviceResponse
from . import formats

CREATED, DELETED, CHANGED, CONTENT = 0x41, 0x42, 0x44, 0x45


def _paths(value: Sequence[LwM2mPath]) -> tuple[LwM2mPath, ...]:
    return tuple(value)


@attrs.frozen
class DownlinkRequest:
    """One request to a device, ready to send (or to queue while the device sleeps)."""

    operation: str
    method: str
    path: LwM2mPath
    paths: tuple[LwM2mPath, ...] = attrs.field(default=(), converter=_paths)
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    query: tuple[str, ...] = ()
    observe: int | None = None
    token: bytes | None = None

    @property
    def composite(self) -> bool:
        return self.method in ("FETCH", "IPATCH")

    @property
    def targets(self) -> tuple[LwM2mPath, ...]:
        """What the request is about: the composite paths, else the one path."""
        return self.paths or (self.path,)

    def describe(self) -> str:
        return f"{self.operation} {' '.join(str(p) for p in self.targets)}"


def _bad(message: str, code: ResponseCode = ResponseCode.BAD_REQUEST) -> Lwm2mError:
    return Lwm2mError(message, code=code)


def _check_depth(path: LwM2mPath, operation: str, allowed: Sequence[int]) -> None:
    if path.depth not in allowed:
        names = {0: "root", 1: "object", 2: "instance", 3: "resource", 4: "resource instance"}
        raise _bad(
            f"{operation} targets {' or '.join(names[d] for d in allowed)} paths, not {path}"
        )


# -- building -------------------------------------------------------------------------------------


def read(reg: Registration, path: LwM2mPath, fmt: int | None) -> DownlinkRequest:
    _check_depth(path, "Read", (1, 2, 3, 4))
    accept = fmt if fmt is not None else formats.single_path_format(reg, "decode")
    return DownlinkRequest("read", "GET", path, accept=accept)


def discover(path: LwM2mPath) -> DownlinkRequest:
    _check_depth(path, "Discover", (1, 2, 3))
    return DownlinkRequest("discover", "GET", path, accept=ContentFormat.LINK)


def write(
    reg: Registration,
    path: LwM2mPath,
    node: LwM2mNode,
    *,
    replace: bool,
    fmt: int | None,
    models: ModelProvider,
) -> DownlinkRequest:
    _check_depth(path, "Write", (2, 3, 4))
    ct = fmt if fmt is not None else formats.single_path_format(reg, "encode")
    payload = codecs.encode(node, path, ct, models)
    method = "PUT" if replace else "POST"
    return DownlinkRequest("write", method, path, payload=payload, content_format=ct)


def write_attributes(path: LwM2mPath, attributes: Mapping[str, str | None]) -> DownlinkRequest:
    """``{"pmin": "10", "gt": "3.5", "st": None}`` → ``?pmin=10&gt=3.5&st`` (None = remove)."""
    _check_depth(path, "Write-Attributes", (1, 2, 3, 4))
    if not attributes:
        raise _bad("Write-Attributes needs at least one attribute")
    query = []
    for name, value in attributes.items():
        if not name or not name.isascii() or not name.replace("_", "").isalnum():
            raise _bad(f"invalid attribute name {name!r}")
        query.append(name if value is None else f"{name}={value}")
    return DownlinkRequest("write_attributes", "PUT", path, query=tuple(query))


def execute(path: LwM2mPath, arguments: str | None) -> DownlinkRequest:
    _check_depth(path, "Execute", (3,))
    if arguments:
        return DownlinkRequest(
            "execute",
            "POST",
            path,
            payload=arguments.encode("utf-8"),
            content_format=ContentFormat.TEXT,
        )
    return DownlinkRequest("execute", "POST", path)


def create(
    reg: Registration,
    path: LwM2mPath,
    instance: LwM2mObjectInstance,
    *,
    fmt: int | None,
    models: ModelProvider,
) -> DownlinkRequest:
    """Create under object ``path``. Without a forced format, an instance without id goes as
    TLV (its bare-resources form lets the client pick the id); SenML and LwM2M CBOR name every
    value by its full path, so for them an id-less instance gets the lowest id the client's
    object list does not show."""
    _check_depth(path, "Create", (1,))
    if fmt is None:
        fmt = (
            formats.single_path_format(reg, "encode")
            if instance.id is not None
            else int(ContentFormat.TLV)
        )
    if fmt in (ContentFormat.TLV, ContentFormat.OLD_TLV):
        payload = codecs.encode(instance, path, fmt, models)
    else:
        if instance.id is None:
            assert path.object_id is not None
            used = set(reg.object_links.instances.get(path.object_id, ()))
            instance = attrs.evolve(instance, id=min(set(range(len(used) + 1)) - used))
        assert instance.id is not None
        payload = codecs.encode(instance, path.child(instance.id), fmt, models)
    return DownlinkRequest("create", "POST", path, payload=payload, content_format=fmt)


def delete(path: LwM2mPath) -> DownlinkRequest:
    _check_depth(path, "Delete", (1, 2, 3, 4))
    return DownlinkRequest("delete", "DELETE", path)


def _composite_paths(paths: Sequence[LwM2mPath]) -> tuple[LwM2mPath, ...]:
    if not paths:
        raise _bad("a composite request needs at least one path")
    return tuple(paths)


def read_composite(
    reg: Registration, paths: Sequence[LwM2mPath], fmt: int | None, *, observe: int | None = None
) -> DownlinkRequest:
    targets = _composite_paths(paths)
    accept = fmt if fmt is not None else formats.composite_format(reg, "decode_nodes")
    body_fmt = formats.paths_format(accept)
    operation = "read_composite" if observe is None else "observe_composite"
    return DownlinkRequest(
        operation,
        "FETCH",
        ROOT,
        paths=targets,
        payload=codecs.encode_paths(targets, body_fmt),
        content_format=body_fmt,
        accept=accept,
        observe=observe,
    )


def write_composite(
    reg: Registration,
    nodes: Mapping[LwM2mPath, LwM2mNode | None],
    fmt: int | None,
    models: ModelProvider,
) -> DownlinkRequest:
    targets = _composite_paths(list(nodes))
    ct = fmt if fmt is not None else formats.composite_format(reg, "encode_nodes")
    payload = codecs.encode_nodes(nodes, ct, models)
    return DownlinkRequest(
        "write_composite", "IPATCH", ROOT, paths=targets, payload=payload, content_format=ct
    )


def observe(reg: Registration, path: LwM2mPath, fmt: int | None) -> DownlinkRequest:
    base = read(reg, path, fmt)
    return attrs.evolve(base, operation="observe", observe=0)


def cancel(original: DownlinkRequest, token: bytes) -> DownlinkRequest:
    """The active cancel of an observation started with ``original`` (same token, Observe=1)."""
    operation = "cancel_observe_composite" if original.composite else "cancel_observe"
    return attrs.evolve(original, operation=operation, observe=1, token=token)


# -- answers --------------------------------------------------------------------------------------


@attrs.frozen
class RawResponse:
    """What came back, without aiocoap types."""

    code: int
    payload: bytes = b""
    content_format: int | None = None
    location_path: tuple[str, ...] = ()
    observe: int | None = None
    token: bytes = b""

    @property
    def success(self) -> bool:
        return (self.code >> 5) == 2


def decode_response(
    request: DownlinkRequest, raw: RawResponse, models: ModelProvider
) -> DeviceResponse:
    """A device's answer as a ``DeviceResponse``. A success whose payload cannot be decoded
    raises ``CodecError`` (the device answered garbage: the caller reports it as such)."""
    if not raw.success:
        message = raw.payload.decode("utf-8", "replace") if raw.payload else None
        return DeviceResponse(raw.code, raw.content_format, error_message=message)
    if raw.code == CREATED or request.operation == "create":
        location = "/" + "/".join(raw.location_path) if raw.location_path else None
        return DeviceResponse(raw.code, raw.content_format, location=location)
    if raw.code != CONTENT:
        return DeviceResponse(raw.code, raw.content_format)
    if request.operation == "discover":
        if raw.content_format not in (None, ContentFormat.LINK):
            raise CodecError(
                f"Discover answered with content format {raw.content_format}, not 40",
                code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
            )
        try:
            text = raw.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError("Discover answer is not UTF-8") from None
        return DeviceResponse(raw.code, ContentFormat.LINK, links=text)
    fmt = raw.content_format
    if fmt is None:
        fmt = request.accept if request.accept is not None else int(ContentFormat.TEXT)
    if request.composite:
        nodes = codecs.decode_nodes(raw.payload, fmt, models, list(request.paths))
        return DeviceResponse(raw.code, fmt, nodes=nodes)
    node = codecs.decode(raw.payload, request.path, fmt, models)
    return DeviceResponse(raw.code, fmt, node=node)


def location_instance(path: LwM2mPath, location: str | None) -> LwM2mPath | None:
    """The new instance's path from a Create's Location-Path (``/3303/1``), if it is one."""
    if location is None:
        return None
    try:
        created = LwM2mPath.parse(location)
    except Lwm2mError:
        return None
    if created.depth != 2 or created.object_id != path.object_id:
        return None
    return created

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

No CoAP messages here: ``coap.downlink`` turns a ``DownlinkRequest`` into one. Building is where
the content format is chosen (``formats``) and the payload encoded with the client's models, so
a request that cannot be encoded fails (4.00/4.06) before anything is queued or sent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

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
        """What the request is about: the composite paths (or the instance a Create makes),
        else the one path."""
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
    accept = fmt if fmt is not None else formats.read_accept(reg)
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
    taken: Collection[int] = (),
) -> DownlinkRequest:
    """Create under object ``path``.

    An instance without id lets the client pick the id where the format can say "no id": TLV's
    bare resources (no Object Instance wrapper; Core 1.0 §5.4.6, 1.1 §6.3.6), the default
    without a forced format. SenML and LwM2M CBOR name every value by its full path, and a
    Create payload without an instance id is not defined for them (OMA LwM2M-for-Developers
    #422, Leshan refuses it too), so forced to one of them the server picks the id: the lowest
    that is neither in the client's object list nor in ``taken`` (the ids the server created
    or reserved since that list was sent: it is only refreshed by the client's next Update,
    and some clients send none after a Create). The request's ``paths`` then names the new
    instance, so the answer reports it even when the client sends no Location-Path."""
    _check_depth(path, "Create", (1,))
    if fmt is None:
        fmt = (
            formats.single_path_format(reg, "encode")
            if instance.id is not None
            else int(ContentFormat.TLV)
        )
    if fmt in (ContentFormat.TLV, ContentFormat.OLD_TLV):
        payload = codecs.encode(instance, path, fmt, models)
        target = () if instance.id is None else (path.child(instance.id),)
        return DownlinkRequest(
            "create", "POST", path, paths=target, payload=payload, content_format=fmt
        )
    if instance.id is None:
        assert path.object_id is not None
        used = set(reg.object_links.instances.get(path.object_id, ())) | set(taken)
        free = next(i for i in range(len(used) + 1) if i not in used)
        instance = attrs.evolve(instance, id=free)
    assert instance.id is not None
    created = path.child(instance.id)
    payload = codecs.encode(instance, created, fmt, models)
    return DownlinkRequest(
        "create", "POST", path, paths=(created,), payload=payload, content_format=fmt
    )


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
    """What came back (whole: the CoAP layer assembles block-wise answers), as plain values."""

    code: int
    payload: bytes = b""
    content_format: int | None = None
    location_path: tuple[str, ...] = ()
    observe: int | None = None
    token: bytes = b""
    etag: bytes | None = None

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
        if location is None and request.operation == "create" and request.paths:
            location = str(request.paths[0])  # the id we chose; the client named none
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
    fmt = answer_format(request, raw.content_format)
    if request.composite:
        nodes = codecs.decode_nodes(raw.payload, fmt, models, list(request.paths))
        return DeviceResponse(raw.code, fmt, nodes=nodes)
    node = codecs.decode(raw.payload, request.path, fmt, models)
    return DeviceResponse(raw.code, fmt, node=node)


def answer_format(request: DownlinkRequest, content_format: int | None) -> int:
    """The format of an answer to ``request``: its Content-Format; without one, the Accept we
    sent; without that either (no Accept to a 1.0 client), text/plain for a single resource
    (its CoAP default) and TLV for an instance or object (the one structured format every 1.0
    client has)."""
    if content_format is not None:
        return content_format
    if request.accept is not None:
        return request.accept
    if not request.composite and request.path.depth >= 3:
        return int(ContentFormat.TEXT)
    return int(ContentFormat.TLV)


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

"""The client side of the Bootstrap interface (Core 1.1/1.2 §6.1), free of aiocoap.

While the client bootstraps, the bootstrap server's requests are answered here and not by
``management``: the operations differ (Core §6.1.7) even where the CoAP methods are the same.

| request                | operation          | here                                        |
|------------------------|--------------------|---------------------------------------------|
| GET / or /o, Accept 40 | Bootstrap-Discover | ``lwm2m=``, ``ver``, ``ssid``/``uri``       |
| GET /1…, /2…           | Bootstrap-Read     | Server and ACL only (never Security)        |
| PUT /o, /o/i, /o/i/r   | Bootstrap-Write    | creates instances; Security writable        |
| DELETE /, /o, /o/i     | Bootstrap-Delete   | spares the bootstrap account and /3         |
| POST /bs               | Bootstrap-Finish   | consistency check → 2.04, or 4.06 + why     |

Writes merge into an existing instance instead of replacing it: a bootstrap server that writes
only ``/3/0/14`` as ``PUT /3/0`` must not wipe the Device object (the real bootstrap server does
exactly that for its ``objects`` setting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath

from .link_format import link, object_version
from .management import DeviceManagement, Request, Response, Success
from .objects import ObjectTree, bad_request, not_allowed, not_found

SECURITY, SERVER, ACL, DEVICE = 0, 1, 2, 3
SEC_URI, SEC_BOOTSTRAP, SEC_MODE, SEC_IDENTITY, SEC_SERVER_KEY, SEC_SECRET, SEC_SSID = (
    0, 1, 2, 3, 4, 5, 10,
)  # fmt: skip
SRV_SSID = 0
BOOTSTRAP_READABLE = frozenset({SERVER, ACL})
"""Core 1.1 §6.1.7.1: Bootstrap-Read is limited to the Server and Access Control objects."""


def bootstrap_accounts(tree: ObjectTree) -> list[int]:
    """Security instances that are the Bootstrap-Server account (resource 1 true)."""
    return [i for i in tree.instance_ids(SECURITY) if _value(tree, SECURITY, i, SEC_BOOTSTRAP)]


def protected(tree: ObjectTree, path: LwM2mPath) -> bool:
    """Bootstrap-Delete never removes the Bootstrap-Server account nor the Device object."""
    o, i = path.ids[0], path.ids[1]
    return o == DEVICE or (o == SECURITY and i in bootstrap_accounts(tree))


def factory_account(
    tree: ObjectTree,
    uri: str,
    mode: int,
    identity: bytes = b"",
    secret: bytes = b"",
    *,
    instance_id: int = 0,
) -> None:
    """Reduce ``tree`` to what a device leaves the factory with: only the Bootstrap-Server
    account in /0 (at ``instance_id``: 0 for most clients, 1 for those that keep /0/0 for the
    LwM2M server, e.g. Anjay), no Server instance."""
    for i in tree.instance_ids(SECURITY):
        tree.remove_instance(SECURITY, i)
    for i in tree.instance_ids(SERVER):
        tree.remove_instance(SERVER, i)
    values: dict[int, object] = {
        SEC_URI: uri, SEC_BOOTSTRAP: True, SEC_MODE: mode,
        SEC_IDENTITY: identity, SEC_SERVER_KEY: b"", SEC_SECRET: secret,
    }  # fmt: skip
    tree.add_instance(SECURITY, values, instance_id=instance_id)


def consistency_errors(tree: ObjectTree) -> list[str]:
    """Why the configuration cannot be used (empty: Bootstrap-Finish may answer 2.04).

    Every Server instance needs a Security instance (not the bootstrap account) with the same
    short server id, else the client could not reach that server (Core 1.1 §6.1.7.6).
    """
    by_ssid = {
        _value(tree, SECURITY, i, SEC_SSID)
        for i in tree.instance_ids(SECURITY)
        if not _value(tree, SECURITY, i, SEC_BOOTSTRAP)
    }
    errors = []
    servers = tree.instance_ids(SERVER)
    for i in servers:
        ssid = _value(tree, SERVER, i, SRV_SSID)
        if ssid is None:
            errors.append(f"/1/{i}: no short server id")
        elif ssid not in by_ssid:
            errors.append(f"/1/{i}: no Security instance for short server id {ssid}")
    if not servers:
        errors.append("no LwM2M Server account (/1 is empty)")
    return errors


def discover(tree: ObjectTree, path: LwM2mPath, lwm2m_version: str) -> str:
    """Bootstrap-Discover of ``/`` or ``/o`` (Core 1.1 §5.2.7.3)::

    </>;lwm2m=1.1,</0/0>;uri="coap://bs",</0/1>;ssid=1;uri="coap://srv",</1/0>;ssid=1,…
    """
    if not (path.is_root or path.is_object):
        raise bad_request(path, "Bootstrap-Discover targets / or an object")
    links: list[str] = []
    if path.is_root:
        links.append(link("/", [f"lwm2m={lwm2m_version}"]))
        objects = tree.object_ids()
    else:
        if path.ids[0] not in tree.object_ids():
            raise not_found(path)
        objects = [path.ids[0]]
    for o in objects:
        version = object_version(tree, o)
        instances = tree.instance_ids(o)
        if version is not None:
            links.append(link(LwM2mPath(o), [f"ver={version}"]))
        elif not instances or path.is_object:
            links.append(link(LwM2mPath(o)))
        links.extend(link(LwM2mPath(o, i), _instance_attributes(tree, o, i)) for i in instances)
    return ",".join(links)


def _instance_attributes(tree: ObjectTree, o: int, i: int) -> list[str]:
    if o == SECURITY:
        params = []
        if not _value(tree, o, i, SEC_BOOTSTRAP):
            ssid = _value(tree, o, i, SEC_SSID)
            if ssid is not None:
                params.append(f"ssid={ssid}")
        uri = _value(tree, o, i, SEC_URI)
        if uri:
            params.append(f'uri="{uri}"')
        return params
    if o == SERVER:
        ssid = _value(tree, o, i, SRV_SSID)
        return [] if ssid is None else [f"ssid={ssid}"]
    return []


def _value(tree: ObjectTree, o: int, i: int, r: int) -> object:
    try:
        return tree.get_value(LwM2mPath(o, i, r))
    except (Lwm2mError, ValueError):
        return None


def _raw(resource: LwM2mResource) -> object:
    if isinstance(resource, LwM2mMultipleResource):
        return {k: ri.value for k, ri in resource.instances.items()}
    return resource.value


class BootstrapInterface:
    """Answers the bootstrap server's requests against ``tree``.

    ``on_finish`` hears every Bootstrap-Finish with the consistency errors (none: accepted),
    so the session ends at once either way instead of waiting for its timeout;
    ``on_change`` after every successful Write or Delete (the client re-installs its
    executables on the new Server instances).
    """

    def __init__(
        self,
        tree: ObjectTree,
        management: DeviceManagement,
        *,
        lwm2m_version: str,
        on_finish: Callable[[list[str]], None] = lambda _errors: None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.tree = tree
        self.management = management
        self.lwm2m_version = lwm2m_version
        self.on_finish = on_finish
        self.on_change = on_change

    async def handle(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except Lwm2mError as exc:
            return Response.error(exc)
        except (ValueError, TypeError) as exc:  # a value the model's type refuses
            return Response(int(ResponseCode.BAD_REQUEST), str(exc).encode())

    def _dispatch(self, request: Request) -> Response:
        method, path = request.method.upper(), request.path
        if method == "GET" and request.accept == ContentFormat.LINK:
            text = discover(self.tree, path, self.lwm2m_version)
            return Response(Success.CONTENT, text.encode(), ContentFormat.LINK)
        if method == "GET":
            if path.is_root or path.ids[0] not in BOOTSTRAP_READABLE:
                raise Lwm2mError(
                    f"{path}: Bootstrap-Read is limited to /1 and /2",
                    code=ResponseCode.UNAUTHORIZED,
                )
            return self.management.read(path, request.accept)
        if method == "PUT":
            if request.content_format is None:
                raise bad_request(path, "Bootstrap-Write without Content-Format")
            node = codecs.decode(request.payload, path, request.content_format, self.tree.models)
            with self.tree.transaction():
                self.write(path, node)
            self.on_change()
            return Response(Success.CHANGED)
        if method == "DELETE":
            self.delete(path)
            self.on_change()
            return Response(Success.DELETED)
        raise not_allowed(path, f"{method} is not a Bootstrap operation")

    def finish(self) -> Response:
        """Bootstrap-Finish (``POST /bs``): 2.04 if the configuration is usable, else 4.06."""
        errors = consistency_errors(self.tree)
        self.on_finish(errors)
        if errors:
            return Response(int(ResponseCode.NOT_ACCEPTABLE), "; ".join(errors).encode())
        return Response(Success.CHANGED)

    # -- Bootstrap-Write --------------------------------------------------------------------------
    def write(self, path: LwM2mPath, node: LwM2mNode) -> None:
        """Write ``node`` at ``path``, creating the object and instances it names."""
        if path.is_root:
            raise not_allowed(path, "Bootstrap-Write targets an object, instance or resource")
        o = path.ids[0]
        if self.tree.object_model(o) is None:
            raise not_found(path)
        if path.is_object:
            if not isinstance(node, LwM2mObject):
                raise bad_request(path, "expected object instances")
            for instance in node.instances.values():
                assert instance.id is not None
                self.write_instance(o, instance.id, instance.resources)
        elif path.is_object_instance:
            if isinstance(node, LwM2mObject) and len(node.instances) == 1:
                node = next(iter(node.instances.values()))
            if not isinstance(node, LwM2mObjectInstance):
                raise bad_request(path, "expected an object instance")
            self.write_instance(o, path.ids[1], node.resources)
        elif path.is_resource and isinstance(node, LwM2mSingleResource | LwM2mMultipleResource):
            self.write_instance(o, path.ids[1], {node.id: node})
        else:
            raise bad_request(path, "Bootstrap-Write of a resource instance is not supported")

    def write_instance(self, o: int, i: int, resources: Mapping[int, LwM2mResource]) -> None:
        if i not in self.tree.instance_ids(o):
            self.tree.add_instance(o, {r: _raw(res) for r, res in resources.items()}, instance_id=i)
            return
        instance = LwM2mObjectInstance(i, resources)
        self.tree.write(LwM2mPath(o, i), instance, replace=False, bootstrap=True)

    def write_nodes(self, nodes: Mapping[LwM2mPath, LwM2mNode | None]) -> None:
        """A Bootstrap-Pack's content (resource paths from SenML/LwM2M CBOR) as writes."""
        grouped: dict[tuple[int, int], dict[int, LwM2mResource]] = {}
        for path, node in nodes.items():
            if node is None or path.depth < 3:
                raise bad_request(path, "Bootstrap-Pack entries name resources")
            if isinstance(node, LwM2mSingleResource | LwM2mMultipleResource):
                grouped.setdefault((path.ids[0], path.ids[1]), {})[node.id] = node
            else:
                raise bad_request(path, "Bootstrap-Pack resource instances are not supported")
        with self.tree.transaction():
            for (o, i), resources in sorted(grouped.items()):
                self.write_instance(o, i, resources)
        self.on_change()

    # -- Bootstrap-Delete -------------------------------------------------------------------------
    def delete_all(self) -> None:
        """Bootstrap-Delete of ``/`` (what a Bootstrap-Pack replaces)."""
        self.delete(LwM2mPath.parse("/"))

    def delete(self, path: LwM2mPath) -> None:
        if path.depth > 2:
            raise bad_request(path, "Bootstrap-Delete targets /, an object or an instance")
        if path.is_object_instance:
            if path.ids[1] not in self.tree.instance_ids(path.ids[0]):
                raise not_found(path)
            if protected(self.tree, path):
                raise bad_request(path, "the Bootstrap-Server account and /3 are never deleted")
            self.tree.remove_instance(*path.ids)
            return
        objects: Sequence[int] = self.tree.object_ids() if path.is_root else [path.ids[0]]
        for o in objects:
            for i in self.tree.instance_ids(o):
                if not protected(self.tree, LwM2mPath(o, i)):
                    self.tree.remove_instance(o, i)

"""CoRE link-format (RFC 6690, content format 40) as LwM2M uses it on the client side.

Two documents: the object list of Register/Update (Core §6.2.1) and the Discover answer
(Core §5.4.2). Both are small and fully determined by the object tree, so they are rendered
here directly rather than through a general link-format codec.

Register/Update::

    </>;rt="oma.lwm2m";ct="60 110 112 11542 11543 11544",</1/0>,</3>;ver=1.2,</3/0>,…

- the Security object (0) and OSCORE object (21) are never listed (Core §6.2.1);
- ``</o>`` is listed with ``ver=`` when the object version is not 1.0, and on its own when the
  object has no instance;
- the ``ct`` of the root link names the content formats the client can produce.

Discover on an object lists the object (with ``ver``), its instances and their resources; on an
instance, the instance and its resources; on a resource, the resource and its instances.
Multiple resources carry ``dim=``. Write-Attributes attributes appear on the link of the level
they were written at: object and instance levels for an object Discover, instance and resource
levels for an instance Discover, resource and resource-instance levels for a resource Discover.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from .attributes import AttributeStore, format_attributes
from .objects import ObjectTree, not_found

HIDDEN_OBJECTS = frozenset({0, 21})
"""Security and OSCORE: never in Register, never discoverable by a server."""


def link(path: LwM2mPath | str, params: Sequence[str] = ()) -> str:
    return ";".join([f"<{path}>", *params])


def object_version(tree: ObjectTree, object_id: int) -> str | None:
    model = tree.object_model(object_id)
    if model is None or model.version in ("", "1.0"):
        return None
    return model.version


def registration_links(tree: ObjectTree, content_formats: Iterable[int]) -> str:
    """The payload of Register (and of an Update after instances changed)."""
    formats = [str(int(f)) for f in content_formats]
    root = ['rt="oma.lwm2m"']
    if len(formats) == 1:
        root.append(f"ct={formats[0]}")
    elif formats:
        root.append(f'ct="{" ".join(formats)}"')
    links = [link("/", root)]
    for o in tree.object_ids():
        if o in HIDDEN_OBJECTS:
            continue
        version = object_version(tree, o)
        instances = tree.instance_ids(o)
        if version is not None:
            links.append(link(LwM2mPath(o), [f"ver={version}"]))
        elif not instances:
            links.append(link(LwM2mPath(o)))
        links.extend(link(LwM2mPath(o, i)) for i in instances)
    return ",".join(links)


def discover(tree: ObjectTree, attributes: AttributeStore, path: LwM2mPath) -> str:
    """The Discover answer for ``path`` (4.04 unknown, 4.01 Security, 4.00 other depths)."""
    if path.is_root or path.is_resource_instance:
        raise Lwm2mError(
            f"{path}: Discover targets an object, instance or resource",
            code=ResponseCode.BAD_REQUEST,
        )
    if path.ids[0] in HIDDEN_OBJECTS:
        raise Lwm2mError(f"{path}: not discoverable", code=ResponseCode.UNAUTHORIZED)
    if not tree.exists(path):
        raise not_found(path)
    links: list[str] = []
    o = path.ids[0]
    if path.is_object:
        version = object_version(tree, o)
        params = [f"ver={version}"] if version else []
        links.append(link(path, params + format_attributes(attributes.at(path))))
        for i in tree.instance_ids(o):
            ipath = LwM2mPath(o, i)
            links.append(link(ipath, format_attributes(attributes.at(ipath))))
            links.extend(_resource_links(tree, attributes, ipath, with_attributes=False))
    elif path.is_object_instance:
        links.append(link(path, format_attributes(attributes.at(path))))
        links.extend(_resource_links(tree, attributes, path, with_attributes=True))
    else:
        value = tree.get_value(path) if path.resource_id in _valued(tree, path.parent) else None
        params = format_attributes(attributes.at(path))
        if isinstance(value, dict):
            links.append(link(path, [f"dim={len(value)}", *params]))
            for ri in sorted(value):
                ripath = path.child(ri)
                links.append(link(ripath, format_attributes(attributes.at(ripath))))
        else:
            links.append(link(path, params))
    return ",".join(links)


def _valued(tree: ObjectTree, instance_path: LwM2mPath) -> set[int]:
    """Resource ids under an instance that hold a value (everything but executables)."""
    result = set()
    for rid in tree.resource_ids(*instance_path.ids):
        try:
            tree.get_value(instance_path.child(rid))
        except Lwm2mError:
            continue
        result.add(rid)
    return result


def _resource_links(
    tree: ObjectTree, attributes: AttributeStore, ipath: LwM2mPath, *, with_attributes: bool
) -> list[str]:
    links = []
    valued = _valued(tree, ipath)
    for rid in tree.resource_ids(*ipath.ids):
        rpath = ipath.child(rid)
        params: list[str] = []
        if rid in valued:
            value = tree.get_value(rpath)
            if isinstance(value, dict):
                params.append(f"dim={len(value)}")
        if with_attributes:
            params.extend(format_attributes(attributes.at(rpath)))
        links.append(link(rpath, params))
    return links

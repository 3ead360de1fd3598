"""The client's in-memory object tree: object instances holding typed resource values.

Two kinds of callers, two sets of methods:

* the device itself (application code, the simulation, the CLI) uses ``add_instance``,
  ``set_value``, ``get_value``: no access control, values coerced to the model's type;
* the LwM2M server, through ``management``, uses ``read``/``write``/``create``/``delete``/
  ``execute``, which enforce the object model and answer with the CoAP code the Core
  specification asks for: unknown path 4.04, operation not allowed on that resource 4.05,
  value that does not fit the type 4.00, Security object 4.01.

Every change, whoever makes it, is announced to the change listeners with the resource paths
that changed: that is what drives notifications, so a server Write and a local ``set_value`` are
observed alike. Adding or removing an instance is announced separately (structure listeners)
because it changes the registration's object list and calls for a registration Update.

No I/O and no aiocoap here; values are plain Python values as described in ``object_models.types``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import attrs

from object_models.errors import Lwm2mError, ResponseCode
from object_models.model import ModelProvider, ObjectModel, ResourceModel
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import MAX_INSTANCE_ID, LwM2mPath
from object_models.types import ResourceType, Value, coerce_value, guess_type

SECURITY_OBJECT = 0
"""Only the bootstrap server may touch the Security object (Core §E.1); servers get 4.01."""

Executable = Callable[[str], object]
"""An Execute callback: takes the argument text (possibly empty). May return an awaitable, which
the caller awaits before answering; any other return value is ignored."""

ChangeListener = Callable[[Sequence[LwM2mPath]], None]
StructureListener = Callable[[], None]

ResourceContent = Value | dict[int, Value]
"""What a resource holds: a value, or ``{instance id: value}`` for a multiple resource."""


@attrs.define
class Dynamic:
    """A resource whose value is computed at read time (e.g. Current Time, which ticks).

    ``write`` receives the coerced value of a server Write; without it the resource cannot be
    written even if the model says RW.
    """

    read: Callable[[], Value]
    write: Callable[[Value], None] | None = None


@attrs.define
class _Instance:
    values: dict[int, ResourceContent] = attrs.field(factory=dict)
    dynamic: dict[int, Dynamic] = attrs.field(factory=dict)
    executables: dict[int, Executable] = attrs.field(factory=dict)

    def resource_ids(self) -> list[int]:
        return sorted({*self.values, *self.dynamic, *self.executables})


def not_found(path: LwM2mPath | str) -> Lwm2mError:
    return Lwm2mError(f"{path} not found", code=ResponseCode.NOT_FOUND)


def not_allowed(path: LwM2mPath | str, why: str) -> Lwm2mError:
    return Lwm2mError(f"{path}: {why}", code=ResponseCode.METHOD_NOT_ALLOWED)


def bad_request(path: LwM2mPath | str, why: str) -> Lwm2mError:
    return Lwm2mError(f"{path}: {why}", code=ResponseCode.BAD_REQUEST)


_DEFAULTS: dict[ResourceType, Value] = {
    ResourceType.STRING: "",
    ResourceType.CORELNK: "",
    ResourceType.INTEGER: 0,
    ResourceType.UNSIGNED_INTEGER: 0,
    ResourceType.FLOAT: 0.0,
    ResourceType.BOOLEAN: False,
    ResourceType.OPAQUE: b"",
    ResourceType.TIME: 0,
}


class ObjectTree:
    """Objects → instances → resources, typed by ``models``.

    An object is "supported" (listed in Register) once ``declare_object`` or ``add_instance``
    named it, even when it has no instance left.
    """

    def __init__(self, models: ModelProvider) -> None:
        self.models = models
        self._objects: dict[int, dict[int, _Instance]] = {}
        self._listeners: list[ChangeListener] = []
        self._structure_listeners: list[StructureListener] = []
        self._held: list[LwM2mPath] | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing for multi-step server operations (Write-Composite).

        Stored values are restored when the block raises, and change listeners hear about the
        changes once, after the block succeeded. Dynamic resources (computed values with a write
        hook, like the device clock) cannot be rolled back.
        """
        if self._held is not None:
            yield
            return
        saved = {
            o: {
                i: _Instance(
                    values={
                        r: dict(v) if isinstance(v, dict) else v for r, v in inst.values.items()
                    },
                    dynamic=inst.dynamic,
                    executables=inst.executables,
                )
                for i, inst in instances.items()
            }
            for o, instances in self._objects.items()
        }
        self._held = []
        try:
            yield
        except BaseException:
            self._objects = saved
            self._held = None
            raise
        held, self._held = self._held, None
        unique = list(dict.fromkeys(held))
        self._changed(unique)

    # -- model lookups --------------------------------------------------------------------------
    def object_model(self, object_id: int) -> ObjectModel | None:
        return self.models.get_object(object_id)

    def resource_model(self, object_id: int, resource_id: int) -> ResourceModel | None:
        model = self.object_model(object_id)
        return None if model is None else model.resource(resource_id)

    def is_multiple(self, object_id: int, resource_id: int) -> bool | None:
        res = self.resource_model(object_id, resource_id)
        return None if res is None else res.multiple

    # -- listeners ------------------------------------------------------------------------------
    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(paths)`` after values change; paths are resource paths."""
        self._listeners.append(listener)

    def add_structure_listener(self, listener: StructureListener) -> None:
        """Call ``listener()`` after an instance was added or removed."""
        self._structure_listeners.append(listener)

    def _changed(self, paths: Iterable[LwM2mPath]) -> None:
        changed = list(paths)
        if self._held is not None:
            self._held.extend(changed)
            return
        if changed:
            for listener in list(self._listeners):
                listener(changed)

    def _structure_changed(self) -> None:
        for listener in list(self._structure_listeners):
            listener()

    # -- the device's own API -------------------------------------------------------------------
    def declare_object(self, object_id: int) -> None:
        self._objects.setdefault(object_id, {})

    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def instance_ids(self, object_id: int) -> list[int]:
        return sorted(self._objects.get(object_id, {}))

    def resource_ids(self, object_id: int, instance_id: int) -> list[int]:
        return self._instance(LwM2mPath(object_id, instance_id)).resource_ids()

    def add_instance(
        self,
        object_id: int,
        values: Mapping[int, object] | None = None,
        *,
        instance_id: int | None = None,
        dynamic: Mapping[int, Dynamic] | None = None,
        executables: Mapping[int, Executable] | None = None,
    ) -> int:
        """Create an instance locally (no access checks) and return its id.

        ``values`` maps resource ids to a value or, for multiple resources, to a mapping or
        sequence of values (a sequence gets instance ids 0, 1, …). Values are coerced to the
        model's types; a value that does not fit raises ``ValueError``/``TypeError``.
        """
        instances = self._objects.setdefault(object_id, {})
        if instance_id is None:
            instance_id = self._free_id(object_id)
        if instance_id in instances:
            raise ValueError(f"/{object_id}/{instance_id} already exists")
        LwM2mPath(object_id, instance_id)  # validates the ids
        inst = _Instance(dynamic=dict(dynamic or {}), executables=dict(executables or {}))
        for rid, raw in (values or {}).items():
            inst.values[rid] = self._coerce_content(object_id, rid, raw)
        instances[instance_id] = inst
        self._structure_changed()
        return instance_id

    def remove_instance(self, object_id: int, instance_id: int) -> None:
        path = LwM2mPath(object_id, instance_id)
        self._instance(path)
        del self._objects[object_id][instance_id]
        self._structure_changed()
        self._changed([path])

    def set_executable(self, path: LwM2mPath | str, callback: Executable) -> None:
        path = _as_path(path)
        if not path.is_resource:
            raise ValueError(f"an executable lives at a resource path, not {path}")
        self._instance(path.parent).executables[_rid(path)] = callback

    def set_dynamic(self, path: LwM2mPath | str, dynamic: Dynamic) -> None:
        path = _as_path(path)
        if not path.is_resource:
            raise ValueError(f"a dynamic value lives at a resource path, not {path}")
        inst = self._instance(path.parent)
        inst.values.pop(_rid(path), None)
        inst.dynamic[_rid(path)] = dynamic

    def mark_changed(self, path: LwM2mPath | str) -> None:
        """A dynamic resource's value moved on its own (a ticking clock): tell observers, as
        ``set_value`` does for stored values, so an observation of it notifies."""
        path = _as_path(path)
        if not path.is_resource:
            raise ValueError(f"mark_changed needs a resource path, not {path}")
        self._instance(path.parent)
        self._changed([path])

    def set_value(self, path: LwM2mPath | str, value: object) -> None:
        """Change a value locally (sensor update, status change) and notify observers.

        ``path`` is a resource (single value, or mapping/sequence for a multiple resource) or a
        resource instance. No access checks: the device may change its read-only resources.
        """
        path = _as_path(path)
        inst = self._instance(path.parent if path.is_resource else _instance_path(path))
        o, r = path.ids[0], _rid(path)
        if path.is_resource:
            if r in inst.dynamic and inst.dynamic[r].write is not None:
                write = inst.dynamic[r].write
                assert write is not None
                write(self._coerce_single(o, r, value))
            else:
                inst.dynamic.pop(r, None)
                inst.values[r] = self._coerce_content(o, r, value)
        elif path.is_resource_instance:
            current = inst.values.get(r)
            if current is None:
                current = inst.values[r] = {}
            if not isinstance(current, dict):
                raise ValueError(f"{path.parent} is a single resource")
            current[path.ids[3]] = self._coerce_single(o, r, value)
        else:
            raise ValueError(f"set_value needs a resource or resource-instance path, not {path}")
        self._changed([path if path.is_resource else path.parent])

    def get_value(self, path: LwM2mPath | str) -> ResourceContent:
        """The current value at a resource or resource-instance path (no access checks)."""
        path = _as_path(path)
        if path.is_resource:
            return self._content(path)
        if path.is_resource_instance:
            content = self._content(path.parent)
            if not isinstance(content, dict) or path.ids[3] not in content:
                raise not_found(path)
            return content[path.ids[3]]
        raise ValueError(f"get_value needs a resource or resource-instance path, not {path}")

    # -- server operations (Device Management interface) ----------------------------------------
    def exists(self, path: LwM2mPath) -> bool:
        try:
            self._locate(path)
        except Lwm2mError:
            return False
        return True

    def read(self, path: LwM2mPath, *, bootstrap: bool = False) -> LwM2mNode:
        """The node at ``path`` with every readable value under it (Read, Observe, Send)."""
        self.check_access(path, bootstrap)
        self._locate(path)
        if path.is_object:
            o = path.ids[0]
            return LwM2mObject(
                o, {i: self._read_instance(o, i, bootstrap) for i in self.instance_ids(o)}
            )
        if path.is_object_instance:
            return self._read_instance(path.ids[0], path.ids[1], bootstrap)
        o, r = path.ids[0], _rid(path)
        if not bootstrap:
            self._require(path, readable=True)
        resource = self._resource_node(_instance_path(path), o, r)
        if path.is_resource:
            return resource
        assert isinstance(resource, LwM2mMultipleResource)
        return resource.instances[path.ids[3]]

    def write(
        self, path: LwM2mPath, node: LwM2mNode, *, replace: bool, bootstrap: bool = False
    ) -> None:
        """Write ``node`` at ``path``: replace (PUT) or partial update (POST, Write-Composite).

        Everything is checked before anything changes, so a rejected Write leaves no trace.
        """
        self.check_access(path, bootstrap)
        if (path.is_root or path.is_object) and not bootstrap:
            raise not_allowed(path, "Write needs an object instance, resource or instance")
        if path.is_object_instance:
            self._write_instance(path, node, replace=replace, bootstrap=bootstrap)
        elif path.is_resource:
            self._write_resource(path, node, replace=replace, bootstrap=bootstrap)
        elif path.is_resource_instance:
            self._write_resource_instance(path, node, bootstrap=bootstrap)
        else:
            raise bad_request(path, "bootstrap writes on objects are not supported yet")

    def create(self, path: LwM2mPath, node: LwM2mNode) -> int:
        """Create an instance under object ``path`` and return its id (client-picked if absent)."""
        self.check_access(path, False)
        if not path.is_object:
            raise bad_request(path, "Create is sent to an object path")
        o = path.ids[0]
        if o not in self._objects:
            raise not_found(path)
        if isinstance(node, LwM2mObject):
            if len(node.instances) != 1:
                raise bad_request(path, "Create carries exactly one object instance")
            node = next(iter(node.instances.values()))
        if not isinstance(node, LwM2mObjectInstance):
            raise bad_request(path, "Create carries an object instance")
        model = self.object_model(o)
        if model is not None and not model.multiple and self._objects[o]:
            raise bad_request(path, "single-instance object already has its instance")
        instance_id = node.id if node.id is not None else self._free_id(o)
        if instance_id in self._objects[o]:
            raise bad_request(path.child(instance_id), "object instance already exists")
        values: dict[int, ResourceContent] = {}
        for rid, res in node.resources.items():
            rpath = path.child(instance_id).child(rid)
            rmodel = self._known_resource(rpath)
            if rmodel is not None and rmodel.operations.executable:
                raise bad_request(rpath, "an executable resource carries no value")
            values[rid] = self._content_of(rpath, res)
        if model is not None:
            for rid, rmodel in model.resources.items():
                if rmodel.mandatory and rid not in values and not rmodel.operations.executable:
                    # Lenient on purpose: a Create of a sensor object cannot carry its
                    # read-only measurement, so mandatory values default to the type's zero.
                    values[rid] = {} if rmodel.multiple else _DEFAULTS.get(rmodel.type)
        self._objects[o][instance_id] = _Instance(values=values)
        self._structure_changed()
        self._changed([path.child(instance_id)])
        return instance_id

    def delete(self, path: LwM2mPath, *, bootstrap: bool = False) -> None:
        self.check_access(path, bootstrap)
        if not path.is_object_instance:
            raise not_allowed(path, "Delete applies to an object instance")
        self._locate(path)
        o = path.ids[0]
        model = self.object_model(o)
        single_mandatory = model is not None and model.mandatory and not model.multiple
        if not bootstrap and (o == 1 or single_mandatory):
            raise not_allowed(path, "this instance can only be removed by bootstrap")
        self.remove_instance(o, path.ids[1])

    def execute(self, path: LwM2mPath) -> Executable:
        """The callback behind an executable resource (the caller runs it with the arguments)."""
        self.check_access(path, False)
        if not path.is_resource:
            raise not_allowed(path, "Execute applies to a resource")
        rmodel = self._known_resource(path)
        inst = self._instance(path.parent)
        callback = inst.executables.get(_rid(path))
        if callback is None:
            if _rid(path) in inst.values or _rid(path) in inst.dynamic:
                raise not_allowed(path, "resource is not executable")
            raise not_found(path)
        if rmodel is not None and not rmodel.operations.executable:
            raise not_allowed(path, "resource is not executable")
        return callback

    # -- internals ------------------------------------------------------------------------------
    def check_access(self, path: LwM2mPath, bootstrap: bool = False) -> None:
        """4.01 when a server (not the bootstrap server) touches the Security object."""
        if not bootstrap and path.object_id == SECURITY_OBJECT:
            raise Lwm2mError(
                f"{path}: the Security object is reserved to bootstrap",
                code=ResponseCode.UNAUTHORIZED,
            )

    def free_instance_id(self, object_id: int) -> int:
        """The lowest unused instance id of ``object_id`` (what a Create without id gets)."""
        return self._free_id(object_id)

    def _free_id(self, object_id: int) -> int:
        used = self._objects.get(object_id, {})
        for candidate in range(MAX_INSTANCE_ID + 1):
            if candidate not in used:
                return candidate
        raise Lwm2mError(f"/{object_id} has no free instance id", code=ResponseCode.BAD_REQUEST)

    def _instance(self, path: LwM2mPath) -> _Instance:
        try:
            return self._objects[path.ids[0]][path.ids[1]]
        except (KeyError, IndexError):
            raise not_found(path) from None

    def _locate(self, path: LwM2mPath) -> None:
        """Raise 4.04 unless ``path`` exists (an executable resource exists too)."""
        if path.is_root:
            return
        if path.ids[0] not in self._objects:
            raise not_found(path)
        if path.depth == 1:
            return
        inst = self._instance(LwM2mPath(path.ids[0], path.ids[1]))
        if path.depth == 2:
            return
        rid = _rid(path)
        if rid in inst.executables and path.is_resource:
            return
        content = self._content(LwM2mPath.from_ids(*path.ids[:3]))
        if path.is_resource_instance and (
            not isinstance(content, dict) or path.ids[3] not in content
        ):
            raise not_found(path)

    def _content(self, path: LwM2mPath) -> ResourceContent:
        inst = self._instance(path.parent)
        rid = _rid(path)
        if rid in inst.dynamic:
            return inst.dynamic[rid].read()
        if rid not in inst.values:
            raise not_found(path)
        content = inst.values[rid]
        return dict(content) if isinstance(content, dict) else content

    def _known_resource(self, path: LwM2mPath) -> ResourceModel | None:
        """The resource's model; 4.04 when the object has a model that lacks this resource."""
        o, r = path.ids[0], _rid(path)
        model = self.object_model(o)
        if model is None:
            return None
        rmodel = model.resource(r)
        if rmodel is None:
            raise not_found(path)
        return rmodel

    def _require(self, path: LwM2mPath, *, readable: bool = False, writable: bool = False) -> None:
        rpath = LwM2mPath.from_ids(*path.ids[:3])
        rmodel = self._known_resource(rpath)
        inst = self._instance(rpath.parent)
        rid = _rid(rpath)
        if rmodel is None:
            if rid in inst.executables:
                raise not_allowed(path, "resource is executable")
            return
        if readable and not rmodel.operations.readable:
            raise not_allowed(path, "resource is not readable")
        if writable and not rmodel.operations.writable:
            raise not_allowed(path, "resource is not writable")
        if writable and rid in inst.dynamic and inst.dynamic[rid].write is None:
            raise not_allowed(path, "resource is computed by the device")

    def _readable_ids(self, o: int, inst: _Instance, bootstrap: bool) -> list[int]:
        result = []
        for rid in inst.resource_ids():
            if rid in inst.executables:
                continue
            rmodel = self.resource_model(o, rid)
            if bootstrap or rmodel is None or rmodel.operations.readable:
                result.append(rid)
        return result

    def _read_instance(self, o: int, i: int, bootstrap: bool) -> LwM2mObjectInstance:
        path = LwM2mPath(o, i)
        inst = self._instance(path)
        return LwM2mObjectInstance(
            i, {r: self._resource_node(path, o, r) for r in self._readable_ids(o, inst, bootstrap)}
        )

    def _resource_node(self, instance_path: LwM2mPath, o: int, r: int) -> LwM2mResource:
        content = self._content(instance_path.child(r))
        rmodel = self.resource_model(o, r)
        if isinstance(content, dict):
            rtype = rmodel.type if rmodel is not None else None
            if rtype is None:
                return LwM2mMultipleResource.from_values(r, content)
            return LwM2mMultipleResource.from_values(r, content, rtype)
        rtype = rmodel.type if rmodel is not None else guess_type(content)
        return LwM2mSingleResource(r, content, rtype)

    def _coerce_single(self, o: int, r: int, value: object) -> Value:
        rmodel = self.resource_model(o, r)
        if rmodel is None:
            if isinstance(value, str | int | float | bool | bytes) or value is None:
                return value
            raise TypeError(f"/{o}/*/{r} has no model and {value!r} is not a plain value")
        return coerce_value(rmodel.type, value)

    def _coerce_content(self, o: int, r: int, raw: object) -> ResourceContent:
        multiple = self.is_multiple(o, r)
        if isinstance(raw, Mapping):
            return {int(k): self._coerce_single(o, r, v) for k, v in raw.items()}
        if isinstance(raw, list | tuple):
            return {k: self._coerce_single(o, r, v) for k, v in enumerate(raw)}
        if multiple:
            raise TypeError(f"/{o}/*/{r} is a multiple resource: give a mapping or a list")
        return self._coerce_single(o, r, raw)

    def _coerce_checked(self, path: LwM2mPath, value: Value) -> Value:
        try:
            return self._coerce_single(path.ids[0], _rid(path), value)
        except (TypeError, ValueError) as exc:
            raise bad_request(path, f"bad value: {exc}") from None

    def _content_of(self, path: LwM2mPath, node: LwM2mNode) -> ResourceContent:
        """A decoded resource node as stored content, checked against the model (4.00)."""
        multiple = self.is_multiple(path.ids[0], _rid(path))
        if isinstance(node, LwM2mSingleResource):
            if multiple:
                raise bad_request(path, "multiple resource written as a single value")
            return self._coerce_checked(path, node.value)
        if isinstance(node, LwM2mMultipleResource):
            if multiple is False:
                raise bad_request(path, "single resource written as a multiple resource")
            return {
                k: self._coerce_checked(path.child(k), ri.value) for k, ri in node.instances.items()
            }
        raise bad_request(path, f"expected a resource, got {type(node).__name__}")

    def _write_instance(
        self, path: LwM2mPath, node: LwM2mNode, *, replace: bool, bootstrap: bool
    ) -> None:
        if isinstance(node, LwM2mObject) and len(node.instances) == 1:
            node = next(iter(node.instances.values()))
        if not isinstance(node, LwM2mObjectInstance):
            raise bad_request(path, "expected an object instance")
        if node.id is not None and node.id != path.ids[1]:
            raise bad_request(path, f"payload is for instance {node.id}")
        inst = self._instance(path)
        updates: dict[int, ResourceContent] = {}
        dynamic_updates: dict[int, Value] = {}
        for rid, res in node.resources.items():
            rpath = path.child(rid)
            self._known_resource(rpath)
            if not bootstrap:
                self._require(rpath, writable=True)
            content = self._content_of(rpath, res)
            if rid in inst.dynamic and not isinstance(content, dict):
                dynamic_updates[rid] = content
            else:
                updates[rid] = content
        removed: list[int] = []
        if replace:
            for rid in list(inst.values):
                rmodel = self.resource_model(path.ids[0], rid)
                optional_writable = (
                    rmodel is not None and rmodel.operations.writable and not rmodel.mandatory
                )
                if rid not in node.resources and optional_writable:
                    removed.append(rid)
        for rid in removed:
            del inst.values[rid]
        inst.values.update(updates)
        for rid, value in dynamic_updates.items():
            write = inst.dynamic[rid].write
            if write is not None:
                write(value)
        self._changed(path.child(r) for r in sorted({*updates, *dynamic_updates, *removed}))

    def _write_resource(
        self, path: LwM2mPath, node: LwM2mNode, *, replace: bool, bootstrap: bool
    ) -> None:
        inst = self._instance(path.parent)
        self._known_resource(path)
        rid = _rid(path)
        if rid in inst.executables:
            raise not_allowed(path, "resource is executable")
        if not bootstrap:
            self._require(path, writable=True)
        content = self._content_of(path, node)
        if rid in inst.dynamic:
            write = inst.dynamic[rid].write
            if write is None or isinstance(content, dict):
                raise not_allowed(path, "resource is computed by the device")
            write(content)
        elif isinstance(content, dict) and not replace:
            current = inst.values.get(rid)
            merged = dict(current) if isinstance(current, dict) else {}
            merged.update(content)
            inst.values[rid] = merged
        else:
            inst.values[rid] = content
        self._changed([path])

    def _write_resource_instance(
        self, path: LwM2mPath, node: LwM2mNode, *, bootstrap: bool
    ) -> None:
        rpath = path.parent
        inst = self._instance(rpath.parent)
        self._known_resource(rpath)
        if not bootstrap:
            self._require(rpath, writable=True)
        if self.is_multiple(path.ids[0], _rid(path)) is False:
            raise bad_request(path, "resource is single-instance")
        if isinstance(node, LwM2mResourceInstance | LwM2mSingleResource):
            value = self._coerce_checked(path, node.value)
        else:
            raise bad_request(path, "expected a resource instance")
        current = inst.values.get(_rid(path))
        merged = dict(current) if isinstance(current, dict) else {}
        merged[path.ids[3]] = value
        inst.values[_rid(path)] = merged
        self._changed([rpath])


def _as_path(path: LwM2mPath | str) -> LwM2mPath:
    return path if isinstance(path, LwM2mPath) else LwM2mPath.parse(path)


def _rid(path: LwM2mPath) -> int:
    if path.resource_id is None:
        raise ValueError(f"{path} has no resource id")
    return path.resource_id


def _instance_path(path: LwM2mPath) -> LwM2mPath:
    return LwM2mPath.from_ids(*path.ids[:2])


__all__ = [
    "ChangeListener",
    "Dynamic",
    "Executable",
    "ObjectTree",
    "ResourceContent",
    "StructureListener",
    "bad_request",
    "not_allowed",
    "not_found",
]

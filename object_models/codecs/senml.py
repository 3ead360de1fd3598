"""The SenML record model (RFC 8428) as LwM2M uses it (Core 1.1 §7.4.4/§7.4.5), shared by the
SenML JSON and SenML CBOR codecs, plus the flat "path -> leaf" regrouping that LwM2M CBOR reuses.

The two SenML formats differ only in bytes: JSON text vs CBOR, text labels vs integer labels,
base64url text vs byte strings for ``vd``. Each format module therefore supplies a small
``Dialect`` (load/dump and the opaque representation) and everything else — base name and base
time resolution, value fields, typing with the object model, canonical record layout, composite
and timestamped packs — lives here once.

Decisions worth knowing:

* Names: ``bn + n`` must be an LwM2M path. Encoding puts ``bn`` on the first record and again only
  when it changes; a node with children gets ``bn = "/<path>/"`` and relative ``n`` (``"6/0"``), a
  leaf node ``bn = "/<path>"`` and no ``n``. This reproduces the Core spec examples byte for byte.
* Times: the resolved time of a record is ``bt + t`` (RFC 8428 §4.5.3). RFC 8428 says values below
  2**28 are relative to "now"; we keep the number as given (no clock is consulted in a codec) and
  leave the interpretation to the caller, who knows when the payload arrived. A resolved time of 0
  means "roughly now" (RFC 8428 §4.5.3) and is represented as ``None`` (no timestamp). Encoding
  puts ``bt`` on the first record of each timestamp and never uses ``t``.
* Values: ``v`` numbers are typed with the model (Integer, Unsigned, Float, Time); when the resource
  is unknown an integral number on the wire is an Integer (or Unsigned above 2**63-1) and a
  fractional one a Float. ``vs``/``vb``/``vd``/``vlo`` carry String/Corelnk, Boolean, Opaque and
  Objlnk. The field must match the model type, else ``CodecError`` (4.00) naming the path.
* A record without a value field is "path only": it is an error in single-node payloads, ``None``
  in ``decode_nodes`` (a Write-Composite delete, Core 1.1) and the whole body of
  Read-/Observe-Composite requests (``decode_paths``).
* Fields ending in ``_`` (must-understand, RFC 8428 §4.4) and sums (``s``, ``bs``, which LwM2M
  never uses and which would silently be lost) are refused; ``u``, ``bu``, ``ut``, ``bver`` and
  unknown fields are ignored; ``bv`` is added to ``v`` as RFC 8428 requires.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from ..errors import CodecError
from ..model import ModelProvider, ObjectModel, is_multiple
from ..node import (
    IsMultiple,
    LwM2mNode,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    TimestampedNodes,
    build_node,
    flatten,
)
from ..path import LwM2mPath
from ..types import ResourceType, Value, coerce_value
from .common import (
    LARGEST_NUMBER,
    empty_resource,
    encodable_value,
    kind,
    leaf_type,
    model_type,
    number,
    number_type,
)

Leaf = tuple[LwM2mPath, ResourceType, Value]
PathLeaf = tuple[LwM2mPath, Leaf | None]
"""A path with its typed leaf, or ``None`` for a path-only record (delete / composite request)."""

VALUE_FIELDS = ("v", "vs", "vb", "vd", "vlo")
_REFUSED = {"s": "sum values", "bs": "base sum values"}

_FIELD_FOR: dict[ResourceType, str] = {
    ResourceType.STRING: "vs",
    ResourceType.CORELNK: "vs",
    ResourceType.INTEGER: "v",
    ResourceType.UNSIGNED_INTEGER: "v",
    ResourceType.FLOAT: "v",
    ResourceType.TIME: "v",
    ResourceType.BOOLEAN: "vb",
    ResourceType.OPAQUE: "vd",
    ResourceType.OBJLNK: "vlo",
}
_FIELD_FOR_VALUE = {rtype._value_: field for rtype, field in _FIELD_FOR.items()}
"""``_FIELD_FOR`` by the type's value: an enum member's hash is a Python-level call, and the
lookup runs for every value decoded."""
_TYPE_FOR_FIELD = {
    "vs": ResourceType.STRING,
    "vb": ResourceType.BOOLEAN,
    "vd": ResourceType.OPAQUE,
    "vlo": ResourceType.OBJLNK,
}


@attrs.frozen
class Dialect:
    """What distinguishes SenML JSON from SenML CBOR.

    ``load`` returns the pack with text labels (``"bn"``, ``"v"`` …) and raises ``CodecError``;
    ``dump`` takes records with text labels. ``opaque_in`` turns a ``vd`` field into bytes
    (raising ``ValueError``/``TypeError``), ``opaque_out`` does the reverse. ``fast_records``,
    when given, reads the common shape of a pack straight into resolved records and returns
    None for anything else (``resolve`` then takes the general path, which also does every
    refusing): it must never accept what the general path refuses nor read anything otherwise.
    """

    name: str
    load: Callable[[bytes], object]
    dump: Callable[[list[dict[str, object]]], bytes]
    opaque_in: Callable[[object], bytes]
    opaque_out: Callable[[bytes], object]
    fast_records: Callable[[bytes], list[Record] | None] | None = None


@attrs.frozen
class Record:
    """One record with its name and time resolved against the base fields before it."""

    path: LwM2mPath
    time: float | None
    field: str | None
    value: object


# -- reading ------------------------------------------------------------------------------------


class _Where:
    """Where a record is, for error messages: ``record 3 (/3303/0/5700)``. Built into text only
    when an error is raised (an f-string per record cost more than the record's value)."""

    __slots__ = ("index", "path")

    def __init__(self, index: int, path: LwM2mPath | None = None) -> None:
        self.index = index
        self.path = path

    def __str__(self) -> str:
        return f"record {self.index}" if self.path is None else f"record {self.index} ({self.path})"


def _text(value: object, what: str, where: object) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{where}: '{what}' must be a string, got {kind(value)}")
    if not value.isascii():  # ASCII (nearly every name) is valid Unicode: no need to encode
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CodecError(f"{where}: '{what}' is not valid Unicode text") from None
    return value


def _number(value: object, what: str, where: object) -> int | float:
    kind_of = type(value)
    if (kind_of is float and math.isfinite(value)) or (  # type: ignore[arg-type]
        kind_of is int and -LARGEST_NUMBER <= value <= LARGEST_NUMBER  # type: ignore[operator]
    ):
        return value  # type: ignore[return-value]  # the common case, no error prefix built
    return number(value, what, prefix=f"{where}: ")


class _Remembered:
    """A ``ModelProvider`` that asks the real one once per object id: one decode looks the
    same few objects up twice per value (typing, then single vs multiple)."""

    __slots__ = ("_models", "_seen")

    def __init__(self, models: ModelProvider) -> None:
        self._models = models
        self._seen: dict[int, ObjectModel | None] = {}

    def get_object(self, object_id: int) -> ObjectModel | None:
        try:
            return self._seen[object_id]
        except KeyError:
            found = self._seen[object_id] = self._models.get_object(object_id)
            return found


def remembered(models: ModelProvider) -> ModelProvider:
    return models if isinstance(models, _Remembered) else _Remembered(models)


@attrs.define
class _Base:
    """The base fields in force while reading a pack (RFC 8428 §4.1)."""

    name: str = ""
    time: int | float | None = None
    value: int | float | None = None


def _check_labels(record: Mapping[object, object], where: object) -> None:
    for key in record:
        if not isinstance(key, str):
            raise CodecError(f"{where}: labels must be strings, got {key!r}")
        if key.endswith("_"):
            raise CodecError(f"{where}: must-understand field '{key}' is not supported")
        if key in _REFUSED:
            raise CodecError(f"{where}: {_REFUSED[key]} ('{key}') are not supported by LwM2M")


def _update_base(record: Mapping[object, object], base: _Base, where: object) -> None:
    if "bn" in record:
        base.name = _text(record["bn"], "bn", where)
    if "bt" in record:
        base.time = _number(record["bt"], "bt", where)
    if "bv" in record:
        base.value = _number(record["bv"], "bv", where)


@functools.lru_cache(maxsize=4096)
def _parse_path(name: str) -> LwM2mPath:
    """``LwM2mPath.parse``, remembered: a time series repeats the same few names thousands of
    times (paths are immutable, so sharing them is safe; the cache is bounded)."""
    return LwM2mPath.parse(name)


def _resolve_path(record: Mapping[object, object], base: _Base, where: object) -> LwM2mPath:
    name = base.name + _text(record.get("n", ""), "n", where)
    if not name:
        raise CodecError(f"{where}: record has no name (neither 'bn' nor 'n')")
    try:
        return _parse_path(name)
    except ValueError as exc:
        raise CodecError(f"{where}: name {name!r} is not an LwM2M path: {exc}") from None


def _resolve_time(record: Mapping[object, object], base: _Base, where: object) -> float | None:
    if base.time is None and "t" not in record:
        return None
    offset = _number(record["t"], "t", where) if "t" in record else 0
    total = float((base.time or 0) + offset)
    if not math.isfinite(total):
        raise CodecError(f"{where}: time overflows")
    return None if total == 0 else total


def _value_field(
    record: Mapping[object, object], base: _Base, where: object, dialect: Dialect
) -> tuple[str | None, object]:
    present = [f for f in VALUE_FIELDS if f in record]
    if len(present) > 1:
        raise CodecError(f"{where}: conflicting value fields {', '.join(present)}")
    if not present:
        return None, None
    field = present[0]
    raw = record[field]
    if field == "v":
        number = _number(raw, "v", where)
        return field, number if base.value is None else number + base.value
    if field == "vb" and not isinstance(raw, bool):
        raise CodecError(f"{where}: 'vb' must be a boolean, got {kind(raw)}")
    if field in ("vs", "vlo"):
        return field, _text(raw, field, where)
    if field == "vd":
        try:
            return field, dialect.opaque_in(raw)
        except (ValueError, TypeError) as exc:
            raise CodecError(f"{where}: invalid 'vd': {exc}") from None
    return field, raw


def resolve(payload: bytes, dialect: Dialect) -> list[Record]:
    """Parse a pack and resolve every record's name, time and value field (the dialect's
    fused reader first, when it has one and takes the payload)."""
    if dialect.fast_records is not None:
        records = dialect.fast_records(payload)
        if records is not None:
            return records
    return resolve_general(payload, dialect)


def resolve_general(payload: bytes, dialect: Dialect) -> list[Record]:
    """``resolve`` through the dialect's ``load`` and the text labels (the reference the fused
    readers are held equal to, and the path that refuses malformed packs)."""
    pack = dialect.load(payload)
    if not isinstance(pack, list):
        raise CodecError(f"{dialect.name} payload must be an array of records, got {kind(pack)}")
    base = _Base()
    records: list[Record] = []
    for index, record in enumerate(pack):
        where = _Where(index)
        if not isinstance(record, dict):
            raise CodecError(f"{where}: must be a map, got {kind(record)}")
        _check_labels(record, where)
        _update_base(record, base, where)
        path = _resolve_path(record, base, where)
        where.path = path
        time = _resolve_time(record, base, where)
        field, value = _value_field(record, base, where, dialect)
        records.append(Record(path, time, field, value))
    return records


def _guess(field: str, value: object) -> ResourceType:
    if field != "v":
        return _TYPE_FOR_FIELD[field]
    assert isinstance(value, int | float)
    return number_type(value)


def typed_leaf(record: Record, models: ModelProvider) -> Leaf:
    """The record as a ``(path, type, value)`` leaf, typed with the model."""
    path = record.path
    if record.field is None:
        raise CodecError("record has no value", path=path)
    if path.depth < 3:
        raise CodecError("a value needs a resource or resource-instance path", path=path)
    rtype = model_type(models, path) or _guess(record.field, record.value)
    expected = _FIELD_FOR_VALUE.get(rtype._value_)
    if expected is None:
        raise CodecError(f"a resource of type {rtype.value} carries no value", path=path)
    if record.field != expected:
        raise CodecError(
            f"a {rtype.value} resource takes '{expected}', got '{record.field}'", path=path
        )
    try:
        return path, rtype, coerce_value(rtype, record.value)
    except (ValueError, TypeError) as exc:
        raise CodecError(f"invalid {rtype.value} value: {exc}", path=path) from None


def path_leaves(records: Iterable[Record], models: ModelProvider) -> list[PathLeaf]:
    return [(r.path, None if r.field is None else typed_leaf(r, models)) for r in records]


# -- regrouping (shared with LwM2M CBOR) ----------------------------------------------------------


def single_node(path: LwM2mPath, items: Sequence[PathLeaf], models: ModelProvider) -> LwM2mNode:
    """The node at ``path`` from a single-node payload, where every record needs a value."""
    leaves: list[Leaf] = []
    for item_path, leaf in items:
        if leaf is None:
            raise CodecError("record has no value", path=item_path)
        leaves.append(leaf)
    if len(leaves) == 1 and leaves[0][0] == path and path.depth >= 3:
        # one value at the observed resource (nearly every notification): no regrouping
        return _leaf_node(path, leaves[0], is_multiple(models))
    if not leaves and path.is_resource:
        empty = empty_resource(path, models)
        if empty is not None:
            return empty
    return build_node(path, leaves, is_multiple(models))


def _leaf_nodes(
    items: Sequence[PathLeaf], models: ModelProvider
) -> dict[LwM2mPath, LwM2mNode | None]:
    check = is_multiple(models)
    result: dict[LwM2mPath, LwM2mNode | None] = {}
    for path, leaf in items:
        if path in result:
            raise CodecError("the same path is given twice", path=path)
        result[path] = None if leaf is None else _leaf_node(path, leaf, check)
    return result


def _leaf_node(path: LwM2mPath, leaf: Leaf, check: IsMultiple) -> LwM2mNode:
    """``build_node(path, [leaf], check)`` for a leaf at ``path`` itself, without its generic
    regrouping (it ran once per value of a Send: a third of a large pack's decoding time)."""
    _, rtype, value = leaf
    if path.resource_instance_id is not None:
        return LwM2mResourceInstance(path.resource_instance_id, value, rtype)
    if path.resource_id is not None and path.object_id is not None:
        if check(path.object_id, path.resource_id) is True:
            raise CodecError("multiple-instance resource given without an instance id", path=path)
        return LwM2mSingleResource(path.resource_id, value, rtype)
    return build_node(path, [leaf], check)  # not a leaf path: build_node says what is wrong


def regroup(
    items: Sequence[PathLeaf], models: ModelProvider, paths: Sequence[LwM2mPath] | None
) -> dict[LwM2mPath, LwM2mNode | None]:
    """Nodes of a multi-path payload: one per leaf, or one per requested path.

    With ``paths``, every value must lie under a requested path (it goes to each one it lies
    under), a path-only record must name a requested path exactly, and a requested path with
    nothing in the payload is left out (the peer had nothing there).
    """
    if paths is None:
        return _leaf_nodes(items, models)
    groups: dict[LwM2mPath, list[Leaf]] = {p: [] for p in paths}
    result: dict[LwM2mPath, LwM2mNode | None] = {}
    for path, leaf in items:
        if leaf is None:
            if path not in groups:
                raise CodecError("path-only record for a path that was not requested", path=path)
            result[path] = None
            continue
        owners = [p for p in groups if path.starts_with(p)]
        if not owners:
            raise CodecError("value outside the requested paths", path=path)
        for owner in owners:
            groups[owner].append(leaf)
    check = is_multiple(models)
    for path, leaves in groups.items():
        if leaves:
            if path in result:
                raise CodecError("path given both with and without a value", path=path)
            result[path] = build_node(path, leaves, check)
    return {p: result[p] for p in paths if p in result}


# -- writing ------------------------------------------------------------------------------------


def _wire_value(
    rtype: ResourceType, value: Value, path: LwM2mPath, dialect: Dialect
) -> tuple[str, object]:
    checked = encodable_value(rtype, value, path)
    field = _FIELD_FOR[rtype]
    if isinstance(checked, float) and not math.isfinite(checked):
        raise CodecError(f"SenML cannot carry the non-finite number {checked}", path=path)
    if isinstance(checked, bytes):
        return field, dialect.opaque_out(checked)
    if field == "vlo":
        return field, str(checked)
    return field, checked


def _time_label(time: float) -> int | float:
    if not math.isfinite(time):
        raise CodecError(f"cannot encode the time {time}")
    return int(time) if time.is_integer() and abs(time) < 2**63 else time


class _Keep(enum.Enum):
    """Marks records that keep the base time in force (all but the first of a timestamp)."""

    KEEP = enum.auto()


Stamp = float | None | _Keep
"""The time for a record being written: a timestamp, ``None`` for "no time", or keep."""
KEEP = _Keep.KEEP


class _Pack:
    """Writes records, putting ``bn``/``bt`` only where they change (see the module docstring)."""

    def __init__(self, dialect: Dialect, models: ModelProvider) -> None:
        self.dialect = dialect
        self.models = models
        self.records: list[dict[str, object]] = []
        self._name = ""
        self._time: float = 0.0

    def record(self, base: str, name: str | None, fields: dict[str, object], time: Stamp) -> None:
        out: dict[str, object] = {}
        if base != self._name:
            out["bn"] = self._name = base
        if time is not KEEP:
            wanted = 0.0 if time is None else float(time)
            if wanted != self._time:
                out["bt"] = _time_label(wanted)
                self._time = wanted
        if name is not None:
            out["n"] = name
        out.update(fields)
        self.records.append(out)

    def node(self, path: LwM2mPath, node: LwM2mNode | None, time: Stamp) -> None:
        """Records for ``node`` at ``path``; ``time`` (unless ``KEEP``) goes on the first one."""
        if node is None:
            self.record(str(path), None, {}, time)
            return
        is_leaf = isinstance(node, LwM2mSingleResource | LwM2mResourceInstance)
        base = str(path) if is_leaf else str(path).rstrip("/") + "/"
        leaves = sorted(flatten(path, node), key=lambda leaf: leaf[0].ids)  # ids: cheap compares
        for leaf_path, node_type, value in leaves:
            rtype = leaf_type(self.models, leaf_path, node_type)
            field, wire = _wire_value(rtype, value, leaf_path, self.dialect)
            relative = "/".join(str(i) for i in leaf_path.ids[path.depth :])
            self.record(base, None if is_leaf else relative, {field: wire}, time)
            time = KEEP

    def dump(self) -> bytes:
        return self.dialect.dump(self.records)


# -- the module API, parameterised by dialect ---------------------------------------------------


@attrs.frozen
class Codec:
    """The facade's per-module functions for one SenML dialect (bound methods become the
    ``senml_json`` / ``senml_cbor`` module functions)."""

    dialect: Dialect

    def encode(self, node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
        pack = _Pack(self.dialect, models)
        pack.node(path, node, KEEP)
        return pack.dump()

    def decode(self, payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
        models = remembered(models)
        return single_node(path, path_leaves(resolve(payload, self.dialect), models), models)

    def encode_nodes(
        self, nodes: Mapping[LwM2mPath, LwM2mNode | None], models: ModelProvider
    ) -> bytes:
        pack = _Pack(self.dialect, models)
        for path, node in nodes.items():
            pack.node(path, node, KEEP)
        return pack.dump()

    def decode_nodes(
        self, payload: bytes, models: ModelProvider, paths: Sequence[LwM2mPath] | None = None
    ) -> dict[LwM2mPath, LwM2mNode | None]:
        models = remembered(models)
        return regroup(path_leaves(resolve(payload, self.dialect), models), models, paths)

    def encode_paths(self, paths: Sequence[LwM2mPath]) -> bytes:
        return self.dialect.dump([{"n": str(p)} for p in paths])

    def decode_paths(self, payload: bytes) -> list[LwM2mPath]:
        result: list[LwM2mPath] = []
        for record in resolve(payload, self.dialect):
            if record.field is not None:
                raise CodecError("a path list carries no values", path=record.path)
            if record.time is not None:
                raise CodecError("a path list carries no times", path=record.path)
            result.append(record.path)
        return result

    def encode_timestamped(self, data: TimestampedNodes, models: ModelProvider) -> bytes:
        pack = _Pack(self.dialect, models)
        for time, nodes in data.entries:
            stamp: Stamp = time
            for path, node in nodes.items():
                pack.node(path, node, stamp)
                stamp = KEEP
        return pack.dump()

    def decode_timestamped(
        self, payload: bytes, models: ModelProvider, path: LwM2mPath | None = None
    ) -> TimestampedNodes:
        """Records grouped by resolved time (in order of first appearance), each as nodes."""
        records = resolve(payload, self.dialect)
        if path is not None and len(records) == 1 and records[0].path == path:
            # one value at the observed resource (nearly every notification): what the
            # general grouping below gives, without its containers
            record = records[0]
            leaf = typed_leaf(record, models)  # refuses a path above a resource
            node = _leaf_node(path, leaf, is_multiple(models))  # = single_node's one-leaf case
            return TimestampedNodes(((record.time, {path: node}),))
        models = remembered(models)
        groups: dict[float | None, list[PathLeaf]] = {}
        for record in records:
            groups.setdefault(record.time, []).append((record.path, typed_leaf(record, models)))
        entries: list[tuple[float | None, Mapping[LwM2mPath, LwM2mNode]]] = []
        for time, items in groups.items():
            if path is None:
                nodes = {p: n for p, n in _leaf_nodes(items, models).items() if n is not None}
            else:
                nodes = {path: single_node(path, items, models)}
            entries.append((time, nodes))
        return TimestampedNodes(tuple(entries))

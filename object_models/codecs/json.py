"""OMA LwM2M JSON (content format 11543, and 1543 used by LwM2M 1.0 clients).

LwM2M 1.0.2 §6.4.4 (kept in Core 1.1 §7.4.4 as a legacy format): a SenML-draft-like object::

    {"bn":"/3/0/","bt":25462634,"e":[{"n":"0","sv":"Open Mobile Alliance"},
                                     {"n":"6/0","v":1},{"n":"13","v":1367491215,"t":-5}]}

Each entry's full path is ``bn + n`` (plain concatenation, as SenML does); its time is
``bt + t`` (an entry without ``t`` has time ``bt``; with neither the time is unknown). Values by
type (Table 20): ``v`` for Integer, Unsigned Integer, Float and Time; ``bv`` for Boolean; ``ov``
(``"o:i"``) for Objlnk; ``sv`` for String, Corelnk and Opaque (Base64). The model types each
value; a resource the model does not know takes its type from the field (``v``: Integer for a
JSON integer, Unsigned Integer above 2**63-1, Float otherwise; ``sv``: String; ``bv``: Boolean;
``ov``: Objlnk). An entry list without any value at a resource path is an empty multiple
resource unless the model says the resource is single (``common.empty_resource``).

We encode ``bn`` as the request path (with a trailing ``/`` when entries carry a relative
``n``), entries in the node's order, and for timestamped data ``bt`` = the latest time with
non-positive ``t`` offsets, as in the spec's notification example — unless some time is
unknown or not an integral number of seconds, in which case every entry gets an absolute ``t``
so that decoding gives back exactly the same times.
"""

from __future__ import annotations

import json as _json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import CodecError, InvalidPathError, ResponseCode
from ..model import ModelProvider, is_multiple
from ..node import LwM2mMultipleResource, LwM2mNode, TimestampedNodes, build_node, flatten
from ..path import LwM2mPath
from ..types import INT64_MAX, INT64_MIN, UINT64_MAX, ResourceType, Value
from .common import (
    b64decode,
    b64encode,
    check_node_id,
    check_value,
    empty_resource,
    load_json,
    model_type,
    node_matches_path,
    number,
)
from .text import parse_value

Leaf = tuple[LwM2mPath, ResourceType, Value]
_EXACT_SECONDS = 2**53
"""Times below this many seconds are exact in a float, so ``bt + t`` loses nothing."""


# == encoding =====================================================================================
def _value_field(rtype: ResourceType, value: Value, path: LwM2mPath) -> tuple[str, object]:
    check_value(rtype, value, path)
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return "sv", value
    if rtype is ResourceType.BOOLEAN:
        return "bv", value
    if rtype is ResourceType.OBJLNK:
        return "ov", str(value)
    if rtype is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return "sv", b64encode(value)
    if rtype is ResourceType.NONE:
        return "sv", ""
    return "v", value


def _base_name(path: LwM2mPath, node: LwM2mNode) -> str:
    """``/3/0/`` for containers (entries name what is inside), ``/3/0/9`` for one value."""
    if path.depth < 3 or isinstance(node, LwM2mMultipleResource):
        return "/" if path.is_root else f"{path}/"
    return str(path)


def _entries(
    base: str, leaves: Iterable[Leaf], time: float | None = None
) -> Iterator[dict[str, object]]:
    for leaf_path, rtype, value in leaves:
        name = str(leaf_path)
        if not name.startswith(base) and base != name:
            raise CodecError("value is outside the base name", path=leaf_path)
        entry: dict[str, object] = {}
        relative = name[len(base) :]
        if relative:
            entry["n"] = relative
        key, json_value = _value_field(rtype, value, leaf_path)
        entry[key] = json_value
        if time is not None:
            entry["t"] = _number(time)
        yield entry


def _number(value: float) -> int | float:
    return int(value) if value == int(value) and abs(value) < _EXACT_SECONDS else value


def _dumps(document: Mapping[str, object]) -> bytes:
    return _json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode(node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
    """One JSON document for ``node`` at ``path`` (object, instance, resource, instance)."""
    del models  # nodes carry their types
    _check_level(node, path)
    base = _base_name(path, node)
    entries = list(_entries(base, flatten(path, node)))
    return _dumps({"bn": base, "e": entries})


def _check_level(node: LwM2mNode, path: LwM2mPath) -> None:
    if path.is_root or not node_matches_path(node, path):
        raise CodecError(
            f"cannot encode a {type(node).__name__} at this path in OMA JSON",
            path=path,
            code=ResponseCode.NOT_ACCEPTABLE,
        )
    check_node_id(getattr(node, "id", None), path)


def encode_timestamped(data: TimestampedNodes, models: ModelProvider) -> bytes:
    """Values at several times (notifications); see the module docstring for ``bt``/``t``."""
    del models
    groups = [(ts, dict(nodes)) for ts, nodes in data.entries]
    paths = [p for _, nodes in groups for p in nodes]
    if not paths:
        return _dumps({"e": []})
    for _, nodes in groups:
        for node_path, node in nodes.items():
            _check_level(node, node_path)
    prefix = _common_prefix(paths)
    sample = groups[0][1][paths[0]] if len(set(paths)) == 1 else None
    base = _base_name(prefix, sample) if sample is not None else f"{prefix}/".replace("//", "/")
    times = [ts for ts, _ in groups]
    use_bt = all(t is not None and t == int(t) and abs(t) < _EXACT_SECONDS for t in times)
    bt = max(t for t in times if t is not None) if use_bt and times else None
    entries: list[dict[str, object]] = []
    for ts, nodes in groups:
        rel = None if ts is None else (ts - bt if bt is not None else ts)
        for node_path, node in nodes.items():
            entries.extend(_entries(base, flatten(node_path, node), rel))
    document: dict[str, object] = {"bn": base}
    if bt is not None:
        document["bt"] = _number(bt)
    document["e"] = entries
    return _dumps(document)


def _common_prefix(paths: list[LwM2mPath]) -> LwM2mPath:
    ids = paths[0].ids
    for other in paths[1:]:
        n = 0
        while n < min(len(ids), other.depth) and ids[n] == other.ids[n]:
            n += 1
        ids = ids[:n]
    return LwM2mPath.from_ids(*ids)


# == decoding =====================================================================================
def _load(payload: bytes, path: LwM2mPath | None) -> dict[str, Any]:
    document = load_json(payload, path)
    if not isinstance(document, dict) or not isinstance(document.get("e"), list):
        raise CodecError("OMA JSON must be an object with an 'e' array", path=path)
    return document


class _Reader:
    """Reads entries into ``(time, leaf)`` pairs, typing values with the model."""

    def __init__(self, document: dict[str, Any], models: ModelProvider, where: LwM2mPath | None):
        self.models = models
        self.where = where
        self.base = _string(document.get("bn", ""), "bn", where)
        self.base_time = _optional_number(document.get("bt"), "bt", where)

    def entries(self, raw_entries: list[Any]) -> Iterator[tuple[float | None, Leaf]]:
        for index, raw in enumerate(raw_entries):
            if not isinstance(raw, dict):
                raise CodecError(f"entry {index} is not an object", path=self.where)
            yield self.entry(raw, index)

    def entry(self, raw: dict[str, Any], index: int) -> tuple[float | None, Leaf]:
        name = self.base + _string(raw.get("n", ""), "n", self.where)
        try:
            leaf_path = LwM2mPath.parse(name)
        except InvalidPathError as exc:
            raise CodecError(f"entry {index}: {exc}", path=self.where) from None
        if leaf_path.depth < 3:
            raise CodecError(f"entry {index} does not name a resource", path=leaf_path)
        rtype, value = self.value(raw, leaf_path)
        offset = _optional_number(raw.get("t"), "t", leaf_path)
        if offset is None:
            time = self.base_time
        else:
            time = offset if self.base_time is None else self.base_time + offset
        return time, (leaf_path, rtype, value)

    def value(self, raw: dict[str, Any], path: LwM2mPath) -> tuple[ResourceType, Value]:
        fields = [key for key in ("v", "sv", "bv", "ov") if key in raw]
        if len(fields) > 1:
            raise CodecError(f"entry has several values {fields}", path=path)
        field = fields[0] if fields else None
        rtype = model_type(self.models, path) or _guess_type(field, raw.get(field or ""))
        return rtype, _json_value(rtype, field, raw.get(field or ""), path)


def _guess_type(field: str | None, value: object) -> ResourceType:
    if field == "v":
        if isinstance(value, bool) or not isinstance(value, int):
            return ResourceType.FLOAT
        # an integer only an Unsigned Integer can hold (a 64-bit counter, say) is one: typing it
        # Integer made the whole read fail on a value the client had every right to send
        return ResourceType.UNSIGNED_INTEGER if value > INT64_MAX else ResourceType.INTEGER
    if field == "bv":
        return ResourceType.BOOLEAN
    if field == "ov":
        return ResourceType.OBJLNK
    if field == "sv":
        return ResourceType.STRING
    return ResourceType.NONE


_FIELD_OF = {
    ResourceType.STRING: "sv",
    ResourceType.CORELNK: "sv",
    ResourceType.OPAQUE: "sv",
    ResourceType.INTEGER: "v",
    ResourceType.UNSIGNED_INTEGER: "v",
    ResourceType.FLOAT: "v",
    ResourceType.TIME: "v",
    ResourceType.BOOLEAN: "bv",
    ResourceType.OBJLNK: "ov",
}


def _json_value(rtype: ResourceType, field: str | None, raw: object, path: LwM2mPath) -> Value:
    if rtype is ResourceType.NONE:
        if field not in (None, "sv") or raw not in (None, ""):
            raise CodecError("a resource of type none carries no value", path=path)
        return None
    expected = _FIELD_OF[rtype]
    if field != expected:
        raise CodecError(f"a {rtype.value} value must be given as '{expected}'", path=path)
    if expected == "sv":
        text = _string(raw, "sv", path)
        return b64decode(text, path) if rtype is ResourceType.OPAQUE else text
    if expected == "bv":
        if not isinstance(raw, bool):
            raise CodecError("'bv' must be true or false", path=path)
        return raw
    if expected == "ov":
        return parse_value(ResourceType.OBJLNK, _string(raw, "ov", path), path)
    return _number_value(rtype, raw, path)


def _number_value(rtype: ResourceType, raw: object, path: LwM2mPath) -> Value:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise CodecError(f"'v' must be a number, got {type(raw).__name__}", path=path)
    if rtype is ResourceType.FLOAT:
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond the largest double
            value = math.inf
        if not math.isfinite(value):
            raise CodecError("float is out of range", path=path)
        return value
    if isinstance(raw, float):
        if not math.isfinite(raw) or raw != int(raw):
            raise CodecError(f"{rtype.value} must be integral, got {raw!r}", path=path)
        raw = int(raw)
    lo, hi = (0, UINT64_MAX) if rtype is ResourceType.UNSIGNED_INTEGER else (INT64_MIN, INT64_MAX)
    if not lo <= raw <= hi:
        raise CodecError(f"{rtype.value} {raw} is outside {lo}..{hi}", path=path)
    return raw


def _string(value: object, key: str, path: LwM2mPath | None) -> str:
    if not isinstance(value, str):
        raise CodecError(f"'{key}' must be a string", path=path)
    return value


def _optional_number(value: object, key: str, path: LwM2mPath | None) -> float | None:
    return None if value is None else float(number(value, key, path=path))


def decode(payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """Decode the node at ``path``; entry times are ignored (``decode_timestamped`` keeps them)."""
    if path.is_root:
        raise CodecError(
            "decode OMA JSON at the root path with decode_timestamped",
            path=path,
            code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
        )
    document = _load(payload, path)
    reader = _Reader(document, models, path)
    leaves = [leaf for _, leaf in reader.entries(document["e"])]
    if not leaves and path.is_resource:
        empty = empty_resource(path, models)
        if empty is not None:
            return empty
    return build_node(path, leaves, is_multiple(models))


def decode_timestamped(
    payload: bytes, models: ModelProvider, path: LwM2mPath | None = None
) -> TimestampedNodes:
    """Group entries by time (in order of first appearance) and build, per time, the node at
    ``path`` — or, without a path, one node per resource (``/o/i/r``)."""
    document = _load(payload, path)
    reader = _Reader(document, models, path)
    by_time: dict[float | None, list[Leaf]] = {}
    for time, leaf in reader.entries(document["e"]):
        by_time.setdefault(time, []).append(leaf)
    check = is_multiple(models)
    entries: list[tuple[float | None, Mapping[LwM2mPath, LwM2mNode]]] = []
    for time, leaves in by_time.items():
        if path is not None and not path.is_root:
            entries.append((time, {path: build_node(path, leaves, check)}))
            continue
        per_resource: dict[LwM2mPath, list[Leaf]] = {}
        for leaf in leaves:
            per_resource.setdefault(LwM2mPath.from_ids(*leaf[0].ids[:3]), []).append(leaf)
        entries.append((time, {p: build_node(p, ls, check) for p, ls in per_resource.items()}))
    return TimestampedNodes(tuple(entries))

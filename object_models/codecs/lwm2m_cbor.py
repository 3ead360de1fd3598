"""LwM2M CBOR (Content-Format 11544, LwM2M Core 1.2 §7.4.4).

The payload is one CBOR map whose keys are path ids and whose values are either nested maps (the
next level down) or resource values: ``{3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}}}}``.
A key may also be an array of ids standing for several levels at once ("path compaction"):
``{[3, 0]: {0: "Open Mobile Alliance"}}`` or ``{[3, 0, 0]: "Open Mobile Alliance"}``. Keys always
spell the full path from the root, whatever the request path was.

Decoding accepts any mix of plain and compacted keys, definite and indefinite lengths; values are
typed with the model like the plain CBOR format (``cbor_value``), and ``null`` is a path without a
value (``None`` in ``decode_nodes``, an error in a single-node payload).

Encoding is canonical in one way: ids in ascending order within a node, and every chain of maps
with a single entry folded into one array key (maximal compaction), so a single resource is
``{[3, 0, 9]: 100}`` and an instance ``{[3, 0]: {...}}``. That matches what the Anjay client sends
for single-path reads. Time is tag 1 like in ``cbor_value``.

Send and notifications (``decode_timestamped``): a LwM2M 1.2 client may Send (``POST /dp``) or
notify in this format. The format has no time field — a tree of ids and values where each path
appears once; OMA's own discussion of Send (OMA_LwM2M_for_Developers issue #538) reads Core 1.2
§7.4.4 the same way, and neither Anjay's reader nor its writer knows a time. So the payload
decodes as one entry whose time is ``None`` ("no time": the caller stamps the values with the
time it received them), holding one node per value (``path=None``: Send, Observe-Composite) or
the node at the observed ``path``. A ``null`` (path without a value) has no meaning there and is
a 4.00. There is no ``encode_timestamped``: an encoder would have to drop the times it is given,
so the facade answers 4.06 and callers pick SenML, which carries them.

Not supported, so the facade answers 4.06 (encode) / 4.15 (decode) instead of guessing:

- Timestamped encoding, see above.
- Path lists (``encode_paths`` / ``decode_paths``, the Read-/Observe-Composite request body as a
  tree whose leaves are ``null``): Core 1.1 §6.3.8 describes the request body only as "the JSON/
  CBOR reply format without values", and we could not check the Core 1.2 text for whether LwM2M
  CBOR is allowed there. ``decode_nodes`` already reads ``null`` leaves as value-less paths, so
  adding the pair is small once the spec is confirmed; until then Read-Composite requests use
  SenML JSON/CBOR, which the spec does define for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from ..errors import CodecError, InvalidPathError
from ..model import ModelProvider
from ..node import LwM2mNode, TimestampedNodes, flatten
from ..path import LwM2mPath
from . import senml
from .cbor_value import dump_cbor, read_cbor, value_from_cbor, value_to_cbor
from .common import leaf_type, model_type

__all__ = ["decode", "decode_nodes", "decode_timestamped", "encode", "encode_nodes"]

_MISSING = object()


# -- reading ------------------------------------------------------------------------------------


def _key_ids(key: object, prefix: tuple[int, ...]) -> tuple[int, ...]:
    ids = key if isinstance(key, tuple) else (key,)
    if not ids:
        raise CodecError("empty array as a path key", path=_where(prefix))
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError(f"path key {key!r} is not made of ids", path=_where(prefix))
    return prefix + ids


def _where(ids: tuple[int, ...]) -> str:
    return "/" + "/".join(str(i) for i in ids)


def _path(ids: tuple[int, ...]) -> LwM2mPath:
    try:
        return LwM2mPath.from_ids(*ids)
    except InvalidPathError as exc:
        raise CodecError(f"invalid path: {exc.message}", path=_where(ids)) from None


def _walk(
    tree: Mapping[object, object], prefix: tuple[int, ...]
) -> Iterator[tuple[LwM2mPath, object]]:
    """Every (path, CBOR item) leaf below ``tree``; ``None`` items are path-only."""
    for key, value in tree.items():
        ids = _key_ids(key, prefix)
        if len(ids) > 4:
            raise CodecError("path deeper than a resource instance", path=_where(ids))
        if isinstance(value, dict):
            yield from _walk(value, ids)
        elif value is not None and len(ids) < 3:
            raise CodecError("a value needs a resource or resource-instance path", path=_where(ids))
        else:
            yield _path(ids), value


def _items(payload: bytes, models: ModelProvider) -> list[senml.PathLeaf]:
    tree = read_cbor(payload) if payload else {}
    if not isinstance(tree, dict):
        raise CodecError("LwM2M CBOR payload must be a map")
    result: list[senml.PathLeaf] = []
    for path, item in _walk(tree, ()):
        if item is None:
            result.append((path, None))
        else:
            rtype, value = value_from_cbor(item, model_type(models, path), path)
            result.append((path, (path, rtype, value)))
    return result


# -- writing ------------------------------------------------------------------------------------


def _leaves(
    path: LwM2mPath, node: LwM2mNode | None, models: ModelProvider
) -> Iterator[tuple[LwM2mPath, object]]:
    if node is None:
        yield path, None
        return
    for leaf_path, rtype, value in flatten(path, node):
        yield leaf_path, value_to_cbor(leaf_type(models, leaf_path, rtype), value, leaf_path)


def _tree(leaves: Iterator[tuple[LwM2mPath, object]]) -> dict[int, object]:
    root: dict[int, object] = {}
    for path, item in leaves:
        level = root
        for node_id in path.ids[:-1]:
            child = level.setdefault(node_id, {})
            if not isinstance(child, dict):
                raise CodecError("a value is given for a path that also has children", path=path)
            level = child
        if level.get(path.ids[-1], _MISSING) is not _MISSING:
            raise CodecError("the same path is given twice", path=path)
        level[path.ids[-1]] = item
    return root


def _compact(tree: dict[int, object]) -> dict[object, object]:
    """Sort ids and fold every chain of one-entry maps into an array key."""
    result: dict[object, object] = {}
    for key in sorted(tree):
        ids, value = [key], tree[key]
        while isinstance(value, dict) and len(value) == 1:
            ((next_id, value),) = value.items()
            ids.append(next_id)
        folded = ids[0] if len(ids) == 1 else tuple(ids)
        result[folded] = _compact(value) if isinstance(value, dict) else value
    return result


def _dump(entries: Iterator[tuple[LwM2mPath, object]]) -> bytes:
    return dump_cbor(_compact(_tree(entries)))


# -- the module API ------------------------------------------------------------------------------


def encode(node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
    return _dump(_leaves(path, node, models))


def decode(payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    return senml.single_node(path, _items(payload, models), models)


def encode_nodes(nodes: Mapping[LwM2mPath, LwM2mNode | None], models: ModelProvider) -> bytes:
    return _dump(leaf for path, node in nodes.items() for leaf in _leaves(path, node, models))


def decode_nodes(
    payload: bytes, models: ModelProvider, paths: Sequence[LwM2mPath] | None = None
) -> dict[LwM2mPath, LwM2mNode | None]:
    return senml.regroup(_items(payload, models), models, paths)


def decode_timestamped(
    payload: bytes, models: ModelProvider, path: LwM2mPath | None = None
) -> TimestampedNodes:
    """A Send or a notification: one entry without a time (see the module docstring), holding
    one node per value, or the node at ``path``; no entry at all when the payload is empty."""
    items = _items(payload, models)
    leaves: list[senml.PathLeaf] = []
    for item_path, leaf in items:
        if leaf is None:
            raise CodecError("record has no value", path=item_path)
        leaves.append((item_path, leaf))
    if not leaves:
        return TimestampedNodes(())
    if path is None:
        grouped = senml.regroup(leaves, models, None)
        nodes = {p: node for p, node in grouped.items() if node is not None}
    else:
        nodes = {path: senml.single_node(path, leaves, models)}
    return TimestampedNodes(((None, nodes),))

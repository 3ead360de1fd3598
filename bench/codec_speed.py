"""Codec throughput: values encoded/decoded per second, per content format, via the facade.

Cases: ``device`` (a Device object instance /3/0 with the multiple-instance resources 6, 7, 8,
11 as a real client reports it), ``hundred`` (one instance with 100 resources of every type) and
``single`` (one Integer resource, for the formats that only carry single values). Each figure is
compared with the stdlib ``json.dumps``/``json.loads`` of the same values as a plain dict, measured
in the same run, so that numbers from different machines can be compared by their ratio.

Usage: ``python bench/codec_speed.py [--quick]`` — prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from object_models.content_format import ContentFormat
from object_models.model import ObjectModel, Operations, ResourceModel, StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mSingleResource,
    flatten,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink, ResourceType, Value

T = ResourceType
FORMATS = [
    ContentFormat.TEXT,
    ContentFormat.OPAQUE,
    ContentFormat.CBOR,
    ContentFormat.TLV,
    ContentFormat.JSON,
    ContentFormat.SENML_JSON,
    ContentFormat.SENML_CBOR,
    ContentFormat.LWM2M_CBOR,
]


def _res(rid: int, rtype: ResourceType, multiple: bool = False) -> ResourceModel:
    return ResourceModel(rid, f"r{rid}", Operations.R, multiple, False, rtype)


DEVICE_MODEL = ObjectModel(
    3,
    "Device",
    {
        r.id: r
        for r in [
            _res(0, T.STRING),
            _res(1, T.STRING),
            _res(2, T.STRING),
            _res(3, T.STRING),
            _res(6, T.INTEGER, True),
            _res(7, T.INTEGER, True),
            _res(8, T.INTEGER, True),
            _res(9, T.INTEGER),
            _res(10, T.INTEGER),
            _res(11, T.INTEGER, True),
            _res(13, T.TIME),
            _res(14, T.STRING),
            _res(15, T.STRING),
            _res(16, T.STRING),
            _res(17, T.STRING),
            _res(18, T.STRING),
            _res(19, T.STRING),
            _res(20, T.INTEGER),
            _res(21, T.INTEGER),
        ]
    },
)
_CYCLE: list[tuple[ResourceType, Value]] = [
    (T.STRING, "temperature sensor"),
    (T.INTEGER, 123456),
    (T.FLOAT, 21.5),
    (T.BOOLEAN, True),
    (T.TIME, 1700000000),
    (T.OPAQUE, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
    (T.OBJLNK, ObjectLink(3303, 1)),
    (T.UNSIGNED_INTEGER, 4000000000),
]
HUNDRED_MODEL = ObjectModel(
    10_000, "Hundred", {rid: _res(rid, _CYCLE[rid % len(_CYCLE)][0]) for rid in range(100)}
)
MODELS = StaticModels.of(DEVICE_MODEL, HUNDRED_MODEL)


def device() -> LwM2mObjectInstance:
    def single(rid: int, value: Value) -> LwM2mSingleResource:
        return LwM2mSingleResource(rid, value, DEVICE_MODEL.resources[rid].type)

    def multi(rid: int, *values: int) -> LwM2mMultipleResource:
        return LwM2mMultipleResource.from_values(rid, dict(enumerate(values)), T.INTEGER)

    resources: list[LwM2mResource] = [
        single(0, "Open Mobile Alliance"),
        single(1, "Lightweight M2M Client"),
        single(2, "345000123"),
        single(3, "1.0"),
        multi(6, 1, 5),
        multi(7, 3800, 5000),
        multi(8, 125, 900),
        single(9, 100),
        single(10, 15),
        multi(11, 0),
        single(13, 1367491215),
        single(14, "+02:00"),
        single(15, "Europe/Berlin"),
        single(16, "U"),
        single(17, "Type A"),
        single(18, "HW 1.2"),
        single(19, "SW 2.0.1"),
        single(20, 1),
        single(21, 65536),
    ]
    return LwM2mObjectInstance.of(0, *resources)


def hundred() -> LwM2mObjectInstance:
    return LwM2mObjectInstance.of(
        0,
        *[
            LwM2mSingleResource(rid, _CYCLE[rid % len(_CYCLE)][1], _CYCLE[rid % len(_CYCLE)][0])
            for rid in range(100)
        ],
    )


CASES: dict[str, tuple[LwM2mPath, LwM2mNode]] = {
    "device": (LwM2mPath(3, 0), device()),
    "hundred": (LwM2mPath(10_000, 0), hundred()),
    "single": (LwM2mPath(3, 0, 9), LwM2mSingleResource(9, 100, T.INTEGER)),
    "single_opaque": (LwM2mPath(10_000, 0, 5), LwM2mSingleResource(5, b"\x01" * 8, T.OPAQUE)),
}


def plain_dict(path: LwM2mPath, node: LwM2mNode) -> dict[str, object]:
    """The baseline's data: the same values keyed by path, opaque as base64, links as text."""
    result: dict[str, object] = {}
    for leaf, _, value in flatten(path, node):
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        elif isinstance(value, ObjectLink):
            value = str(value)
        result[str(leaf)] = value
    return result


def rate(operation: Callable[[], object], values: int, seconds: float) -> float:
    """Best of three runs of ``operation`` repeated for ``seconds`` each, in values/s."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            operation()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count * values / (now - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.05 s per measurement")
    args = parser.parse_args()
    seconds = 0.05 if args.quick else 0.4
    try:
        import object_models.codecs as codecs
    except ImportError as exc:
        print(f"codec facade does not import yet: {exc}", file=sys.stderr)
        return 1
    for case, (path, node) in CASES.items():
        values = sum(1 for _ in flatten(path, node))
        data = plain_dict(path, node)
        text = json.dumps(data)
        baseline = {
            "encode": rate(functools.partial(json.dumps, data), values, seconds),
            "decode": rate(functools.partial(json.loads, text), values, seconds),
        }
        for fmt in FORMATS:
            try:
                payload = codecs.encode(node, path, fmt, MODELS)
                codecs.decode(payload, path, fmt, MODELS)
            except codecs.CodecError:
                continue  # this format cannot carry this case (e.g. text for an instance)
            ops: dict[str, Callable[[], object]] = {
                "encode": lambda: codecs.encode(node, path, fmt, MODELS),  # noqa: B023
                "decode": lambda: codecs.decode(payload, path, fmt, MODELS),  # noqa: B023
            }
            for op, operation in ops.items():
                measured = rate(operation, values, seconds)
                print(
                    json.dumps(
                        {
                            "bench": "codecs",
                            "format": fmt.name.lower(),
                            "case": case,
                            "op": op,
                            "values": values,
                            "bytes": len(payload),
                            "values_per_s": round(measured),
                            "ratio_to_baseline": round(measured / baseline[op], 3),
                        }
                    ),
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

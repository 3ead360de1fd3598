"""The shared codec harness: every decode entry point of one content format.

Input layout (``fuzz.seeds`` writes seeds in it):

- byte 0, flags: bit 0 set = decode without models (an empty provider: a client's object the
  server has no model for), bit 1 set = the multi-path/timestamped decoders get no path;
- byte 1: the request path's depth (``b % 4 + 1``), then two bytes per id (big-endian);
- the rest is the payload.

What may come out of the facade for any payload is :class:`CodecError` only (4.00/4.04/4.13/4.15
to the peer); a path the harness built from the header that ``LwM2mPath`` refuses is skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["object_models"]):
    from object_models import codecs
    from object_models.content_format import ContentFormat
    from object_models.errors import CodecError, InvalidPathError
    from object_models.model import StaticModels
    from object_models.path import LwM2mPath
    from object_models.registry import ModelRegistry

MODELS = ModelRegistry.builtin()
NO_MODELS = StaticModels.of()


def header(flags: int, path: LwM2mPath) -> bytes:
    """The input header for ``path`` (used by the seed generator)."""
    ids = [i for i in path.ids_with_none() if i is not None]
    return bytes([flags, len(ids) - 1]) + b"".join(i.to_bytes(2, "big") for i in ids)


def split(data: bytes) -> tuple[int, LwM2mPath, bytes] | None:
    if len(data) < 2:
        return None
    flags, depth = data[0], data[1] % 4 + 1
    end = 2 + 2 * depth
    if len(data) < end:
        return None
    ids = [int.from_bytes(data[i : i + 2], "big") for i in range(2, end, 2)]
    try:
        path = LwM2mPath(*ids)
    except InvalidPathError:
        return None
    return flags, path, data[end:]


def harness(fmt: ContentFormat) -> Callable[[bytes], None]:
    """``TestOneInput`` for ``fmt``: decode, and the multi-path decoders the format supports."""
    ops = ("decode_nodes", "decode_paths", "decode_timestamped")
    supported = {op: codecs.supports(fmt, op) for op in ops}

    def test_one_input(data: bytes) -> None:
        parsed = split(data)
        if parsed is None:
            return
        flags, path, payload = parsed
        models = NO_MODELS if flags & 1 else MODELS
        multi_path = None if flags & 2 else path
        try:
            codecs.decode(payload, path, fmt, models)
        except CodecError:
            pass
        if supported["decode_nodes"]:
            try:
                codecs.decode_nodes(payload, fmt, models, None if multi_path is None else [path])
            except CodecError:
                pass
        if supported["decode_paths"]:
            try:
                codecs.decode_paths(payload, fmt)
            except CodecError:
                pass
        if supported["decode_timestamped"]:
            try:
                codecs.decode_timestamped(payload, fmt, models, multi_path)
            except CodecError:
                pass

    return test_one_input

"""The input layout of the codec targets, kept free of atheris so that the seed generator can
build seeds without instrumenting anything:

- byte 0, flags: bit 0 set = decode without models (an empty provider: a client's object the
  server has no model for), bit 1 set = the multi-path/timestamped decoders get no path;
- byte 1: the request path's depth (``b % 4 + 1``), then two bytes per id (big-endian);
- the rest is the payload.
"""

from __future__ import annotations

from object_models.errors import InvalidPathError
from object_models.path import LwM2mPath


def header(flags: int, path: LwM2mPath) -> bytes:
    """The input header for ``path``."""
    ids = [i for i in path.ids_with_none() if i is not None]
    return bytes([flags, len(ids) - 1]) + b"".join(i.to_bytes(2, "big") for i in ids)


def split(data: bytes) -> tuple[int, LwM2mPath, bytes] | None:
    """``(flags, path, payload)``, or None when the header is short or names no valid path."""
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

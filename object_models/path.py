"""``LwM2mPath``: the address of a node, ``/``, ``/o``, ``/o/i``, ``/o/i/r`` or ``/o/i/r/ri``.

Ids follow LwM2M Core §7: object and resource ids are 16-bit; object instance id 65535 is
reserved ("MAX_ID", meaning "no instance" in Create), so it is refused in a path.
"""

from __future__ import annotations

import functools
import re

import attrs

from .errors import InvalidPathError

MAX_ID = 65535
MAX_INSTANCE_ID = 65534

_SEGMENT = re.compile(r"0|[1-9][0-9]{0,4}")
"""What a path segment is (``parse`` checks it by hand, which is several times faster)."""
_LIMITS = (MAX_ID, MAX_INSTANCE_ID, MAX_ID, MAX_ID)
_WHAT = ("object", "object instance", "resource", "resource instance")


def _check_id(value: int | None, limit: int, what: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPathError(f"{what} id must be an integer, got {value!r}")
    if not 0 <= value <= limit:
        raise InvalidPathError(f"{what} id {value} is outside 0..{limit}")


@functools.total_ordering
@attrs.frozen(order=False, cache_hash=True)
class LwM2mPath:
    """An LwM2M path; ``LwM2mPath()`` is the root path ``/`` used by composite and bootstrap.

    Its hash is remembered (``cache_hash``): paths are dict keys and ``lru_cache`` arguments
    on every value of every payload, and attrs' hash builds and hashes a tuple of the four ids
    in Python each time (~0.26 µs; ~0.1 remembered). Same value, computed once."""

    object_id: int | None = None
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None
    _ids: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False, hash=False)
    """The ids without the ``None``s, computed once: ``ids``/``depth`` are read several times
    per value by every codec (a 1 MiB SenML pack has ~60k values)."""

    def __attrs_post_init__(self) -> None:
        # written for speed: codecs build a path per value of a payload
        o, i, r, ri = self.object_id, self.instance_id, self.resource_id, self.resource_instance_id
        ids: tuple[int | None, ...]
        if ri is not None:
            ids = (o, i, r, ri)
        elif r is not None:
            ids = (o, i, r)
        elif i is not None:
            ids = (o, i)
        else:
            ids = () if o is None else (o,)
        if None in ids:
            raise InvalidPathError(
                f"path ids must be given from left to right: {self.ids_with_none()}"
            )
        for value, limit, what in zip(ids, _LIMITS, _WHAT, strict=False):
            if type(value) is not int or not 0 <= value <= limit:
                _check_id(value, limit, what)  # raises, saying why
        object.__setattr__(self, "_ids", ids)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> LwM2mPath:
        """Parse ``/3/0/1`` (leading slash optional, trailing slash tolerated)."""
        if not isinstance(text, str):
            raise InvalidPathError(f"path must be a string, got {type(text).__name__}")
        stripped = text.strip()
        if stripped in ("", "/"):
            return cls()
        body = stripped[1:] if stripped.startswith("/") else stripped
        if body.endswith("/"):
            body = body[:-1]
        parts = body.split("/")
        if len(parts) > 4:
            raise InvalidPathError(f"invalid path {text!r}: more than 4 segments")
        ids: list[int] = []
        for part in parts:
            # _SEGMENT without the regex: ASCII digits, at most 5, no leading zero
            if not (
                part.isascii()
                and part.isdigit()
                and len(part) <= 5
                and (part[0] != "0" or part == "0")
            ):
                raise InvalidPathError(f"invalid path {text!r}: segment {part!r} is not an id")
            ids.append(int(part))
        return cls.from_ids(*ids)

    @classmethod
    def from_ids(cls, *ids: int) -> LwM2mPath:
        if len(ids) > 4:
            raise InvalidPathError(f"a path has at most 4 ids, got {len(ids)}")
        padded: list[int | None] = [*ids, None, None, None, None][:4]
        return cls(padded[0], padded[1], padded[2], padded[3])

    # -- shape --------------------------------------------------------------------------------
    def ids_with_none(self) -> tuple[int | None, int | None, int | None, int | None]:
        return (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)

    @property
    def ids(self) -> tuple[int, ...]:
        return self._ids

    @property
    def depth(self) -> int:
        """0 for root, 1 object, 2 instance, 3 resource, 4 resource instance."""
        return len(self._ids)

    @property
    def is_root(self) -> bool:
        return self.depth == 0

    @property
    def is_object(self) -> bool:
        return self.depth == 1

    @property
    def is_object_instance(self) -> bool:
        return self.depth == 2

    @property
    def is_resource(self) -> bool:
        return self.depth == 3

    @property
    def is_resource_instance(self) -> bool:
        return self.depth == 4

    # -- navigation ---------------------------------------------------------------------------
    def child(self, node_id: int) -> LwM2mPath:
        return LwM2mPath.from_ids(*self.ids, node_id)

    @property
    def parent(self) -> LwM2mPath:
        if self.is_root:
            raise InvalidPathError("the root path has no parent")
        return LwM2mPath.from_ids(*self.ids[:-1])

    def starts_with(self, prefix: LwM2mPath) -> bool:
        """True when ``prefix`` is this path or one of its ancestors (root prefixes everything)."""
        return self.ids[: prefix.depth] == prefix.ids

    def __str__(self) -> str:
        return "/" + "/".join(str(i) for i in self.ids)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, LwM2mPath):
            return NotImplemented
        return self.ids < other.ids


ROOT = LwM2mPath()

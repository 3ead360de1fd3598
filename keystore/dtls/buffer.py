"""A bounds-checked byte cursor for parsing and building wire structures.

Why: aioquic's ``Buffer`` idea in plain Python. Every ``pull_*`` checks the remaining length and
raises :class:`~keystore.dtls.errors.DecodeError` instead of ``IndexError``/``struct.error``, so
parsers written on top of it cannot crash on garbage and never read past a declared length.
Writing goes to a ``bytearray`` that grows as needed.
"""

from __future__ import annotations

from .errors import DecodeError


class Buffer:
    """Read cursor over ``data`` or, when built with no data, a growing write buffer."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self._data = bytes(data)
        self._pos = 0
        self._end = len(data)

    # -- reading ---------------------------------------------------------------------------
    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def tell(self) -> int:
        return self._pos

    def _take(self, n: int) -> int:
        if n < 0 or self._pos + n > self._end:
            raise DecodeError("truncated structure")
        start = self._pos
        self._pos += n
        return start

    def pull_bytes(self, n: int) -> bytes:
        start = self._take(n)
        return bytes(self._data[start : start + n])

    def pull_uint8(self) -> int:
        start = self._take(1)
        return self._data[start]

    def pull_uint16(self) -> int:
        start = self._take(2)
        return int.from_bytes(self._data[start : start + 2], "big")

    def pull_uint24(self) -> int:
        start = self._take(3)
        return int.from_bytes(self._data[start : start + 3], "big")

    def pull_uint48(self) -> int:
        start = self._take(6)
        return int.from_bytes(self._data[start : start + 6], "big")

    def pull_vector8(self) -> bytes:
        return self.pull_bytes(self.pull_uint8())

    def pull_vector16(self) -> bytes:
        return self.pull_bytes(self.pull_uint16())

    def pull_vector24(self) -> bytes:
        return self.pull_bytes(self.pull_uint24())

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining)

    def expect_eof(self) -> None:
        """Refuse trailing bytes: a structure with junk after it is malformed (decode_error)."""
        if not self.eof():
            raise DecodeError("trailing bytes after structure")


class Writer:
    """Append-only builder; ``getvalue()`` returns immutable bytes."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._out)

    def __len__(self) -> int:
        return len(self._out)

    def push_bytes(self, data: bytes) -> None:
        self._out += data

    def push_uint8(self, v: int) -> None:
        self._out += v.to_bytes(1, "big")

    def push_uint16(self, v: int) -> None:
        self._out += v.to_bytes(2, "big")

    def push_uint24(self, v: int) -> None:
        self._out += v.to_bytes(3, "big")

    def push_uint48(self, v: int) -> None:
        self._out += v.to_bytes(6, "big")

    def push_vector8(self, data: bytes) -> None:
        if len(data) > 0xFF:
            raise ValueError("vector too long for 8-bit length")
        self.push_uint8(len(data))
        self._out += data

    def push_vector16(self, data: bytes) -> None:
        if len(data) > 0xFFFF:
            raise ValueError("vector too long for 16-bit length")
        self.push_uint16(len(data))
        self._out += data

    def push_vector24(self, data: bytes) -> None:
        if len(data) > 0xFFFFFF:
            raise ValueError("vector too long for 24-bit length")
        self.push_uint24(len(data))
        self._out += data

"""The demo device's firmware/software image format: a small header that carries the image's
name, version and the SHA-256 of its body, then the body.

Why a format at all: a real device never trusts a download blindly. It checks a digest the image
itself carries (MCUboot's SHA-256 TLV, a signed manifest, …) and only then swaps images; the
version it will report after the update comes from that image too. The demo client does the
same with this format, so a truncated, corrupted or foreign package is caught the way a device
catches it (Update Result 5 "integrity check failure" or 6 "unsupported package type").

Layout (all integers big-endian)::

    magic     4 bytes  b"PYFW"
    format    1 byte   1
    name      1 byte length + UTF-8
    version   1 byte length + UTF-8
    digest    32 bytes SHA-256 of the body
    size      4 bytes  length of the body
    body      size bytes

``make_image`` builds one (tests, the benchmark, ``lwm2m-server packages add`` fixtures);
``parse_image`` reads the header (``UnsupportedImage`` when it is not this format) and
``FirmwareImage.verify`` checks the body against the digest (``IntegrityError``).
"""

from __future__ import annotations

import hashlib
import struct

import attrs

MAGIC = b"PYFW"
FORMAT_VERSION = 1
_DIGEST = 32
_SIZE = struct.Struct(">I")
MAX_TEXT = 255


class ImageError(ValueError):
    """The bytes are not a usable image."""


class UnsupportedImage(ImageError):
    """Not this format (wrong magic or format number, truncated header): Update Result 6."""


class IntegrityError(ImageError):
    """The body does not match the digest (or the size) the header announces: Update Result 5."""


@attrs.frozen
class FirmwareImage:
    name: str
    version: str
    digest: bytes
    """SHA-256 of the body, as the header states it."""
    body: bytes
    declared_size: int

    def verify(self) -> None:
        """Raise ``IntegrityError`` unless the body is exactly what the header describes."""
        if len(self.body) != self.declared_size:
            raise IntegrityError(
                f"body is {len(self.body)} bytes, the header says {self.declared_size}"
            )
        if hashlib.sha256(self.body).digest() != self.digest:
            raise IntegrityError("body SHA-256 does not match the header's digest")


def _text(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > MAX_TEXT:
        raise ValueError(f"{what} is longer than {MAX_TEXT} bytes")
    return bytes([len(raw)]) + raw


def make_image(name: str, version: str, body: bytes) -> bytes:
    """An image of ``body`` that a demo device accepts and then reports as ``name``/``version``."""
    return b"".join(
        (
            MAGIC,
            bytes([FORMAT_VERSION]),
            _text(name, "name"),
            _text(version, "version"),
            hashlib.sha256(body).digest(),
            _SIZE.pack(len(body)),
            body,
        )
    )


def parse_image(data: bytes) -> FirmwareImage:
    """Read the header (the body is not checked here: see ``FirmwareImage.verify``)."""
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise UnsupportedImage("not a pylwm2m image (bad magic)")
    if data[len(MAGIC)] != FORMAT_VERSION:
        raise UnsupportedImage(f"unknown image format {data[len(MAGIC)]}")
    offset = len(MAGIC) + 1
    texts: list[str] = []
    for what in ("name", "version"):
        if offset >= len(data):
            raise UnsupportedImage(f"truncated header ({what})")
        length = data[offset]
        raw = data[offset + 1 : offset + 1 + length]
        if len(raw) != length:
            raise UnsupportedImage(f"truncated header ({what})")
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise UnsupportedImage(f"{what} is not UTF-8") from None
        offset += 1 + length
    if len(data) < offset + _DIGEST + _SIZE.size:
        raise UnsupportedImage("truncated header (digest, size)")
    digest = data[offset : offset + _DIGEST]
    (size,) = _SIZE.unpack_from(data, offset + _DIGEST)
    body = data[offset + _DIGEST + _SIZE.size :]
    return FirmwareImage(texts[0], texts[1], digest, body, size)


__all__ = [
    "MAGIC",
    "FirmwareImage",
    "ImageError",
    "IntegrityError",
    "UnsupportedImage",
    "make_image",
    "parse_image",
]

"""The shared codec harness: every decode entry point of one content format.

Input layout: ``_codec_layout`` (flags, the request path, the payload).

What may come out of the facade for any payload is :class:`CodecError` only (4.00/4.04/4.13/4.15
to the peer); a path the harness built from the header that ``LwM2mPath`` refuses is skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["object_models"]):
    from object_models import codecs
    from object_models.content_format import ContentFormat
    from object_models.errors import CodecError
    from object_models.model import StaticModels
    from object_models.registry import ModelRegistry

    from ._codec_layout import split

MODELS = ModelRegistry.builtin()
NO_MODELS = StaticModels.of()


def harness(member: str) -> Callable[[bytes], None]:
    """``TestOneInput`` for ``ContentFormat[member]``: decode, and the multi-path decoders the
    format supports."""
    fmt = ContentFormat[member]
    ops = ("decode_nodes", "decode_paths", "decode_timestamped")
    supported = {op: codecs.supports(fmt, op) for op in ops}

    def test_one_input(data: bytes) -> None:
        parsed = split(data)
        if parsed is None:
            return
        flags, path, payload = parsed
        models = NO_MODELS if flags & 1 else MODELS
        multi_path = None if flags & 2 else path
        with contextlib.suppress(CodecError):
            codecs.decode(payload, path, fmt, models)
        if supported["decode_nodes"]:
            with contextlib.suppress(CodecError):
                codecs.decode_nodes(payload, fmt, models, None if multi_path is None else [path])
        if supported["decode_paths"]:
            with contextlib.suppress(CodecError):
                codecs.decode_paths(payload, fmt)
        if supported["decode_timestamped"]:
            with contextlib.suppress(CodecError):
                codecs.decode_timestamped(payload, fmt, models, multi_path)

    return test_one_input

"""Fuzz target: the CoRE link-format parsers (Register/Update payloads, Discover answers).

May raise :class:`CodecError` only (the server answers a bad Register with 4.00). A document that
parses must also survive ``format_links`` and parse again (what the server stores it re-reads).
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["object_models"]):
    from object_models.codecs import link_format
    from object_models.errors import CodecError


def TestOneInput(data: bytes) -> None:
    try:
        links = link_format.parse_links(data)
    except CodecError:
        return
    again = link_format.parse_links(link_format.format_links(links))
    assert [(x.target, dict(x.params)) for x in again] == [
        (x.target, dict(x.params)) for x in links
    ], "format_links does not round-trip"
    with contextlib.suppress(CodecError):
        link_format.parse_object_links(data)
    with contextlib.suppress(CodecError):
        link_format.parse_discover(data)

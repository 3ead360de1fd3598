"""Shared helpers for the server-core tests: a fake clock and a stand-in for parsed links."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import pytest

from lwm2m_server.core.registration import Address, RegistrationRequest


@attrs.frozen
class FakeLink:
    """Only the two fields ``ObjectLinks.from_links`` reads (``target``, ``params``)."""

    target: str
    params: Mapping[str, str | None] = attrs.field(factory=dict)


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


ADDR = Address("192.0.2.1", 5683)


def request(endpoint: str = "dev1", **kwargs: object) -> RegistrationRequest:
    return RegistrationRequest(endpoint=endpoint, **kwargs)  # type: ignore[arg-type]


def link_parser_available() -> bool:
    try:
        import object_models.codecs.link_format  # noqa: F401
    except ImportError:
        return False
    return True


needs_link_parser = pytest.mark.skipif(
    not link_parser_available(), reason="object_models.codecs.link_format has not landed yet"
)

"""Shared helpers for the server-core tests: a fake clock, an address, a request factory."""

from __future__ import annotations

from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import RegistrationRequest


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


ADDR = Address("192.0.2.1", 5683)


def request(endpoint: str = "dev1", **kwargs: object) -> RegistrationRequest:
    return RegistrationRequest(endpoint=endpoint, **kwargs)  # type: ignore[arg-type]

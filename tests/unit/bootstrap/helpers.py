"""Config documents, a fake clock and a driver that runs a session against ``FakeClient``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bootstrap_server.core.manager import BootstrapManager
from bootstrap_server.core.session import BootstrapSession, Request
from keystore.bootstrap_config.loader import parse_config
from keystore.bootstrap_config.model import BootstrapConfig
from object_models.registry import ModelRegistry

from .fake_client import FakeClient

REGISTRY = ModelRegistry.builtin()
KEY = "hex:000102030405060708090a0b0c0d0e0f"


def endpoint_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "endpoint": "dev-1",
        "bootstrap_security": [{"mode": "nosec"}],
        "servers": [
            {
                "uri": "coaps://127.0.0.1:5684",
                "short_server_id": 1,
                "lifetime": 300,
                "security": {"mode": "psk", "identity": "dev-1", "key": KEY},
            }
        ],
    }
    doc.update(copy.deepcopy(changes))
    return doc


def profile_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "profile": "fleet",
        "bootstrap_security": [{"mode": "psk", "identity": "fleet-factory", "key": KEY}],
        "provisioning": {"strategy": "allow_new"},
        "servers": [
            {
                "uri": "coaps://127.0.0.1:5684",
                "short_server_id": 1,
                "security": {"mode": "psk", "generate": True},
            }
        ],
    }
    doc.update(copy.deepcopy(changes))
    return doc


def parse(doc: dict[str, Any], source: str = "test.yaml") -> BootstrapConfig:
    return parse_config(doc, source, REGISTRY)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


Lose = Callable[[Request], bool]
"""Decides, per attempt, whether the request (or its answer) is lost on the way."""


def drive(
    session: BootstrapSession,
    client: FakeClient,
    clock: Clock,
    first: Request,
    *,
    lose: Lose = lambda r: False,
    manager: BootstrapManager | None = None,
    limit: int = 200,
) -> None:
    """Run until the session ends: answers come 0.1 s later; a lost one means waiting for the
    deadline and calling ``timeout``."""
    request: Request | None = first
    for _ in range(limit):
        if request is None:
            return
        if lose(request):
            assert session.deadline is not None
            clock.now = session.deadline
            request = (manager.timeout(session, clock.now) if manager
                       else session.timeout(clock.now))  # fmt: skip
            continue
        reply = client.handle(request)
        clock.advance(0.1)
        request = (manager.receive(session, request.seq, reply, clock.now) if manager
                   else session.receive(request.seq, reply, clock.now))  # fmt: skip
    raise AssertionError("the session did not end")

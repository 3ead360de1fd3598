"""Test settings for the CoAP layer.

Hypothesis: the suite-wide profile (``tests/conftest.py``: no deadline, and on CI no ``too_slow``
health check) is loaded before this file; the ``coap`` profile inherits it and only sets the
example count. The tests here apply it with ``@settings(settings.get_profile("coap"))``.

asyncio: the few socket tests (``test_udp.py``) run on the stdlib loop and on uvloop when it is
installed (pytest-asyncio's loop-factory hook; optional so older pytest-asyncio ignores it).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping

import pytest
from hypothesis import settings

settings.register_profile("coap", parent=settings.default, max_examples=200)


@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories

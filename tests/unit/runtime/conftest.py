"""The runtime's socket tests run on the stdlib loop and on uvloop when it is installed (the same
pytest-asyncio loop-factory hook as ``tests/unit/coap``)."""

from __future__ import annotations

from tests.unit.coap.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]

from __future__ import annotations

import pytest

from .helpers import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()

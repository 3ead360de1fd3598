"""Observe sequence-number freshness (RFC 7641 §3.4).

Why a pure function: reordering is the part of observe most easy to get subtly wrong (24-bit
wrap-around, the 128-second escape), so it is tested on its own.
"""

from __future__ import annotations

_HALF = 1 << 23


def is_fresh(v1: int, t1: float, v2: int, t2: float, horizon: float = 128.0) -> bool:
    """Is a notification numbered ``v2`` received at ``t2`` newer than ``v1`` received at ``t1``?

    ``v1 < 0`` means no notification yet (everything is fresh).
    """
    if v1 < 0:
        return True
    return (v1 < v2 and v2 - v1 < _HALF) or (v1 > v2 and v1 - v2 > _HALF) or t2 > t1 + horizon

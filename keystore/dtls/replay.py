"""The RFC 6347 §4.1.2.6 anti-replay sliding window.

Why a bitmap: a window of 64 sequence numbers fits one Python int, so per-session replay state
costs a few dozen bytes (the engine targets a few KB per idle session). A sequence number is only
*marked* after its record authenticated, otherwise a forged record could poison the window.
"""

from __future__ import annotations

WINDOW_SIZE = 64
_MASK = (1 << WINDOW_SIZE) - 1


class ReplayWindow:
    """Tracks the highest accepted sequence number and the 64 before it."""

    __slots__ = ("_bitmap", "_top")

    def __init__(self) -> None:
        self._top = -1
        self._bitmap = 0

    @classmethod
    def from_state(cls, top: int, bitmap: int) -> ReplayWindow:
        """A window as :attr:`state` described it (a session restored after a restart)."""
        window = cls()
        window._top = top
        window._bitmap = bitmap & _MASK
        return window

    @property
    def state(self) -> tuple[int, int]:
        """(highest accepted sequence number or -1, bitmap of the 64 below it)."""
        return self._top, self._bitmap

    def is_fresh(self, seq: int) -> bool:
        """True when ``seq`` is newer than the window or inside it and not yet seen."""
        if seq > self._top:
            return True
        offset = self._top - seq
        if offset >= WINDOW_SIZE:
            return False
        return not (self._bitmap >> offset) & 1

    def is_newest(self, seq: int) -> bool:
        """True when ``seq`` is beyond everything accepted so far (RFC 9146 §6 address update)."""
        return seq > self._top

    def mark(self, seq: int) -> None:
        """Record ``seq`` as received; call only after the record authenticated."""
        if seq > self._top:
            shift = seq - self._top
            self._bitmap = ((self._bitmap << shift) | 1) & _MASK if shift < WINDOW_SIZE else 1
            self._top = seq
        else:
            offset = self._top - seq
            if offset < WINDOW_SIZE:
                self._bitmap |= 1 << offset

"""Flight retransmission timer (RFC 6347 §4.2.4).

Why time is a parameter: the engine is sans-IO; the caller passes ``now`` (any monotonic clock in
seconds), so tests drive it with a fake clock. Initial timeout 1 s, doubled on each expiry, capped
at 60 s; after ``max_retransmissions`` expiries the handshake is abandoned.
"""

from __future__ import annotations


class RetransmitTimer:
    __slots__ = ("_count", "_deadline", "_timeout", "initial", "max_retransmissions", "maximum")

    def __init__(
        self, initial: float = 1.0, maximum: float = 60.0, max_retransmissions: int = 6
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.max_retransmissions = max_retransmissions
        self._timeout = initial
        self._deadline: float | None = None
        self._count = 0

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @property
    def retransmissions(self) -> int:
        return self._count

    def start(self, now: float) -> None:
        """Arm for a new flight: the timeout goes back to its initial value."""
        self._timeout = self.initial
        self._count = 0
        self._deadline = now + self._timeout

    def stop(self) -> None:
        self._deadline = None

    def expired(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def backoff(self, now: float) -> bool:
        """Called on expiry: doubles the timeout; False once the retransmission budget is spent."""
        self._count += 1
        if self._count > self.max_retransmissions:
            self._deadline = None
            return False
        self._timeout = min(self._timeout * 2, self.maximum)
        self._deadline = now + self._timeout
        return True

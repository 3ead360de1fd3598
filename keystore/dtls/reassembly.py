"""Handshake message reassembly (RFC 6347 §4.2.3) with bounded memory.

Why a separate unit: a peer (or an attacker) controls message_seq, fragment_offset,
fragment_length and the claimed total length. We only buffer messages inside a small window
ahead of the next expected message_seq, cap each message and the total buffered bytes, and accept
overlapping or duplicated fragments (they are legal after retransmission). Messages are released
strictly in message_seq order.
"""

from __future__ import annotations

from .messages import HandshakeFragment

#: How far ahead of the next expected message_seq we buffer (a full server flight is 5 messages).
DEFAULT_WINDOW = 8


class _Partial:
    __slots__ = ("data", "epoch", "filled", "length", "msg_type", "ranges")

    def __init__(self, msg_type: int, length: int, epoch: int) -> None:
        self.msg_type = msg_type
        self.epoch = epoch
        self.length = length
        self.data = bytearray(length)
        self.ranges: list[tuple[int, int]] = []
        self.filled = 0

    def add(self, offset: int, body: bytes) -> None:
        end = offset + len(body)
        self.data[offset:end] = body
        merged: list[tuple[int, int]] = []
        start, stop = offset, end
        for a, b in self.ranges:
            if b < start or a > stop:
                merged.append((a, b))
            else:
                start, stop = min(a, start), max(b, stop)
        merged.append((start, stop))
        merged.sort()
        self.ranges = merged
        self.filled = sum(b - a for a, b in merged)

    @property
    def complete(self) -> bool:
        return self.filled >= self.length


class AddResult:
    """What one fragment did: released messages and whether it was a retransmission."""

    __slots__ = ("messages", "old_seq")

    def __init__(self) -> None:
        #: (msg_type, message_seq, body, epoch) in message_seq order.
        self.messages: list[tuple[int, int, bytes, int]] = []
        #: message_seq of an already processed message (the peer retransmitted), else None.
        self.old_seq: int | None = None


class Reassembler:
    """Collects fragments by message_seq; ``next_seq`` is the next message we will release."""

    __slots__ = ("_buffered", "_pending", "max_buffered", "max_message", "next_seq", "window")

    def __init__(
        self,
        next_seq: int = 0,
        max_message: int = 16384,
        max_buffered: int = 65536,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.next_seq = next_seq
        self.max_message = max_message
        self.max_buffered = max_buffered
        self.window = window
        self._pending: dict[int, _Partial] = {}
        self._buffered = 0

    def add(self, frag: HandshakeFragment, epoch: int) -> AddResult:
        """Add one fragment received in ``epoch``; fragments of one message must share it."""
        result = AddResult()
        seq = frag.message_seq
        if seq < self.next_seq:
            result.old_seq = seq
            return result
        if seq >= self.next_seq + self.window or frag.length > self.max_message:
            return result  # outside what we are willing to hold: drop, the peer retransmits
        partial = self._pending.get(seq)
        if partial is None:
            if self._buffered + frag.length > self.max_buffered:
                return result
            partial = _Partial(frag.msg_type, frag.length, epoch)
            self._pending[seq] = partial
            self._buffered += frag.length
        elif (
            partial.msg_type != frag.msg_type
            or partial.length != frag.length
            or partial.epoch != epoch
        ):
            return result  # inconsistent with earlier fragments: ignore this one
        partial.add(frag.fragment_offset, frag.body)
        while True:
            head = self._pending.get(self.next_seq)
            if head is None or not head.complete:
                break
            del self._pending[self.next_seq]
            self._buffered -= head.length
            result.messages.append((head.msg_type, self.next_seq, bytes(head.data), head.epoch))
            self.next_seq += 1
        return result

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

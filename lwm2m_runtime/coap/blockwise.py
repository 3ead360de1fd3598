"""Block-wise transfer helpers (RFC 7959): request keys, Block2 slicing, Block1 reassembly.

Why separate from the endpoint: these are pure bookkeeping with their own limits (body size,
transfers per peer, transfers and buffered bytes in total) and their own error codes (4.08,
4.13, 5.03), testable alone.

Limits, checked before a block is buffered:

* a body over ``max_body`` (by Size1 on the first block, or as soon as a block would cross it)
  is 4.13 Request Entity Too Large with Size1 = ``max_body`` (RFC 7959 §2.9.3): nothing past
  the limit is ever kept;
* a peer's ``per_peer``-th concurrent transfer evicts that peer's own oldest one: a peer can
  only hurt itself, and a client that gave up a transfer and starts another is not blocked for
  a transfer lifetime;
* when ``total`` transfers or ``max_bytes`` buffered bytes are reached, a *new* transfer (or a
  block that would cross ``max_bytes``) is refused with 5.03 Service Unavailable and Max-Age
  (RFC 7252 §5.9.3.4): evicting another peer's transfer instead would let a flood of new
  transfers (from spoofed addresses, say) break every legitimate upload in progress.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from .message import Block, Message, Option, encode_uint, set_option
from .numbers import Code, OptionNumber, is_no_cache_key

Opt = OptionNumber

#: Options that are not part of a block-wise request's identity (RFC 7959 §2.4 / §2.5).
_NOT_KEY = frozenset({Opt.BLOCK1, Opt.BLOCK2, Opt.SIZE1, Opt.SIZE2, Opt.OBSERVE})

RequestKey = tuple[int, tuple[Option, ...]]


def request_key(message: Message) -> RequestKey:
    """What identifies "the same request" across its blocks: the code and the cache-key options
    (tokens may differ per block, RFC 7959 §2.4)."""
    return (
        message.code,
        tuple(o for o in message.options if o[0] not in _NOT_KEY and not is_no_cache_key(o[0])),
    )


def slice_block2(response: Message, num: int, szx: int) -> Message | None:
    """Block ``num`` of ``response`` with size ``16 << szx``; None when ``num`` is past the end."""
    size = 16 << szx
    body = response.payload
    start = num * size
    if num and start >= len(body):
        return None
    chunk = body[start : start + size]
    more = start + size < len(body)
    opts = set_option(response.options, Opt.BLOCK2, Block(num, more, szx).encode())
    if num == 0:
        opts = set_option(opts, Opt.SIZE2, encode_uint(len(body)))
    return response.replace(options=opts, payload=chunk)


@dataclass(slots=True)
class Block1Outcome:
    """What the endpoint does with one Block1 request: continue, deliver, or refuse."""

    code: int
    """CONTINUE (answer 2.31), EMPTY (deliver ``body`` as the request), or an error code."""
    block: Block
    body: bytes = b""
    detail: str = ""
    size1: int | None = None
    max_age: int | None = None
    """Seconds to wait before trying again (the Max-Age of a 5.03)."""


class _Transfer:
    __slots__ = ("body", "expires", "peer")

    def __init__(self, peer: Hashable, expires: float) -> None:
        self.peer = peer
        self.body = bytearray()
        self.expires = expires


class Block1Transfers:
    """Incoming Block1 reassembly, bounded per peer and in total (see the module docstring)."""

    def __init__(
        self,
        max_body: int,
        lifetime: float,
        per_peer: int,
        total: int,
        max_bytes: int = 1 << 62,
    ) -> None:
        self.max_body = max_body
        self.lifetime = lifetime
        self.per_peer = per_peer
        self.total = total
        self.max_bytes = max_bytes
        self._transfers: OrderedDict[tuple[Hashable, RequestKey], _Transfer] = OrderedDict()
        self._per_peer: dict[Hashable, int] = {}
        self._bytes = 0
        self.refused = 0
        """Transfers refused with 5.03 because ``total``/``max_bytes`` was reached."""
        self.evicted = 0
        """Transfers a peer's newer transfer replaced (``per_peer`` reached)."""

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._transfers)

    def receive(self, peer: Hashable, message: Message, block: Block, now: float) -> Block1Outcome:
        if block.szx == 7:
            return Block1Outcome(Code.BAD_REQUEST, block, detail="BERT block size over UDP")
        size = block.size
        payload = message.payload
        if block.more and len(payload) != size:
            return Block1Outcome(
                Code.BAD_REQUEST, block, detail=f"block {block.num} is not {size} bytes"
            )
        size1 = message.size1
        if (size1 is not None and size1 > self.max_body) or block.offset + len(
            payload
        ) > self.max_body:
            self._forget(peer, request_key(message))
            return Block1Outcome(
                Code.REQUEST_ENTITY_TOO_LARGE,
                block,
                detail=f"body over {self.max_body} bytes",
                size1=self.max_body,
            )
        key = (peer, request_key(message))
        if block.num == 0:
            if not block.more:
                self._forget(*key)
                return Block1Outcome(Code.EMPTY, block, body=payload)
            self._forget(*key)
            started = self._start(key, len(payload), now)
            if started is None:
                self.refused += 1
                return Block1Outcome(
                    Code.SERVICE_UNAVAILABLE,
                    block,
                    detail=f"{len(self._transfers)} block-wise uploads in progress "
                    f"({self._bytes} bytes): limit reached",
                    max_age=self._retry_after(now),
                )
            transfer = started
        else:
            found = self._transfers.get(key)
            if found is None or found.expires <= now or block.offset != len(found.body):
                self._forget(*key)
                return Block1Outcome(
                    Code.REQUEST_ENTITY_INCOMPLETE,
                    block,
                    detail=f"block {block.num} does not continue a transfer",
                )
            transfer = found
            if self._bytes + len(payload) > self.max_bytes:
                self._forget(*key)
                self.refused += 1
                return Block1Outcome(
                    Code.SERVICE_UNAVAILABLE,
                    block,
                    detail=f"block-wise uploads hold {self._bytes} bytes: limit reached",
                    max_age=self._retry_after(now),
                )
        transfer.body += payload
        self._bytes += len(payload)
        transfer.expires = now + self.lifetime
        self._transfers.move_to_end(key)
        if block.more:
            return Block1Outcome(Code.CONTINUE, block)
        self._forget(*key)
        return Block1Outcome(Code.EMPTY, block, body=bytes(transfer.body))

    def _start(self, key: tuple[Hashable, RequestKey], size: int, now: float) -> _Transfer | None:
        """A new transfer, or None when the total limits are reached (the caller says 5.03)."""
        peer = key[0]
        if self._per_peer.get(peer, 0) >= self.per_peer:
            oldest = next(k for k in self._transfers if k[0] == peer)
            self._forget(*oldest)
            self.evicted += 1
        transfers = self._transfers
        while transfers and next(iter(transfers.values())).expires <= now:
            self._forget(*next(iter(transfers)))
        if len(transfers) >= self.total or self._bytes + size > self.max_bytes:
            return None
        transfer = _Transfer(peer, now + self.lifetime)
        self._transfers[key] = transfer
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        return transfer

    def _retry_after(self, now: float) -> int:
        """Whole seconds until the least recently active transfer (the first: every block
        moves its transfer to the end) expires, at least 1."""
        transfers = self._transfers
        if not transfers:
            return 1
        return max(1, math.ceil(next(iter(transfers.values())).expires - now))

    def _forget(self, peer: Hashable, rkey: RequestKey) -> None:
        transfer = self._transfers.pop((peer, rkey), None)
        if transfer is not None:
            self._bytes -= len(transfer.body)
            left = self._per_peer[peer] - 1
            if left:
                self._per_peer[peer] = left
            else:
                del self._per_peer[peer]

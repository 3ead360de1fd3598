"""Transmission parameters (RFC 7252 §4.8) and the endpoint's own limits, in one frozen value.

Why one object: the RFC derives EXCHANGE_LIFETIME etc. from a handful of base values; keeping
them together (and configurable per endpoint) lets tests shrink every timer and lets a deployment
tune them without touching code. Every memory-holding table has a cap here so that no peer (or
flood of spoofed peers) can grow the endpoint without bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .numbers import DEFAULT_KNOWN_OPTIONS


@dataclass(frozen=True, slots=True)
class Parameters:
    # -- RFC 7252 §4.8 ----------------------------------------------------------------------
    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    nstart: int = 1
    """Outstanding CON requests per peer (RFC 7252 §4.7); more wait in the per-peer queue."""
    exchange_lifetime: float = 247.0
    """How long a received (peer, MID) is remembered for deduplication (RFC 7252 §4.8.2)."""

    # -- server side ------------------------------------------------------------------------
    empty_ack_delay: float = 1.0
    """A CON request not answered within this delay gets an empty ACK; the answer then goes out
    as a separate CON response. Shorter than ACK_TIMEOUT so the client does not retransmit."""
    dedup_capacity: int = 100_000
    """Most (peer, MID) entries remembered. When full, an entry older than MAX_TRANSMIT_SPAN is
    forgotten; a cache that filled faster refuses new requests of its heaviest peers with 5.03
    (see ``dedup.py`` for why)."""
    dedup_max_bytes: int = 64 << 20
    """The same bound in bytes (``dedup.ENTRY_COST`` per entry plus the answer it replays)."""
    max_body_size: int = 256 * 1024
    """Largest reassembled Block1 request body; larger ones are refused with 4.13 + Size1."""
    block_szx: int = 6
    """Preferred block size exponent (6 = 1024 bytes) for Block2 answers and Block1 requests."""
    block_transfer_lifetime: float = 247.0
    max_block_transfers_per_peer: int = 4
    """Concurrent incoming Block1 transfers per peer; a new one evicts the peer's oldest."""
    max_block_transfers: int = 1_000
    """Concurrent incoming Block1 transfers in total; one more is refused with 5.03 + Max-Age."""
    max_block_bytes: int = 32 << 20
    """Bytes all incoming Block1 transfers may buffer together; past it, 5.03 + Max-Age."""
    block2_cache_capacity: int = 1_000
    """Large response bodies kept so later Block2 requests are sliced without the application."""

    # -- client side ------------------------------------------------------------------------
    max_block2_body: int = 1 << 20
    """Largest Block2 answer or notification assembled when following blocks (1 MiB); a larger
    one fails the request (``BLOCK_TRANSFER``) instead of taking the memory."""
    request_queue_size: int = 32
    """Requests waiting for an NSTART slot, per peer; one more fails with QUEUE_FULL."""
    response_timeout: float = 247.0
    """After a request was acknowledged (or sent NON): how long to wait for its response."""
    observe_freshness: float = 128.0
    """RFC 7641 §3.4: a notification this much newer than the last one is fresh whatever its
    sequence number says."""
    cancelled_token_capacity: int = 10_000
    """Tokens of observations cancelled reactively, remembered to RST their next notification."""

    known_options: frozenset[int] = field(default_factory=lambda: frozenset(DEFAULT_KNOWN_OPTIONS))
    """Options this endpoint understands; a request with any other critical option gets 4.02."""
    report_protocol_errors: bool = True
    """Emit a :class:`ProtocolError` event per refused datagram (counters are kept anyway)."""

    @property
    def max_transmit_span(self) -> float:
        return self.ack_timeout * float((1 << self.max_retransmit) - 1) * self.ack_random_factor

    @property
    def block_size(self) -> int:
        return 16 << self.block_szx

    def __post_init__(self) -> None:
        if not 0 <= self.block_szx <= 6:
            raise ValueError("block_szx must be 0..6 (szx 7 is BERT, not for UDP)")
        if self.nstart < 1 or self.max_retransmit < 0 or self.ack_random_factor < 1:
            raise ValueError("nstart >= 1, max_retransmit >= 0 and ack_random_factor >= 1")

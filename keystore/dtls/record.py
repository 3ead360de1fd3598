"""DTLS 1.2 record framing (RFC 6347 §4.1) and the RFC 9146 ``tls12_cid`` header.

Why separate from protection: framing is pure byte layout; it has to survive any garbage an
attacker sends (the transport feeds every UDP datagram here before any authentication), so it
only ever raises :class:`RecordError`, bounds every length, and copies nothing it does not return.
One datagram may carry several records; a malformed record ends parsing of that datagram
(its length field is untrustworthy, so nothing after it can be framed).
"""

from __future__ import annotations

from .buffer import Buffer
from .constants import DTLS_1_0, DTLS_1_2, MAX_CIPHERTEXT, ContentType, HandshakeType
from .errors import DecodeError

#: type(1) + version(2) + epoch(2) + sequence_number(6) + length(2)
HEADER_SIZE = 13
MAX_SEQUENCE = 2**48 - 1
#: Largest datagram we look at; anything larger is not a DTLS datagram we produced.
MAX_DATAGRAM = 65535

_KNOWN_TYPES = frozenset(int(t) for t in ContentType)


class RecordError(DecodeError):
    """A record header is truncated, oversized or of unknown type/version."""


class Record:
    """One parsed record; ``fragment`` is still protected unless the epoch is 0."""

    __slots__ = ("cid", "content_type", "epoch", "fragment", "seq", "version")

    def __init__(
        self,
        content_type: int,
        version: int,
        epoch: int,
        seq: int,
        fragment: bytes,
        cid: bytes | None = None,
    ) -> None:
        self.content_type = content_type
        self.version = version
        self.epoch = epoch
        self.seq = seq
        self.fragment = fragment
        self.cid = cid

    def __repr__(self) -> str:
        return (
            f"Record(type={self.content_type}, epoch={self.epoch}, seq={self.seq}, "
            f"len={len(self.fragment)}, cid={self.cid.hex() if self.cid is not None else None})"
        )


def pull_record(buf: Buffer, cid_length: int | None) -> Record:
    """Parse one record. ``cid_length`` is the length of *our* CID (None: CID not negotiated)."""
    try:
        content_type = buf.pull_uint8()
        version = buf.pull_uint16()
        epoch = buf.pull_uint16()
        seq = buf.pull_uint48()
        cid: bytes | None = None
        if content_type == ContentType.TLS12_CID:
            if cid_length is None:
                raise RecordError("tls12_cid record without a negotiated connection id")
            cid = buf.pull_bytes(cid_length)
        length = buf.pull_uint16()
        if content_type not in _KNOWN_TYPES:
            raise RecordError("unknown content type")
        if version >> 8 != 0xFE or version not in (DTLS_1_2, DTLS_1_0):
            raise RecordError("not a DTLS 1.0/1.2 record")
        if length > MAX_CIPHERTEXT:
            raise RecordError("record length exceeds 2^14 + 2048")
        fragment = buf.pull_bytes(length)
    except RecordError:
        raise
    except DecodeError as exc:
        raise RecordError("truncated record") from exc
    return Record(content_type, version, epoch, seq, fragment, cid)


def parse_datagram(data: bytes, cid_length: int | None = None) -> list[Record]:
    """All well-formed records of a datagram, stopping silently at the first malformed one.

    Why not raise: RFC 6347 §4.1.2.7 says invalid records are discarded; earlier valid records
    of the same datagram are still processed.
    """
    if len(data) > MAX_DATAGRAM:
        return []
    buf = Buffer(data)
    records: list[Record] = []
    while not buf.eof():
        try:
            records.append(pull_record(buf, cid_length))
        except RecordError:
            break
    return records


def encode_record(
    content_type: int,
    version: int,
    epoch: int,
    seq: int,
    fragment: bytes,
    cid: bytes | None = None,
) -> bytes:
    """Serialize one record; ``cid`` non-empty switches the header to the tls12_cid layout."""
    if seq > MAX_SEQUENCE:
        raise ValueError("record sequence number exhausted")
    header = bytearray()
    header.append(content_type)
    header += version.to_bytes(2, "big")
    header += epoch.to_bytes(2, "big")
    header += seq.to_bytes(6, "big")
    if cid:
        header += cid
    header += len(fragment).to_bytes(2, "big")
    return bytes(header) + fragment


def peek_connection_id(datagram: bytes, cid_length: int) -> bytes | None:
    """The CID of a datagram's first record, or None (not a tls12_cid record / too short).

    Why here: the transport demultiplexes by CID *before* choosing a session, so that a client
    whose NAT binding changed keeps its session (RFC 9146). It must not trust anything else in
    the datagram: the session then authenticates the record.
    """
    if cid_length <= 0 or len(datagram) < HEADER_SIZE + cid_length:
        return None
    if datagram[0] != ContentType.TLS12_CID or datagram[1] != 0xFE:
        return None
    return bytes(datagram[11 : 11 + cid_length])


def is_client_hello(datagram: bytes) -> bool:
    """True when the datagram starts with an epoch-0 handshake record holding a ClientHello.

    The transport uses this to route a ClientHello from a known address to the cookie verifier
    (a peer that rebooted starts over, RFC 6347 §4.2.8) instead of to the old session.
    """
    return (
        len(datagram) >= HEADER_SIZE + 1
        and datagram[0] == ContentType.HANDSHAKE
        and datagram[1] == 0xFE
        and datagram[3:5] == b"\x00\x00"
        and datagram[HEADER_SIZE] == HandshakeType.CLIENT_HELLO
    )

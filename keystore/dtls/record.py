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
from .drops import DropReason
from .errors import DecodeError

#: type(1) + version(2) + epoch(2) + sequence_number(6) + length(2)
HEADER_SIZE = 13
MAX_SEQUENCE = 2**48 - 1
#: Largest datagram we look at; anything larger is not a DTLS datagram we produced.
MAX_DATAGRAM = 65535

_KNOWN_TYPES = frozenset(int(t) for t in ContentType)


class RecordError(DecodeError):
    """A record header is truncated, oversized or of unknown type/version; ``reason`` says
    which, for the transport's drop counters."""

    def __init__(self, message: str, reason: DropReason = DropReason.MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason


def _version_ok(version: int, content_type: int, epoch: int, first_byte: int) -> bool:
    """DTLS 1.2 or 1.0 in every record, except the record of an initial ClientHello.

    Why the exception: RFC 5246 App. E.1 (and RFC 6347, RFC 9147 §4 for DTLS) says a server
    must accept any record-layer version on a ClientHello and negotiate from the body's
    client_version. Mbed TLS 2.x puts its configured *minimum* version there, which for an
    SSL 3.0 minimum comes out as ``FE 00``; rejecting it locks those devices out silently.
    Only epoch-0 handshake records that start with a ClientHello get this leniency; protected
    records are checked against the negotiated version by the engine.
    """
    if version in (DTLS_1_2, DTLS_1_0):
        return True
    return (
        version >> 8 == 0xFE
        and content_type == ContentType.HANDSHAKE
        and epoch == 0
        and first_byte == HandshakeType.CLIENT_HELLO
    )


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
                raise RecordError(
                    "tls12_cid record without a negotiated connection id",
                    DropReason.UNEXPECTED_CID,
                )
            cid = buf.pull_bytes(cid_length)
        length = buf.pull_uint16()
        if content_type not in _KNOWN_TYPES:
            raise RecordError("unknown content type")
        if length > MAX_CIPHERTEXT:
            raise RecordError("record length exceeds 2^14 + 2048")
        fragment = buf.pull_bytes(length)
        if not _version_ok(version, content_type, epoch, fragment[0] if fragment else -1):
            raise RecordError(f"record version {version:#06x} refused", DropReason.BAD_VERSION)
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
    return parse_datagram_checked(data, cid_length)[0]


def parse_datagram_checked(
    data: bytes, cid_length: int | None = None
) -> tuple[list[Record], DropReason | None]:
    """Like :func:`parse_datagram`, and why the rest of the datagram was discarded (None when
    every byte framed), so that the transport can count and log what it dropped."""
    if len(data) > MAX_DATAGRAM:
        return [], DropReason.MALFORMED
    if not data:
        return [], DropReason.MALFORMED
    buf = Buffer(data)
    records: list[Record] = []
    while not buf.eof():
        try:
            records.append(pull_record(buf, cid_length))
        except RecordError as exc:
            return records, exc.reason
    return records, None


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

"""The CoAP message value type and its strict parser/serializer (RFC 7252 §3, RFC 7641, RFC 7959).

Why hand-written and flat: the parser is on the hot path of every datagram (budget ≈ 5 µs for an
Update), so it reads the header with indexing, keeps options as ``(number, bytes)`` pairs in wire
order and decodes typed values only when an accessor is asked. It is also strict: anything RFC 7252
calls a message format error raises :class:`MessageFormatError`, and a string option that is not
UTF-8 raises :class:`InvalidOptionValueError` carrying the parsed message (a request gets 4.00).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .errors import InvalidOptionValueError, MessageFormatError
from .numbers import STRING_OPTIONS, Code, OptionNumber, Type, dotted

Option = tuple[int, bytes]
Options = tuple[Option, ...]

_TYPES = (Type.CON, Type.NON, Type.ACK, Type.RST)
_HEAD_TYPES: tuple[Type | None, ...] = tuple(
    _TYPES[(b0 >> 4) & 3] if b0 >> 6 == 1 and b0 & 0x0F <= 8 else None for b0 in range(256)
)
"""The message type by the first byte, None for an unknown version or a reserved token length
(``parse``: one lookup for the three header checks)."""
_EXTENDED = frozenset(b for b in range(256) if b >> 4 >= 13 or b & 0x0F >= 13)
"""Option header bytes that are not a plain 4-bit delta and length: extended ones and the
payload marker 0xFF (``parse`` tests one set instead of four comparisons per option)."""
_ACK = Type.ACK
_STRING_NUMBERS = frozenset(int(n) for n in STRING_OPTIONS)
_NO_OPTIONS: Options = ()
_new = object.__new__

Opt = OptionNumber
_BARE: dict[int, Message] = {}
"""The responses :meth:`Message.response` gives for a code alone, by code (at most 256)."""


class Block(NamedTuple):
    """A Block1/Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        """Block size in bytes, ``2 ** (szx + 4)`` (szx 7 is BERT, only for reliable transports)."""
        return 16 << self.szx

    @property
    def offset(self) -> int:
        return self.num * (16 << self.szx)

    def encode(self) -> bytes:
        return encode_uint(self.num << 4 | (8 if self.more else 0) | self.szx)

    @classmethod
    def decode(cls, value: bytes) -> Block:
        v = int.from_bytes(value, "big")
        return cls(v >> 4, bool(v & 8), v & 7)


def encode_uint(value: int) -> bytes:
    """Minimal big-endian encoding of a uint option (zero is the empty string, RFC 7252 §3.2)."""
    if value < 0:
        raise ValueError("uint option values are non-negative")
    return value.to_bytes((value.bit_length() + 7) >> 3, "big")


def decode_uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


class Message:
    """One CoAP message. A value: treat it as immutable and use :meth:`replace` to derive one.

    A plain slots class rather than a frozen dataclass because ``object.__setattr__`` per field
    would cost more than the rest of the parse. ``options`` is a tuple of ``(number, value)``
    pairs sorted by number (repeated options keep their order); build it with :func:`options`.
    """

    __slots__ = ("code", "mid", "mtype", "options", "payload", "token")

    def __init__(
        self,
        mtype: Type,
        code: int,
        mid: int = 0,
        token: bytes = b"",
        options: Options = _NO_OPTIONS,
        payload: bytes = b"",
    ) -> None:
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = options
        self.payload = payload

    # -- construction helpers ---------------------------------------------------------------
    @classmethod
    def request(
        cls,
        code: Code,
        path: str | Sequence[str] = (),
        *,
        query: Sequence[str] = (),
        payload: bytes = b"",
        mtype: Type = Type.CON,
        token: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        observe: int | None = None,
        extra: Iterable[Option] = (),
    ) -> Message:
        """A request; ``path`` is ``"/3/0/1"`` or ``["3", "0", "1"]``."""
        segments = [s for s in path.split("/") if s] if isinstance(path, str) else list(path)
        opts = options(
            uri_path=segments,
            uri_query=query,
            content_format=content_format,
            accept=accept,
            observe=observe,
            extra=extra,
        )
        return cls(mtype, code, 0, token, opts, payload)

    @classmethod
    def response(
        cls,
        code: int,
        payload: bytes = b"",
        *,
        content_format: int | None = None,
        location_path: Sequence[str] = (),
        extra: Iterable[Option] = (),
    ) -> Message:
        """A response body for :meth:`Endpoint.respond` (type, MID and token are filled there)."""
        if content_format is None and not extra:
            if not payload and not location_path and cls is Message:
                # a bare code (2.04 to every Update): one shared value per code, never built
                # again (a Message is a value nobody changes; see the class docstring)
                bare = _BARE.get(code)
                if bare is None:
                    bare = _BARE[code] = cls(_ACK, code)
                return bare
            # the answers to Register/Update: no options, or only Location-Path (one number,
            # so already in order); ``options()`` costs more than the rest of this
            opts = tuple([(8, s.encode()) for s in location_path]) if location_path else ()
            return cls(_ACK, code, 0, b"", opts, payload)
        opts = options(content_format=content_format, location_path=location_path, extra=extra)
        return cls(_ACK, code, 0, b"", opts, payload)

    def replace(
        self,
        *,
        mtype: Type | None = None,
        code: int | None = None,
        mid: int | None = None,
        token: bytes | None = None,
        options: Options | None = None,
        payload: bytes | None = None,
    ) -> Message:
        return Message(
            self.mtype if mtype is None else mtype,
            self.code if code is None else code,
            self.mid if mid is None else mid,
            self.token if token is None else token,
            self.options if options is None else options,
            self.payload if payload is None else payload,
        )

    def with_option(self, number: int, value: bytes) -> Message:
        """A copy with every ``number`` option replaced by one carrying ``value``."""
        return self.replace(options=set_option(self.options, number, value))

    def without_options(self, *numbers: int) -> Message:
        drop = set(numbers)
        return self.replace(options=tuple(o for o in self.options if o[0] not in drop))

    # -- value semantics --------------------------------------------------------------------
    def _key(self) -> tuple[int, int, int, bytes, Options, bytes]:
        return (self.mtype, self.code, self.mid, self.token, self.options, self.payload)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        opts = ", ".join(f"{_option_name(n)}={v!r}" for n, v in self.options)
        return (
            f"<Message {self.mtype.name} {dotted(self.code)} mid={self.mid} "
            f"token={self.token.hex()} [{opts}] {len(self.payload)}B>"
        )

    # -- classification ---------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return 1 <= self.code <= 31

    @property
    def is_response(self) -> bool:
        return 64 <= self.code <= 191

    @property
    def is_empty(self) -> bool:
        return self.code == 0

    # -- raw option access ------------------------------------------------------------------
    # Option numbers are int literals below: ``OptionNumber.X`` is a lookup on the enum class
    # that costs ~0.1 µs on CPython 3.11, more than the scan of a request's options.
    def opt(self, number: int) -> bytes | None:
        """The first value of option ``number``, or None."""
        for n, v in self.options:
            if n == number:
                return v
        return None

    def opts(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def _uint(self, number: int) -> int | None:
        for n, v in self.options:
            if n == number:
                return int.from_bytes(v, "big")
        return None

    def _block(self, number: int) -> Block | None:
        for n, v in self.options:
            if n == number:
                return Block.decode(v)
        return None

    # -- typed accessors --------------------------------------------------------------------
    @property
    def uri_path(self) -> list[str]:
        return [v.decode() for n, v in self.options if n == 11]

    def path_query_format(self) -> tuple[list[str], list[str], int | None]:
        """``(uri_path, uri_query, content_format)`` in one pass over the options: what a
        server reads of every request it dispatches (the three accessors are five calls)."""
        path: list[str] = []
        query: list[str] = []
        fmt: int | None = None
        for n, v in self.options:
            if n == 11:
                path.append(v.decode())
            elif n == 15:
                query.append(v.decode())
            elif n == 12 and fmt is None:
                fmt = int.from_bytes(v, "big")
        return path, query, fmt

    @property
    def uri_path_str(self) -> str:
        return "/" + "/".join(v.decode() for n, v in self.options if n == 11)

    @property
    def uri_query(self) -> list[str]:
        return [v.decode() for n, v in self.options if n == 15]

    @property
    def uri_host(self) -> str | None:
        v = self.opt(3)
        return None if v is None else v.decode()

    @property
    def uri_port(self) -> int | None:
        return self._uint(7)

    @property
    def location_path(self) -> list[str]:
        return [v.decode() for n, v in self.options if n == 8]

    @property
    def location_query(self) -> list[str]:
        return [v.decode() for n, v in self.options if n == 20]

    @property
    def content_format(self) -> int | None:
        for n, v in self.options:  # ``_uint(12)`` inline: read for every request
            if n == 12:
                return int.from_bytes(v, "big")
        return None

    @property
    def accept(self) -> int | None:
        return self._uint(17)

    @property
    def observe(self) -> int | None:
        for n, v in self.options:  # ``_uint(6)`` inline: read several times per notification
            if n == 6:
                return int.from_bytes(v, "big")
        return None

    @property
    def max_age(self) -> int:
        """Max-Age, 60 seconds when absent (RFC 7252 §5.10.5)."""
        v = self._uint(14)
        return 60 if v is None else v

    @property
    def etag(self) -> bytes | None:
        return self.opt(4)

    @property
    def etags(self) -> list[bytes]:
        return self.opts(4)

    @property
    def if_match(self) -> list[bytes]:
        return self.opts(1)

    @property
    def if_none_match(self) -> bool:
        return self.opt(5) is not None

    @property
    def block1(self) -> Block | None:
        return self._block(27)

    @property
    def block2(self) -> Block | None:
        return self._block(23)

    @property
    def size1(self) -> int | None:
        return self._uint(60)

    @property
    def size2(self) -> int | None:
        return self._uint(28)


def _option_name(number: int) -> str:
    try:
        return OptionNumber(number).name.lower()
    except ValueError:
        return str(number)


def set_option(opts: Options, number: int, value: bytes) -> Options:
    """``opts`` with every ``number`` option replaced by one carrying ``value``, still sorted."""
    kept = [o for o in opts if o[0] != number]
    kept.append((number, value))
    kept.sort(key=_number)
    return tuple(kept)


def _number(option: Option) -> int:
    return option[0]


def options(
    *,
    uri_host: str | None = None,
    uri_path: Sequence[str] = (),
    uri_query: Sequence[str] = (),
    location_path: Sequence[str] = (),
    location_query: Sequence[str] = (),
    content_format: int | None = None,
    accept: int | None = None,
    observe: int | None = None,
    max_age: int | None = None,
    etag: bytes | None = None,
    if_match: Sequence[bytes] = (),
    block1: Block | None = None,
    block2: Block | None = None,
    size1: int | None = None,
    size2: int | None = None,
    extra: Iterable[Option] = (),
) -> Options:
    """Build a sorted option tuple from typed values (the inverse of the accessors)."""
    out: list[Option] = []
    if uri_host is not None:
        out.append((Opt.URI_HOST, uri_host.encode()))
    out.extend((Opt.URI_PATH, s.encode()) for s in uri_path)
    out.extend((Opt.URI_QUERY, s.encode()) for s in uri_query)
    out.extend((Opt.LOCATION_PATH, s.encode()) for s in location_path)
    out.extend((Opt.LOCATION_QUERY, s.encode()) for s in location_query)
    out.extend((Opt.IF_MATCH, v) for v in if_match)
    for number, uint in (
        (Opt.CONTENT_FORMAT, content_format),
        (Opt.ACCEPT, accept),
        (Opt.OBSERVE, observe),
        (Opt.MAX_AGE, max_age),
        (Opt.SIZE1, size1),
        (Opt.SIZE2, size2),
    ):
        if uint is not None:
            out.append((number, encode_uint(uint)))
    if etag is not None:
        out.append((Opt.ETAG, etag))
    if block1 is not None:
        out.append((Opt.BLOCK1, block1.encode()))
    if block2 is not None:
        out.append((Opt.BLOCK2, block2.encode()))
    out.extend(extra)
    out.sort(key=_number)
    return tuple((int(n), v) for n, v in out)


# -- wire format --------------------------------------------------------------------------------
def parse(data: bytes) -> Message:
    """Parse one datagram strictly.

    Raises :class:`MessageFormatError` for everything RFC 7252 calls a message format error
    (short header, token length 9-15, option delta/length 15, truncated option, payload marker
    with no payload, an Empty message with anything after the header) and for an unknown version
    (``silent``: ignored even for a CON, §3). Raises :class:`InvalidOptionValueError` after a
    complete parse when a string option is not valid UTF-8.
    """
    n = len(data)
    if n < 4:
        raise MessageFormatError("datagram shorter than the CoAP header", silent=True)
    b0 = data[0]
    mtype = _HEAD_TYPES[b0]  # None: an unknown version or a reserved token length
    mid = (data[2] << 8) | data[3]
    tkl = b0 & 0x0F
    if mtype is None:
        mtype = _TYPES[(b0 >> 4) & 3]
        if b0 >> 6 != 1:
            raise MessageFormatError(f"unknown CoAP version {b0 >> 6}", mtype, mid, silent=True)
        raise MessageFormatError(f"token length {tkl} is reserved", mtype, mid)
    code = data[1]
    pos = 4 + tkl
    if pos > n:
        raise MessageFormatError("datagram shorter than its token", mtype, mid)
    token = data[4:pos]
    opts: list[Option] = []
    number = 0
    bad_string = -1
    try:
        while pos < n:
            byte = data[pos]
            pos += 1
            if byte in _EXTENDED:
                # the payload marker, or a delta or length of 13 and up (rare for LwM2M)
                if byte == 0xFF:
                    if pos == n:
                        raise MessageFormatError("payload marker with an empty payload", mtype, mid)
                    break
                delta = byte >> 4
                length = byte & 0x0F
                if delta >= 13:
                    if delta == 13:
                        delta = data[pos] + 13
                        pos += 1
                    elif delta == 14:
                        delta = ((data[pos] << 8) | data[pos + 1]) + 269
                        pos += 2
                    else:
                        raise MessageFormatError("option delta 15 is reserved", mtype, mid)
                if length >= 13:
                    if length == 13:
                        length = data[pos] + 13
                        pos += 1
                    elif length == 14:
                        length = ((data[pos] << 8) | data[pos + 1]) + 269
                        pos += 2
                    else:
                        raise MessageFormatError("option length 15 is reserved", mtype, mid)
                number += delta
                end = pos + length
            else:
                number += byte >> 4
                end = pos + (byte & 0x0F)
            # an ``end`` past the datagram ends the loop: checked once after it
            value = data[pos:end]
            if number in _STRING_NUMBERS and not value.isascii() and bad_string < 0:
                try:  # ASCII is UTF-8: only other bytes need the (costlier) decode
                    value.decode()
                except UnicodeDecodeError:
                    bad_string = number
            opts.append((number, value))
            pos = end
    except IndexError:
        raise MessageFormatError("option header runs past the datagram", mtype, mid) from None
    if pos > n:
        raise MessageFormatError("option value runs past the datagram", mtype, mid)
    payload = data[pos:] if pos < n else b""
    if code == 0 and (tkl or opts or payload):
        raise MessageFormatError("Empty message with token, options or payload", mtype, mid)
    # ``Message(...)`` with its ``__init__`` written out: one Python call less per datagram
    # (tests/unit/coap/test_message.py holds every slot equal to the constructor's)
    message = _new(Message)
    message.mtype = mtype
    message.code = code
    message.mid = mid
    message.token = token
    message.options = tuple(opts) if opts else _NO_OPTIONS
    message.payload = payload
    if bad_string >= 0:
        raise InvalidOptionValueError(
            message, bad_string, f"option {_option_name(bad_string)} is not valid UTF-8"
        )
    return message


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    if value < 65805:
        return 14, (value - 269).to_bytes(2, "big")
    raise ValueError(f"option delta/length {value} too large")


def serialize(message: Message) -> bytes:
    """Encode a message; options are emitted in number order (stable for repeated options)."""
    token = message.token
    tkl = len(token)
    if tkl > 8:
        raise ValueError("token longer than 8 bytes")
    mid = message.mid
    out = bytearray((0x40 | (message.mtype << 4) | tkl, message.code, mid >> 8, mid & 0xFF))
    out += token
    opts = message.options
    last = 0
    for number, _ in opts:
        if number < last:
            opts = tuple(sorted(opts, key=_number))
            break
        last = number
    last = 0
    for number, value in opts:
        delta = number - last
        last = number
        length = len(value)
        if delta < 13 and length < 13:
            out.append((delta << 4) | length)
        else:
            d, dext = _ext(delta)
            ln, lext = _ext(length)
            out.append((d << 4) | ln)
            out += dext
            out += lext
        out += value
    if message.payload:
        out.append(0xFF)
        out += message.payload
    return bytes(out)


def piggybacked_options(
    code: int, mid: int, token: bytes, opts: Options, payload: bytes = b""
) -> bytes | None:
    """``serialize(Message(Type.ACK, code, mid, token, opts, payload))`` without the message,
    for options already in number order and without Block2; None for any other ``opts`` (the
    caller takes its general path: Block2 means a handler sliced its own answer, and options
    out of order must be sorted first).

    Why: the answer to a Register (2.01 with its Location-Path) is such an ACK, and the
    general path (a :class:`Message` built to be serialized, the options searched for Block2
    with a generator, then sorted-checked and encoded) cost several Python calls more."""
    tkl = len(token)
    if tkl > 8:
        raise ValueError("token longer than 8 bytes")
    out = bytearray((0x60 | tkl, code, mid >> 8, mid & 0xFF))
    out += token
    last = 0
    for number, value in opts:
        delta = number - last
        if delta < 0 or number == 23:
            return None
        last = number
        length = len(value)
        if delta < 13 and length < 13:
            out.append((delta << 4) | length)
        else:
            d, dext = _ext(delta)
            ln, lext = _ext(length)
            out.append((d << 4) | ln)
            out += dext
            out += lext
        out += value
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


def empty(mtype: Type, mid: int) -> bytes:
    """An Empty ACK or RST for ``mid`` (the two messages the message layer sends on its own)."""
    return bytes((0x40 | (mtype << 4), 0, mid >> 8, mid & 0xFF))


def piggybacked(code: int, mid: int, token: bytes, payload: bytes = b"") -> bytes:
    """``serialize(Message(Type.ACK, code, mid, token, (), payload))``, without the message.

    Why: the answer to nearly every request the server handles (2.04 to an Update or a Send,
    2.02 to a De-register, an error with its diagnostic payload) is an ACK without options,
    and building a :class:`Message` to serialize it cost more than the bytes themselves."""
    tkl = len(token)
    if tkl > 8:
        raise ValueError("token longer than 8 bytes")
    head = bytes((0x60 | tkl, code, mid >> 8, mid & 0xFF))
    if payload:
        return b"".join((head, token, b"\xff", payload))
    return head + token

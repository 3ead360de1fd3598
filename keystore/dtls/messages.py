"""Handshake messages (RFC 5246 §7.4, RFC 6347 §4.2/4.3, RFC 4279, RFC 8422, RFC 7250).

Why aioquic style: each message is a small typed class plus ``pull_x(buf)``/``push_x(w, msg)``.
Parsers check every declared length against the buffer (via :class:`Buffer`) and refuse
trailing bytes, so a malformed message surfaces as :class:`DecodeError` and the state machine
answers decode_error; nothing here allocates more than the message it was given.
"""

from __future__ import annotations

from .buffer import Buffer, Writer
from .constants import EC_CURVE_TYPE_NAMED, CertificateType, HandshakeType
from .errors import DecodeError

#: msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
HANDSHAKE_HEADER_SIZE = 12
RANDOM_LEN = 32
MAX_SESSION_ID = 32
MAX_COOKIE = 255
#: RFC 4279 allows 2^16-1; we follow the LwM2M profile and refuse longer identities early.
MAX_PSK_IDENTITY = 128

Extensions = list[tuple[int, bytes]]


# ---------------------------------------------------------------------------------------------
# Handshake fragment header (RFC 6347 §4.2.2)


class HandshakeFragment:
    __slots__ = ("body", "fragment_offset", "length", "message_seq", "msg_type")

    def __init__(
        self, msg_type: int, length: int, message_seq: int, fragment_offset: int, body: bytes
    ) -> None:
        self.msg_type = msg_type
        self.length = length
        self.message_seq = message_seq
        self.fragment_offset = fragment_offset
        self.body = body

    @property
    def is_complete(self) -> bool:
        return self.fragment_offset == 0 and len(self.body) == self.length


def pull_handshake_fragment(buf: Buffer) -> HandshakeFragment:
    msg_type = buf.pull_uint8()
    length = buf.pull_uint24()
    message_seq = buf.pull_uint16()
    offset = buf.pull_uint24()
    frag_len = buf.pull_uint24()
    if offset + frag_len > length:
        raise DecodeError("handshake fragment beyond message length")
    body = buf.pull_bytes(frag_len)
    return HandshakeFragment(msg_type, length, message_seq, offset, body)


def encode_handshake_fragment(
    msg_type: int, message_seq: int, total_length: int, offset: int, body: bytes
) -> bytes:
    w = Writer()
    w.push_uint8(msg_type)
    w.push_uint24(total_length)
    w.push_uint16(message_seq)
    w.push_uint24(offset)
    w.push_uint24(len(body))
    w.push_bytes(body)
    return w.getvalue()


def encode_handshake(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """A whole message with its DTLS header, as it goes into the transcript hash."""
    return encode_handshake_fragment(msg_type, message_seq, len(body), 0, body)


# ---------------------------------------------------------------------------------------------
# Extensions block


def find_extension(extensions: Extensions, ext_type: int) -> bytes | None:
    """The body of the first extension of ``ext_type`` in a hello, or None."""
    for t, data in extensions:
        if t == ext_type:
            return data
    return None


def pull_extensions(buf: Buffer) -> Extensions:
    """The optional extensions block at the end of a hello; duplicates are a decode_error."""
    if buf.eof():
        return []
    block = Buffer(buf.pull_vector16())
    out: Extensions = []
    seen: set[int] = set()
    while not block.eof():
        ext_type = block.pull_uint16()
        data = block.pull_vector16()
        if ext_type in seen:
            raise DecodeError("duplicate extension")
        seen.add(ext_type)
        out.append((ext_type, data))
    return out


def push_extensions(w: Writer, extensions: Extensions) -> None:
    if not extensions:
        return
    block = Writer()
    for ext_type, data in extensions:
        block.push_uint16(ext_type)
        block.push_vector16(data)
    w.push_vector16(block.getvalue())


# ---------------------------------------------------------------------------------------------
# Hellos


class ClientHello:
    __slots__ = (
        "cipher_suites",
        "client_version",
        "compression_methods",
        "cookie",
        "extensions",
        "random",
        "session_id",
    )

    def __init__(
        self,
        client_version: int,
        random: bytes,
        session_id: bytes,
        cookie: bytes,
        cipher_suites: list[int],
        compression_methods: bytes,
        extensions: Extensions,
    ) -> None:
        self.client_version = client_version
        self.random = random
        self.session_id = session_id
        self.cookie = cookie
        self.cipher_suites = cipher_suites
        self.compression_methods = compression_methods
        self.extensions = extensions

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)


def pull_client_hello(buf: Buffer) -> ClientHello:
    version = buf.pull_uint16()
    random = buf.pull_bytes(RANDOM_LEN)
    session_id = buf.pull_vector8()
    if len(session_id) > MAX_SESSION_ID:
        raise DecodeError("session id too long")
    cookie = buf.pull_vector8()
    suites_raw = buf.pull_vector16()
    if len(suites_raw) % 2 or not suites_raw:
        raise DecodeError("bad cipher_suites vector")
    suites = [int.from_bytes(suites_raw[i : i + 2], "big") for i in range(0, len(suites_raw), 2)]
    compression = buf.pull_vector8()
    if not compression:
        raise DecodeError("empty compression_methods")
    extensions = pull_extensions(buf)
    buf.expect_eof()
    return ClientHello(version, random, session_id, cookie, suites, compression, extensions)


def push_client_hello(w: Writer, msg: ClientHello) -> None:
    w.push_uint16(msg.client_version)
    w.push_bytes(msg.random)
    w.push_vector8(msg.session_id)
    w.push_vector8(msg.cookie)
    w.push_vector16(b"".join(s.to_bytes(2, "big") for s in msg.cipher_suites))
    w.push_vector8(msg.compression_methods)
    push_extensions(w, msg.extensions)


class ServerHello:
    __slots__ = (
        "cipher_suite",
        "compression_method",
        "extensions",
        "random",
        "server_version",
        "session_id",
    )

    def __init__(
        self,
        server_version: int,
        random: bytes,
        session_id: bytes,
        cipher_suite: int,
        compression_method: int,
        extensions: Extensions,
    ) -> None:
        self.server_version = server_version
        self.random = random
        self.session_id = session_id
        self.cipher_suite = cipher_suite
        self.compression_method = compression_method
        self.extensions = extensions

    def extension(self, ext_type: int) -> bytes | None:
        return find_extension(self.extensions, ext_type)


def pull_server_hello(buf: Buffer) -> ServerHello:
    version = buf.pull_uint16()
    random = buf.pull_bytes(RANDOM_LEN)
    session_id = buf.pull_vector8()
    if len(session_id) > MAX_SESSION_ID:
        raise DecodeError("session id too long")
    suite = buf.pull_uint16()
    compression = buf.pull_uint8()
    extensions = pull_extensions(buf)
    buf.expect_eof()
    return ServerHello(version, random, session_id, suite, compression, extensions)


def push_server_hello(w: Writer, msg: ServerHello) -> None:
    w.push_uint16(msg.server_version)
    w.push_bytes(msg.random)
    w.push_vector8(msg.session_id)
    w.push_uint16(msg.cipher_suite)
    w.push_uint8(msg.compression_method)
    push_extensions(w, msg.extensions)


class HelloVerifyRequest:
    __slots__ = ("cookie", "server_version")

    def __init__(self, server_version: int, cookie: bytes) -> None:
        self.server_version = server_version
        self.cookie = cookie


def pull_hello_verify_request(buf: Buffer) -> HelloVerifyRequest:
    version = buf.pull_uint16()
    cookie = buf.pull_vector8()
    buf.expect_eof()
    return HelloVerifyRequest(version, cookie)


def push_hello_verify_request(w: Writer, msg: HelloVerifyRequest) -> None:
    w.push_uint16(msg.server_version)
    w.push_vector8(msg.cookie)


# ---------------------------------------------------------------------------------------------
# Certificate (RFC 5246 §7.4.2, RFC 7250 §3)


class Certificate:
    """Either an X.509 chain (leaf first) or exactly one raw SubjectPublicKeyInfo."""

    __slots__ = ("certificate_type", "certificates")

    def __init__(self, certificate_type: CertificateType, certificates: list[bytes]) -> None:
        self.certificate_type = certificate_type
        self.certificates = certificates


def pull_certificate(buf: Buffer, certificate_type: CertificateType) -> Certificate:
    if certificate_type is CertificateType.RAW_PUBLIC_KEY:
        spki = buf.pull_vector24()
        buf.expect_eof()
        if not spki:
            raise DecodeError("empty raw public key")
        return Certificate(certificate_type, [spki])
    chain = Buffer(buf.pull_vector24())
    buf.expect_eof()
    certs: list[bytes] = []
    while not chain.eof():
        cert = chain.pull_vector24()
        if not cert:
            raise DecodeError("empty certificate in chain")
        certs.append(cert)
    return Certificate(certificate_type, certs)


def push_certificate(w: Writer, msg: Certificate) -> None:
    if msg.certificate_type is CertificateType.RAW_PUBLIC_KEY:
        w.push_vector24(msg.certificates[0])
        return
    chain = Writer()
    for cert in msg.certificates:
        chain.push_vector24(cert)
    w.push_vector24(chain.getvalue())


# ---------------------------------------------------------------------------------------------
# ServerKeyExchange


class ServerKeyExchangeEcdhe:
    """ECDHE params and their signature; ``params`` is kept raw because it is what is signed."""

    __slots__ = ("named_curve", "params", "public_key", "signature", "signature_scheme")

    def __init__(
        self, named_curve: int, public_key: bytes, signature_scheme: int, signature: bytes
    ) -> None:
        self.named_curve = named_curve
        self.public_key = public_key
        self.signature_scheme = signature_scheme
        self.signature = signature
        w = Writer()
        w.push_uint8(EC_CURVE_TYPE_NAMED)
        w.push_uint16(named_curve)
        w.push_vector8(public_key)
        self.params = w.getvalue()


def pull_server_key_exchange_ecdhe(buf: Buffer) -> ServerKeyExchangeEcdhe:
    if buf.pull_uint8() != EC_CURVE_TYPE_NAMED:
        raise DecodeError("only named curves are supported")
    curve = buf.pull_uint16()
    point = buf.pull_vector8()
    scheme = buf.pull_uint16()
    signature = buf.pull_vector16()
    buf.expect_eof()
    return ServerKeyExchangeEcdhe(curve, point, scheme, signature)


def push_server_key_exchange_ecdhe(w: Writer, msg: ServerKeyExchangeEcdhe) -> None:
    w.push_bytes(msg.params)
    w.push_uint16(msg.signature_scheme)
    w.push_vector16(msg.signature)


class ServerKeyExchangePsk:
    __slots__ = ("identity_hint",)

    def __init__(self, identity_hint: bytes) -> None:
        self.identity_hint = identity_hint


def pull_server_key_exchange_psk(buf: Buffer) -> ServerKeyExchangePsk:
    hint = buf.pull_vector16()
    buf.expect_eof()
    return ServerKeyExchangePsk(hint)


def push_server_key_exchange_psk(w: Writer, msg: ServerKeyExchangePsk) -> None:
    w.push_vector16(msg.identity_hint)


# ---------------------------------------------------------------------------------------------
# CertificateRequest (RFC 5246 §7.4.4)


class CertificateRequest:
    __slots__ = ("certificate_authorities", "certificate_types", "signature_algorithms")

    def __init__(
        self,
        certificate_types: bytes,
        signature_algorithms: list[int],
        certificate_authorities: bytes = b"",
    ) -> None:
        self.certificate_types = certificate_types
        self.signature_algorithms = signature_algorithms
        self.certificate_authorities = certificate_authorities


def pull_certificate_request(buf: Buffer) -> CertificateRequest:
    types = buf.pull_vector8()
    algs_raw = buf.pull_vector16()
    if len(algs_raw) % 2:
        raise DecodeError("odd signature_algorithms length")
    algs = [int.from_bytes(algs_raw[i : i + 2], "big") for i in range(0, len(algs_raw), 2)]
    cas = buf.pull_vector16()
    buf.expect_eof()
    return CertificateRequest(types, algs, cas)


def push_certificate_request(w: Writer, msg: CertificateRequest) -> None:
    w.push_vector8(msg.certificate_types)
    w.push_vector16(b"".join(a.to_bytes(2, "big") for a in msg.signature_algorithms))
    w.push_vector16(msg.certificate_authorities)


# ---------------------------------------------------------------------------------------------
# ClientKeyExchange, CertificateVerify, Finished


def pull_client_key_exchange_psk(buf: Buffer) -> bytes:
    """Returns the PSK identity (RFC 4279 §2)."""
    identity = buf.pull_vector16()
    buf.expect_eof()
    return identity


def push_client_key_exchange_psk(w: Writer, identity: bytes) -> None:
    w.push_vector16(identity)


def pull_client_key_exchange_ecdhe(buf: Buffer) -> bytes:
    """Returns the client's uncompressed EC point (RFC 8422 §5.7)."""
    point = buf.pull_vector8()
    buf.expect_eof()
    if not point:
        raise DecodeError("empty EC point")
    return point


def push_client_key_exchange_ecdhe(w: Writer, point: bytes) -> None:
    w.push_vector8(point)


class CertificateVerify:
    __slots__ = ("signature", "signature_scheme")

    def __init__(self, signature_scheme: int, signature: bytes) -> None:
        self.signature_scheme = signature_scheme
        self.signature = signature


def pull_certificate_verify(buf: Buffer) -> CertificateVerify:
    scheme = buf.pull_uint16()
    signature = buf.pull_vector16()
    buf.expect_eof()
    return CertificateVerify(scheme, signature)


def push_certificate_verify(w: Writer, msg: CertificateVerify) -> None:
    w.push_uint16(msg.signature_scheme)
    w.push_vector16(msg.signature)


def pull_finished(buf: Buffer) -> bytes:
    verify_data = buf.pull_rest()
    if len(verify_data) != 12:
        raise DecodeError("Finished verify_data must be 12 bytes")
    return verify_data


def pull_empty(buf: Buffer) -> None:
    """ServerHelloDone and HelloRequest have empty bodies."""
    buf.expect_eof()


HANDSHAKE_NAMES = {int(t): t.name for t in HandshakeType}

"""The client side of the handshake state machine (full and abbreviated).

Why its own module: the client decides which suites and certificate types to offer and verifies
the server; the server module mirrors it. Both only consume messages and return :class:`Step`.

Message order handled (RFC 5246 §7.3, RFC 6347 §4.2.1)::

    ClientHello            -->
                           <--  HelloVerifyRequest        (then ClientHello again, with cookie)
                           <--  ServerHello [Certificate] [ServerKeyExchange]
                                [CertificateRequest] ServerHelloDone
    [Certificate] ClientKeyExchange [CertificateVerify] ChangeCipherSpec Finished  -->
                           <--  ChangeCipherSpec Finished

    abbreviated: ClientHello(session_id) --> ; <-- ServerHello CCS Finished ; CCS Finished -->
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .buffer import Buffer, Writer
from .certificates import load_raw_public_key, verify_certificate_chain
from .config import ClientConfig
from .constants import (
    DTLS_1_2,
    EC_POINT_UNCOMPRESSED,
    AlertDescription,
    CertificateType,
    ClientCertificateType,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    SignatureScheme,
)
from .errors import AlertError, ConfigError, DecodeError
from .events import HandshakeComplete
from .extensions import (
    decode_empty,
    decode_opaque8,
    decode_single_uint8,
    encode_opaque8,
    encode_uint8_list,
    encode_uint16_list,
)
from .handshake import (
    FlightItem,
    HandshakeBase,
    Step,
    ccs_item,
    ecdh_shared_secret,
    ecdsa_sign,
    ecdsa_verify,
    run_verifier,
    sha256_digest,
)
from .identity import PskIdentity, RawPublicKeyIdentity, X509Identity
from .keyschedule import psk_premaster_secret
from .messages import (
    Certificate,
    CertificateVerify,
    ClientHello,
    pull_certificate,
    pull_certificate_request,
    pull_empty,
    pull_finished,
    pull_hello_verify_request,
    pull_server_hello,
    pull_server_key_exchange_ecdhe,
    pull_server_key_exchange_psk,
    push_certificate,
    push_certificate_verify,
    push_client_hello,
    push_client_key_exchange_ecdhe,
    push_client_key_exchange_psk,
)
from .session import Session
from .suites import SUITES, KeyExchange

#: A server that keeps sending HelloVerifyRequests is not going to let us in.
MAX_HELLO_VERIFY = 4


def _usable_suites(config: ClientConfig) -> list[int]:
    suites = []
    for code in config.cipher_suites:
        info = SUITES[code]
        if info.kex is KeyExchange.PSK and config.psk is None:
            continue
        if info.kex is KeyExchange.ECDHE_ECDSA and not (config.verify_rpk or config.trust_store):
            continue
        suites.append(int(code))
    if not suites:
        raise ConfigError("no cipher suite usable with the configured credentials")
    return suites


class ClientHandshake(HandshakeBase):
    __slots__ = (
        "cert_requested",
        "client_cert_type",
        "client_hello",
        "config",
        "cookie",
        "hello_verify_count",
        "offered_extensions",
        "offered_suites",
        "server_cert_type",
        "server_key",
        "server_point",
    )

    is_client = True

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config.timing)
        self.config = config
        self.offered_suites = _usable_suites(config)
        self.offered_extensions: set[int] = set()
        self.client_random = os.urandom(32)
        self.cookie = b""
        self.hello_verify_count = 0
        self.client_hello: tuple[int, bytes] = (0, b"")
        self.server_key: ec.EllipticCurvePublicKey | None = None
        self.server_point = b""
        self.cert_requested = False
        self.server_cert_type = CertificateType.X509
        self.client_cert_type = CertificateType.X509

    # -- flight 1 -----------------------------------------------------------------------------
    def start(self) -> Step:
        self.state = "hello"
        return Step(flight=[self._client_hello_item()])

    def _extensions(self) -> list[tuple[int, bytes]]:
        cfg = self.config
        infos = [SUITES[s] for s in self.offered_suites]
        has_ecdhe = any(i.kex is KeyExchange.ECDHE_ECDSA for i in infos)
        exts: list[tuple[int, bytes]] = []
        if has_ecdhe:
            exts.append(
                (ExtensionType.supported_groups, encode_uint16_list([NamedGroup.secp256r1]))
            )
            exts.append(
                (ExtensionType.ec_point_formats, encode_uint8_list([EC_POINT_UNCOMPRESSED]))
            )
            exts.append(
                (
                    ExtensionType.signature_algorithms,
                    encode_uint16_list([SignatureScheme.ecdsa_secp256r1_sha256]),
                )
            )
            if cfg.private_key is not None and cfg.certificate_chain is None:
                exts.append(
                    (
                        ExtensionType.client_certificate_type,
                        encode_uint8_list([CertificateType.RAW_PUBLIC_KEY]),
                    )
                )
            server_types = []
            if cfg.verify_rpk is not None:
                server_types.append(CertificateType.RAW_PUBLIC_KEY)
            if cfg.trust_store:
                server_types.append(CertificateType.X509)
            if CertificateType.RAW_PUBLIC_KEY in server_types:
                exts.append(
                    (ExtensionType.server_certificate_type, encode_uint8_list(server_types))
                )
        if any(i.is_cbc for i in infos) and cfg.offer_encrypt_then_mac:
            exts.append((ExtensionType.encrypt_then_mac, b""))
        if cfg.offer_extended_master_secret:
            exts.append((ExtensionType.extended_master_secret, b""))
        if cfg.connection_id is not None:
            exts.append((ExtensionType.connection_id, encode_opaque8(cfg.connection_id)))
        exts.append((ExtensionType.renegotiation_info, encode_opaque8(b"")))
        self.offered_extensions = {t for t, _ in exts}
        return exts

    def _client_hello_item(self) -> FlightItem:
        session_id = self.config.session.session_id if self.config.session else b""
        hello = ClientHello(
            DTLS_1_2,
            self.client_random,
            session_id,
            self.cookie,
            self.offered_suites,
            b"\x00",
            self._extensions(),
        )
        w = Writer()
        push_client_hello(w, hello)
        body = w.getvalue()
        seq = self.out_seq
        self.out_seq += 1
        # Not hashed yet: a HelloVerifyRequest exchange is excluded from the transcript.
        self.client_hello = (seq, body)
        # The server's reply mirrors our message_seq (RFC 6347 §4.2.2 as implemented widely).
        self.reassembler.next_seq = seq
        return (0, ContentType.HANDSHAKE, HandshakeType.CLIENT_HELLO, seq, body)

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, msg_type: int, seq: int, body: bytes, epoch: int) -> Step | None:
        buf = Buffer(body)
        state = self.state
        try:
            if state == "hello":
                if msg_type == HandshakeType.HELLO_VERIFY_REQUEST:
                    return self._on_hello_verify(buf)
                if msg_type == HandshakeType.SERVER_HELLO:
                    self._on_server_hello(seq, body)
                    return None
            elif state == "certificate" and msg_type == HandshakeType.CERTIFICATE:
                self._on_certificate(buf)
                self.add_to_transcript(msg_type, seq, body)
                self.state = "ske"
                return None
            elif state == "ske" and msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
                self._on_ske_ecdhe(buf)
                self.add_to_transcript(msg_type, seq, body)
                self.state = "cr_or_done"
                return None
            elif state == "ske_or_done" and msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
                pull_server_key_exchange_psk(buf)  # hint: informational only
                self.add_to_transcript(msg_type, seq, body)
                self.state = "done"
                return None
            elif state == "cr_or_done" and msg_type == HandshakeType.CERTIFICATE_REQUEST:
                req = pull_certificate_request(buf)
                self.cert_requested = ClientCertificateType.ecdsa_sign in req.certificate_types
                if not self.cert_requested:
                    raise AlertError(
                        AlertDescription.handshake_failure, "server wants a non-ECDSA certificate"
                    )
                self.add_to_transcript(msg_type, seq, body)
                self.state = "done"
                return None
            elif (
                state in ("ske_or_done", "cr_or_done", "done")
                and msg_type == HandshakeType.SERVER_HELLO_DONE
            ):
                pull_empty(buf)
                self.add_to_transcript(msg_type, seq, body)
                return self._client_flight()
            elif state == "finished" and msg_type == HandshakeType.FINISHED:
                if epoch == 0:
                    raise AlertError(AlertDescription.unexpected_message, "unprotected Finished")
                return self._on_finished(seq, body)
        except DecodeError:
            raise AlertError(AlertDescription.decode_error, "malformed handshake message") from None
        except ValueError:
            raise AlertError(AlertDescription.illegal_parameter, "bad value in message") from None
        raise AlertError(AlertDescription.unexpected_message, "unexpected handshake message")

    def on_ccs(self) -> None:
        self.state = "finished"

    # -- handlers -----------------------------------------------------------------------------
    def _on_hello_verify(self, buf: Buffer) -> Step:
        hvr = pull_hello_verify_request(buf)
        self.hello_verify_count += 1
        if self.hello_verify_count > MAX_HELLO_VERIFY or not hvr.cookie:
            raise AlertError(AlertDescription.handshake_failure, "cookie exchange does not end")
        self.cookie = hvr.cookie
        return Step(flight=[self._client_hello_item()])

    def _on_server_hello(self, seq: int, body: bytes) -> None:
        cfg = self.config
        sh = pull_server_hello(Buffer(body))
        if sh.server_version != DTLS_1_2:
            raise AlertError(AlertDescription.protocol_version, "server did not pick DTLS 1.2")
        if sh.cipher_suite not in self.offered_suites or sh.compression_method != 0:
            raise AlertError(
                AlertDescription.illegal_parameter, "server picked what we did not offer"
            )
        for ext_type, _ in sh.extensions:
            if ext_type not in self.offered_extensions:
                raise AlertError(AlertDescription.unsupported_extension, "unsolicited extension")
        self.server_random = sh.random
        ch_seq, ch_body = self.client_hello
        self.add_to_transcript(HandshakeType.CLIENT_HELLO, ch_seq, ch_body)
        self.add_to_transcript(HandshakeType.SERVER_HELLO, seq, body)
        self.suite = suite = SUITES[sh.cipher_suite]
        reneg = sh.extension(ExtensionType.renegotiation_info)
        if reneg is not None and decode_opaque8(reneg):
            raise AlertError(AlertDescription.handshake_failure, "non-empty renegotiation_info")
        ems = sh.extension(ExtensionType.extended_master_secret)
        if ems is not None:
            decode_empty(ems)
        self.ems = ems is not None
        etm = sh.extension(ExtensionType.encrypt_then_mac)
        if etm is not None:
            decode_empty(etm)
        self.etm = etm is not None and suite.is_cbc
        cid = sh.extension(ExtensionType.connection_id)
        if cid is not None:
            self.peer_cid = decode_opaque8(cid)
            self.own_cid = cfg.connection_id
        session = cfg.session
        if session is not None and session.session_id and sh.session_id == session.session_id:
            if sh.cipher_suite != session.cipher_suite:
                raise AlertError(AlertDescription.illegal_parameter, "resumed with another suite")
            if session.extended_master_secret != self.ems:
                raise AlertError(
                    AlertDescription.handshake_failure, "extended_master_secret changed on resume"
                )
            self.resumed = True
            self.session_id = sh.session_id
            self.master_secret = session.master_secret
            self.peer_identity = session.peer_identity
            self.derive_keys(cfg.allow_mac_then_encrypt)
            self.state = "ccs"
            return
        if cfg.require_extended_master_secret and not self.ems:
            raise AlertError(AlertDescription.handshake_failure, "extended_master_secret required")
        if suite.is_cbc and not self.etm and not cfg.allow_mac_then_encrypt:
            raise AlertError(AlertDescription.insufficient_security, "CBC without encrypt_then_mac")
        self.session_id = sh.session_id
        sct = sh.extension(ExtensionType.server_certificate_type)
        if sct is not None:
            self.server_cert_type = CertificateType(decode_single_uint8(sct))
        cct = sh.extension(ExtensionType.client_certificate_type)
        if cct is not None:
            self.client_cert_type = CertificateType(decode_single_uint8(cct))
        self.state = "certificate" if suite.kex is KeyExchange.ECDHE_ECDSA else "ske_or_done"

    def _on_certificate(self, buf: Buffer) -> None:
        cfg = self.config
        cert = pull_certificate(buf, self.server_cert_type)
        if self.server_cert_type is CertificateType.RAW_PUBLIC_KEY:
            spki = cert.certificates[0]
            key = load_raw_public_key(spki)
            if cfg.verify_rpk is None or not run_verifier(cfg.verify_rpk, spki):
                raise AlertError(AlertDescription.bad_certificate, "server raw public key refused")
            self.peer_identity = RawPublicKeyIdentity(spki)
        else:
            if not cfg.trust_store:
                raise AlertError(AlertDescription.unsupported_certificate, "no X.509 trust store")
            key = verify_certificate_chain(cert.certificates, cfg.trust_store, cfg.clock())
            self.peer_identity = X509Identity(tuple(cert.certificates))
        self.server_key = key

    def _on_ske_ecdhe(self, buf: Buffer) -> None:
        ske = pull_server_key_exchange_ecdhe(buf)
        if ske.named_curve != NamedGroup.secp256r1:
            raise AlertError(AlertDescription.illegal_parameter, "server picked another curve")
        assert self.server_key is not None
        digest = sha256_digest(self.client_random, self.server_random, ske.params)
        ecdsa_verify(
            self.server_key, ske.signature_scheme, ske.signature, digest, "ServerKeyExchange"
        )
        self.server_point = ske.public_key

    def _client_flight(self) -> Step:
        cfg = self.config
        suite = self.suite
        assert suite is not None
        items: list[FlightItem] = []
        sent_cert = False
        if self.cert_requested:
            if self.client_cert_type is CertificateType.RAW_PUBLIC_KEY:
                if cfg.own_spki is None:
                    raise AlertError(AlertDescription.handshake_failure, "no raw public key")
                cert = Certificate(CertificateType.RAW_PUBLIC_KEY, [cfg.own_spki])
                sent_cert = True
            else:
                chain = list(cfg.certificate_chain or [])
                cert = Certificate(CertificateType.X509, chain)
                sent_cert = bool(chain)
            w = Writer()
            push_certificate(w, cert)
            items.append(self.outgoing(HandshakeType.CERTIFICATE, w.getvalue()))
        w = Writer()
        if suite.kex is KeyExchange.PSK:
            assert cfg.psk_identity is not None and cfg.psk is not None
            push_client_key_exchange_psk(w, cfg.psk_identity)
            premaster = psk_premaster_secret(cfg.psk)
            self.peer_identity = PskIdentity(cfg.psk_identity)
        else:
            ephemeral = ec.generate_private_key(ec.SECP256R1())
            point = ephemeral.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            push_client_key_exchange_ecdhe(w, point)
            premaster = ecdh_shared_secret(ephemeral, self.server_point)
        items.append(self.outgoing(HandshakeType.CLIENT_KEY_EXCHANGE, w.getvalue()))
        self.set_master_secret(premaster)
        self.derive_keys(cfg.allow_mac_then_encrypt)
        if sent_cert and cfg.private_key is not None:
            signature = ecdsa_sign(cfg.private_key, self.transcript_hash())
            w = Writer()
            push_certificate_verify(
                w, CertificateVerify(SignatureScheme.ecdsa_secp256r1_sha256, signature)
            )
            items.append(self.outgoing(HandshakeType.CERTIFICATE_VERIFY, w.getvalue()))
        items.append(ccs_item())
        items.append(self.outgoing(HandshakeType.FINISHED, self.verify_data(True), epoch=1))
        self.state = "ccs"
        return Step(flight=items)

    def _on_finished(self, seq: int, body: bytes) -> Step:
        verify_data = pull_finished(Buffer(body))
        if not hmac.compare_digest(verify_data, self.verify_data(False)):
            raise AlertError(AlertDescription.decrypt_error, "server Finished does not verify")
        self.add_to_transcript(HandshakeType.FINISHED, seq, body)
        flight: list[FlightItem] | None = None
        if self.resumed:
            flight = [
                ccs_item(),
                self.outgoing(HandshakeType.FINISHED, self.verify_data(True), epoch=1),
            ]
        assert self.suite is not None and self.peer_identity is not None
        session = Session(
            self.session_id,
            self.master_secret,
            int(self.suite.code),
            self.peer_identity,
            self.ems,
            self.etm,
        )
        complete = HandshakeComplete(
            peer_identity=self.peer_identity,
            cipher_suite=int(self.suite.code),
            session_id=self.session_id,
            resumed=self.resumed,
            extended_master_secret=self.ems,
            connection_id=self.own_cid if self.own_cid else None,
        )
        self.state = "done_handshake"
        return Step(flight=flight, final=True, complete=complete, session=session)

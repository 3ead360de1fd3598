"""The server side of the handshake state machine (full and abbreviated).

Why it never looks at the cookie: the transport already ran :class:`CookieVerifier` before this
object existed, so anything reaching here has proved return routability.

Policy decisions made here:

* suite choice follows *our* preference order among the client's offers; CBC suites are only
  eligible with encrypt_then_mac unless ``allow_mac_then_encrypt``;
* certificate types (RFC 7250): the first type in the client's list that we can serve/verify;
* extended_master_secret is used whenever offered; a resumption that would change it is refused
  or downgraded to a full handshake exactly as RFC 7627 §5.3 says;
* renegotiation is never done; an initial ClientHello must carry an empty renegotiation_info
  (or the SCSV) for us to echo it.
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .buffer import Buffer, Writer
from .certificates import load_raw_public_key, verify_certificate_chain
from .config import ServerConfig
from .constants import (
    DTLS_1_2,
    EC_POINT_UNCOMPRESSED,
    AlertDescription,
    CertificateType,
    CipherSuite,
    ClientCertificateType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    SignatureScheme,
)
from .errors import AlertError, DecodeError
from .events import HandshakeComplete
from .extensions import (
    decode_empty,
    decode_opaque8,
    decode_uint8_list,
    decode_uint16_list,
    encode_opaque8,
    encode_uint8_list,
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
from .identity import AnonymousIdentity, PskIdentity, RawPublicKeyIdentity, X509Identity
from .keyschedule import psk_premaster_secret
from .messages import (
    MAX_PSK_IDENTITY,
    Certificate,
    CertificateRequest,
    ClientHello,
    ServerHello,
    ServerKeyExchangeEcdhe,
    ServerKeyExchangePsk,
    pull_certificate,
    pull_certificate_verify,
    pull_client_hello,
    pull_client_key_exchange_ecdhe,
    pull_client_key_exchange_psk,
    pull_finished,
    push_certificate,
    push_certificate_request,
    push_server_hello,
    push_server_key_exchange_ecdhe,
    push_server_key_exchange_psk,
)
from .session import Session
from .suites import SUITES, KeyExchange, SuiteInfo


class ServerHandshake(HandshakeBase):
    __slots__ = (
        "cert_requested",
        "client_cert_type",
        "client_key",
        "config",
        "ecdh_key",
        "server_cert_type",
    )

    is_client = False

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config.timing)
        self.config = config
        self.state = "client_hello"
        self.ecdh_key: ec.EllipticCurvePrivateKey | None = None
        self.client_key: ec.EllipticCurvePublicKey | None = None
        self.cert_requested = False
        self.server_cert_type = CertificateType.X509
        self.client_cert_type = CertificateType.X509

    def handle(self, msg_type: int, seq: int, body: bytes, epoch: int) -> Step | None:
        buf = Buffer(body)
        state = self.state
        try:
            if state == "client_hello" and msg_type == HandshakeType.CLIENT_HELLO:
                return self._on_client_hello(seq, body)
            if state == "client_certificate" and msg_type == HandshakeType.CERTIFICATE:
                self._on_certificate(buf)
                self.add_to_transcript(msg_type, seq, body)
                self.state = "cke"
                return None
            if state == "cke" and msg_type == HandshakeType.CLIENT_KEY_EXCHANGE:
                self._on_client_key_exchange(seq, body)
                return None
            if state == "cert_verify" and msg_type == HandshakeType.CERTIFICATE_VERIFY:
                cv = pull_certificate_verify(buf)
                assert self.client_key is not None
                ecdsa_verify(
                    self.client_key,
                    cv.signature_scheme,
                    cv.signature,
                    self.transcript_hash(),
                    "CertificateVerify",
                )
                self.add_to_transcript(msg_type, seq, body)
                self.state = "ccs"
                return None
            if state == "finished" and msg_type == HandshakeType.FINISHED:
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

    # -- ClientHello --------------------------------------------------------------------------
    def _on_client_hello(self, seq: int, body: bytes) -> Step:
        cfg = self.config
        ch = pull_client_hello(Buffer(body))
        # DTLS versions count downwards: 1.2 is 0xFEFD, 1.0 is 0xFEFF.
        if ch.client_version > DTLS_1_2:
            raise AlertError(AlertDescription.protocol_version, "client does not offer DTLS 1.2")
        if 0 not in ch.compression_methods:
            raise AlertError(AlertDescription.illegal_parameter, "null compression not offered")
        reneg = ch.extension(ExtensionType.renegotiation_info)
        if reneg is not None and decode_opaque8(reneg):
            raise AlertError(AlertDescription.handshake_failure, "renegotiation_info not empty")
        secure_reneg = (
            reneg is not None or CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV in ch.cipher_suites
        )
        ems_ext = ch.extension(ExtensionType.extended_master_secret)
        if ems_ext is not None:
            decode_empty(ems_ext)
        etm_ext = ch.extension(ExtensionType.encrypt_then_mac)
        if etm_ext is not None:
            decode_empty(etm_ext)
        self.ems = ems_ext is not None
        etm_offered = etm_ext is not None
        if cfg.require_extended_master_secret and not self.ems:
            raise AlertError(AlertDescription.handshake_failure, "extended_master_secret required")
        self.client_random = ch.random
        self.server_random = os.urandom(32)
        self.add_to_transcript(HandshakeType.CLIENT_HELLO, seq, body)
        self.out_seq = seq  # our first message mirrors the ClientHello's message_seq

        extensions: list[tuple[int, bytes]] = []
        if secure_reneg:
            extensions.append((ExtensionType.renegotiation_info, encode_opaque8(b"")))
        if self.ems:
            extensions.append((ExtensionType.extended_master_secret, b""))
        cid_ext = ch.extension(ExtensionType.connection_id)
        if cid_ext is not None and cfg.cid_length is not None:
            self.peer_cid = decode_opaque8(cid_ext)
            self.own_cid = os.urandom(cfg.cid_length)
            extensions.append((ExtensionType.connection_id, encode_opaque8(self.own_cid)))

        resumed = self._try_resume(ch, etm_offered)
        if resumed is not None:
            return self._resume_flight(resumed, extensions)

        self.suite = suite = self._choose_suite(ch, etm_offered)
        self.etm = etm_offered and suite.is_cbc
        if self.etm:
            extensions.append((ExtensionType.encrypt_then_mac, b""))
        self.session_id = os.urandom(32) if cfg.session_cache is not None else b""
        ecdhe = suite.kex is KeyExchange.ECDHE_ECDSA
        if ecdhe:
            if ch.extension(ExtensionType.ec_point_formats) is not None:
                extensions.append(
                    (ExtensionType.ec_point_formats, encode_uint8_list([EC_POINT_UNCOMPRESSED]))
                )
            if ch.extension(ExtensionType.server_certificate_type) is not None:
                extensions.append(
                    (ExtensionType.server_certificate_type, bytes([self.server_cert_type]))
                )
            self.cert_requested = cfg.require_client_auth
            if self.cert_requested and ch.extension(ExtensionType.client_certificate_type):
                extensions.append(
                    (ExtensionType.client_certificate_type, bytes([self.client_cert_type]))
                )
        items = [self._server_hello(suite.code, extensions)]
        if ecdhe:
            items.extend(self._certificate_flight_part())
        elif cfg.psk_identity_hint is not None:
            w = Writer()
            push_server_key_exchange_psk(w, ServerKeyExchangePsk(cfg.psk_identity_hint))
            items.append(self.outgoing(HandshakeType.SERVER_KEY_EXCHANGE, w.getvalue()))
        items.append(self.outgoing(HandshakeType.SERVER_HELLO_DONE, b""))
        self.state = "client_certificate" if self.cert_requested else "cke"
        return Step(flight=items)

    def _server_hello(self, suite: int, extensions: list[tuple[int, bytes]]) -> FlightItem:
        w = Writer()
        push_server_hello(
            w, ServerHello(DTLS_1_2, self.server_random, self.session_id, suite, 0, extensions)
        )
        return self.outgoing(HandshakeType.SERVER_HELLO, w.getvalue())

    def _try_resume(self, ch: ClientHello, etm_offered: bool) -> Session | None:
        cache = self.config.session_cache
        if cache is None or not ch.session_id:
            return None
        session = cache.get(ch.session_id)
        if session is None or session.cipher_suite not in ch.cipher_suites:
            return None
        if session.cipher_suite not in self.config.cipher_suites:
            return None
        if session.extended_master_secret and not self.ems:
            # RFC 7627 §5.3: the original session used EMS, the new hello does not: abort.
            raise AlertError(AlertDescription.handshake_failure, "resumption without EMS")
        if not session.extended_master_secret and self.ems:
            return None  # RFC 7627 §5.3: fall back to a full handshake
        if SUITES[session.cipher_suite].is_cbc and session.encrypt_then_mac != etm_offered:
            return None
        return session

    def _resume_flight(self, session: Session, extensions: list[tuple[int, bytes]]) -> Step:
        self.resumed = True
        self.suite = SUITES[session.cipher_suite]
        self.session_id = session.session_id
        self.master_secret = session.master_secret
        self.peer_identity = session.peer_identity
        self.etm = session.encrypt_then_mac
        if self.etm:
            extensions.append((ExtensionType.encrypt_then_mac, b""))
        items = [self._server_hello(session.cipher_suite, extensions)]
        self.derive_keys(self.config.allow_mac_then_encrypt)
        items.append(ccs_item())
        items.append(self.outgoing(HandshakeType.FINISHED, self.verify_data(False), epoch=1))
        self.state = "ccs"
        return Step(flight=items)

    def _choose_suite(self, ch: ClientHello, etm_offered: bool) -> SuiteInfo:
        cfg = self.config
        for code in cfg.cipher_suites:
            if code not in ch.cipher_suites:
                continue
            info = SUITES[code]
            if info.is_cbc and not etm_offered and not cfg.allow_mac_then_encrypt:
                continue
            if info.kex is KeyExchange.PSK:
                if cfg.psk_for_identity is not None:
                    return info
                continue
            if self._ecdhe_possible(ch):
                return info
        raise AlertError(AlertDescription.handshake_failure, "no cipher suite in common")

    def _ecdhe_possible(self, ch: ClientHello) -> bool:
        """ECDHE_ECDSA needs our key, P-256, SHA256 signatures and certificate types we share."""
        cfg = self.config
        if cfg.private_key is None:
            return False
        groups = ch.extension(ExtensionType.supported_groups)
        if groups is not None and NamedGroup.secp256r1 not in decode_uint16_list(groups):
            return False
        formats = ch.extension(ExtensionType.ec_point_formats)
        if formats is not None and EC_POINT_UNCOMPRESSED not in decode_uint8_list(formats):
            return False
        algs = ch.extension(ExtensionType.signature_algorithms)
        if algs is not None and (
            SignatureScheme.ecdsa_secp256r1_sha256 not in decode_uint16_list(algs)
        ):
            return False
        sct = ch.extension(ExtensionType.server_certificate_type)
        server_types = decode_uint8_list(sct) if sct is not None else [CertificateType.X509]
        for t in server_types:
            if t == CertificateType.RAW_PUBLIC_KEY or (
                t == CertificateType.X509 and cfg.certificate_chain
            ):
                self.server_cert_type = CertificateType(t)
                break
        else:
            return False
        if cfg.require_client_auth:
            cct = ch.extension(ExtensionType.client_certificate_type)
            client_types = decode_uint8_list(cct) if cct is not None else [CertificateType.X509]
            for t in client_types:
                if (t == CertificateType.RAW_PUBLIC_KEY and cfg.verify_rpk is not None) or (
                    t == CertificateType.X509 and cfg.trust_store
                ):
                    self.client_cert_type = CertificateType(t)
                    break
            else:
                return False
        return True

    def _certificate_flight_part(self) -> list[FlightItem]:
        cfg = self.config
        assert cfg.private_key is not None and cfg.own_spki is not None
        items: list[FlightItem] = []
        if self.server_cert_type is CertificateType.RAW_PUBLIC_KEY:
            cert = Certificate(CertificateType.RAW_PUBLIC_KEY, [cfg.own_spki])
        else:
            cert = Certificate(CertificateType.X509, list(cfg.certificate_chain or []))
        w = Writer()
        push_certificate(w, cert)
        items.append(self.outgoing(HandshakeType.CERTIFICATE, w.getvalue()))
        self.ecdh_key = ec.generate_private_key(ec.SECP256R1())
        point = self.ecdh_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        unsigned = ServerKeyExchangeEcdhe(NamedGroup.secp256r1, point, 0, b"")
        digest = sha256_digest(self.client_random, self.server_random, unsigned.params)
        ske = ServerKeyExchangeEcdhe(
            NamedGroup.secp256r1,
            point,
            SignatureScheme.ecdsa_secp256r1_sha256,
            ecdsa_sign(cfg.private_key, digest),
        )
        w = Writer()
        push_server_key_exchange_ecdhe(w, ske)
        items.append(self.outgoing(HandshakeType.SERVER_KEY_EXCHANGE, w.getvalue()))
        if self.cert_requested:
            w = Writer()
            push_certificate_request(
                w,
                CertificateRequest(
                    bytes([ClientCertificateType.ecdsa_sign]),
                    [SignatureScheme.ecdsa_secp256r1_sha256],
                ),
            )
            items.append(self.outgoing(HandshakeType.CERTIFICATE_REQUEST, w.getvalue()))
        return items

    # -- client flight ------------------------------------------------------------------------
    def _on_certificate(self, buf: Buffer) -> None:
        cfg = self.config
        cert = pull_certificate(buf, self.client_cert_type)
        if self.client_cert_type is CertificateType.RAW_PUBLIC_KEY:
            spki = cert.certificates[0]
            self.client_key = load_raw_public_key(spki)
            if cfg.verify_rpk is None or not run_verifier(cfg.verify_rpk, spki):
                raise AlertError(AlertDescription.bad_certificate, "client raw public key refused")
            self.peer_identity = RawPublicKeyIdentity(spki)
            return
        if not cert.certificates:
            raise AlertError(AlertDescription.handshake_failure, "client sent no certificate")
        self.client_key = verify_certificate_chain(
            cert.certificates, cfg.trust_store or [], cfg.clock()
        )
        self.peer_identity = X509Identity(tuple(cert.certificates))

    def _on_client_key_exchange(self, seq: int, raw: bytes) -> None:
        cfg = self.config
        suite = self.suite
        assert suite is not None
        body_buf = Buffer(raw)
        if suite.kex is KeyExchange.PSK:
            identity = pull_client_key_exchange_psk(body_buf)
            if len(identity) > MAX_PSK_IDENTITY:
                raise AlertError(AlertDescription.illegal_parameter, "PSK identity too long")
            assert cfg.psk_for_identity is not None
            try:
                psk = cfg.psk_for_identity(identity)
            except Exception:
                raise AlertError(AlertDescription.internal_error, "PSK lookup failed") from None
            if not psk:
                raise AlertError(AlertDescription.unknown_psk_identity, "unknown PSK identity")
            premaster = psk_premaster_secret(psk)
            self.peer_identity = PskIdentity(identity)
        else:
            point = pull_client_key_exchange_ecdhe(body_buf)
            assert self.ecdh_key is not None
            premaster = ecdh_shared_secret(self.ecdh_key, point)
            self.ecdh_key = None
        self.add_to_transcript(HandshakeType.CLIENT_KEY_EXCHANGE, seq, raw)
        self.set_master_secret(premaster)
        self.derive_keys(cfg.allow_mac_then_encrypt)
        self.state = "cert_verify" if self.client_key is not None else "ccs"

    def _on_finished(self, seq: int, body: bytes) -> Step:
        verify_data = pull_finished(Buffer(body))
        if not hmac.compare_digest(verify_data, self.verify_data(True)):
            raise AlertError(AlertDescription.decrypt_error, "client Finished does not verify")
        self.add_to_transcript(HandshakeType.FINISHED, seq, body)
        assert self.suite is not None
        if self.peer_identity is None:  # certificate suite without client authentication
            self.peer_identity = AnonymousIdentity()
        flight: list[FlightItem] | None = None
        session: Session | None = None
        if not self.resumed:
            flight = [
                ccs_item(),
                self.outgoing(HandshakeType.FINISHED, self.verify_data(False), epoch=1),
            ]
            if self.session_id and self.config.session_cache is not None:
                session = Session(
                    self.session_id,
                    self.master_secret,
                    int(self.suite.code),
                    self.peer_identity,
                    self.ems,
                    self.etm,
                )
                self.config.session_cache.put(session)
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

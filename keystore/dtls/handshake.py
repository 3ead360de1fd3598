"""State shared by the client and server handshakes; dropped as a whole once the handshake ends.

Why one object for all of it: the transcript hash, randoms, ephemeral ECDH key, reassembly buffer
and retransmission flight exist only during the handshake. Keeping them together lets the engine
release every byte of them with ``self._hs = None`` (the idle-memory budget is a few KB per
session; a handshake in flight costs far more).

The handshake objects never touch the network: the state machine methods return a :class:`Step`
saying which flight to send, which keys to install and whether the handshake completed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from .config import TimingConfig
from .constants import AlertDescription, ContentType, SignatureScheme
from .errors import AlertError
from .events import HandshakeComplete
from .identity import DtlsIdentity
from .keyschedule import (
    extended_master_secret,
    finished_verify_data,
    key_block,
    master_secret,
)
from .messages import encode_handshake
from .protection import CbcProtection, CcmProtection, Protection
from .reassembly import Reassembler
from .record import Record
from .retransmit import RetransmitTimer
from .session import Session
from .suites import SuiteInfo

#: One element of a flight: (epoch, content type, handshake type, message_seq, body).
#: ChangeCipherSpec items use -1 for the handshake fields.
FlightItem = tuple[int, int, int, int, bytes]

#: Epoch-1 records that arrive before the ChangeCipherSpec are kept (up to this many).
MAX_FUTURE_RECORDS = 8

CCS_ITEM_BODY = b"\x01"


class Step:
    """What the engine must do after a handshake message was processed."""

    __slots__ = ("complete", "final", "flight", "session")

    def __init__(
        self,
        flight: list[FlightItem] | None = None,
        final: bool = False,
        complete: HandshakeComplete | None = None,
        session: Session | None = None,
    ) -> None:
        self.flight = flight
        self.final = final
        self.complete = complete
        self.session = session


def ccs_item() -> FlightItem:
    return (0, ContentType.CHANGE_CIPHER_SPEC, -1, -1, CCS_ITEM_BODY)


class HandshakeBase:
    """Transcript, randoms, keys-in-waiting and retransmission state of one handshake."""

    __slots__ = (
        "client_random",
        "early_ccs",
        "ems",
        "etm",
        "flight",
        "future_records",
        "master_secret",
        "out_seq",
        "own_cid",
        "peer_cid",
        "peer_flight_end",
        "peer_identity",
        "pending_read",
        "pending_write",
        "reassembler",
        "resumed",
        "server_random",
        "session_id",
        "state",
        "suite",
        "timer",
        "transcript",
    )

    is_client = False

    def __init__(self, timing: TimingConfig) -> None:
        self.transcript = hashlib.sha256()
        self.reassembler = Reassembler(max_message=timing.max_handshake_message)
        self.timer = RetransmitTimer(
            timing.retransmit_initial, timing.retransmit_max, timing.max_retransmissions
        )
        self.flight: list[FlightItem] = []
        self.future_records: list[Record] = []
        self.out_seq = 0
        self.peer_flight_end = -1
        self.state = "start"
        self.early_ccs = False
        self.client_random = b""
        self.server_random = b""
        self.session_id = b""
        self.suite: SuiteInfo | None = None
        self.master_secret = b""
        self.ems = False
        self.etm = False
        self.resumed = False
        self.peer_identity: DtlsIdentity | None = None
        self.pending_read: Protection | None = None
        self.pending_write: Protection | None = None
        self.own_cid: bytes | None = None
        self.peer_cid = b""

    # -- transcript ---------------------------------------------------------------------------
    def add_to_transcript(self, msg_type: int, message_seq: int, body: bytes) -> None:
        self.transcript.update(encode_handshake(msg_type, message_seq, body))

    def transcript_hash(self) -> bytes:
        return self.transcript.copy().digest()

    def outgoing(self, msg_type: int, body: bytes, epoch: int = 0) -> FlightItem:
        """Allocate the next message_seq, hash the message, and return it as a flight item."""
        seq = self.out_seq
        self.out_seq += 1
        self.add_to_transcript(msg_type, seq, body)
        return (epoch, ContentType.HANDSHAKE, msg_type, seq, body)

    # -- keys ---------------------------------------------------------------------------------
    def set_master_secret(self, premaster: bytes) -> None:
        """Derive the master secret; with EMS the transcript must end at ClientKeyExchange."""
        if self.ems:
            self.master_secret = extended_master_secret(premaster, self.transcript_hash())
        else:
            self.master_secret = master_secret(premaster, self.client_random, self.server_random)

    def derive_keys(self, allow_mte: bool) -> None:
        suite = self.suite
        assert suite is not None
        self.pending_write, self.pending_read = derive_protections(
            suite,
            self.master_secret,
            self.client_random,
            self.server_random,
            self.etm,
            allow_mte,
            self.is_client,
        )

    def verify_data(self, for_client: bool) -> bytes:
        return finished_verify_data(self.master_secret, for_client, self.transcript_hash())

    def ready_for_ccs(self) -> bool:
        return self.state == "ccs"


def derive_protections(
    suite: SuiteInfo,
    master: bytes,
    client_random: bytes,
    server_random: bytes,
    etm: bool,
    allow_mte: bool,
    is_client: bool,
) -> tuple[Protection, Protection]:
    """(write, read) cipher states of one side, from the master secret and the randoms.

    A module function rather than a handshake method because a session restored from the store
    (after a restart) needs the same derivation without a handshake object."""
    kb = key_block(master, client_random, server_random, suite.key_block_len)
    client: Protection
    server: Protection
    if suite.is_cbc:
        if not etm and not allow_mte:
            raise AlertError(AlertDescription.insufficient_security, "CBC without encrypt_then_mac")
        m, k = suite.mac_key_len, suite.enc_key_len
        client = CbcProtection(kb[2 * m : 2 * m + k], kb[:m], etm)
        server = CbcProtection(kb[2 * m + k : 2 * m + 2 * k], kb[m : 2 * m], etm)
    else:
        k, iv = suite.enc_key_len, suite.fixed_iv_len
        client = CcmProtection(kb[:k], kb[2 * k : 2 * k + iv])
        server = CcmProtection(kb[k : 2 * k], kb[2 * k + iv : 2 * k + 2 * iv])
    return (client, server) if is_client else (server, client)


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    return key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def ecdsa_verify(
    key: ec.EllipticCurvePublicKey, scheme: int, signature: bytes, digest: bytes, what: str
) -> None:
    """Raise decrypt_error unless ``signature`` is a valid ECDSA-SHA256 signature (RFC 5246)."""
    from cryptography.exceptions import InvalidSignature

    if scheme != SignatureScheme.ecdsa_secp256r1_sha256:
        raise AlertError(AlertDescription.illegal_parameter, f"unsupported {what} scheme")
    try:
        key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise AlertError(AlertDescription.decrypt_error, f"bad {what} signature") from None


def ecdh_shared_secret(private: ec.EllipticCurvePrivateKey, peer_point: bytes) -> bytes:
    """P-256 ECDH with an uncompressed peer point; malformed points are illegal_parameter."""
    if len(peer_point) != 65 or peer_point[0] != 4:
        raise AlertError(AlertDescription.illegal_parameter, "EC point must be uncompressed P-256")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_point)
        return private.exchange(ec.ECDH(), peer)
    except ValueError:
        raise AlertError(AlertDescription.illegal_parameter, "invalid EC point") from None


def sha256_digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def run_verifier(callback: Callable[[bytes], bool], spki: bytes) -> bool:
    """Call a user RPK verifier; an exception from user code counts as a refusal."""
    try:
        return bool(callback(spki))
    except Exception:
        return False

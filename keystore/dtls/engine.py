"""The sans-IO DTLS 1.2 connection: one class, client or server.

Why sans-IO (h11/aioquic style): the engine never touches a socket or a clock. The transport
feeds it datagrams with ``receive_datagram(data, now, addr)``, sends what
``datagrams_to_send()`` returns, and calls ``handle_timer(now)`` at ``get_timer()``. That makes
every loss/reorder/duplication scenario a deterministic unit test, and lets one event loop serve
many thousands of sessions.

Responsibilities of this module (and only these): record protection per epoch, the replay
window, CID handling, flight transmission/packing to the MTU and retransmission, alerts, and
application data. The handshake logic lives in :mod:`.client` / :mod:`.server` and comes back
here as :class:`~keystore.dtls.handshake.Step` values.

What is dropped silently vs alerted (RFC 6347 §4.1.2.7): malformed records, records of unknown
epochs, replays and records failing authentication are dropped without a word, except that a
record failing authentication while we wait for the peer's Finished is answered with a fatal
bad_record_mac (a wrong PSK shows up exactly there; Mbed TLS does the same). Handshake messages
that parse but are wrong get the matching fatal alert.

After the handshake the whole handshake object is released; an idle established session holds
two cipher states, a replay window, a few integers and its CIDs.
"""

from __future__ import annotations

from enum import Enum

from .buffer import Buffer
from .client import ClientHandshake
from .config import ClientConfig, ServerConfig
from .constants import (
    DTLS_1_2,
    MAX_PLAINTEXT,
    AlertDescription,
    AlertLevel,
    ContentType,
    HandshakeType,
)
from .drops import DropReason
from .errors import AlertError, ConfigError, ConnectionStateError, DecodeError
from .events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
    PeerAddressChanged,
    RecordDropped,
)
from .handshake import CCS_ITEM_BODY, MAX_FUTURE_RECORDS, FlightItem, Step, derive_protections
from .identity import DtlsIdentity
from .messages import HANDSHAKE_HEADER_SIZE, encode_handshake_fragment, pull_handshake_fragment
from .protection import BadRecordMac, Protection
from .record import HEADER_SIZE, MAX_SEQUENCE, Record, encode_record, parse_datagram_checked
from .replay import ReplayWindow
from .server import ServerHandshake
from .session import Session
from .state import SavedState
from .suites import SUITES

EPOCH0_HEADROOM = 1 << 16
"""Epoch-0 record sequence numbers a server keeps free above a ClientHello's for its own
handshake flights and their retransmissions (a few dozen records in any real handshake)."""


class State(Enum):
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


#: Smallest handshake fragment worth starting at the end of a partly filled datagram.
_MIN_FRAGMENT = 64


class _Keys:
    """What :meth:`DtlsEngine.export_state` needs beyond the cipher states (which do not give
    their keys back): about 200 bytes per established session. Never logged (no repr)."""

    __slots__ = (
        "client_random",
        "ems",
        "etm",
        "master_secret",
        "server_random",
        "session_id",
        "suite",
    )

    def __init__(
        self,
        suite: int,
        master_secret: bytes,
        client_random: bytes,
        server_random: bytes,
        session_id: bytes,
        ems: bool,
        etm: bool,
    ) -> None:
        self.suite = suite
        self.master_secret = master_secret
        self.client_random = client_random
        self.server_random = server_random
        self.session_id = session_id
        self.ems = ems
        self.etm = etm


class DtlsEngine:
    """One DTLS 1.2 association. Build with :meth:`client` or :meth:`server`."""

    __slots__ = (
        "_config",
        "_hs",
        "_is_client",
        "_keys",
        "_last_flight",
        "_last_flight_deadline",
        "_out",
        "_own_cid",
        "_peer_address",
        "_peer_cid",
        "_peer_final_seq",
        "_peer_identity",
        "_read_epoch",
        "_read_prot",
        "_read_window",
        "_seq0",
        "_seq1",
        "_session",
        "_state",
        "_write_epoch",
        "_write_prot",
    )

    def __init__(self, config: ClientConfig | ServerConfig, peer_address: object = None) -> None:
        self._config = config
        self._is_client = isinstance(config, ClientConfig)
        self._hs: ClientHandshake | ServerHandshake | None = (
            ClientHandshake(config) if isinstance(config, ClientConfig) else ServerHandshake(config)
        )
        self._state = State.HANDSHAKING
        self._read_epoch = 0
        self._read_prot: Protection | None = None
        self._read_window: ReplayWindow | None = None
        self._write_epoch = 0
        self._write_prot: Protection | None = None
        self._seq0 = 0
        self._seq1 = 0
        self._own_cid: bytes | None = None
        self._peer_cid = b""
        self._out: list[bytes] = []
        self._last_flight: list[FlightItem] | None = None
        self._last_flight_deadline = 0.0
        self._peer_final_seq = -1
        self._peer_address = peer_address
        self._peer_identity: DtlsIdentity | None = None
        self._session: Session | None = None
        self._keys: _Keys | None = None

    @classmethod
    def client(cls, config: ClientConfig, peer_address: object = None) -> DtlsEngine:
        return cls(config, peer_address)

    @classmethod
    def server(cls, config: ServerConfig, peer_address: object = None) -> DtlsEngine:
        return cls(config, peer_address)

    @classmethod
    def restore(
        cls, config: ClientConfig | ServerConfig, state: SavedState, peer_address: object = None
    ) -> DtlsEngine:
        """An established engine from :meth:`export_state`'s value (after a restart).

        It continues sending at ``state.write_seq`` and refuses what ``state``'s replay window
        has seen. A server engine also puts the session back in the config's session cache, so
        an abbreviated handshake works as it did before the restart. ``ConfigError`` when the
        state does not fit the config (another role, a suite no longer configured)."""
        if isinstance(config, ClientConfig) != state.is_client:
            raise ConfigError("saved session is of the other role")
        if state.cipher_suite not in config.cipher_suites or state.cipher_suite not in SUITES:
            raise ConfigError(f"cipher suite {state.cipher_suite:#06x} is not configured")
        if not 0 <= state.write_seq <= MAX_SEQUENCE + 1 or state.read_top > MAX_SEQUENCE:
            raise ConfigError("saved sequence numbers out of range")
        engine = cls(config, peer_address)
        engine._hs = None
        engine._write_prot, engine._read_prot = derive_protections(
            SUITES[state.cipher_suite],
            state.master_secret,
            state.client_random,
            state.server_random,
            state.encrypt_then_mac,
            config.allow_mac_then_encrypt,
            state.is_client,
        )
        engine._read_window = ReplayWindow.from_state(state.read_top, state.read_bitmap)
        engine._read_epoch = engine._write_epoch = 1
        engine._seq1 = state.write_seq
        engine._own_cid = state.own_cid or None
        engine._peer_cid = state.peer_cid
        engine._peer_identity = state.peer_identity
        engine._state = State.ESTABLISHED
        engine._keys = _Keys(
            state.cipher_suite,
            state.master_secret,
            state.client_random,
            state.server_random,
            state.session_id,
            state.extended_master_secret,
            state.encrypt_then_mac,
        )
        session = Session(
            state.session_id,
            state.master_secret,
            state.cipher_suite,
            state.peer_identity,
            state.extended_master_secret,
            state.encrypt_then_mac,
        )
        if state.is_client:
            engine._session = session
        elif (
            state.session_id
            and isinstance(config, ServerConfig)
            and config.session_cache is not None
        ):
            config.session_cache.put(session)
        return engine

    def export_state(self) -> SavedState:
        """This established session as data (see :mod:`.state`); ``ConnectionStateError``
        while handshaking or once closed. ``write_seq`` is the next sequence number this engine
        would use: the caller stores a number ahead of it (never one already used)."""
        keys, window = self._keys, self._read_window
        if self._state is not State.ESTABLISHED or keys is None or window is None:
            raise ConnectionStateError("only an established session can be exported")
        assert self._peer_identity is not None
        top, bitmap = window.state
        return SavedState(
            is_client=self._is_client,
            cipher_suite=keys.suite,
            master_secret=keys.master_secret,
            client_random=keys.client_random,
            server_random=keys.server_random,
            session_id=keys.session_id,
            extended_master_secret=keys.ems,
            encrypt_then_mac=keys.etm,
            peer_identity=self._peer_identity,
            own_cid=self._own_cid or None,
            peer_cid=self._peer_cid,
            write_seq=self._seq1,
            read_top=top,
            read_bitmap=bitmap,
        )

    @property
    def next_write_seq(self) -> int:
        """The epoch-1 sequence number the next protected record will carry."""
        return self._seq1

    @property
    def read_high_water(self) -> int:
        """The highest epoch-1 sequence number accepted from the peer (-1: none)."""
        return -1 if self._read_window is None else self._read_window.state[0]

    # -- public state -------------------------------------------------------------------------
    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_established(self) -> bool:
        return self._state is State.ESTABLISHED

    @property
    def is_closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def peer_identity(self) -> DtlsIdentity | None:
        return self._peer_identity

    @property
    def peer_address(self) -> object:
        return self._peer_address

    @property
    def connection_id(self) -> bytes | None:
        """The CID the peer puts on records to us (what the transport demultiplexes on)."""
        return self._own_cid or None

    @property
    def session(self) -> Session | None:
        """Client only: the session to pass as ``ClientConfig.session`` to resume later."""
        return self._session

    # -- API ----------------------------------------------------------------------------------
    def connect(self, now: float) -> None:
        """Client: queue the first ClientHello and arm the retransmission timer."""
        hs = self._hs
        if not isinstance(hs, ClientHandshake) or hs.state != "start":
            raise ConnectionStateError("connect() is for a fresh client engine")
        self._apply_step(hs.start(), -1, now, [])

    def receive_datagram(self, data: bytes, now: float, addr: object = None) -> list[Event]:
        """Process one UDP datagram; never raises on bad input (drops or alerts instead)."""
        events: list[Event] = []
        if self._state is State.CLOSED:
            events.append(RecordDropped(DropReason.CLOSED))
            return events
        if self._peer_address is None:
            self._peer_address = addr
        cid_len = len(self._own_cid) if self._own_cid else None
        records, malformed = parse_datagram_checked(data, cid_len)
        for rec in records:
            try:
                self._on_record(rec, now, addr, events)
            except AlertError as exc:
                self._fail(exc.description, exc.reason, events)
            except Exception as exc:  # a bug must cost one session, never the server
                self._fail(
                    AlertDescription.internal_error,
                    f"internal error ({type(exc).__name__})",
                    events,
                )
            if self.is_closed:
                break
        else:
            if malformed is not None:
                events.append(RecordDropped(malformed))
        return events

    def datagrams_to_send(self, now: float | None = None) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """Absolute time (same clock as ``now``) at which to call :meth:`handle_timer`."""
        deadline: float | None = None
        if self._hs is not None:
            deadline = self._hs.timer.deadline
        if self._last_flight is not None and (
            deadline is None or self._last_flight_deadline < deadline
        ):
            deadline = self._last_flight_deadline
        return deadline

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        hs = self._hs
        if hs is not None and hs.timer.expired(now):
            if hs.timer.backoff(now):
                self._transmit(hs.flight)
            else:
                self._state = State.CLOSED
                self._hs = None
                events.append(ConnectionClosed("handshake timed out"))
        if self._last_flight is not None and now >= self._last_flight_deadline:
            self._last_flight = None
        return events

    def send_application_data(self, data: bytes) -> None:
        """Queue one record of application data (one CoAP message per record)."""
        if self._state is not State.ESTABLISHED:
            raise ConnectionStateError("connection is not established")
        if len(data) > MAX_PLAINTEXT:
            raise ValueError("application data larger than one record (2^14 bytes)")
        self._out.append(self._seal(1, ContentType.APPLICATION_DATA, data))

    def close(self) -> None:
        """Send close_notify (when established) and forget everything but the closed state."""
        if self._state is State.CLOSED:
            return
        if self._state is State.ESTABLISHED:
            self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
        self._enter_closed()

    # -- records in ---------------------------------------------------------------------------
    def _on_record(self, rec: Record, now: float, addr: object, events: list[Event]) -> None:
        reason = self._process_record(rec, now, addr, events)
        if reason is not None:
            events.append(RecordDropped(reason))

    def _process_record(
        self, rec: Record, now: float, addr: object, events: list[Event]
    ) -> DropReason | None:
        """Handle one record; the reason when it is dropped (RFC 6347: silently)."""
        hs = self._hs
        if rec.epoch == 0:
            if rec.cid is not None:
                return DropReason.UNEXPECTED_CID
            if self._read_epoch != 0:
                # Only a retransmitted peer flight is of interest now (to trigger ours).
                if hs is not None and rec.content_type == ContentType.HANDSHAKE:
                    self._on_handshake(rec.fragment, 0, rec.seq, now, events, old_only=True)
                    return None
                if rec.content_type in (ContentType.HANDSHAKE, ContentType.CHANGE_CIPHER_SPEC):
                    return None  # a late copy of the peer's flight: its epoch-1 part counts
                return DropReason.STALE_EPOCH
            content_type, payload = rec.content_type, rec.fragment
        elif rec.epoch == 1:
            if self._read_epoch == 0:
                if hs is not None and len(hs.future_records) < MAX_FUTURE_RECORDS:
                    hs.future_records.append(rec)
                    return None
                return DropReason.UNKNOWN_EPOCH
            if rec.version != DTLS_1_2:
                return DropReason.BAD_VERSION  # only DTLS 1.2 is ever negotiated
            if self._own_cid and rec.cid is None:
                return DropReason.MISSING_CID  # a negotiated CID is mandatory on records
            window = self._read_window
            prot = self._read_prot
            assert window is not None and prot is not None
            if not window.is_fresh(rec.seq):
                return DropReason.REPLAY
            try:
                content_type, payload = prot.open(rec)
            except BadRecordMac:
                if hs is not None and hs.state == "finished":
                    raise AlertError(
                        AlertDescription.bad_record_mac, "cannot authenticate Finished"
                    ) from None
                return DropReason.BAD_MAC
            newest = window.is_newest(rec.seq)
            window.mark(rec.seq)
            if (
                rec.cid is not None
                and newest
                and addr is not None
                and self._peer_address is not None
                and addr != self._peer_address
            ):
                events.append(PeerAddressChanged(self._peer_address, addr))
                self._peer_address = addr
        else:
            return DropReason.UNKNOWN_EPOCH

        if content_type == ContentType.HANDSHAKE:
            self._on_handshake(payload, rec.epoch, rec.seq, now, events)
        elif content_type == ContentType.CHANGE_CIPHER_SPEC:
            self._on_change_cipher_spec(payload, rec.epoch, now, events)
        elif content_type == ContentType.ALERT:
            self._on_alert(payload, events)
        elif (
            content_type == ContentType.APPLICATION_DATA
            and self._state is State.ESTABLISHED
            and rec.epoch == 1
        ):
            self._last_flight = None  # the peer got our last flight
            events.append(ApplicationData(payload))
        else:
            return DropReason.UNEXPECTED
        return None

    def _on_handshake(
        self,
        payload: bytes,
        epoch: int,
        record_seq: int,
        now: float,
        events: list[Event],
        old_only: bool = False,
    ) -> None:
        buf = Buffer(payload)
        retransmit = False
        while not buf.eof() and self._state is not State.CLOSED:
            try:
                frag = pull_handshake_fragment(buf)
            except DecodeError:
                return  # framing broken: nothing after this point can be trusted
            hs = self._hs
            if hs is None:
                retransmit |= self._on_handshake_established(frag.msg_type, frag.message_seq, epoch)
                continue
            if isinstance(hs, ServerHandshake) and hs.state == "client_hello":
                if frag.msg_type != HandshakeType.CLIENT_HELLO or not frag.is_complete:
                    continue
                # The first ClientHello fixes the message_seq space, and we answer in the
                # record sequence space the client last used (as the cookie exchange did).
                # A ClientHello so close to the end of that space that our flights (and their
                # retransmissions) would run past 2^48-1 is no real client's: ignored, rather
                # than a handshake that fails on its own alert (found by fuzzing).
                if record_seq > MAX_SEQUENCE - EPOCH0_HEADROOM:
                    continue
                hs.reassembler.next_seq = frag.message_seq
                self._seq0 = max(self._seq0, record_seq)
            if old_only and frag.message_seq >= hs.reassembler.next_seq:
                continue
            result = hs.reassembler.add(frag, epoch)
            if result.old_seq is not None and result.old_seq == hs.peer_flight_end and hs.flight:
                retransmit = True
            for msg_type, seq, body, msg_epoch in result.messages:
                step = hs.handle(msg_type, seq, body, msg_epoch)
                self._own_cid = hs.own_cid
                self._peer_cid = hs.peer_cid
                if step is not None:
                    self._apply_step(step, seq, now, events)
                    if self._hs is None:
                        break
                if hs.early_ccs and hs.ready_for_ccs():
                    self._switch_read_epoch(now, events)
        if retransmit and self._state is not State.CLOSED:
            if self._hs is not None:
                self._transmit(self._hs.flight)
            elif self._last_flight is not None:
                self._transmit(self._last_flight)

    def _on_handshake_established(self, msg_type: int, message_seq: int, epoch: int) -> bool:
        """Handshake data after the handshake: renegotiation is refused, retransmits answered."""
        if epoch != 1 or self._state is not State.ESTABLISHED:
            return False
        if message_seq == self._peer_final_seq:
            return self._last_flight is not None
        if (self._is_client and msg_type == HandshakeType.HELLO_REQUEST) or (
            not self._is_client and msg_type == HandshakeType.CLIENT_HELLO
        ):
            self._send_alert(AlertLevel.WARNING, AlertDescription.no_renegotiation)
        return False

    def _on_change_cipher_spec(
        self, payload: bytes, epoch: int, now: float, events: list[Event]
    ) -> None:
        hs = self._hs
        if hs is None or epoch != 0 or self._read_epoch != 0 or payload != CCS_ITEM_BODY:
            return
        if hs.ready_for_ccs():
            self._switch_read_epoch(now, events)
        else:
            # Reordered ahead of the messages it follows: apply once they have arrived.
            hs.early_ccs = True

    def _switch_read_epoch(self, now: float, events: list[Event]) -> None:
        hs = self._hs
        assert hs is not None
        hs.early_ccs = False
        self._read_prot = hs.pending_read
        self._read_window = ReplayWindow()
        self._read_epoch = 1
        hs.on_ccs()
        future, hs.future_records = hs.future_records, []
        for rec in future:
            self._on_record(rec, now, None, events)
            if self._state is State.CLOSED:
                break

    def _on_alert(self, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 2:
            return
        try:
            level = AlertLevel(payload[0])
        except ValueError:
            return
        description: AlertDescription | int
        try:
            description = AlertDescription(payload[1])
        except ValueError:
            description = payload[1]
        events.append(AlertReceived(level, description))
        if description == AlertDescription.close_notify:
            if self._state is State.ESTABLISHED:
                self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
            self._enter_closed()
            events.append(ConnectionClosed("peer sent close_notify", description, by_peer=True))
        elif level is AlertLevel.FATAL:
            self._enter_closed()
            events.append(ConnectionClosed("peer sent a fatal alert", description, by_peer=True))

    # -- handshake steps ----------------------------------------------------------------------
    def _apply_step(self, step: Step, seq: int, now: float, events: list[Event]) -> None:
        hs = self._hs
        assert hs is not None
        if step.flight is not None:
            if hs.pending_write is not None and any(item[0] == 1 for item in step.flight):
                self._write_prot = hs.pending_write
            hs.flight = step.flight
            hs.peer_flight_end = seq
            self._transmit(step.flight)
            if step.final:
                hs.timer.stop()
            else:
                hs.timer.start(now)
        if step.complete is not None:
            if step.flight is not None:
                # We sent the last flight: keep it to answer a retransmitted peer flight.
                self._last_flight = step.flight
                self._peer_final_seq = seq
                self._last_flight_deadline = now + self._config.timing.retransmit_max
            if self._is_client:
                self._session = step.session
            assert hs.suite is not None
            self._keys = _Keys(
                int(hs.suite.code),
                hs.master_secret,
                hs.client_random,
                hs.server_random,
                hs.session_id,
                hs.ems,
                hs.etm,
            )
            self._peer_identity = step.complete.peer_identity
            self._state = State.ESTABLISHED
            self._hs = None  # drop transcript, keys-in-waiting, buffers, ECDH key
            events.append(step.complete)

    def _fail(self, description: AlertDescription, reason: str, events: list[Event]) -> None:
        self._send_alert(AlertLevel.FATAL, description)
        self._enter_closed()
        events.append(ConnectionClosed(reason, description, by_peer=False))

    def _enter_closed(self) -> None:
        self._state = State.CLOSED
        self._hs = None
        self._last_flight = None

    # -- records out --------------------------------------------------------------------------
    def _seal(self, epoch: int, content_type: int, payload: bytes) -> bytes:
        if epoch == 0:
            seq = self._seq0
            if seq > MAX_SEQUENCE:
                raise ConnectionStateError("epoch 0 record sequence numbers exhausted")
            self._seq0 += 1
            return encode_record(content_type, DTLS_1_2, 0, seq, payload)
        prot = self._write_prot
        assert prot is not None
        seq = self._seq1
        if seq > MAX_SEQUENCE:
            raise ConnectionStateError("record sequence numbers exhausted")
        self._seq1 += 1
        wire_type, fragment = prot.seal(content_type, DTLS_1_2, 1, seq, payload, self._peer_cid)
        return encode_record(wire_type, DTLS_1_2, 1, seq, fragment, self._peer_cid or None)

    def _send_alert(self, level: AlertLevel, description: AlertDescription) -> None:
        self._out.append(
            self._seal(self._write_epoch, ContentType.ALERT, bytes([level, description]))
        )

    def _overhead(self, epoch: int) -> int:
        if epoch == 0 or self._write_prot is None:
            return HEADER_SIZE
        return HEADER_SIZE + len(self._peer_cid) + self._write_prot.overhead

    def _transmit(self, flight: list[FlightItem]) -> None:
        """Pack a flight into as few datagrams as the MTU allows, fragmenting messages.

        Every (re)transmission uses fresh record sequence numbers (the peer's replay window
        would drop reused ones); message_seq and fragment offsets stay the same.
        """
        mtu = self._config.timing.mtu
        datagrams: list[bytes] = []
        cur = bytearray()
        for epoch, content_type, msg_type, msg_seq, body in flight:
            if content_type == ContentType.CHANGE_CIPHER_SPEC:
                rec = self._seal(0, content_type, body)
                if cur and len(cur) + len(rec) > mtu:
                    datagrams.append(bytes(cur))
                    cur = bytearray()
                cur += rec
                self._write_epoch = 1
                continue
            overhead = self._overhead(epoch) + HANDSHAKE_HEADER_SIZE
            total, offset = len(body), 0
            while True:
                room = mtu - len(cur) - overhead
                if cur and room < min(total - offset, _MIN_FRAGMENT):
                    datagrams.append(bytes(cur))
                    cur = bytearray()
                    continue
                room = max(room, 1)
                chunk = body[offset : offset + room]
                fragment = encode_handshake_fragment(msg_type, msg_seq, total, offset, chunk)
                cur += self._seal(epoch, content_type, fragment)
                offset += len(chunk)
                if offset >= total:
                    break
                datagrams.append(bytes(cur))
                cur = bytearray()
        if cur:
            datagrams.append(bytes(cur))
        self._out.extend(datagrams)

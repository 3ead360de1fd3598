"""A ClientHello at the very end of the record sequence space (found by fuzzing: the server
adopted its 2^48-1 for its own epoch-0 records and then raised while sealing its alert). Such a
ClientHello is ignored, with no exception and nothing sent; one with room left is answered in
the client's sequence space, as RFC 6347 §4.2.1 asks."""

from __future__ import annotations

from keystore.dtls import ClientConfig, DtlsEngine, ServerConfig
from keystore.dtls.constants import CipherSuite
from keystore.dtls.engine import EPOCH0_HEADROOM
from keystore.dtls.record import MAX_SEQUENCE

ADDR = ("192.0.2.10", 40000)
SUITES = [CipherSuite.TLS_PSK_WITH_AES_128_CCM_8]
KEY = bytes(range(16))


def client_hello_with_seq(seq: int) -> bytes:
    client = DtlsEngine.client(ClientConfig(cipher_suites=SUITES, psk_identity=b"id", psk=KEY))
    client.connect(0.0)
    (hello,) = client.datagrams_to_send()
    return hello[:5] + seq.to_bytes(6, "big") + hello[11:]


def server() -> DtlsEngine:
    config = ServerConfig(cipher_suites=SUITES, psk_for_identity=lambda _i: KEY)
    return DtlsEngine.server(config, ADDR)


def test_a_client_hello_at_the_end_of_the_sequence_space_is_ignored() -> None:
    engine = server()
    for seq in (MAX_SEQUENCE, MAX_SEQUENCE - EPOCH0_HEADROOM + 1):
        assert engine.receive_datagram(client_hello_with_seq(seq), 0.0, ADDR) == []
        assert engine.datagrams_to_send() == []
        for now in (1.0, 3.0, 7.0, 15.0):  # no retransmission of anything, no exception
            assert engine.handle_timer(now) == []
            assert engine.datagrams_to_send() == []


def test_a_client_hello_with_room_left_is_answered_in_its_sequence_space() -> None:
    engine = server()
    seq = MAX_SEQUENCE - EPOCH0_HEADROOM
    engine.receive_datagram(client_hello_with_seq(seq), 0.0, ADDR)
    flight = engine.datagrams_to_send()
    assert flight, "the ServerHello flight"
    first_record_seq = int.from_bytes(flight[0][5:11], "big")
    assert first_record_seq == seq

"""Unit tests of the wire pieces: record framing, replay window, reassembly, PRF, protection."""

from __future__ import annotations

import pytest

from keystore.dtls.buffer import Buffer, Writer
from keystore.dtls.errors import DecodeError
from keystore.dtls.keyschedule import p_sha256, prf, psk_premaster_secret
from keystore.dtls.messages import HandshakeFragment
from keystore.dtls.protection import BadRecordMac, CbcProtection, CcmProtection
from keystore.dtls.reassembly import Reassembler
from keystore.dtls.record import RecordError, encode_record, parse_datagram, pull_record
from keystore.dtls.replay import ReplayWindow


def test_records_round_trip_and_multiple_per_datagram() -> None:
    a = encode_record(22, 0xFEFD, 0, 1, b"abc")
    b = encode_record(23, 0xFEFD, 1, 2**48 - 1, b"")
    c = encode_record(25, 0xFEFD, 1, 7, b"zz", cid=b"\x01\x02")
    recs = parse_datagram(a + b + c, cid_length=2)
    assert [(r.content_type, r.epoch, r.seq, r.fragment, r.cid) for r in recs] == [
        (22, 0, 1, b"abc", None),
        (23, 1, 2**48 - 1, b"", None),
        (25, 1, 7, b"zz", b"\x01\x02"),
    ]
    assert "len=3" in repr(recs[0])


def test_record_parsing_stops_at_first_bad_record() -> None:
    good = encode_record(23, 0xFEFD, 1, 1, b"x")
    assert len(parse_datagram(good + b"\x17\xfe\xfd\x00")) == 1
    assert parse_datagram(b"\x63\xfe\xfd" + b"\x00" * 10) == []  # unknown type
    assert parse_datagram(b"\x17\x03\x03" + b"\x00" * 10) == []  # TLS, not DTLS
    assert parse_datagram(b"\x19\xfe\xfd" + b"\x00" * 10) == []  # CID record, no CID
    assert parse_datagram(b"\x00" * 70000) == []


def test_oversized_length_is_refused() -> None:
    with pytest.raises(RecordError):
        pull_record(Buffer(b"\x17\xfe\xfd" + b"\x00" * 8 + b"\xff\xff" + b"\x00" * 10), None)


def test_encode_record_refuses_exhausted_sequence() -> None:
    with pytest.raises(ValueError):
        encode_record(23, 0xFEFD, 1, 2**48, b"")


def test_replay_window() -> None:
    w = ReplayWindow()
    assert w.is_fresh(0) and w.is_newest(0)
    w.mark(0)
    assert not w.is_fresh(0)
    w.mark(100)
    assert not w.is_fresh(36)  # 64 behind
    assert w.is_fresh(37) and not w.is_newest(37)
    w.mark(37)
    assert not w.is_fresh(37)
    w.mark(1000)  # jump beyond the window clears it
    assert w.is_fresh(999) and not w.is_fresh(936)


def test_buffer_bounds() -> None:
    buf = Buffer(b"\x00\x05ab")
    with pytest.raises(DecodeError):
        buf.pull_vector16()
    w = Writer()
    with pytest.raises(ValueError):
        w.push_vector8(b"x" * 256)
    w.push_uint48(5)
    assert Buffer(w.getvalue()).pull_uint48() == 5


def _frag(seq: int, total: int, off: int, body: bytes, t: int = 11) -> HandshakeFragment:
    return HandshakeFragment(t, total, seq, off, body)


def test_reassembly_out_of_order_overlapping_and_duplicated() -> None:
    r = Reassembler()
    assert r.add(_frag(1, 4, 0, b"wxyz"), 0).messages == []  # next message first
    assert r.add(_frag(0, 6, 2, b"cdef"), 0).messages == []
    assert r.add(_frag(0, 6, 2, b"cd"), 0).messages == []  # duplicate piece
    res = r.add(_frag(0, 6, 0, b"abc"), 0)  # overlaps
    assert res.messages == [(11, 0, b"abcdef", 0), (11, 1, b"wxyz", 0)]
    assert r.next_seq == 2 and r.buffered_bytes == 0
    assert r.add(_frag(0, 6, 0, b"abcdef"), 0).old_seq == 0


def test_reassembly_bounds() -> None:
    r = Reassembler(max_message=100, max_buffered=150, window=4)
    assert r.add(_frag(0, 101, 0, b"a"), 0).messages == []  # too large: ignored
    assert r.add(_frag(4, 10, 0, b"a" * 10), 0).messages == []  # outside window
    r.add(_frag(1, 100, 0, b"a"), 0)
    r.add(_frag(2, 100, 0, b"a"), 0)  # would exceed 150 buffered bytes: ignored
    assert r.buffered_bytes == 100
    r.add(_frag(1, 50, 0, b"b"), 0)  # inconsistent length for seq 1: ignored
    r.add(_frag(1, 100, 1, b"c" * 99), 1)  # other epoch for seq 1: ignored
    assert r.add(_frag(0, 0, 0, b""), 0).messages == [(11, 0, b"", 0)]


def test_tls12_prf_sha256_vector() -> None:
    # Widely published TLS 1.2 PRF (SHA-256) test vector.
    secret = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
    seed = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
    out = prf(secret, b"test label", seed, 100)
    assert out.hex().startswith("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")
    assert len(p_sha256(b"k", b"s", 33)) == 33


def test_psk_premaster_layout() -> None:
    assert psk_premaster_secret(b"\xaa\xbb") == b"\x00\x02\x00\x00\x00\x02\xaa\xbb"


@pytest.mark.parametrize("cid", [b"", b"\x01\x02\x03"])
@pytest.mark.parametrize("kind", ["ccm", "etm", "mte"])
def test_protection_round_trip_and_tamper(kind: str, cid: bytes) -> None:
    if kind == "ccm":
        prot: CcmProtection | CbcProtection = CcmProtection(b"k" * 16, b"salt")
    else:
        prot = CbcProtection(b"k" * 16, b"m" * 32, encrypt_then_mac=kind == "etm")
    for size in (0, 1, 15, 16, 17, 300):
        payload = bytes(range(256))[:size] * 1 if size <= 256 else b"p" * size
        wire_type, frag = prot.seal(23, 0xFEFD, 1, 42, payload, cid)
        rec = parse_datagram(encode_record(wire_type, 0xFEFD, 1, 42, frag, cid or None), len(cid))
        assert prot.open(rec[0]) == (23, payload)
        bad = encode_record(wire_type, 0xFEFD, 1, 43, frag, cid or None)  # other seq
        with pytest.raises(BadRecordMac):
            prot.open(parse_datagram(bad, len(cid))[0])
        for cut in (1, 16, len(frag)):
            short = encode_record(wire_type, 0xFEFD, 1, 42, frag[:-cut], cid or None)
            with pytest.raises(BadRecordMac):
                prot.open(parse_datagram(short, len(cid))[0])

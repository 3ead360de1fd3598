"""Fuzz target: DTLS 1.2 record framing (RFC 6347 §4.1, RFC 9146 ``tls12_cid``).

Every UDP datagram reaches this code before any authentication. ``parse_datagram_checked``,
``peek_connection_id`` and ``is_client_hello`` never raise; ``pull_record`` raises
:class:`RecordError` only (the documented error of ``record.py``). Every framed record encodes
back to the bytes it came from (the transport forwards records it did not decrypt unchanged).
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["keystore"]):
    from keystore.dtls.buffer import Buffer
    from keystore.dtls.record import (
        RecordError,
        encode_record,
        is_client_hello,
        parse_datagram_checked,
        peek_connection_id,
        pull_record,
    )

CID_LENGTHS = (None, 0, 4, 6)
"""No CID negotiated, a zero-length CID (accepted, not asked for), and the lengths we assign."""


def TestOneInput(data: bytes) -> None:
    is_client_hello(data)
    peek_connection_id(data, 6)
    for cid_length in CID_LENGTHS:
        records, _reason = parse_datagram_checked(data, cid_length)
        framed = b"".join(
            encode_record(r.content_type, r.version, r.epoch, r.seq, r.fragment, r.cid)
            for r in records
        )
        assert data.startswith(framed), "a framed record does not encode back to its bytes"
    buf = Buffer(data)
    while not buf.eof():
        try:
            pull_record(buf, 6)
        except RecordError:
            return

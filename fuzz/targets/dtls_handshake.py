"""Fuzz target: the DTLS handshake fragment header and every handshake message parser.

The input is one handshake fragment (as it sits in an epoch-0 record); its body goes to the
parser of its ``msg_type`` (an unknown type picks one by number, so every parser is fuzzed from
every seed). ``messages.py`` documents :class:`DecodeError` as the only error on bad bytes: the
state machine turns it into a decode_error alert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["keystore"]):
    from keystore.dtls import messages as m
    from keystore.dtls.buffer import Buffer
    from keystore.dtls.constants import CertificateType, HandshakeType
    from keystore.dtls.errors import DecodeError

H = HandshakeType
PARSERS: dict[int, list[Callable[[Buffer], object]]] = {
    H.HELLO_REQUEST: [m.pull_empty],
    H.CLIENT_HELLO: [m.pull_client_hello],
    H.SERVER_HELLO: [m.pull_server_hello],
    H.HELLO_VERIFY_REQUEST: [m.pull_hello_verify_request],
    H.CERTIFICATE: [
        lambda b: m.pull_certificate(b, CertificateType.X509),
        lambda b: m.pull_certificate(b, CertificateType.RAW_PUBLIC_KEY),
    ],
    H.SERVER_KEY_EXCHANGE: [m.pull_server_key_exchange_ecdhe, m.pull_server_key_exchange_psk],
    H.CERTIFICATE_REQUEST: [m.pull_certificate_request],
    H.SERVER_HELLO_DONE: [m.pull_empty],
    H.CERTIFICATE_VERIFY: [m.pull_certificate_verify],
    H.CLIENT_KEY_EXCHANGE: [m.pull_client_key_exchange_psk, m.pull_client_key_exchange_ecdhe],
    H.FINISHED: [m.pull_finished],
}
_BY_INDEX = list(PARSERS.values())


def TestOneInput(data: bytes) -> None:
    try:
        fragment = m.pull_handshake_fragment(Buffer(data))
    except DecodeError:
        return
    parsers = PARSERS.get(fragment.msg_type) or _BY_INDEX[fragment.msg_type % len(_BY_INDEX)]
    for parse in parsers:
        with contextlib.suppress(DecodeError):
            parse(Buffer(fragment.body))

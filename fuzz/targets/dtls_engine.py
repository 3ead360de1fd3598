"""Fuzz target: what a DTLS server does with datagrams from the network.

The stateless cookie check (``CookieVerifier.initial_datagram``) and a PSK server engine's
``receive_datagram`` never raise, and the engine's catch-all never fires (a
``ConnectionClosed`` whose reason starts "internal error" is a parser or state-machine bug that
the engine hid). Input layout: ``_chunks`` (datagrams in order; the peer bits are ignored: the
engine is one session).
"""

from __future__ import annotations

import atheris

from ._chunks import chunks

with atheris.instrument_imports(include=["keystore"]):
    from keystore.dtls import ConnectionClosed, CookieVerifier, DtlsEngine, ServerConfig
    from keystore.dtls.constants import CipherSuite

ADDR = ("192.0.2.10", 40000)
PSK_ID = b"fuzz-device"
PSK = bytes(range(16))
PSK_SUITES = [CipherSuite.TLS_PSK_WITH_AES_128_CCM_8, CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256]


def server_config() -> ServerConfig:
    return ServerConfig(
        cipher_suites=PSK_SUITES, psk_for_identity=lambda i: PSK if i == PSK_ID else None
    )


CONFIG = server_config()
COOKIES = CookieVerifier()


def TestOneInput(data: bytes) -> None:
    engine = DtlsEngine.server(CONFIG, ADDR)
    now = 0.0
    for ctrl, datagram in chunks(data):
        now += (ctrl >> 2) * 0.25
        COOKIES.initial_datagram(datagram, ADDR, now)
        events = engine.receive_datagram(datagram, now, ADDR)
        engine.datagrams_to_send()
        events += engine.handle_timer(now)
        for event in events:
            if isinstance(event, ConnectionClosed):
                assert not event.reason.startswith("internal error"), event.reason

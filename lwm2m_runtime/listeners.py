"""The listener settings both servers read the same way: which security modes are on
(``security_modes``: any of nosec/psk/rpk/x509) and the CoAPs tunables (``dtls.*``), and what
to open for them (``listeners``): the plain CoAP listener or not, the CoAPs settings or not.

Both servers' configuration schemas use these fields and checks, so ``lwm2m-server`` and
``lwm2m-bootstrap`` accept the same keys with the same meaning (docs/configuration.md). The
``keystore.coaps`` imports are inside the functions: loading a configuration must not load the
CoAPs transport (and its aiocoap glue) before a listener is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from keystore.coaps import CoapsSettings

__all__ = [
    "SECURITY_MODES",
    "DtlsSettings",
    "check_cipher_suites",
    "check_security_modes",
    "listeners",
]

SECURITY_MODES = ("nosec", "psk", "rpk", "x509")


@attrs.frozen
class DtlsSettings:
    """The CoAPs listener's tunables; empty ``cipher_suites`` means all four (docs/dtls.md)."""

    cipher_suites: tuple[str, ...] = ()
    connection_id: bool = True
    cid_length: int = 6
    #: a handshake still incomplete this many seconds after its cookie is dropped
    handshake_timeout: float = 30.0
    #: handshakes in progress at once (≈10 KB each); more are refused until one ends
    max_handshakes: int = 1000
    #: HelloVerifyRequests per second at most (a spoofed ClientHello flood beyond is dropped)
    hello_rate: float = 20_000.0


def check_security_modes(value: tuple[str, ...]) -> str | None:
    unknown = [m for m in value if m.lower() not in SECURITY_MODES]
    if unknown:
        return f"unknown security mode {unknown[0]!r} (known: {', '.join(SECURITY_MODES)})"
    if not value:
        return "at least one security mode is needed"
    return None


def check_cipher_suites(value: tuple[str, ...]) -> str | None:
    from keystore.coaps.server import parse_suites

    if not value:
        return None
    try:
        parse_suites(",".join(value))
    except ValueError as exc:
        return str(exc)
    return None


def listeners(
    security_modes: tuple[str, ...], dtls: DtlsSettings
) -> tuple[bool, CoapsSettings | None]:
    """What to open for these modes: the NoSec listener or not, and the CoAPs settings (None
    when no DTLS mode is on). Shared by both servers so they read the keys the same way."""
    from keystore.coaps import DTLS_MODES, CoapsSettings

    modes = {m.lower() for m in security_modes}
    dtls_modes = frozenset(m for m in DTLS_MODES if m.name.lower() in modes)
    coaps = (
        CoapsSettings.from_options(
            cipher_suites=dtls.cipher_suites,
            connection_id=dtls.connection_id,
            cid_length=dtls.cid_length,
            modes=dtls_modes,
            handshake_timeout=dtls.handshake_timeout,
            max_handshakes=dtls.max_handshakes,
            hello_rate=dtls.hello_rate,
        )
        if dtls_modes
        else None
    )
    return "nosec" in modes, coaps

"""Security modes of the LwM2M Security object (object 0, resource 2 "Security Mode").

The numbers are the spec's (LwM2M Core 1.1 §7.1 and the object 0 definition: 0..4), so the value
a device has in its Security object instance is the value stored here and printed by the tools.
"""

from __future__ import annotations

import enum


class SecurityMode(enum.IntEnum):
    """Resource /0/x/2: how a client authenticates to a server."""

    PSK = 0
    RPK = 1
    X509 = 2
    NOSEC = 3
    EST = 4  # certificate mode whose certificate was enrolled over EST (RFC 7030)

    @property
    def label(self) -> str:
        """The short lowercase name used on the command line and in export files."""
        return _LABELS[self]

    @property
    def requires_dtls(self) -> bool:
        """Every mode but NoSec authenticates the peer in the DTLS handshake."""
        return self is not SecurityMode.NOSEC

    @property
    def uses_certificates(self) -> bool:
        """X.509 and EST peers both present certificate chains; they resolve the same way."""
        return self in (SecurityMode.X509, SecurityMode.EST)

    @classmethod
    def parse(cls, value: str | int) -> SecurityMode:
        """Accept the spec's number, the label, or a common spelling (``x.509``, ``no_sec``).

        ``ValueError`` names the accepted spellings, so a CLI or a config loader can show it.
        """
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"unknown security mode {value} (expected 0..4)") from None
        if not isinstance(value, str):
            raise ValueError(f"unknown security mode {value!r}")
        text = value.strip().lower()
        if text.isdigit():
            return cls.parse(int(text))
        key = text.replace("-", "").replace("_", "").replace(".", "").replace(" ", "")
        mode = _ALIASES.get(key)
        if mode is None:
            names = ", ".join(m.label for m in cls)
            raise ValueError(f"unknown security mode {value!r} (expected one of {names} or 0..4)")
        return mode


_LABELS = {
    SecurityMode.PSK: "psk",
    SecurityMode.RPK: "rpk",
    SecurityMode.X509: "x509",
    SecurityMode.NOSEC: "nosec",
    SecurityMode.EST: "est",
}

_ALIASES = {
    "psk": SecurityMode.PSK,
    "presharedkey": SecurityMode.PSK,
    "rpk": SecurityMode.RPK,
    "rawpublickey": SecurityMode.RPK,
    "x509": SecurityMode.X509,
    "certificate": SecurityMode.X509,
    "cert": SecurityMode.X509,
    "nosec": SecurityMode.NOSEC,
    "none": SecurityMode.NOSEC,
    "est": SecurityMode.EST,
    "certificatewithest": SecurityMode.EST,
}

"""``Address``: a peer's transport address (host, port), as both servers key, log and show it.

One value type for the UDP endpoints, the servers' cores (which peer a registration or a
bootstrap session belongs to) and their HTTP APIs; ``str()`` is ``host:port``, with brackets
around an IPv6 host (``[::1]:5683``), the form the APIs print and accept.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Address:
    """The transport address a client's requests come from (and where we send ours)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

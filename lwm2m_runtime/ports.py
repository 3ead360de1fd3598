"""Which configured UDP listener could not be bound, for the "cannot listen" message.

A bind failure surfaces as a bare ``OSError`` (``[Errno 98] Address already in use``) from deep
inside the listener start-up, without the address; the CLIs used to print the *CoAP* port
whatever failed, which sent operators after the wrong process when the CoAPs port was taken.
After a failed start (the server has closed whatever it had bound), ``describe_bind_error``
tries each configured port again with a throw-away socket and names the ones that are taken.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Mapping

ANY_HOSTS = ("0.0.0.0", "", "*", "::")


def udp_port_free(host: str, port: int) -> bool:
    """Whether ``udp host:port`` can be bound now, the way the listeners bind it (every address
    = one dual-stack IPv6 socket where the host has IPv6)."""
    candidates: list[tuple[socket.AddressFamily, tuple[str, int]]] = []
    if host in ANY_HOSTS:
        candidates = [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError:
            return True  # not a port problem: the caller reports the original error
        candidates = [(info[0], (str(info[4][0]), port)) for info in infos[:1]]
    for family, address in candidates:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            continue  # no IPv6 on this host: try IPv4
        with sock:
            if family == socket.AF_INET6 and host in ANY_HOSTS:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                sock.bind(address)
            except OSError as exc:
                return exc.errno != errno.EADDRINUSE
            return True
    return True


def describe_bind_error(exc: OSError, host: str, ports: Mapping[str, int | None]) -> str:
    """``exc`` (raised while binding the listeners) as one line naming the listener(s) at
    fault. ``ports`` maps a listener's name (``CoAP``, ``CoAPs``) to its configured port, None
    for a listener that is off; port 0 (any free port) is never the one in use."""
    reason = exc.strerror or str(exc)
    taken = [
        f"{name} udp {host}:{port}"
        for name, port in ports.items()
        if port and not udp_port_free(host, port)
    ]
    if taken:
        return f"{' and '.join(taken)}: {reason}"
    listed = ", ".join(
        f"{name} udp {host}:{port}" for name, port in ports.items() if port is not None
    )
    return f"{listed}: {reason}"

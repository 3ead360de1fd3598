"""The client's CoAP transport, chosen from the server URI scheme.

``coap://`` gives an aiocoap server context on a single UDP socket bound to an ephemeral port.
The *same* socket must send the Register and serve the server's requests, because the server
sends its downlink to the address it saw the Register come from. aiocoap's ``udp6`` transport
does exactly that (its docs mention LwM2M clients binding to port 0); the ``simple6`` client
transport would open a fresh connected socket per peer, and ``simplesocketserver`` is
documented as worse for outgoing requests. ``udp6`` is one IPv6 socket with V6ONLY off, so
IPv4 peers appear as v4-mapped addresses.

``coaps://`` (DTLS) uses the project's own sans-IO engine through ``keystore.coaps``: one UDP
socket, one DTLS session with the server (the handshake runs before the first request), and
the server's requests arrive over that same session. ``dtls`` is the engine's client config,
built from PSK/RPK/X.509 credentials by ``keystore.coaps.client_dtls_config``. A bootstrap
transport (``POST /bs`` to the bootstrap server, Core §6.1) will reuse ``create_context``: see
``docs/client.md``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import urllib.parse
from typing import Any

import attrs
from aiocoap import Context

from keystore.dtls import ClientConfig

from .coaps import create_client_context

COAP_PORT = 5683
COAPS_PORT = 5684


@attrs.frozen
class ServerAddress:
    scheme: str
    host: str
    port: int

    @property
    def base_uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_server_uri(uri: str) -> ServerAddress:
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("coap", "coaps"):
        raise ValueError(f"unsupported server URI {uri!r}: the scheme must be coap or coaps")
    if not parts.hostname:
        raise ValueError(f"server URI {uri!r} has no host")
    default = COAPS_PORT if scheme == "coaps" else COAP_PORT
    return ServerAddress(scheme, parts.hostname, parts.port or default)


async def create_context(
    server: ServerAddress, site: Any, bind_host: str | None = None, dtls: ClientConfig | None = None
) -> Any:
    """An aiocoap context that can reach ``server`` and serves ``site`` on the same socket.

    ``bind_host`` defaults to 127.0.0.1 for a loopback server (tests, local demo) and to all
    addresses otherwise. ``dtls`` is required for (and only used with) ``coaps://``.
    """
    if bind_host is None:
        bind_host = "127.0.0.1" if server.is_loopback else "::"
    if server.scheme == "coaps":
        if dtls is None:
            raise ValueError("coaps:// needs DTLS credentials (psk=, rpk= or x509=)")
        return await create_client_context(site, client_config=dtls, bind=(bind_host, 0))
    for attempt in range(BIND_ATTEMPTS):
        port = free_udp_port(bind_host)
        try:
            return await Context.create_server_context(
                site, bind=(bind_host, port), transports=["udp6"]
            )
        except OSError as exc:
            # another process took the port between the probe and aiocoap's bind (seen with
            # parallel test workers): take another one
            if exc.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


BIND_ATTEMPTS = 8
"""Ports tried before a bind's EADDRINUSE is given up (each is a fresh free port)."""


def free_udp_port(host: str) -> int:
    """A UDP port nobody holds on ``host``, for aiocoap to bind.

    Why not port 0: aiocoap sets SO_REUSEPORT on its socket, and Linux may give a port-0 bind
    with SO_REUSEPORT a port that another SO_REUSEPORT socket of the same user already holds;
    two clients would then share a port and receive each other's datagrams (with a few hundred
    clients on one host, more likely than not). A probe socket without SO_REUSEPORT is only
    given a port that no socket holds; it is closed just before aiocoap binds that port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def local_address(context: Any) -> tuple[str, int] | None:
    """The (host, port) the context's UDP socket is bound to, or None if it cannot be found.

    aiocoap does not expose this publicly; it is read from the udp6 transport's asyncio
    transport, and v4-mapped hosts are shown as plain IPv4.
    """
    for interface in getattr(context, "request_interfaces", []):
        manager = getattr(interface, "token_interface", None)
        message_interface = getattr(manager, "message_interface", None)
        transport = getattr(message_interface, "transport", None)
        if transport is None:
            continue
        sock = transport.get_extra_info("socket")
        sockname = transport.get_extra_info("sockname") or (sock.getsockname() if sock else None)
        if sockname:
            host = str(sockname[0])
            try:
                mapped = ipaddress.IPv6Address(host).ipv4_mapped
            except ValueError:
                mapped = None
            return (str(mapped) if mapped else host, int(sockname[1]))
    return None

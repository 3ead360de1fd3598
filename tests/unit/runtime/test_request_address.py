"""``IncomingRequest.address`` takes a shortcut for canonical IPv4 peers (the kernel's form):
it must give exactly what ``address_key`` gives for every socket address."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from keystore.coaps.sessions import address_key
from lwm2m_runtime.coap import Code, Message
from lwm2m_runtime.server import IncomingRequest

_octet = st.integers(0, 255).map(str) | st.sampled_from(["00", "01", "256", "-1", " 1", "1 ", ""])
_v4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", _octet, _octet, _octet, _octet)
_hosts = st.one_of(
    _v4,
    _v4.map(lambda h: "::ffff:" + h),
    _v4.map(lambda h: "::FFFF:" + h),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=4).map(lambda a: str(ipaddress.IPv6Address(f"::ffff:{a}"))),
    st.sampled_from(["localhost", "fe80::1%lo", "1.2.3", "1.2.3.4.5", "0x7f.0.0.1", "::"]),
)
_sockaddrs = st.one_of(
    st.tuples(_hosts, st.integers(0, 65535)),
    st.tuples(_hosts, st.integers(0, 65535), st.just(0), st.integers(0, 3)),
)


def _address(sockaddr: tuple[object, ...]) -> tuple[str, int]:
    return IncomingRequest(Message.request(Code.GET), sockaddr).address


@given(_sockaddrs)
def test_the_address_of_a_request_is_address_key_of_its_peer(sockaddr: tuple[object, ...]) -> None:
    assert _address(sockaddr) == address_key(sockaddr)


def test_kernel_forms_of_ipv4_peers() -> None:
    assert _address(("10.0.0.7", 5683)) == ("10.0.0.7", 5683)
    assert _address(("::ffff:10.0.0.7", 5683, 0, 0)) == ("10.0.0.7", 5683)
    assert _address(("2001:db8::1", 5683, 0, 0)) == ("2001:db8::1", 5683)

"""``IncomingRequest.address`` takes a shortcut for canonical IPv4 peers (the kernel's form):
it must give exactly what ``address_key`` gives for every socket address."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from pytest import MonkeyPatch

from keystore.coaps.sessions import Session, address_key
from keystore.resolver import PeerIdentity
from lwm2m_runtime import server
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


def _identity(sockaddr: tuple[object, ...]) -> PeerIdentity:
    return IncomingRequest(Message.request(Code.GET), sockaddr).identity


@given(_sockaddrs)
def test_the_identity_of_a_nosec_request_is_its_normalized_source(
    sockaddr: tuple[object, ...],
) -> None:
    # twice: the second request from the same source is answered from the cache
    for _ in range(2):
        identity = _identity(sockaddr)
        assert identity == PeerIdentity.nosec(address_key(sockaddr))
        assert identity.source == _address(sockaddr) == address_key(sockaddr)


def test_non_canonical_and_ipv6_sources_are_normalized_from_the_cache_too() -> None:
    for sockaddr, key in [
        (("::ffff:10.0.0.7", 5683, 0, 0), ("10.0.0.7", 5683)),
        (("::ffff:010.0.0.7", 5683, 0, 0), address_key(("::ffff:010.0.0.7", 5683, 0, 0))),
        (("2001:db8:0::1", 5683, 0, 0), ("2001:db8::1", 5683)),
        (("fe80::1%lo", 5683, 0, 1), ("fe80::1%lo", 5683)),
    ]:
        for _ in range(2):
            request = IncomingRequest(Message.request(Code.GET), sockaddr)
            assert request.identity.source == key
            assert request.address == key
            assert IncomingRequest(Message.request(Code.GET), sockaddr).address == key


def test_a_source_that_speaks_again_gets_the_same_identity_object() -> None:
    assert _identity(("192.0.2.1", 5683)) is _identity(("192.0.2.1", 5683))
    assert _identity(("192.0.2.1", 5683)) is not _identity(("192.0.2.1", 5684))


def test_the_nosec_cache_stays_bounded_under_new_sources(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(server, "NOSEC_PEERS_CACHED", 8)
    kept = _identity(("198.51.100.1", 1))
    for port in range(2, 100):  # a flood of new (spoofed) sources
        assert _identity(("198.51.100.1", port)).source == ("198.51.100.1", port)
        assert len(server._nosec_peers) <= 8
    # the first source was forgotten on the way, and comes back as an equal new value
    again = _identity(("198.51.100.1", 1))
    assert again == kept
    assert again is not kept


def test_an_anonymous_dtls_session_is_not_taken_from_the_nosec_cache() -> None:
    key = ("203.0.113.9", 5684)
    _identity(key)  # the same address as a NoSec source: cached
    session = Session.__new__(Session)
    session.key = key
    session.claim = None
    before = dict(server._nosec_peers)
    request = IncomingRequest(Message.request(Code.GET), session)
    assert request.secure
    assert request.address == key
    assert request.identity == PeerIdentity.nosec(key)
    assert request.identity is not server._nosec_peers[key][1]
    assert server._nosec_peers == before


@given(_sockaddrs)
def test_the_address_read_first_gives_the_same_identity(sockaddr: tuple[object, ...]) -> None:
    # ``address`` keeps the identity it looked up: ``identity`` read after it must be the
    # same value as read alone, and ``address`` after ``identity`` the same address
    first = IncomingRequest(Message.request(Code.GET), sockaddr)
    assert first.address == address_key(sockaddr)
    assert first.identity == PeerIdentity.nosec(address_key(sockaddr))
    second = IncomingRequest(Message.request(Code.GET), sockaddr)
    assert second.identity == first.identity
    assert second.address == first.address

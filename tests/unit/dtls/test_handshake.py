"""Full handshakes between our client and server engines in every suite x auth mode."""

from __future__ import annotations

import pytest

from keystore.dtls import (
    ConnectionClosed,
    ConnectionStateError,
    PskIdentity,
    RawPublicKeyIdentity,
    X509Identity,
)

from . import pki
from .conftest import ALL_MODES, PSK_ID, PSK_SUITES, ConfigFactory, Pki
from .harness import Link


@pytest.mark.parametrize(("mode", "suite"), ALL_MODES, ids=lambda v: getattr(v, "name", v))
def test_handshake_and_data_both_ways(
    configs: ConfigFactory, test_pki: Pki, mode: str, suite: int
) -> None:
    link = Link(*configs(mode, suite))
    assert link.handshake()
    (c_done,) = link.complete(link.client_events)
    (s_done,) = link.complete(link.server_events)
    assert c_done.cipher_suite == s_done.cipher_suite == suite
    assert c_done.extended_master_secret and s_done.extended_master_secret
    assert not c_done.resumed and not s_done.resumed
    if mode == "psk":
        assert s_done.peer_identity == PskIdentity(PSK_ID)
    elif mode == "rpk":
        assert s_done.peer_identity == RawPublicKeyIdentity(pki.spki(test_pki.client_key))
        assert c_done.peer_identity == RawPublicKeyIdentity(pki.spki(test_pki.server_key))
    else:
        assert s_done.peer_identity == X509Identity((pki.der(test_pki.client_cert),))
        assert c_done.peer_identity == X509Identity((pki.der(test_pki.server_cert),))
    link.exchange_data(b"\x01" * 500, b"\x02" * 700)
    link.exchange_data(b"", b"x")


@pytest.mark.parametrize(("mode", "suite"), ALL_MODES, ids=lambda v: getattr(v, "name", v))
def test_close_notify(configs: ConfigFactory, mode: str, suite: int) -> None:
    link = Link(*configs(mode, suite))
    assert link.handshake()
    assert link.server is not None
    link.client.close()
    link.flush()
    closed = link.closed(link.server_events)
    assert closed and closed[0].by_peer and closed[0].alert == 0
    assert link.server.is_closed and link.client.is_closed
    with pytest.raises(ConnectionStateError):
        link.client.send_application_data(b"late")
    # the server's answering close_notify reached a closed client: nothing happens
    assert not any(isinstance(e, ConnectionClosed) for e in link.client_events)


def test_handshake_without_cookie_exchange(configs: ConfigFactory) -> None:
    link = Link(*configs("psk"), cookies=False)
    assert link.handshake()
    link.exchange_data()


def test_small_mtu_fragments_certificate_flights(configs: ConfigFactory, test_pki: Pki) -> None:
    from keystore.dtls import TimingConfig

    timing = TimingConfig(mtu=256)
    c, s = configs("x509", client={"timing": timing}, server={"timing": timing})
    link = Link(c, s)
    assert link.handshake()
    assert max(len(d) for d in link.wire_s2c + link.wire_c2s) <= 256
    link.exchange_data()


def test_cbc_without_etm_is_refused_unless_allowed(configs: ConfigFactory) -> None:
    from keystore.dtls import CipherSuite

    suite = CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256
    c, s = configs("psk", suite, client={"offer_encrypt_then_mac": False})
    link = Link(c, s)
    assert not link.handshake()
    assert link.closed(link.server_events)[0].alert == 40  # handshake_failure: no suite
    c, s = configs(
        "psk",
        suite,
        client={"offer_encrypt_then_mac": False, "allow_mac_then_encrypt": True},
        server={"allow_mac_then_encrypt": True},
    )
    link = Link(c, s)
    assert link.handshake()
    link.exchange_data(b"a" * 33, b"b" * 15)


def test_suite_preference_is_the_servers(configs: ConfigFactory) -> None:
    c, s = configs("psk", client={"cipher_suites": list(reversed(PSK_SUITES))})
    link = Link(c, s)
    assert link.handshake()
    assert link.complete(link.server_events)[0].cipher_suite == s.cipher_suites[0]


def test_psk_identity_hint_and_long_binary_identity(configs: ConfigFactory) -> None:
    identity = bytes(range(128))
    c, s = configs(
        "psk",
        client={"psk_identity": identity},
        server={
            "psk_identity_hint": b"hint",
            "psk_for_identity": lambda i: bytes(range(16)) if i == identity else None,
        },
    )
    link = Link(c, s)
    assert link.handshake()
    assert link.complete(link.server_events)[0].peer_identity == PskIdentity(identity)


def test_ems_can_be_off(configs: ConfigFactory) -> None:
    c, s = configs("psk", client={"offer_extended_master_secret": False})
    link = Link(c, s)
    assert link.handshake()
    assert not link.complete(link.server_events)[0].extended_master_secret
    link.exchange_data()


def test_server_requiring_ems_refuses_client_without(configs: ConfigFactory) -> None:
    c, s = configs(
        "psk",
        client={"offer_extended_master_secret": False},
        server={"require_extended_master_secret": True},
    )
    link = Link(c, s)
    assert not link.handshake()
    assert link.closed(link.server_events)[0].alert == 40


def test_handshake_timer_reports_deadline(configs: ConfigFactory) -> None:
    link = Link(*configs("psk"))
    link.client.connect(5.0)
    assert link.client.get_timer() == pytest.approx(6.0)


@pytest.mark.parametrize("mode", ["rpk", "x509"])
def test_certificate_suite_without_client_auth(configs: ConfigFactory, mode: str) -> None:
    from keystore.dtls import AnonymousIdentity

    c, s = configs(
        mode,
        client={"private_key": None, "certificate_chain": None},
        server={"require_client_auth": False},
    )
    link = Link(c, s)
    assert link.handshake()
    assert link.complete(link.server_events)[0].peer_identity == AnonymousIdentity()
    link.exchange_data()


def test_client_without_credentials_when_server_requires_them(configs: ConfigFactory) -> None:
    c, s = configs("x509", client={"private_key": None, "certificate_chain": None})
    link = Link(c, s)
    assert not link.handshake()
    assert link.closed(link.server_events)[0].alert == 40  # empty certificate list

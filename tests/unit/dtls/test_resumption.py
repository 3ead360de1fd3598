"""Abbreviated handshakes by session id (RFC 5246 §7.3) and the RFC 7627 §5.3 EMS rules."""

from __future__ import annotations

import pytest

from keystore.dtls import AlertDescription, LruSessionCache, Session

from .conftest import ALL_MODES, ConfigFactory
from .harness import Link


def _first(configs: ConfigFactory, mode: str, suite: int, cache: LruSessionCache) -> Link:
    link = Link(*configs(mode, suite, server={"session_cache": cache}))
    assert link.handshake()
    assert len(cache) == 1
    return link


@pytest.mark.parametrize(("mode", "suite"), ALL_MODES, ids=lambda v: getattr(v, "name", v))
def test_second_handshake_is_abbreviated(configs: ConfigFactory, mode: str, suite: int) -> None:
    cache = LruSessionCache()
    first = _first(configs, mode, suite, cache)
    session = first.client.session
    assert session is not None and len(session.session_id) == 32
    assert session.master_secret.hex() not in repr(session)
    assert "master_secret=" not in repr(session).replace("extended_master_secret=", "")

    c, s = configs(mode, suite, client={"session": session}, server={"session_cache": cache})
    link = Link(c, s)
    assert link.handshake()
    (c_done,) = link.complete(link.client_events)
    (s_done,) = link.complete(link.server_events)
    assert c_done.resumed and s_done.resumed
    assert s_done.session_id == session.session_id
    assert s_done.peer_identity == first.complete(first.server_events)[0].peer_identity
    assert c_done.peer_identity == first.complete(first.client_events)[0].peer_identity
    # abbreviated: 2 datagrams each way after the cookie exchange, and no certificates
    assert len(link.wire_s2c) == 2 and len(link.wire_c2s) == 3
    link.exchange_data()


def test_unknown_session_falls_back_to_full(configs: ConfigFactory) -> None:
    cache = LruSessionCache()
    first = _first(configs, "psk", 0xC0A8, cache)
    assert first.client.session is not None
    c, s = configs(
        "psk", client={"session": first.client.session}, server={"session_cache": LruSessionCache()}
    )
    link = Link(c, s)
    assert link.handshake()
    assert not link.complete(link.client_events)[0].resumed
    assert link.complete(link.client_events)[0].session_id != first.client.session.session_id


def test_resumption_without_ems_is_refused(configs: ConfigFactory) -> None:
    """RFC 7627 §5.3: the session used EMS, the new hello does not offer it: abort."""
    cache = LruSessionCache()
    first = _first(configs, "psk", 0xC0A8, cache)
    c, s = configs(
        "psk",
        client={"session": first.client.session, "offer_extended_master_secret": False},
        server={"session_cache": cache},
    )
    link = Link(c, s)
    assert not link.handshake()
    assert link.closed(link.server_events)[0].alert == AlertDescription.handshake_failure


def test_non_ems_session_is_not_resumed_with_ems(configs: ConfigFactory) -> None:
    cache = LruSessionCache()
    c, s = configs(
        "psk", client={"offer_extended_master_secret": False}, server={"session_cache": cache}
    )
    first = Link(c, s)
    assert first.handshake()
    c, s = configs("psk", client={"session": first.client.session}, server={"session_cache": cache})
    link = Link(c, s)
    assert link.handshake()
    assert not link.complete(link.server_events)[0].resumed  # full handshake instead


def test_lru_cache_is_bounded() -> None:
    from keystore.dtls import PskIdentity

    cache = LruSessionCache(max_entries=3)
    for i in range(5):
        cache.put(Session(bytes([i]) * 32, b"m" * 48, 0xC0A8, PskIdentity(b"x"), True, False))
    assert len(cache) == 3
    assert cache.get(b"\x00" * 32) is None and cache.get(b"\x04" * 32) is not None
    cache.remove(b"\x04" * 32)
    assert cache.get(b"\x04" * 32) is None

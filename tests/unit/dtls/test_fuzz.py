"""Property tests: no input makes ``receive_datagram`` raise, in any engine state."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystore.dtls import ConnectionClosed, CookieVerifier, DtlsEngine, Event, LruSessionCache
from keystore.dtls.record import encode_record

from .conftest import ConfigFactory
from .harness import Link

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

#: Datagrams that look like DTLS (a valid header of any type/epoch) with arbitrary bodies,
#: so the fuzzer reaches the handshake and protection code, not only the header checks.
dtls_like = st.builds(
    lambda t, epoch, seq, body, cid: encode_record(t, 0xFEFD, epoch, seq, body, cid),
    st.sampled_from([20, 21, 22, 23, 25]),
    st.integers(0, 2),
    st.integers(0, 2**48 - 1),
    st.binary(max_size=300),
    st.one_of(st.none(), st.binary(min_size=6, max_size=6)),
)
datagrams = st.one_of(st.binary(max_size=400), dtls_like)


def _no_internal_error(events: list[Event]) -> None:
    """The engine's catch-all turns bugs into internal_error; the fuzzer must never hit it."""
    for e in events:
        assert not (isinstance(e, ConnectionClosed) and e.reason.startswith("internal error")), e


def _engines(configs: ConfigFactory) -> dict[str, Callable[[], DtlsEngine]]:
    def fresh_server() -> DtlsEngine:
        return DtlsEngine.server(configs("psk")[1])

    def mid_server() -> DtlsEngine:
        link = Link(*configs("psk", client={"connection_id": b""}))
        link.client.connect(0.0)
        link.flush()
        link.flush()
        assert link.server is not None
        return link.server

    def established_server() -> DtlsEngine:
        link = Link(*configs("psk", client={"connection_id": b""}))
        assert link.handshake() and link.server is not None
        return link.server

    def connected_client() -> DtlsEngine:
        engine = DtlsEngine.client(configs("psk")[0])
        engine.connect(0.0)
        return engine

    def established_client() -> DtlsEngine:
        link = Link(*configs("psk", client={"connection_id": b"\x01\x02"}))
        assert link.handshake()
        return link.client

    return {
        "fresh_server": fresh_server,
        "mid_server": mid_server,
        "established_server": established_server,
        "connected_client": connected_client,
        "established_client": established_client,
    }


@pytest.mark.parametrize(
    "which",
    ["fresh_server", "mid_server", "established_server", "connected_client", "established_client"],
)
@FUZZ
@given(data=st.lists(datagrams, min_size=1, max_size=4))
def test_arbitrary_datagrams_never_raise(
    configs: ConfigFactory, which: str, data: list[bytes]
) -> None:
    engine = _engines(configs)[which]()
    for d in data:
        events = engine.receive_datagram(d, 1.0, ("203.0.113.1", 1))
        _no_internal_error(events)
        engine.datagrams_to_send()
        engine.handle_timer(2.0)


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=6),
    which=st.integers(0, 20),
)
def test_mutated_handshake_traffic_never_raises(
    configs: ConfigFactory, flips: list[tuple[int, int]], which: int
) -> None:
    """Flip bytes of one real datagram of a handshake; both sides must survive."""
    mutated = {"done": False}

    def mutate(batch: list[bytes], first: int) -> list[bytes]:
        out = []
        for k, d in enumerate(batch, first):
            if k == which % 6 and not mutated["done"] and d:
                b = bytearray(d)
                for pos, x in flips:
                    b[pos % len(b)] ^= x
                d = bytes(b)
                mutated["done"] = True
            out.append(d)
        return out

    link = Link(*configs("psk", server={"session_cache": LruSessionCache()}), c2s=mutate)
    link.s2c = mutate
    link.handshake(max_rounds=60)
    _no_internal_error(link.client_events + link.server_events)


@FUZZ
@given(data=st.binary(max_size=600), port=st.integers(0, 65535), now=st.floats(0, 1e9))
def test_cookie_verifier_never_raises(data: bytes, port: int, now: float) -> None:
    reply, ok = CookieVerifier().server_handle_initial_datagram(data, ("h", port), now)
    assert not ok or reply is None

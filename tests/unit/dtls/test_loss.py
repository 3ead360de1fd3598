"""Loss, duplication and reordering of every datagram of every flight; retransmission timers.

Each case changes exactly one datagram (by its running index in one direction) of an otherwise
clean handshake and then checks that the handshake still completes and keys agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from keystore.dtls import (
    ClientConfig,
    ConnectionClosed,
    LruSessionCache,
    ServerConfig,
    TimingConfig,
)

from .conftest import ConfigFactory
from .harness import Hook, Link

#: datagrams per direction in a clean run: (client->server, server->client)
SCENARIOS = {
    "psk": (3, 3),  # CH | CH+cookie | CKE CCS Fin   //   HVR | SH SHD | CCS Fin
    "x509-mtu300": (5, 5),  # certificate flights fragmented over several datagrams
    "resumed": (3, 2),  # CH | CH+cookie | CCS Fin   //   HVR | SH CCS Fin
}


def drop(i: int) -> Hook:
    def hook(batch: list[bytes], first: int) -> list[bytes]:
        return [d for k, d in enumerate(batch, first) if k != i]

    return hook


def duplicate(i: int) -> Hook:
    def hook(batch: list[bytes], first: int) -> list[bytes]:
        out: list[bytes] = []
        for k, d in enumerate(batch, first):
            out += [d, d] if k == i else [d]
        return out

    return hook


def swap(i: int) -> Hook:
    """Deliver datagram i after datagram i+1 (which may come in a later batch)."""
    held: list[bytes] = []

    def hook(batch: list[bytes], first: int) -> list[bytes]:
        out: list[bytes] = []
        for k, d in enumerate(batch, first):
            if k == i:
                held.append(d)
                continue
            out.append(d)
            if held and k > i:
                out.append(held.pop())
        return out

    return hook


ACTIONS: dict[str, Callable[[int], Hook]] = {"drop": drop, "dup": duplicate, "swap": swap}


def _configs(configs: ConfigFactory, scenario: str) -> tuple[ClientConfig, ServerConfig]:
    if scenario == "psk":
        return configs("psk")
    if scenario == "x509-mtu300":
        timing = TimingConfig(mtu=300)
        return configs("x509", client={"timing": timing}, server={"timing": timing})
    cache = LruSessionCache()
    c, s = configs("psk", server={"session_cache": cache})
    first = Link(c, s)
    assert first.handshake()
    c2, _ = configs("psk", client={"session": first.client.session})
    return c2, s


def _cases() -> list[tuple[str, str, str, int]]:
    cases = []
    for scenario, (n_c2s, n_s2c) in SCENARIOS.items():
        for action in ACTIONS:
            cases += [(scenario, action, "c2s", i) for i in range(n_c2s)]
            cases += [(scenario, action, "s2c", i) for i in range(n_s2c)]
    return cases


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_clean_run_datagram_counts(configs: ConfigFactory, scenario: str) -> None:
    link = Link(*_configs(configs, scenario))
    assert link.handshake()
    assert (len(link.wire_c2s), len(link.wire_s2c)) == SCENARIOS[scenario]
    assert link.now == 0.0  # no timer needed without loss


@pytest.mark.parametrize(("scenario", "action", "direction", "index"), _cases())
def test_single_datagram_fault(
    configs: ConfigFactory, scenario: str, action: str, direction: str, index: int
) -> None:
    hook = ACTIONS[action](index)
    link = Link(*_configs(configs, scenario), **{direction: hook})
    assert link.handshake(), (link.client_events, link.server_events)
    assert len(link.complete(link.client_events)) == 1
    assert len(link.complete(link.server_events)) == 1
    assert link.complete(link.client_events)[0].resumed == (scenario == "resumed")
    link.c2s = link.s2c = None
    link.exchange_data()
    if action == "drop":
        assert link.now >= 1.0  # recovered by a retransmission timer


@pytest.mark.parametrize("direction", ["c2s", "s2c"])
@pytest.mark.parametrize("batch_no", [0, 1, 2])
def test_whole_flight_lost_twice(configs: ConfigFactory, direction: str, batch_no: int) -> None:
    """The same flight is lost on its first two transmissions (timer- or peer-triggered)."""
    state = {"batch": 0, "drops": 0}

    def hook(batch: list[bytes], first: int) -> list[bytes]:
        current = state["batch"]
        if current == batch_no and state["drops"] < 2:
            state["drops"] += 1
            return []
        state["batch"] += 1
        return batch

    link = Link(*configs("psk"), **{direction: hook})
    assert link.handshake()
    assert link.now >= 1.0
    link.c2s = link.s2c = None
    link.exchange_data()


def test_retransmission_schedule_and_give_up(configs: ConfigFactory) -> None:
    timing = TimingConfig(max_retransmissions=6)
    c, s = configs("psk", client={"timing": timing})
    link = Link(c, s, s2c=lambda batch, first: [])
    link.client.connect(0.0)
    sent_at: list[float] = []
    while not link.client.is_closed:
        if link.client.datagrams_to_send():
            sent_at.append(link.now)
        deadline = link.client.get_timer()
        assert deadline is not None
        link.now = deadline
        link.client_events += link.client.handle_timer(link.now)
    assert sent_at == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert link.now == 123.0  # last timeout capped at 60 s
    (closed,) = [e for e in link.client_events if isinstance(e, ConnectionClosed)]
    assert closed.reason == "handshake timed out"
    assert link.client.get_timer() is None


def test_timeout_cap_is_respected(configs: ConfigFactory) -> None:
    timing = TimingConfig(retransmit_initial=1.0, retransmit_max=4.0, max_retransmissions=5)
    c, s = configs("psk", client={"timing": timing})
    engine = Link(c, s).client
    engine.connect(0.0)
    deadlines = []
    now = 0.0
    for _ in range(5):
        deadline = engine.get_timer()
        assert deadline is not None
        deadlines.append(deadline - now)
        now = deadline
        engine.handle_timer(now)
    assert deadlines == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_server_gives_up_when_client_vanishes(configs: ConfigFactory) -> None:
    link = Link(*configs("psk"))
    link.client.connect(0.0)
    link.flush()  # CH -> HVR
    link.flush()  # CH+cookie -> server flight
    assert link.server is not None
    assert link.server.get_timer() == 1.0
    link.client = link.client.__class__.client(link.client._config)  # the client disappears
    now = 0.0
    events = []
    while (t := link.server.get_timer()) is not None:
        now = t
        events += link.server.handle_timer(now)
    assert link.server.is_closed
    assert [e.reason for e in events if isinstance(e, ConnectionClosed)] == ["handshake timed out"]


def test_final_flight_is_forgotten_after_linger(configs: ConfigFactory) -> None:
    link = Link(*configs("psk"))
    assert link.handshake()
    assert link.server is not None
    deadline = link.server.get_timer()  # server keeps its last flight for a while
    assert deadline == 60.0
    link.server.handle_timer(deadline)
    assert link.server.get_timer() is None
    assert link.client.get_timer() is None


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("scenario", ["psk", "x509-mtu300", "resumed", "rpk-cid"])
def test_lossy_network(configs: ConfigFactory, scenario: str, seed: int) -> None:
    """20 % loss, 10 % duplication and every batch shuffled, in both directions."""
    rnd = random.Random(seed)

    def chaos(batch: list[bytes], first: int) -> list[bytes]:
        out: list[bytes] = []
        for d in batch:
            r = rnd.random()
            if r < 0.2:
                continue
            out += [d, d] if r > 0.9 else [d]
        rnd.shuffle(out)
        return out

    if scenario == "rpk-cid":
        c, s = configs("rpk", client={"connection_id": b""})
    else:
        c, s = _configs(configs, scenario)
    timing = TimingConfig(mtu=300, max_retransmissions=10)
    c.timing = s.timing = timing
    link = Link(c, s, c2s=chaos, s2c=chaos)
    assert link.handshake(max_rounds=2000)
    link.c2s = link.s2c = None
    link.exchange_data()

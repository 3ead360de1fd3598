"""Two endpoints wired through memory with an explicit clock (aioquic's ``client_and_server``).

``Net.server`` plays the LwM2M server's endpoint, ``Net.device`` a device's; what one sends the
other receives at ``net.now``. ``net.drop`` can lose datagrams; nothing here sleeps or reads a
clock, so every schedule is asserted exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

from lwm2m_runtime.coap import Endpoint, Event, Message, Parameters, Type, parse, serialize

SERVER = ("192.0.2.1", 5683)
DEVICE = ("198.51.100.7", 56830)


class FixedRandom(random.Random):
    """Deterministic tokens and MIDs (seeded) and an ACK timeout exactly in the middle of its
    range, so retransmission times are known numbers (2.5 s, 5 s, 10 s, ...)."""

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) / 2


class Net:
    def __init__(
        self,
        server_params: Parameters | None = None,
        device_params: Parameters | None = None,
    ) -> None:
        self.now = 0.0
        self.server = Endpoint(server_params, rng=FixedRandom(1))
        self.device = Endpoint(device_params, rng=FixedRandom(2))
        self.drop: Callable[[bytes, Hashable], bool] = lambda data, to: False
        self.wire: list[tuple[str, Message]] = []
        """Every datagram that crossed, as ("s->d" | "d->s", parsed message)."""

    def _other(self, endpoint: Endpoint) -> tuple[Endpoint, Hashable, str]:
        if endpoint is self.server:
            return self.device, SERVER, "s->d"
        return self.server, DEVICE, "d->s"

    def flush(self) -> int:
        """Deliver datagrams both ways until both are quiet; returns how many crossed."""
        moved = 0
        while True:
            batch = 0
            for endpoint in (self.server, self.device):
                other, source, direction = self._other(endpoint)
                for data, to in endpoint.datagrams_to_send(self.now):
                    self.wire.append((direction, parse(data)))
                    if self.drop(data, to):
                        continue
                    other.receive_datagram(data, source, self.now)
                    batch += 1
            moved += batch
            if not batch:
                return moved

    def run_until(self, until: float) -> None:
        """Fire both endpoints' timers in time order up to ``until``, delivering what they send."""
        self.flush()
        while True:
            timers = [
                t for t in (self.server.get_timer(), self.device.get_timer()) if t is not None
            ]
            if not timers or min(timers) > until:
                break
            self.now = max(self.now, min(timers))
            for endpoint in (self.server, self.device):
                timer = endpoint.get_timer()
                if timer is not None and timer <= self.now:
                    endpoint.handle_timer(self.now)
            self.flush()
        self.now = max(self.now, until)

    def inject(self, endpoint: Endpoint, message: Message | bytes) -> list[Message]:
        """Feed a hand-made datagram to ``endpoint`` (as from the other side); what it answers
        directly is returned parsed (and not delivered)."""
        source = DEVICE if endpoint is self.server else SERVER
        data = message if isinstance(message, bytes) else serialize(message)
        endpoint.receive_datagram(data, source, self.now)
        return [parse(d) for d, _ in endpoint.datagrams_to_send(self.now)]

    def sent(self, endpoint: Endpoint) -> list[Message]:
        return [parse(d) for d, _ in endpoint.datagrams_to_send(self.now)]


def events(endpoint: Endpoint) -> list[Event]:
    out: list[Event] = []
    while (event := endpoint.next_event()) is not None:
        out.append(event)
    return out


def con(code: int, mid: int, token: bytes = b"\x01", **kw: object) -> Message:
    msg = Message.request(code, mtype=Type.CON, token=token, **kw)  # type: ignore[arg-type]
    return msg.replace(mid=mid)

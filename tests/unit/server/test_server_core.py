"""ServerCore: the cross-index rules (replace cancels observations, expiry drops queues, queue
mode wakes on any message) as the CoAP adapter will drive them."""

from __future__ import annotations

import itertools

import pytest

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.events import (
    Awake,
    Deregistered,
    Expired,
    NotificationReceived,
    ObservationsCancelled,
    QueueDropped,
    Registered,
    Replaced,
    SendReceived,
    Sleeping,
    Updated,
)
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.queue import QueueConfig, QueueFullError
from lwm2m_server.core.registration import UpdateRequest
from lwm2m_server.core.server import ServerCore
from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

from .helpers import ADDR, Clock, request


def make_core(**kw: object) -> ServerCore:
    counter = itertools.count()
    return ServerCore(grace_period=0, id_factory=lambda: f"r{next(counter)}", **kw)  # type: ignore[arg-type]


def observe(core: ServerCore, reg_id: str, token: bytes, path: str = "/3/0/1") -> Observation:
    reg = core.registrations.require(reg_id)
    o = Observation(token, reg.endpoint, reg_id, (LwM2mPath.parse(path),))
    core.observation_started(o)
    return o


def test_register_emits_registered(clock: Clock) -> None:
    core = make_core()
    res = core.apply_register(request("a"), now=clock.now, address=ADDR)
    assert res.registration is not None
    assert res.events == (Registered(res.registration),)
    assert res.to_send == ()


def test_reregister_cancels_old_observations(clock: Clock) -> None:
    core = make_core()
    first = core.apply_register(request("a"), now=clock.now, address=ADDR).registration
    assert first is not None
    o1 = observe(core, first.registration_id, b"\x01")
    o2 = observe(core, first.registration_id, b"\x02", "/3/0/2")
    res = core.apply_register(request("a"), now=clock.advance(1), address=ADDR)
    new = res.registration
    assert new is not None
    assert res.events == (
        Replaced(first, new),
        ObservationsCancelled(first.registration_id, (o1, o2)),
        Registered(new, first),
    )
    assert len(core.observations) == 0
    # a late notification for the old observation is unknown: adapter answers RST
    assert core.notification(b"\x01", b"", 0, now=clock.now).registration is None


def test_observation_for_gone_registration_is_4_04(clock: Clock) -> None:
    core = make_core()
    o = Observation(b"\x01", "a", "r9", (LwM2mPath.parse("/3/0/1"),))
    with pytest.raises(Lwm2mError) as info:
        core.observation_started(o)
    assert info.value.code is ResponseCode.NOT_FOUND


def test_deregister_drops_observations_and_queue(clock: Clock) -> None:
    core = make_core()
    reg = core.apply_register(request("a", queue_mode=True), now=clock.now, address=ADDR)
    assert reg.registration is not None
    reg_id = reg.registration.registration_id
    o = observe(core, reg_id, b"\x01")
    clock.advance(200)  # asleep now
    assert core.submit("a", "read /3/0", now=clock.now) is False
    res = core.deregister(reg_id, now=clock.now)
    assert res.events == (
        Deregistered(reg.registration),
        ObservationsCancelled(reg_id, (o,)),
        QueueDropped("a", ("read /3/0",)),
    )
    with pytest.raises(Lwm2mError) as info:
        core.deregister(reg_id, now=clock.now)
    assert info.value.code is ResponseCode.NOT_FOUND


def test_expiry_through_tick(clock: Clock) -> None:
    core = make_core()
    res = core.apply_register(request("a", lifetime=60), now=clock.now, address=ADDR)
    assert res.registration is not None
    o = observe(core, res.registration.registration_id, b"\x01")
    assert core.next_deadline() == clock.now + 60
    assert core.tick(clock.now + 59) == []
    events = core.tick(clock.now + 60)
    assert events == [
        Expired(res.registration),
        ObservationsCancelled(res.registration.registration_id, (o,)),
    ]
    assert core.next_deadline() is None


def test_queue_mode_flow(clock: Clock) -> None:
    """Register wakes the client; requests go out at once while awake, are queued while it
    sleeps, and come back from the Update that wakes it, oldest first."""
    core = make_core(queue_config=QueueConfig(awake_time=93))
    t0 = clock.now
    res = core.apply_register(request("a", queue_mode=True), now=t0, address=ADDR)
    reg = res.registration
    assert reg is not None
    assert res.events[-1] == Awake("a", t0 + 93)
    assert core.submit("a", "now", now=t0 + 1) is True  # awake: send directly
    assert core.next_deadline() == t0 + 93
    assert core.tick(t0 + 93) == [Sleeping("a", t0 + 93)]
    assert core.submit("a", "q1", now=t0 + 100) is False
    assert core.submit("a", "q2", now=t0 + 101) is False
    up = core.apply_update(reg.registration_id, UpdateRequest(), now=t0 + 500)
    assert up.registration is not None
    assert up.events == (Updated(up.registration, reg), Awake("a", t0 + 593))
    assert [e.request for e in up.to_send] == ["q1", "q2"]


def test_notification_wakes_and_reports(clock: Clock) -> None:
    core = make_core()
    res = core.apply_register(request("a", queue_mode=True), now=clock.now, address=ADDR)
    assert res.registration is not None
    o = observe(core, res.registration.registration_id, b"\x07")
    clock.advance(1000)
    core.tick(clock.now)
    core.submit("a", "pending", now=clock.now)
    out = core.notification(b"\x07", b"42", 0, now=clock.advance(1))
    assert out.registration == res.registration
    first = out.events[0]
    assert isinstance(first, NotificationReceived)
    assert first.observation.token == o.token and first.payload == b"42"
    assert first.observation.last_notification == clock.now
    assert isinstance(out.events[1], Awake)
    assert [e.request for e in out.to_send] == ["pending"]


def test_send_is_attributed_by_address_and_identity(clock: Clock) -> None:
    core = make_core()
    ident = IdentityBinding("psk", "dev-a")
    res = core.apply_register(request("a"), now=clock.now, address=ADDR, identity=ident)
    out = core.send(ADDR, b"[]", 110, now=clock.now, identity=ident)
    assert out.events == (SendReceived(res.registration, b"[]", 110, clock.now),)  # type: ignore[arg-type]
    with pytest.raises(Lwm2mError) as info:
        core.send(Address("203.0.113.9", 1), b"[]", 110, now=clock.now)
    assert info.value.code is ResponseCode.NOT_FOUND
    with pytest.raises(Lwm2mError) as info:
        core.send(ADDR, b"[]", 110, now=clock.now, identity=None)
    assert info.value.code is ResponseCode.FORBIDDEN


def test_send_from_an_address_shared_by_nosec_endpoints_is_refused(clock: Clock) -> None:
    """Two NoSec endpoints behind one address:port: a Send cannot say which one it is, so it
    is refused (4.03) instead of being filed under the latest registration."""
    core = make_core()
    core.apply_register(request("a"), now=clock.now, address=ADDR)
    b = core.apply_register(request("b"), now=clock.now, address=ADDR).registration
    assert b is not None
    with pytest.raises(Lwm2mError) as info:
        core.send(ADDR, b"[]", 110, now=clock.now)
    assert info.value.code is ResponseCode.FORBIDDEN
    assert "'a', 'b'" in info.value.message
    core.deregister(b.registration_id, now=clock.now)
    assert core.send(
        ADDR, b"[]", 110, now=clock.now
    ).registration == core.registrations.by_endpoint("a")


def test_dtls_send_is_attributed_by_identity_not_address(clock: Clock) -> None:
    """A DTLS peer is known by its session identity: a NoSec registration at the same address
    does not make its Send ambiguous, and a new address (NAT rebinding, CID) does not lose it."""
    core = make_core()
    ident = IdentityBinding("psk", "dev-a")
    core.apply_register(request("plain"), now=clock.now, address=ADDR)
    a = core.apply_register(request("a"), now=clock.now, address=ADDR, identity=ident)
    out = core.send(Address("203.0.113.9", 7), b"[]", 110, now=clock.now, identity=ident)
    assert out.registration == a.registration
    with pytest.raises(Lwm2mError) as info:
        core.send(ADDR, b"[]", 110, now=clock.now, identity=IdentityBinding("psk", "unknown"))
    assert info.value.code is ResponseCode.NOT_FOUND
    # NoSec from that address: only "plain" is a NoSec registration there
    assert core.send(
        ADDR, b"[]", 110, now=clock.now
    ).registration == core.registrations.by_endpoint("plain")


def test_leaving_queue_mode_releases_queued_requests(clock: Clock) -> None:
    core = make_core()
    res = core.apply_register(
        request("a", lwm2m_version="1.0", binding="UQ", queue_mode=True),
        now=clock.now,
        address=ADDR,
    )
    assert res.registration is not None
    clock.advance(500)
    core.tick(clock.now)
    core.submit("a", "held", now=clock.now)
    up = core.apply_update(
        res.registration.registration_id, UpdateRequest(binding="U"), now=clock.now
    )
    assert up.registration is not None and not up.registration.queue_mode
    assert [e.request for e in up.to_send] == ["held"]
    assert core.submit("a", "direct", now=clock.now) is True


def test_submit_errors(clock: Clock) -> None:
    core = make_core(queue_config=QueueConfig(max_length=1))
    with pytest.raises(Lwm2mError) as info:
        core.submit("ghost", "x", now=clock.now)
    assert info.value.code is ResponseCode.NOT_FOUND
    core.apply_register(request("a", queue_mode=True), now=clock.now, address=ADDR)
    clock.advance(1000)
    core.submit("a", "x", now=clock.now)
    with pytest.raises(QueueFullError):
        core.submit("a", "y", now=clock.now)


def test_bad_update_changes_nothing(clock: Clock) -> None:
    core = make_core()
    res = core.apply_register(request("a", lifetime=60), now=clock.now, address=ADDR)
    assert res.registration is not None
    with pytest.raises(Lwm2mError):
        core.update(res.registration.registration_id, ["lt=-1"], now=clock.now + 10)
    with pytest.raises(Lwm2mError):
        core.apply_update(
            res.registration.registration_id, UpdateRequest(binding="Z"), now=clock.now + 10
        )
    assert core.registrations.get(res.registration.registration_id) == res.registration


def test_restore_skips_orphan_observations(clock: Clock) -> None:
    src = make_core()
    res = src.apply_register(request("a"), now=clock.now, address=ADDR)
    assert res.registration is not None
    good = observe(src, res.registration.registration_id, b"\x01")
    orphan = Observation(b"\x02", "b", "gone", (LwM2mPath.parse("/3/0/1"),))
    core = make_core()
    core.restore([res.registration], [good, orphan])
    assert core.observations.by_token(b"\x01") == good
    assert core.observations.by_token(b"\x02") is None


def test_register_from_wire(clock: Clock) -> None:
    core = make_core()
    res = core.register(
        ["ep=a", "lt=120", "lwm2m=1.1"], b"</1/0>,</3/0>", 40, now=clock.now, address=ADDR
    )
    assert res.registration is not None
    assert res.registration.location == "rd/r0"
    upd = core.update("r0", ["lt=300"], b"</1/0>,</3/0>,</3303/0>", 40, now=clock.now + 1)
    assert upd.registration is not None
    assert upd.registration.object_links.instances[3303] == (0,)

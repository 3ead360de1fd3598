"""The keep-alive's own path (s10-update): a bare ``POST /rd/{id}`` of a client outside queue
mode with nothing queued is answered by the site itself, goes through ``ServerCore.keep_alive``
(no parsed request, no ``Updated`` event, no ``CoreResult``) and is announced by
``Effects.kept_alive``. Each test holds that path to what the general Update
(``apply_update`` + ``apply``) does with the same request, and checks that every other Update
still takes the general path."""

from __future__ import annotations

import itertools
import logging
from types import SimpleNamespace
from typing import Any, cast

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Code, Message, Type
from lwm2m_runtime.server import IncomingRequest
from lwm2m_server.coap.site import RegistrationSite
from lwm2m_server.coap.uplink import Uplink
from lwm2m_server.core.events import Awake, Expired, Updated
from lwm2m_server.core.registration import (
    BARE_UPDATE,
    ObjectLinks,
    Registration,
    RegistrationRequest,
)
from lwm2m_server.core.server import CoreResult, ServerCore
from lwm2m_server.events_bus import UPDATED, RegistrationData
from lwm2m_server.json_nodes import registration_to_json
from lwm2m_server.operations import ServerEvent
from lwm2m_server.service import Lwm2mServer
from object_models.errors import Lwm2mError, ResponseCode

from .helpers import ADDR, Clock, request

SOURCE = (ADDR.host, ADDR.port)


def make_core() -> ServerCore:
    counter = itertools.count()
    return ServerCore(grace_period=0, id_factory=lambda: f"r{next(counter)}")


class Effects:
    """The service's side of the uplink, recorded."""

    def __init__(self) -> None:
        self.applied: list[CoreResult] = []
        self.kept: list[tuple[Registration, Registration]] = []

    def apply(self, result: CoreResult) -> None:
        self.applied.append(result)

    def kept_alive(self, registration: Registration, previous: Registration) -> None:
        self.kept.append((registration, previous))


class Resolver:
    """``Resolver.resolve``: every peer may be every endpoint, bound to ``binding``."""

    def __init__(self, binding: object = None) -> None:
        self.binding = binding
        self.asked: list[str | None] = []

    def resolve(self, peer: object, endpoint: str | None = None) -> Any:
        self.asked.append(endpoint)
        return SimpleNamespace(binding=self.binding)


def make_uplink(
    core: ServerCore, clock: Clock, resolver: Resolver | None = None
) -> tuple[Uplink, Effects]:
    effects = Effects()
    uplink = Uplink(
        core,
        cast(Any, None),  # telemetry store, registry, bus: not used by an Update
        cast(Any, None),
        cast(Any, None),
        effects,
        resolver=cast(Any, resolver or Resolver()),
        clock=lambda: clock.now,
    )
    return uplink, effects


def registered(core: ServerCore, clock: Clock, **kwargs: object) -> Registration:
    reg = core.apply_register(request("a", **kwargs), now=clock.now, address=ADDR).registration
    assert reg is not None
    return reg


def update(
    uplink: Uplink,
    reg_id: str,
    query: list[str] | None = None,
    payload: bytes = b"",
    source: tuple[str, int] = SOURCE,
) -> Registration:
    return uplink.handle_update(
        reg_id, query or [], payload, None, source=source, identity=cast(Any, None)
    )


# -- the core and the uplink ---------------------------------------------------------------------


def test_a_keep_alive_gives_what_the_general_update_gives(clock: Clock) -> None:
    """Two cores with the same history: one takes the keep-alive's path through the uplink,
    the other ``apply_update`` with the same bare request. Registration, store, indexes and
    expiry come out the same; the effects are told ``kept_alive``, not ``apply``."""
    fast, general = make_core(), make_core()
    prev = registered(fast, clock, lifetime=300)
    registered(general, clock, lifetime=300)
    uplink, effects = make_uplink(fast, clock)
    clock.advance(100)
    kept = update(uplink, prev.registration_id)
    result = general.apply_update(prev.registration_id, BARE_UPDATE, now=clock.now, address=ADDR)
    assert result.events == (Updated(result.registration, prev),) and result.to_send == ()
    assert kept == result.registration and kept.last_update == clock.now
    assert kept.address is prev.address  # not moved: the registered object
    assert effects.kept == [(kept, prev)] and effects.applied == []
    assert fast.registrations.get(prev.registration_id) is kept
    assert fast.registrations.by_endpoint("a") is kept
    assert fast.store.get_registration(prev.registration_id) == general.store.get_registration(
        prev.registration_id
    )
    assert fast.next_deadline() == general.next_deadline() == clock.now + 300
    assert fast.registrations.at_address(ADDR) == [kept]
    assert "a" not in fast.queues.endpoints


def test_a_keep_alive_from_another_address_moves_the_registration(clock: Clock) -> None:
    core = make_core()
    prev = registered(core, clock)
    uplink, effects = make_uplink(core, clock)
    kept = update(uplink, prev.registration_id, source=("192.0.2.9", 5683))
    moved = Address("192.0.2.9", 5683)
    assert kept.address == moved
    assert effects.kept == [(kept, prev)]
    assert core.registrations.at_address(moved) == [kept]
    assert core.registrations.at_address(ADDR) == []
    stored = core.store.get_registration(prev.registration_id)
    assert stored is not None and stored.address == moved


def test_a_queue_mode_client_s_keep_alive_takes_the_general_path(clock: Clock) -> None:
    """Its awake window opens (``Awake``): the whole result goes to ``apply``."""
    core = make_core()
    prev = registered(core, clock, binding="UQ", queue_mode=True, lwm2m_version="1.0")
    clock.advance(500)
    core.tick(clock.now)  # asleep
    assert core.submit("a", "held", now=clock.now) is False
    uplink, effects = make_uplink(core, clock)
    assert core.keep_alive(prev, now=clock.now, address=ADDR) is None
    assert core.registrations.get(prev.registration_id) is prev  # nothing done
    kept = update(uplink, prev.registration_id)
    assert effects.kept == []
    [result] = effects.applied
    assert result.registration is kept
    assert [type(e) for e in result.events] == [Updated, Awake]
    assert [e.request for e in result.to_send] == ["held"]


def test_a_client_with_anything_queued_takes_the_general_path(clock: Clock) -> None:
    """Outside queue mode but still in the queues (what it left there): ``_after_contact``
    hands it back, so the general path runs."""
    core = make_core()
    prev = registered(core, clock)
    core.queues.enqueue("a", "left over", now=clock.now)
    assert core.keep_alive(prev, now=clock.now, address=ADDR) is None
    uplink, effects = make_uplink(core, clock)
    update(uplink, prev.registration_id)
    assert effects.kept == []
    [result] = effects.applied
    assert [e.request for e in result.to_send] == ["left over"]
    assert "a" not in core.queues.endpoints


@pytest.mark.parametrize(
    ("query", "payload"),
    [(["lt=600"], b""), ([], b"</3/0>,</1/0>")],
)
def test_an_update_with_parameters_or_payload_takes_the_general_path(
    clock: Clock, query: list[str], payload: bytes
) -> None:
    core = make_core()
    prev = registered(core, clock)
    uplink, effects = make_uplink(core, clock)
    updated = update(uplink, prev.registration_id, query, payload)
    assert effects.kept == []
    [result] = effects.applied
    assert result.registration is updated
    assert result.events == (Updated(updated, prev),)
    assert (updated.lifetime == 600) if query else (updated.object_links.text == "</3/0>,</1/0>")


def test_a_keep_alive_of_an_unknown_id_is_4_04(clock: Clock) -> None:
    core = make_core()
    registered(core, clock)
    uplink, effects = make_uplink(core, clock)
    with pytest.raises(Lwm2mError) as refused:
        update(uplink, "no-such-id")
    assert refused.value.code == ResponseCode.NOT_FOUND
    assert (effects.kept, effects.applied) == ([], [])


def test_a_keep_alive_under_another_identity_is_4_03_and_changes_nothing(clock: Clock) -> None:
    core = make_core()
    prev = registered(core, clock)
    uplink, effects = make_uplink(core, clock, Resolver(binding=object()))
    with pytest.raises(Lwm2mError) as refused:
        update(uplink, prev.registration_id)
    assert refused.value.code == ResponseCode.FORBIDDEN
    assert (effects.kept, effects.applied) == ([], [])
    assert core.registrations.get(prev.registration_id) is prev
    assert core.store.get_registration(prev.registration_id) == prev


def test_a_keep_alive_of_a_registration_the_store_lost_is_4_04_and_forgotten(
    clock: Clock,
) -> None:
    """Another process removed it from the shared store: the touch finds no row."""
    core = make_core()
    prev = registered(core, clock)
    core.store.remove_registration(prev.registration_id)
    uplink, effects = make_uplink(core, clock)
    with pytest.raises(Lwm2mError) as refused:
        update(uplink, prev.registration_id)
    assert refused.value.code == ResponseCode.NOT_FOUND
    assert core.registrations.cached(prev.registration_id) is None
    assert (effects.kept, effects.applied) == ([], [])


def test_the_keep_alive_asks_the_resolver_for_the_registered_endpoint(clock: Clock) -> None:
    core = make_core()
    prev = registered(core, clock)
    resolver = Resolver()
    uplink, _ = make_uplink(core, clock, resolver)
    update(uplink, prev.registration_id)
    assert resolver.asked == ["a"]


def test_a_keep_alive_with_the_clock_gone_back_expires_as_the_general_update(
    clock: Clock,
) -> None:
    """The book's ``touched`` files an earlier deadline at once, as ``updated`` does."""
    fast, general = make_core(), make_core()
    clock.advance(1000)
    prev = registered(fast, clock, lifetime=300)
    registered(general, clock, lifetime=300)
    uplink, _ = make_uplink(fast, clock)
    clock.now -= 200  # a clock set back (NTP step)
    kept = update(uplink, prev.registration_id)
    result = general.apply_update(prev.registration_id, BARE_UPDATE, now=clock.now, address=ADDR)
    assert kept == result.registration
    assert fast.next_deadline() == general.next_deadline() == clock.now + 300
    assert fast.tick(clock.now + 301) == [Expired(kept)]


def test_a_keep_alive_is_logged_at_debug_as_soon_as_the_level_allows(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """``updated <endpoint> (<id>)`` at DEBUG: not while the uplink's logger is at INFO (its
    memo of that answer is read, not the logger asked), and at once when the level is
    lowered after such Updates (the memo is emptied by the change)."""
    core = make_core()
    prev = registered(core, clock)
    uplink, _ = make_uplink(core, clock)
    name = "lwm2m_server.coap.uplink"
    caplog.set_level(logging.INFO, logger=name)
    update(uplink, prev.registration_id)
    update(uplink, prev.registration_id)
    assert [r for r in caplog.records if r.name == name] == []
    caplog.set_level(logging.DEBUG, logger=name)
    update(uplink, prev.registration_id)
    assert [r.getMessage() for r in caplog.records if r.name == name] == [
        f"updated a ({prev.registration_id})"
    ]
    caplog.set_level(logging.INFO, logger=name)
    update(uplink, prev.registration_id)
    assert len([r for r in caplog.records if r.name == name]) == 1


@given(
    lifetime=st.integers(1, 10**6),
    queue_mode=st.booleans(),
    seconds=st.floats(0, 10**6),
    where=st.sampled_from(["same", "equal", "port", "host"]),
    attributes=st.dictionaries(st.sampled_from(["apn", "x"]), st.text(max_size=3), max_size=2),
)
def test_touched_is_the_bare_update(
    lifetime: int, queue_mode: bool, seconds: float, where: str, attributes: dict[str, str]
) -> None:
    """``Registration.touched`` (the keep-alive's copy) is ``updated(BARE_UPDATE)``: the same
    registration, keeping the very address object when the device did not move."""
    reg = Registration(
        "r1", "a", ADDR, lifetime, "1.1", "UQ" if queue_mode else "U", "123", queue_mode,
        ObjectLinks.parse("</1/0>,</3/0>"), "coap", None, 5.0, 10.0, attributes,
    )  # fmt: skip
    address = {
        "same": ADDR,
        "equal": Address(ADDR.host, ADDR.port),
        "port": Address(ADDR.host, ADDR.port + 1),
        "host": Address("192.0.2.77", ADDR.port),
    }[where]
    touched = reg.touched(10.0 + seconds, address)
    updated = reg.updated(BARE_UPDATE, now=10.0 + seconds, address=address)
    assert touched == updated
    assert (touched.address is reg.address) == (where in ("same", "equal"))
    assert updated.address is touched.address or where not in ("same", "equal")


@given(
    query=st.lists(
        st.sampled_from(["lt=60", "lwm2m=1.1", "b=UQ", "sms=123", "Q", "et=x", "apn=y"]),
        unique_by=lambda item: item.partition("=")[0],
    ),
    transport=st.sampled_from(["coap", "coaps"]),
    identity=st.sampled_from([None, "bound"]),
)
def test_create_is_the_registration_of_the_request(
    query: list[str], transport: str, identity: str | None
) -> None:
    """``Registration.create`` (built by the slots, every Register) is ``Registration(...)``
    of the request's values, the attrs ``__init__`` with its converter: equal, every field
    set, its additional attributes a copy of the request's (the one shared empty mapping when
    there are none)."""
    if "lwm2m=1.1" in query and "b=UQ" in query:
        query = [item for item in query if item != "b=UQ"]
    request = RegistrationRequest.parse(["ep=a", *query], b"</1/0>,</3/0>")
    bound = cast(Any, None if identity is None else SimpleNamespace(name=identity))
    created = Registration.create(
        "r1", request, now=5.0, address=ADDR, transport=transport, identity=bound
    )
    expected = Registration(
        registration_id="r1",
        endpoint="a",
        address=ADDR,
        lifetime=request.lifetime,
        lwm2m_version=request.lwm2m_version,
        binding=request.binding,
        sms_number=request.sms_number,
        queue_mode=request.queue_mode,
        object_links=request.object_links,
        transport=transport,
        identity=bound,
        registered_at=5.0,
        last_update=5.0,
        additional_attributes=request.additional_attributes,
    )
    assert type(created) is Registration
    assert created == expected and attrs.astuple(created) == attrs.astuple(expected)
    assert repr(created) == repr(expected)
    attributes = created.additional_attributes
    assert type(attributes) is type(expected.additional_attributes)
    assert attributes is not request.additional_attributes or not attributes
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        created.last_update = 6.0  # type: ignore[misc]


# -- the service: kept_alive is apply of the one Updated event ----------------------------------


class Armed:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.mark.parametrize("timer", [None, "armed"])
@pytest.mark.parametrize("later", [True, False])
def test_kept_alive_publishes_and_re_arms_as_apply_does(timer: str | None, later: bool) -> None:
    """Every combination of an armed timer or none and an expiry moved later or earlier (a
    clock that went back): the same events and the same re-arming as ``apply`` of the
    ``Updated`` event the general path makes."""
    prev = Registration("r1", "a", ADDR, lifetime=300, last_update=1000.0)
    reg = Registration("r1", "a", ADDR, lifetime=300, last_update=1100.0 if later else 900.0)
    servers = Lwm2mServer(), Lwm2mServer()
    seen: list[list[ServerEvent]] = []
    arms = []
    for server in servers:
        server.bus = type(server.bus)(first_id=1)
        sub = server.bus.subscribe()
        server._timer = cast(Any, timer)
        armed = Armed()
        server._arm_timer = armed  # type: ignore[method-assign]
        if server is servers[0]:
            server.kept_alive(reg, prev)
        else:
            server.apply(CoreResult(reg, (Updated(reg, prev),)))
        seen.append(sub.ready())
        arms.append(armed.calls)
    assert [(e.kind, e.endpoint, dict(e.data), e.id) for e in seen[0]] == [
        (e.kind, e.endpoint, dict(e.data), e.id) for e in seen[1]
    ]
    assert seen[0][0].kind == UPDATED
    assert dict(seen[0][0].data) == registration_to_json(reg, sleeping=False)
    assert arms[0] == arms[1] == (0 if timer and later else 1)


def test_registration_data_gives_its_registration_until_built() -> None:
    reg = Registration("r1", "a", ADDR)
    data = RegistrationData(reg, False, None)
    assert data.registration is reg
    assert data["endpoint"] == "a"  # built: it lets go of the registration
    assert data.registration is None


# -- the site: an Update answered by ``__call__`` -----------------------------------------------


class Handler:
    """The uplink handler: Updates recorded, refused with ``refuse`` when set."""

    def __init__(self, refuse: Lwm2mError | None = None) -> None:
        self.refuse = refuse
        self.updates: list[tuple[str, list[str], bytes, object]] = []
        self.deregistered: list[str] = []

    def handle_update(
        self,
        registration_id: str,
        query: list[str],
        payload: bytes,
        content_format: int | None,
        *,
        source: object,
        identity: object,
    ) -> Registration:
        if self.refuse is not None:
            raise self.refuse
        self.updates.append((registration_id, query, payload, source))
        return Registration(registration_id, "a", ADDR)

    def handle_deregister(self, registration_id: str, **kwargs: object) -> Registration:
        self.deregistered.append(registration_id)
        return Registration(registration_id, "a", ADDR)

    def endpoint_of(self, registration_id: str) -> str | None:
        return "a"


def site_with(
    handler: Handler, contacts: list[tuple[str, object]] | None = None
) -> RegistrationSite:
    def on_contact(registration: Registration, remote: object) -> None:
        if contacts is None:
            raise Lwm2mError("contact refused", code=ResponseCode.SERVICE_UNAVAILABLE)
        contacts.append((registration.registration_id, remote))

    return RegistrationSite(cast(Any, handler), on_contact=on_contact)


def incoming(code: Code, path: list[str], query: tuple[str, ...] = ()) -> IncomingRequest:
    return IncomingRequest(Message.request(code, path, query=query, mtype=Type.CON), SOURCE)


def test_an_update_is_answered_2_04_counted_and_its_peer_remembered() -> None:
    handler = Handler()
    contacts: list[tuple[str, object]] = []
    site = site_with(handler, contacts)
    response = site(incoming(Code.POST, ["rd", "r1"], ("lt=60",)))
    assert response.code == Code.CHANGED and response.payload == b""
    assert handler.updates == [("r1", ["lt=60"], b"", SOURCE)]
    assert contacts == [("r1", SOURCE)]
    assert site.counts == {("update", "2.04"): 1}


def test_a_refused_update_is_answered_and_counted_with_its_code() -> None:
    site = site_with(Handler(Lwm2mError("gone", code=ResponseCode.NOT_FOUND)), [])
    response = site(incoming(Code.POST, ["rd", "r1"]))
    assert response.code == Code.NOT_FOUND and response.payload == b"gone"
    assert site.counts == {("update", "4.04"): 1}


def test_an_update_whose_contact_hook_refuses_is_answered_with_that_refusal() -> None:
    site = site_with(Handler(), None)
    response = site(incoming(Code.POST, ["rd", "r1"]))
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert site.counts == {("update", "5.03"): 1}


def test_other_methods_on_a_registration_keep_their_answers() -> None:
    handler = Handler()
    site = site_with(handler, [])
    assert site(incoming(Code.GET, ["rd", "r1"])).code == Code.METHOD_NOT_ALLOWED
    assert site(incoming(Code.PUT, ["rd", "r1"])).code == Code.METHOD_NOT_ALLOWED
    assert site(incoming(Code.DELETE, ["rd", "r1"])).code == Code.DELETED
    assert handler.updates == [] and handler.deregistered == ["r1"]
    assert site.counts == {("update", "4.05"): 2, ("deregister", "2.02"): 1}
    assert site(incoming(Code.POST, ["rd", "r1", "x"])).code == Code.NOT_FOUND
    assert site.counts[("other", "4.04")] == 1

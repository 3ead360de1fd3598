"""The store contract: what ``ServerCore`` relies on from every engine of ``CoreStore``
(``lwm2m_server/store/base.py``), run over each engine (``engine`` fixture: memory, sqlite,
redis, redis-cluster). ``a``/``b`` are two handles on one store, as
two server processes sharing it see it."""

from __future__ import annotations

import attrs
import pytest

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks

from .engines import Engine, obs, reg


def test_put_get_by_endpoint_round_trip(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    r = reg(1, identity=IdentityBinding("psk", "dev-1"))
    assert a.put_registration(r) is None
    assert b.get_registration("id1") == r
    assert b.registration_by_endpoint("ep1") == r
    assert b.get_registration("nope") is None
    assert b.registration_by_endpoint("nope") is None
    assert b.registrations() == [r]


def test_register_again_replaces_the_endpoint_and_its_observations(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    old = reg(1, endpoint="dev")
    a.put_registration(old)
    a.put_observation(obs(b"t1", old))
    new = reg(2, endpoint="dev", last_update=2000.0)
    assert b.put_registration(new) == old
    assert a.get_registration("id1") is None
    assert a.registration_by_endpoint("dev") == new
    assert a.observation_by_token(b"t1") is None
    assert a.registrations() == [new]


def test_update_replaces_only_a_stored_registration(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    r = reg(1)
    a.put_registration(r)
    changed = reg(1, binding="UQ", queue_mode=True, object_links=ObjectLinks.parse("</3/0>"))
    assert b.update_registration(changed)
    assert a.get_registration("id1") == changed
    a.remove_registration("id1")
    assert not b.update_registration(changed)  # gone: nothing is resurrected
    assert a.get_registration("id1") is None
    assert a.registrations() == []


def test_touch_stores_last_update_lifetime_and_address(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    r = reg(1)
    a.put_registration(r)
    moved = attrs.evolve(
        r, last_update=1100.0, lifetime=600, address=Address("198.51.100.7", 40000)
    )
    assert b.touch_registration(moved)
    for handle in (a, b):
        assert handle.get_registration("id1") == moved
        assert handle.registration_by_endpoint("ep1") == moved
        assert handle.registrations() == [moved]
    assert a.registrations_by_address(Address("198.51.100.7", 40000)) == [moved]
    assert a.registrations_by_address(r.address) == []
    assert a.expiring_before(1100.0 + 600 + 1, 10) == [moved]
    assert a.expiring_before(1000.0 + 300 + 1, 10) == []


def test_touch_of_an_unknown_registration_writes_nothing(engine: Engine) -> None:
    a = engine.open()
    assert not a.touch_registration(reg(1))
    assert a.get_registration("id1") is None
    assert a.registrations() == []


def test_remove_returns_the_registration_and_drops_its_observations(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    r, other = reg(1), reg(2)
    a.put_registration(r)
    a.put_registration(other)
    a.put_observation(obs(b"t1", r))
    a.put_observation(obs(b"t2", other))
    assert b.remove_registration("id1") == r
    assert a.remove_registration("id1") is None
    assert a.observations() == [obs(b"t2", other)]
    assert a.registrations() == [other]


def test_conditional_remove_only_while_the_expiry_is_unchanged(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    r = reg(1)
    a.put_registration(r)
    refreshed = attrs.evolve(r, last_update=1200.0)
    b.touch_registration(refreshed)
    # a process that still has the old expiry loses: the registration was refreshed
    assert a.remove_registration("id1", expires_at=r.expires_at) is None
    assert a.get_registration("id1") == refreshed
    # of two processes expiring the current one, exactly one gets it
    results = [
        handle.remove_registration("id1", expires_at=refreshed.expires_at) for handle in (a, b)
    ]
    assert results == [refreshed, None]
    assert b.get_registration("id1") is None


def test_lookup_by_address_and_identity_oldest_first(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    nat = Address("203.0.113.9", 61000)
    first = reg(1, address=nat, last_update=1000.0)
    second = reg(2, address=nat, last_update=900.0)
    alone = reg(3)
    psk = IdentityBinding("psk", "shared-psk")
    dtls1 = reg(4, identity=psk, last_update=1500.0)
    dtls2 = reg(5, identity=psk, last_update=1400.0)
    for r in (first, second, alone, dtls1, dtls2):
        a.put_registration(r)
    assert b.registrations_by_address(nat) == [second, first]
    assert b.registrations_by_address(alone.address) == [alone]
    assert b.registrations_by_address(Address("203.0.113.9", 61001)) == []
    assert b.registrations_by_identity(psk) == [dtls2, dtls1]
    assert b.registrations_by_identity(IdentityBinding("psk", "other")) == []
    assert b.registrations_by_identity(IdentityBinding("rpk", "shared-psk")) == []


def test_expiring_before_is_earliest_first_strict_and_limited(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    regs = [reg(n, last_update=1000.0 + n, lifetime=100) for n in range(5)]
    for r in reversed(regs):
        a.put_registration(r)
    assert b.expiring_before(1102.0, 10) == regs[:2]  # expires_at 1100, 1101 (1102 not < t)
    assert b.expiring_before(2000.0, 3) == regs[:3]
    assert b.expiring_before(1100.0, 10) == []


@pytest.mark.parametrize("limit", [1, 2])
def test_expiring_before_after_removal(engine: Engine, limit: int) -> None:
    a = engine.open()
    regs = [reg(n, last_update=1000.0 + n, lifetime=100) for n in range(3)]
    for r in regs:
        a.put_registration(r)
    a.remove_registration("id0")
    assert a.expiring_before(5000.0, limit) == regs[1 : 1 + limit]


def test_observations_round_trip(engine: Engine) -> None:
    a, b = engine.open(), engine.open()
    r1, r2 = reg(1), reg(2)
    a.put_registration(r1)
    a.put_registration(r2)
    o1, o2, o3 = obs(b"\x02", r1), obs(b"\x01", r1, "/3/0/9"), obs(b"\x03", r2)
    for o in (o1, o2, o3):
        a.put_observation(o)
    assert b.observation_by_token(b"\x02") == o1
    assert b.observation_by_token(b"\x09") is None
    assert b.observations_by_endpoint("ep1") == [o2, o1]  # by token
    assert b.observations_by_endpoint("nobody") == []
    assert b.observations() == [o2, o1, o3]
    replacement = obs(b"\x02", r1, "/3/0/1")
    b.put_observation(replacement)  # same token: replaced
    assert a.observation_by_token(b"\x02") == replacement
    assert a.remove_observation(b"\x02") == replacement
    assert b.remove_observation(b"\x02") is None
    assert b.observations() == [o2, o3]


def test_a_put_that_moves_an_id_to_another_endpoint_leaves_one_registration(
    engine: Engine,
) -> None:
    a, b = engine.open(), engine.open()
    a.put_registration(reg(1, endpoint="old"))
    moved = reg(1, endpoint="new")  # the same id and address
    assert b.put_registration(moved) is None
    assert a.get_registration("id1") == moved
    assert a.registration_by_endpoint("old") is None
    assert a.registration_by_endpoint("new") == moved
    assert a.registrations() == [moved]
    assert a.registrations_by_address(moved.address) == [moved]
    assert a.expiring_before(10_000.0, 10) == [moved]


@pytest.mark.parametrize("moves", [False, True])
def test_register_again_files_the_new_registration_in_every_lookup(
    engine: Engine, moves: bool
) -> None:
    """A re-Register (sqlite: the endpoint's row updated in place) is found by id, endpoint,
    address, identity and expiry as the new registration, and the old one by none of them;
    ``moves``: from another address with another identity and lifetime, else from its own."""
    a, b = engine.open(), engine.open()
    here, there = Address("192.0.2.1", 5683), Address("198.51.100.9", 40000)
    first, second = IdentityBinding("psk", "dev-a"), IdentityBinding("psk", "dev-b")
    old = reg(1, endpoint="dev", address=here, identity=first, lifetime=300)
    a.put_registration(old)
    a.put_observation(obs(b"t1", old))
    new = reg(
        2,
        endpoint="dev",
        address=there if moves else here,
        identity=second if moves else first,
        lifetime=900 if moves else 300,
        last_update=2000.0,
    )
    assert b.put_registration(new) == old
    assert a.get_registration("id1") is None
    assert a.get_registration("id2") == new
    assert a.registration_by_endpoint("dev") == new
    assert a.observation_by_token(b"t1") is None
    assert a.registrations_by_address(new.address) == [new]
    assert a.registrations_by_identity(new.identity) == [new]  # type: ignore[arg-type]
    if moves:
        assert a.registrations_by_address(here) == []
        assert a.registrations_by_identity(first) == []
    assert a.expiring_before(old.expires_at + 1, 10) == []
    assert a.expiring_before(new.expires_at + 1, 10) == [new]
    assert a.registrations() == [new]

"""ObservationIndex: the token and (endpoint, path) indexes through an observation's life."""

from __future__ import annotations

import pytest

from lwm2m_server.core.observations import Observation, ObservationIndex
from object_models.path import LwM2mPath

P = LwM2mPath.parse


def obs(
    token: bytes, path: str = "/3/0/1", ep: str = "a", reg: str = "r1", **kw: object
) -> Observation:
    return Observation(token, ep, reg, (P(path),), created_at=1.0, **kw)  # type: ignore[arg-type]


def test_add_and_lookup() -> None:
    idx = ObservationIndex()
    o = obs(b"\x01")
    assert idx.add(o) is None
    assert idx.by_token(b"\x01") is o
    assert idx.get("a", P("/3/0/1")) is o
    assert idx.for_endpoint("a") == [o]
    assert idx.for_registration("r1") == [o]
    assert len(idx) == 1
    assert o.path == P("/3/0/1")


def test_same_target_replaces_old_token() -> None:
    idx = ObservationIndex()
    first = obs(b"\x01")
    idx.add(first)
    second = obs(b"\x02")
    assert idx.add(second) == first
    assert idx.by_token(b"\x01") is None
    assert idx.get("a", P("/3/0/1")) is second
    assert len(idx) == 1


def test_same_token_new_target_replaces() -> None:
    idx = ObservationIndex()
    first = obs(b"\x01", "/3/0/1")
    idx.add(first)
    assert idx.add(obs(b"\x01", "/3/0/2")) == first
    assert idx.get("a", P("/3/0/1")) is None
    assert len(idx) == 1


def test_composite_is_distinct_from_single() -> None:
    idx = ObservationIndex()
    single = obs(b"\x01", "/3/0/1")
    comp = Observation(b"\x02", "a", "r1", (P("/3/0/1"), P("/3303/0/5700")), composite=True)
    idx.add(single)
    idx.add(comp)
    assert idx.get("a", [P("/3/0/1"), P("/3303/0/5700")], composite=True) is comp
    assert idx.get("a", P("/3/0/1")) is single
    assert len(idx) == 2


def test_cancel_and_notification_lookup() -> None:
    idx = ObservationIndex()
    idx.add(obs(b"\x01"))
    seen = idx.on_notification(b"\x01", now=5.0)
    assert seen is not None and seen.last_notification == 5.0
    assert idx.on_notification(b"\xff", now=5.0) is None
    assert idx.cancel(b"\x01") is not None
    assert idx.on_notification(b"\x01", now=6.0) is None
    assert idx.cancel(b"\x01") is None
    assert len(idx) == 0


def test_passive_cancel_keeps_token_known_but_inactive() -> None:
    idx = ObservationIndex()
    idx.add(obs(b"\x01"))
    deactivated = idx.deactivate(b"\x01")
    assert deactivated is not None and not deactivated.active
    assert idx.on_notification(b"\x01", now=1.0) is None  # adapter answers RST
    assert idx.by_token(b"\x01") is not None
    assert idx.deactivate(b"\x09") is None


def test_remove_registration_only_drops_its_own() -> None:
    idx = ObservationIndex()
    idx.add(obs(b"\x01", "/3/0/1", reg="r1"))
    idx.add(obs(b"\x02", "/3/0/2", reg="r1"))
    idx.add(obs(b"\x03", "/3/0/1", ep="b", reg="r2"))
    removed = idx.remove_registration("r1")
    assert sorted(o.token for o in removed) == [b"\x01", b"\x02"]
    assert idx.get("a", P("/3/0/1")) is None
    assert idx.get("b", P("/3/0/1")) is not None
    assert idx.remove_registration("r1") == []
    assert len(idx) == 1


def test_observation_shape_validation() -> None:
    with pytest.raises(ValueError):
        Observation(b"\x01", "a", "r1", ())
    with pytest.raises(ValueError):
        Observation(b"\x01", "a", "r1", (P("/3/0/1"), P("/3/0/2")))


def test_observations_of_an_endpoint_are_what_the_index_holds_for_it() -> None:
    """``for_endpoint`` (the profile engine's question at every Register) answers from an
    index by endpoint, not a scan of every observation; whatever was added, replaced,
    cancelled, deactivated or removed with its registration, it lists exactly the endpoint's
    observations, oldest first."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ops = st.lists(
        st.tuples(
            st.sampled_from(["add", "cancel", "deactivate", "notify", "remove"]),
            st.binary(min_size=1, max_size=1),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["/3/0/1", "/3/0/2", "/3303/0/5700"]),
            st.sampled_from(["r1", "r2"]),
        ),
        max_size=40,
    )

    @settings(max_examples=200)
    @given(ops)
    def check(steps: list[tuple[str, bytes, str, str, str]]) -> None:
        idx = ObservationIndex()
        for op, token, ep, path, reg in steps:
            if op == "add":
                idx.add(obs(token, path, ep, reg))
            elif op == "cancel":
                idx.cancel(token)
            elif op == "deactivate":
                idx.deactivate(token)
            elif op == "notify":
                idx.on_notification(token, 2.0)
            else:
                idx.remove_registration(reg)
            for endpoint in ("a", "b", "c"):
                expected = [o for o in idx if o.endpoint == endpoint]
                assert idx.for_endpoint(endpoint) == expected

    check()


def test_refresh_brings_an_endpoints_cache_in_line_with_a_shared_store() -> None:
    """Another node started one observation and cancelled another of a device this index
    cached: ``refresh`` answers what the store has, adds the new one, drops the cancelled one,
    keeps a passively cancelled one (its next notification gets the RST) and other endpoints'."""
    from lwm2m_server.store.memory import MemoryStore

    store = MemoryStore()
    idx = ObservationIndex(store)
    kept, gone, passive = obs(b"\x01", "/3/0/1"), obs(b"\x02", "/3/0/2"), obs(b"\x03", "/3/0/3")
    other = obs(b"\x04", ep="b")
    for o in (kept, gone, passive, other):
        store.put_observation(o)
        idx.add(o)
    idx.deactivate(b"\x03")
    store.remove_observation(b"\x03")
    store.remove_observation(b"\x02")  # cancelled through another node
    new = obs(b"\x05", "/3/0/5")
    store.put_observation(new)  # started through another node
    found = idx.refresh("a")
    assert sorted(o.token for o in found) == [b"\x01", b"\x03", b"\x05"]
    assert [o.token for o in found if o.active] == [b"\x01", b"\x05"]
    assert idx.by_token(b"\x02") is None and idx.get("a", P("/3/0/5")) == new
    assert idx.for_endpoint("b") == [other]

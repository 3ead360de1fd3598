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

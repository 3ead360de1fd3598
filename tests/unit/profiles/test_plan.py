"""What the planner asks for, per strategy, on-connect mode and reason."""

from __future__ import annotations

import pytest

from lwm2m_server.profiles.model import builtin_default
from lwm2m_server.profiles.plan import Reason, Request, _plan, plan
from object_models.path import LwM2mPath as P

from .helpers import profile, registration

TEMP, UNITS, BATTERY, MANUFACTURER = P(3303, 0, 5700), P(3303, 0, 5701), P(3, 0, 9), P(3, 0, 0)


def ops(requests: tuple[Request, ...]) -> list[tuple[str, tuple[str, ...]]]:
    return [(r.operation, tuple(str(p) for p in r.paths)) for r in requests]


def test_single_observe_only() -> None:
    result = plan(profile(), registration(), Reason.REGISTER)
    assert ops(result.requests) == [
        ("write_attributes", ("/3303/0/5700",)),
        ("observe", ("/3/0/9",)),
        ("observe", ("/3303/0/5700",)),
    ]
    assert result.requests[0].attributes == {"pmin": "5"}
    assert result.problems == ()


def test_composite_all_and_by_object() -> None:
    every = plan(profile(observe_strategy="composite_all"), registration(), Reason.REGISTER)
    assert ops(every.requests)[-1] == ("observe_composite", ("/3/0/9", "/3303/0/5700"))
    by_object = plan(
        profile(observe_strategy="composite_by_object"), registration(), Reason.REGISTER
    )
    assert ops(by_object.requests)[-2:] == [
        ("observe_composite", ("/3/0/9",)),
        ("observe_composite", ("/3303/0/5700",)),
    ]


def test_on_connect_reads() -> None:
    read_all = plan(profile(on_connect="read_all"), registration(), Reason.REGISTER)
    assert ops(read_all.requests)[:2] == [("read", ("/3",)), ("read", ("/3303",))]
    mapped = plan(profile(on_connect="read_mapped"), registration(), Reason.REGISTER)
    assert ops(mapped.requests)[:4] == [
        ("read", ("/3/0/0",)),
        ("read", ("/3/0/9",)),
        ("read", ("/3303/0/5700",)),
        ("read", ("/3303/0/5701",)),
    ]
    composite = plan(
        profile(on_connect="read_mapped", observe_strategy="composite_all"),
        registration(),
        Reason.REGISTER,
    )
    assert ops(composite.requests)[0] == (
        "read_composite",
        ("/3/0/0", "/3/0/9", "/3303/0/5700", "/3303/0/5701"),
    )
    # no reads on an Update
    update = plan(profile(on_connect="read_all"), registration(), Reason.UPDATE)
    assert not [r for r in update.requests if r.operation.startswith("read")]


def test_existing_observations_are_not_duplicated() -> None:
    result = plan(
        profile(),
        registration(),
        Reason.UPDATE,
        existing=[(TEMP,), (BATTERY,)],
        written={"/3303/0/5700": {"pmin": "5"}},
    )
    assert result.requests == ()
    # a restart re-observes (the client may have lost them) and re-writes attributes
    restart = plan(profile(), registration(), Reason.RESTART, existing=[(TEMP,), (BATTERY,)])
    assert [o for o, _ in ops(restart.requests)] == ["write_attributes", "observe", "observe"]


def test_profile_change_rewrites_changed_attributes_and_cancels_unwanted() -> None:
    changed = profile(
        resources={"/3303/0/5700": {"key": "t", "observe": True, "attributes": {"pmin": 9}}}
    )
    result = plan(
        changed,
        registration(),
        Reason.PROFILE,
        existing=[(TEMP,), (BATTERY,)],
        previous=[(TEMP,), (BATTERY,)],
        written={"/3303/0/5700": {"pmin": "5", "pmax": "60"}},
    )
    assert ops(result.requests) == [
        ("write_attributes", ("/3303/0/5700",)),
        ("cancel", ("/3/0/9",)),
    ]
    assert result.requests[0].attributes == {"pmin": "9", "pmax": None}


def test_objects_the_device_did_not_register_are_problems_and_the_rest_applies() -> None:
    result = plan(profile(), registration("</1/0>,</3/0>"), Reason.REGISTER)
    assert ops(result.requests) == [("observe", ("/3/0/9",))]
    assert {p.paths for p in result.problems} == {("/3303/0/5700",), ("/3303/0/5701",)}


def test_lwm2m_10_clients_fall_back_to_single() -> None:
    result = plan(
        profile(observe_strategy="composite_all"), registration(version="1.0"), Reason.REGISTER
    )
    assert [o for o, _ in ops(result.requests)] == ["write_attributes", "observe", "observe"]
    assert any("1.0" in p.message for p in result.problems)


def test_version_mismatch_is_reported() -> None:
    result = plan(
        profile(objects={3303: "1.1"}),
        registration("</3/0>,</3303>;ver=1.0,</3303/0>"),
        Reason.REGISTER,
    )
    assert any(p.operation == "version" for p in result.problems)


@pytest.mark.parametrize("strategy", ["single", "composite_all", "composite_by_object"])
@pytest.mark.parametrize("on_connect", ["observe_only", "read_all", "read_mapped"])
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
@pytest.mark.parametrize("reason", list(Reason))
def test_a_profile_that_asks_nothing_plans_as_the_general_path(
    strategy: str, on_connect: str, version: str, reason: Reason
) -> None:
    """The shortcut for a profile without objects or resources (the default's, once per
    process) is the very plan the general path makes, problems included."""
    empty = profile(resources={}, observe_strategy=strategy, on_connect=on_connect)
    for prof in (empty, builtin_default()):
        reg = registration(version=version)
        existing = [(P(3, 0, 9),)]
        shortcut = plan(prof, reg, reason, existing=existing)
        assert shortcut == _plan(prof, reg, reason, existing=existing, previous=(), written={})
        assert shortcut.requests == ()

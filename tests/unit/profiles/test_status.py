"""A device's profile status keeps the last ``MAX_VALUE_PROBLEMS`` value problems, oldest
first, through a store round trip."""

from __future__ import annotations

from lwm2m_server.profiles.mapper import ValueProblem
from lwm2m_server.profiles.status import MAX_VALUE_PROBLEMS, DeviceStatus


def _problem(n: int) -> ValueProblem:
    return ValueProblem(path="/3303/0/5700", key=f"k{n}", message="not a number", ts_ms=n)


def test_value_problems_are_bounded_and_survive_a_round_trip() -> None:
    status = DeviceStatus("dev")
    for n in range(MAX_VALUE_PROBLEMS + 7):
        status.value_problem(_problem(n))
    keys = [p["key"] for p in status.to_json()["valueProblems"]]
    assert keys == [f"k{n}" for n in range(7, MAX_VALUE_PROBLEMS + 7)]
    again = DeviceStatus.from_json(status.to_json())
    assert [p["key"] for p in again.to_json()["valueProblems"]] == keys
    again.value_problem(_problem(99))
    assert len(again.to_json()["valueProblems"]) == MAX_VALUE_PROBLEMS
    assert again.to_json()["valueProblems"][-1]["key"] == "k99"


def test_event_data_is_the_status_json_built_when_read() -> None:
    """A status with empty lists (the Register of a device whose profile asks nothing) is
    published as a function building ``to_json()`` (nothing kept in the event ring but a
    few strings); any other status as its ``to_json()``."""
    plain = DeviceStatus("dev-1", profile="default", digest="d" * 64, chosen_by="default")
    plain.state, plain.reason, plain.applied_at = "applied", "register", 1_796_000_000.25
    data = plain.event_data()
    assert callable(data)
    assert data() == plain.to_json()
    fresh = DeviceStatus("never-applied").event_data()
    assert callable(fresh)
    assert fresh() == DeviceStatus("never-applied").to_json()
    busy = DeviceStatus("dev-2", problems=[{"operation": "map", "paths": [], "message": "m"}])
    assert busy.event_data() == busy.to_json()

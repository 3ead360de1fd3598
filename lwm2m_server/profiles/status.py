"""What the engine knows about one device: which profile it applied, what it observes on the
profile's behalf, which attributes it wrote, and every problem met (the API's
``profile-status``). Kept in memory and stored as JSON after each change, so the status survives
a restart and the operator sees why a device is not fully observed."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import attrs

from object_models.path import LwM2mPath

from ..events_bus import LazyData
from ..store.device_state import plain_status_text, status_text
from .applier import Applied
from .mapper import ValueProblem
from .plan import Problem, Target

MAX_VALUE_PROBLEMS = 20


def _problem_json(problem: Problem, at: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "operation": problem.operation,
        "paths": list(problem.paths),
        "message": problem.message,
        "at": at,
    }
    if problem.code is not None:
        result["code"] = problem.code
    return result


def _plain_json(
    endpoint: str,
    profile: str,
    digest: str,
    chosen_by: str,
    state: str,
    reason: str,
    applied_at: float | None,
) -> dict[str, Any]:
    """``DeviceStatus.to_json`` of a status whose lists are empty (``event_data``)."""
    return {
        "endpoint": endpoint,
        "profile": profile,
        "profileDigest": digest,
        "chosenBy": chosen_by,
        "state": state,
        "reason": reason,
        "appliedAt": applied_at,
        "observations": [],
        "attributesWritten": {},
        "problems": [],
        "requests": [],
        "valueProblems": [],
    }


class PlainStatus:
    """The status of a Register whose profile asks nothing, as ``ProfileEngine`` settles it
    (``_register_plainly``): ``DeviceStatus.to_json`` of such a status is ``_plain_json`` of
    these seven atoms (state ``applied``, reason ``register``, every list empty), so the engine
    keeps the atoms and builds neither the ``DeviceStatus`` nor the plan, the ``Applied`` and
    the ``_Prepared`` of the general path. ``status()`` makes the ``DeviceStatus`` the general
    path would have made, for the rare case it must be kept (the store refused the write)."""

    __slots__ = ("args", "endpoint")

    def __init__(
        self, endpoint: str, profile: str, digest: str, chosen_by: str, applied_at: float
    ) -> None:
        self.endpoint = endpoint
        self.args = (endpoint, profile, digest, chosen_by, "applied", "register", applied_at)

    def to_json(self) -> dict[str, Any]:
        return _plain_json(*self.args)

    def text(self) -> str:
        """``status_text`` of ``to_json()``, filled from the atoms."""
        endpoint, profile, digest, chosen_by, _, _, applied_at = self.args
        text = plain_status_text(endpoint, profile, digest, chosen_by, applied_at)
        return status_text(endpoint, self.to_json()) if text is None else text

    def event_data(self) -> LazyData:
        """The PROFILE event's data: what ``EventBus.publish`` makes of the ``partial`` that
        ``DeviceStatus.event_data`` gives for the same status (``LazyData.of``), made
        directly (no ``partial`` to take apart again)."""
        return LazyData(_plain_json, *self.args)

    def status(self) -> DeviceStatus:
        endpoint, profile, digest, chosen_by, state, reason, applied_at = self.args
        return DeviceStatus(endpoint, profile, digest, chosen_by, state, reason, applied_at)


@attrs.define
class DeviceStatus:
    endpoint: str
    profile: str = ""
    digest: str = ""
    """``Profile.digest`` of the profile document last applied (a reload that leaves it as is
    re-applies nothing to this device)."""
    chosen_by: str = ""
    state: str = "pending"
    """pending | applying | applied | partial | failed"""
    reason: str = ""
    applied_at: float | None = None
    observed: list[Target] = attrs.field(factory=list)
    written: dict[str, dict[str, str | None]] = attrs.field(factory=dict)
    problems: list[dict[str, Any]] = attrs.field(factory=list)
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    value_problems: list[dict[str, Any]] = attrs.field(factory=list)
    """The last ``MAX_VALUE_PROBLEMS``, oldest first. A list trimmed on append rather than a
    bounded deque: one status is kept per device, and an empty deque costs ~600 bytes (its
    first block) where an empty list costs 56."""

    def record(self, applied: Applied, now: float | None = None) -> None:
        at = time.time() if now is None else now
        self.applied_at = at
        self.observed = list(applied.observed)
        self.written = dict(applied.written)
        if not applied.problems and not applied.outcomes:  # a plan that sent nothing: nothing
            self.problems, self.requests, self.state = [], [], "applied"  # failed or refused
            return
        self.problems = [_problem_json(p, at) for p in applied.problems]
        self.requests = [o.to_json() for o in applied.outcomes]
        failed = [p for p in applied.problems if p.code is not None]
        self.state = "partial" if failed or applied.problems else "applied"
        if failed and len(failed) == len(applied.outcomes) and applied.outcomes:
            self.state = "failed"

    def value_problem(self, problem: ValueProblem) -> None:
        self.value_problems.append(
            {
                "path": problem.path,
                "key": problem.key,
                "message": problem.message,
                "ts": problem.ts_ms,
            }
        )
        del self.value_problems[:-MAX_VALUE_PROBLEMS]

    def forget_observations(self) -> None:
        """The registration ended: its observations are gone, attributes too for all we know."""
        self.observed = []
        self.written = {}
        self.state = "pending"

    def event_data(self) -> dict[str, Any] | Callable[[], dict[str, Any]]:
        """The PROFILE event's data: ``to_json()``, or for a status with nothing in its lists
        (the Register of a device whose profile asks nothing) a function that builds it from
        the few strings and the float it is made of.

        Why: the event bus keeps the last 10,000 events; a status's dict and its five lists
        kept there per Register were about half of the container objects a Register left for
        the cyclic collector to traverse (~5 µs of a Register at 100k clients). A ``partial``
        of atoms is one such object, and the dict is built only if a subscriber reads it."""
        if (
            self.observed
            or self.written
            or self.problems
            or self.requests
            or self.value_problems
            or not (self.applied_at is None or type(self.applied_at) is float)
        ):
            return self.to_json()
        return functools.partial(
            _plain_json,
            self.endpoint,
            self.profile,
            self.digest,
            self.chosen_by,
            self.state,
            self.reason,
            self.applied_at,
        )

    def text(self) -> str:
        """What the store writes for ``to_json()`` (``StoreError`` if not JSON-ready)."""
        return status_text(self.endpoint, self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "profile": self.profile,
            "profileDigest": self.digest,
            "chosenBy": self.chosen_by,
            "state": self.state,
            "reason": self.reason,
            "appliedAt": self.applied_at,
            "observations": [[str(p) for p in t] for t in self.observed],
            "attributesWritten": self.written,
            "problems": self.problems,
            "requests": self.requests,
            "valueProblems": list(self.value_problems),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceStatus:
        status = cls(str(data.get("endpoint", "")))
        status.profile = str(data.get("profile", ""))
        status.digest = str(data.get("profileDigest", ""))
        status.chosen_by = str(data.get("chosenBy", ""))
        status.state = str(data.get("state", "pending"))
        status.reason = str(data.get("reason", ""))
        status.applied_at = data.get("appliedAt")
        status.observed = [
            tuple(LwM2mPath.parse(p) for p in target) for target in data.get("observations", [])
        ]
        status.written = dict(data.get("attributesWritten", {}))
        status.problems = list(data.get("problems", []))
        status.requests = list(data.get("requests", []))
        status.value_problems = list(data.get("valueProblems", []))[-MAX_VALUE_PROBLEMS:]
        return status

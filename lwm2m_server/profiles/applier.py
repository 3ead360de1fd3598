"""Runs a ``Plan`` over ``ServerOperations``, one request at a time, and says what happened.

A refusal (4.04, 4.05, …), a timeout or an error of one request is recorded as a ``Problem`` and
the rest of the plan still runs: one resource a device does not support must not leave the rest
of it unobserved. Requests queued for a sleeping queue-mode client count as done (the device gets
them when it wakes; their answers are not waited for).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from object_models.errors import Lwm2mError

from ..operations import DeviceResponse, ServerOperations
from .plan import Plan, Problem, Request, Target

log = logging.getLogger(__name__)


@attrs.frozen
class Outcome:
    """One request as sent: ``code`` is the dotted CoAP code, ``queued``, or the error text."""

    request: Request
    code: str

    def to_json(self) -> dict[str, object]:
        result: dict[str, object] = {
            "operation": self.request.operation,
            "paths": [str(p) for p in self.request.paths],
            "code": self.code,
        }
        if self.request.attributes:
            result["attributes"] = dict(self.request.attributes)
        return result


@attrs.frozen
class Applied:
    outcomes: tuple[Outcome, ...]
    problems: tuple[Problem, ...]
    observed: tuple[Target, ...]
    """Targets observed by this engine after the run (started now or kept)."""
    written: dict[str, dict[str, str | None]]
    """Path -> attributes the device accepted."""


async def _send(
    ops: ServerOperations, endpoint: str, request: Request, timeout: float
) -> DeviceResponse:
    paths = request.paths
    if request.operation == "read":
        return await ops.read(endpoint, paths[0], timeout=timeout)
    if request.operation == "read_composite":
        return await ops.read_composite(endpoint, paths, timeout=timeout)
    if request.operation == "write_attributes":
        return await ops.write_attributes(endpoint, paths[0], request.attributes, timeout=timeout)
    if request.operation == "observe":
        return await ops.observe(endpoint, paths[0], timeout=timeout)
    if request.operation == "observe_composite":
        return await ops.observe_composite(endpoint, paths, timeout=timeout)
    if request.operation == "cancel":
        if len(paths) > 1:
            return await ops.cancel_composite_observation(endpoint, paths, timeout=timeout)
        return await ops.cancel_observation(endpoint, paths[0], timeout=timeout)
    raise ValueError(f"unknown plan operation {request.operation!r}")


async def apply_plan(
    ops: ServerOperations,
    endpoint: str,
    plan: Plan,
    *,
    previous: Sequence[Target] = (),
    written: dict[str, dict[str, str | None]] | None = None,
    timeout: float = 10.0,
) -> Applied:
    outcomes: list[Outcome] = []
    problems = list(plan.problems)
    observed = {t for t in previous if t in plan.targets}
    done_attributes = dict(written or {})
    for request in plan.requests:
        paths = tuple(str(p) for p in request.paths)
        try:
            response = await _send(ops, endpoint, request, timeout)
        except Lwm2mError as exc:
            outcomes.append(Outcome(request, "error"))
            problems.append(Problem(request.operation, paths, exc.message, _dotted(exc.code)))
            log.info("profile %s of %s: %s", request.operation, endpoint, exc.message)
            continue
        code = "queued" if response.queued else response.dotted_code
        outcomes.append(Outcome(request, code))
        if not (response.queued or response.success):
            problems.append(
                Problem(
                    request.operation,
                    paths,
                    response.error_message or f"the device answered {code}",
                    code,
                )
            )
            continue
        if request.operation in ("observe", "observe_composite"):
            observed.add(request.paths)
        elif request.operation == "cancel":
            observed.discard(request.paths)
        elif request.operation == "write_attributes":
            wanted: dict[str, str | None] = {
                k: v for k, v in request.attributes.items() if v is not None
            }
            if wanted:
                done_attributes[paths[0]] = wanted
            else:
                done_attributes.pop(paths[0], None)
    return _applied(plan, outcomes, problems, observed, done_attributes)


def applied_without_requests(
    plan: Plan,
    *,
    previous: Sequence[Target] = (),
    written: dict[str, dict[str, str | None]] | None = None,
) -> Applied:
    """What ``apply_plan`` returns for a plan that sends nothing, as a plain call.

    Why: most devices of a fleet have a profile that asks nothing of them (the built-in
    default), and their Register is the hot path: the engine settles those applications in a
    batch without a task or a coroutine per device (``ProfileEngine._run_due``)."""
    if plan.requests:
        raise ValueError("the plan sends requests: use apply_plan")
    if not previous or not plan.targets:  # nothing observed (the Register of most devices)
        return Applied((), tuple(plan.problems), (), dict(written or {}))
    observed = {t for t in previous if t in plan.targets}
    return _applied(plan, [], list(plan.problems), observed, dict(written or {}))


def _applied(
    plan: Plan,
    outcomes: list[Outcome],
    problems: list[Problem],
    observed: set[Target],
    written: dict[str, dict[str, str | None]],
) -> Applied:
    ordered = tuple(t for t in plan.targets if t in observed)
    return Applied(tuple(outcomes), tuple(problems), ordered, written)


def _dotted(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"

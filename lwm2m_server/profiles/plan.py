"""What to ask a device so that it matches its profile: pure, no I/O, so every rule is a unit test.

``plan(profile, registration, reason, existing=..., previous=...)`` returns the reads, the
Write-Attributes, the observations to start and the ones to cancel, plus the problems found
(a mapped path the device did not register, a version other than the profile expects).

When each kind of request is made (``reason``):

* ``register`` (a Register or re-Register): the reads ``on_connect`` asks for, every
  Write-Attributes the profile sets, every observation (the core dropped the old ones);
* ``update``: no reads; the Write-Attributes not written yet; the missing observations;
* ``restart`` (the server started with this registration restored): no reads; every
  Write-Attributes; every observation again, because the client may have lost them. A
  re-Observe replaces the stored observation, and a relation the client still holds gets a RST
  at its next notification, so nothing is observed twice;
* ``profile`` (the profile changed, or the device got another one): no reads; the changed
  Write-Attributes (attributes the profile dropped are cleared); the missing observations, and
  ours that the profile no longer wants are cancelled;
* ``manual`` (``profiles apply``): reads, every Write-Attributes, the missing observations.

"Missing" compares observation *targets* (the path tuple) with the server's active observations,
so an observation that already exists is never started twice.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import attrs

from object_models.path import LwM2mPath

from ..core.registration import Registration
from .model import ObserveStrategy, OnConnect, Profile

Target = tuple[LwM2mPath, ...]


class Reason(enum.Enum):
    REGISTER = "register"
    UPDATE = "update"
    RESTART = "restart"
    PROFILE = "profile"
    MANUAL = "manual"


@attrs.frozen
class Problem:
    """Something the profile asks that cannot be done; recorded in the device's status."""

    operation: str
    paths: tuple[str, ...]
    message: str
    code: str | None = None


@attrs.frozen
class Request:
    """One request of the plan. ``attributes`` only for ``write_attributes``."""

    operation: str
    """read, read_composite, write_attributes, observe, observe_composite or cancel"""
    paths: Target
    attributes: Mapping[str, str | None] = attrs.field(factory=dict)

    @property
    def composite(self) -> bool:
        return self.operation.endswith("_composite") or (
            self.operation == "cancel" and len(self.paths) > 1
        )


@attrs.frozen
class Plan:
    requests: tuple[Request, ...]
    problems: tuple[Problem, ...]
    targets: tuple[Target, ...]
    """Every observation target the profile wants on this device (started now or before)."""
    attributes: Mapping[str, Mapping[str, str | None]]
    """Path -> the Write-Attributes query the device holds once the plan ran."""


def available(path: LwM2mPath, registration: Registration) -> bool:
    """Did the device register the object instance of ``path``?"""
    instances = registration.object_links.instances.get(path.ids[0], ())
    return len(path.ids) > 1 and path.ids[1] in instances


def composite_allowed(registration: Registration) -> bool:
    return registration.lwm2m_version != "1.0"


def group(paths: Sequence[LwM2mPath], strategy: ObserveStrategy) -> list[Target]:
    """Paths grouped as the strategy sends them."""
    if not paths:
        return []
    if strategy is ObserveStrategy.SINGLE:
        return [(p,) for p in paths]
    if strategy is ObserveStrategy.COMPOSITE_ALL:
        return [tuple(paths)]
    by_object: dict[int, list[LwM2mPath]] = {}
    for path in paths:
        by_object.setdefault(path.ids[0], []).append(path)
    return [tuple(by_object[o]) for o in sorted(by_object)]


def plan(
    profile: Profile,
    registration: Registration,
    reason: Reason,
    *,
    existing: Iterable[Sequence[LwM2mPath]] = (),
    previous: Iterable[Target] = (),
    written: Mapping[str, Mapping[str, str | None]] | None = None,
) -> Plan:
    """See the module docstring. ``existing``: the server's active observation targets;
    ``previous``: targets this engine started earlier; ``written``: attributes written earlier."""
    previous = tuple(previous)
    if not profile.resources and not profile.objects and not written and not previous:
        # a profile that asks nothing (the built-in default: every Register of most fleets)
        # of a device with nothing to undo: no request whatever it registered, one plan
        strategy = profile.observe_strategy
        composite = strategy is ObserveStrategy.SINGLE or composite_allowed(registration)
        return _nothing_to_ask(strategy, composite)
    return _plan(
        profile, registration, reason, existing=existing, previous=previous, written=written
    )


def _plan(
    profile: Profile,
    registration: Registration,
    reason: Reason,
    *,
    existing: Iterable[Sequence[LwM2mPath]],
    previous: Iterable[Target],
    written: Mapping[str, Mapping[str, str | None]] | None,
) -> Plan:
    """``plan`` without the shortcut of a profile that asks nothing (tests compare the two)."""
    problems: list[Problem] = []
    strategy = profile.observe_strategy
    if strategy is not ObserveStrategy.SINGLE and not composite_allowed(registration):
        problems.append(_composite_problem(strategy))
        strategy = ObserveStrategy.SINGLE
    problems += _version_problems(profile, registration)
    usable: list[LwM2mPath] = []
    for path in profile.mapped:
        if available(path, registration):
            usable.append(path)
        else:
            problems.append(
                Problem(
                    "map",
                    (str(path),),
                    f"{registration.endpoint} did not register object instance "
                    f"/{path.ids[0]}/{path.ids[1]}: {path} skipped",
                )
            )
    requests: list[Request] = []
    if reason in (Reason.REGISTER, Reason.MANUAL):
        requests += _reads(profile, registration, usable, strategy)

    attributes = {str(p): dict(profile.resources[p].attributes.query()) for p in usable}
    attributes = {p: q for p, q in attributes.items() if q}
    before = {} if written is None else written
    force = reason in (Reason.REGISTER, Reason.RESTART, Reason.MANUAL)
    for path_text in sorted(set(attributes) | set(before), key=LwM2mPath.parse):
        wanted = attributes.get(path_text, {})
        old = before.get(path_text, {})
        if not force and wanted == old:
            continue
        query: dict[str, str | None] = dict(wanted)
        if not force:
            query.update({name: None for name in old if name not in wanted})
        if query:
            requests.append(Request("write_attributes", (LwM2mPath.parse(path_text),), query))

    observed = [p for p in usable if profile.resources[p].observe]
    targets = group(observed, strategy)
    present = {tuple(t) for t in existing}
    renew = reason is Reason.RESTART
    for target in targets:
        if renew or target not in present:
            operation = "observe_composite" if strategy is not ObserveStrategy.SINGLE else "observe"
            requests.append(Request(operation, target))
    for target in previous:
        if target not in targets and target in present:
            requests.append(Request("cancel", target))
    return Plan(tuple(requests), tuple(problems), tuple(targets), attributes)


def _composite_problem(strategy: ObserveStrategy) -> Problem:
    return Problem(
        "observe_composite",
        (),
        f"LwM2M 1.0 client: no composite operations, using single instead of {strategy.value}",
    )


@functools.cache
def _nothing_to_ask(strategy: ObserveStrategy, composite: bool) -> Plan:
    """The plan of a profile without objects or resources for a device with no attributes
    written and no observation of ours: the general path's result, made once (it cost a few
    microseconds per Register, the hot path; ``tests/unit/profiles/test_plan.py`` holds the
    two to the same plan)."""
    problems = () if composite else (_composite_problem(strategy),)
    return Plan((), problems, (), MappingProxyType({}))


def _reads(
    profile: Profile,
    registration: Registration,
    usable: Sequence[LwM2mPath],
    strategy: ObserveStrategy,
) -> list[Request]:
    if profile.on_connect is OnConnect.READ_ALL:
        objects = [o for o in sorted(profile.objects) if o in registration.object_links.instances]
        return [Request("read", (LwM2mPath(o),)) for o in objects]
    if profile.on_connect is OnConnect.READ_MAPPED:
        if strategy is ObserveStrategy.SINGLE:
            return [Request("read", (p,)) for p in usable]
        return [Request("read_composite", t) for t in group(usable, strategy)]
    return []


def _version_problems(profile: Profile, registration: Registration) -> list[Problem]:
    problems = []
    registered = registration.object_links.objects
    for object_id, version in sorted(profile.objects.items()):
        if object_id not in registered:
            continue
        actual = registered[object_id]
        if actual is not None and actual != version:
            problems.append(
                Problem(
                    "version",
                    (f"/{object_id}",),
                    f"profile expects object {object_id} version {version}, "
                    f"{registration.endpoint} registered {actual}",
                )
            )
    return problems

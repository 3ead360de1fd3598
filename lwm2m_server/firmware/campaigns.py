"""Firmware/software update campaigns across a fleet (docs/firmware.md, "Campaigns").

A campaign updates a set of devices with one package: it starts one per-device job at a time
through the job manager (``contracts.FirmwareUpdates``), no faster than its rollout rate and
with no more than ``max_concurrent`` jobs running, counts each device's outcome from the jobs'
state changes, and stops by itself (ABORTED, with the reason) once too many of the finished
devices failed.

Two parts, as everywhere in the server:

* ``CampaignScheduler``, the **sans-IO core**: the campaigns, their devices and token buckets in
  memory; every method takes ``now`` (seconds since the epoch) and returns ``Effect`` values
  (start a job, cancel a job, persist these rows, announce a change). No I/O, no clock, no
  tasks: the tests drive it over thousands of devices with a fake clock.
* ``CampaignManager``, the **asyncio driver**: runs the effects (calls ``FirmwareUpdates``,
  writes the ``campaign_store``, publishes CAMPAIGN events on the bus), wakes the core when its
  timer says so, resolves targets to endpoints, loads unfinished campaigns at start (a
  restarted server resumes them) and is what the HTTP API calls.

On a cluster (Redis, ``CampaignCluster``; docs/firmware.md, "Campaigns in a cluster") one node
runs each campaign, under a lease in the store: the scheduler holds only the campaigns this
node runs, every write is a compare-and-set on the lease (a refused write means another node
took the campaign: it is dropped at once, none of the change's effects carried out), leases
are renewed every third of the lease and expired ones claimed, and the other nodes' APIs queue
pause/resume/cancel in the store for the runner (``act``) and read the campaign from the store.

Why the target is resolved once, at creation: a campaign is a decision about a known set of
devices (an operator checks "200 devices" before starting); a device that registers later does
not join a running campaign (start another one for late registrants). An explicit endpoint list
may name devices that are not registered now: the job manager queues requests for sleeping
devices, and a start refused for an unknown device counts as that device's failure.

Why the failure ratio is failed / (succeeded + failed): cancelled devices (an operator's
decision) say nothing about the package; and it is only checked once ``min_sample`` devices
finished, so the first failure of a campaign does not abort it at 100 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fnmatch
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from keystore.store.errors import StoreError

from ..events_bus import CAMPAIGN  # the kind of the events announcing campaigns
from .campaign_store import needs_runner
from .contracts import (
    FirmwareUpdates,
    JobState,
    JobView,
    PackageKind,
    PackageLibrary,
    Strategy,
)

if TYPE_CHECKING:
    from ..core.registration import Registration
    from ..events_bus import EventBus
    from ..profiles.model import UpdateSetting
    from ..service import Lwm2mServer
    from .campaign_store import CampaignStore, RedisCampaignStore

log = logging.getLogger(__name__)


DEFAULT_MAX_CONCURRENT = 10
DEFAULT_MIN_SAMPLE = 10
DEFAULT_PROGRESS_INTERVAL = 5.0


class CampaignError(Exception):
    """A request the campaigns refuse: ``status`` is the HTTP status (404 unknown campaign,
    409 not possible in the campaign's state, 400 bad input), ``code`` the CoAP-style code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def code(self) -> str:
        return f"{self.status // 100}.{self.status % 100:02d}"


class CampaignState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    """No new device is started; the running jobs go on."""
    COMPLETED = "completed"
    """Every device finished (succeeded, failed or cancelled)."""
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    """Stopped by the failure threshold (``reason`` says the numbers)."""

    @property
    def finished(self) -> bool:
        return self in (CampaignState.COMPLETED, CampaignState.CANCELLED, CampaignState.ABORTED)


class DeviceStatus(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


COUNTED = tuple(s.value for s in DeviceStatus)


@attrs.frozen
class Target:
    """Which devices: a profile's devices, an explicit endpoint list, or a filter (an endpoint
    glob and/or registration attributes, each value a glob). Resolved once, at creation."""

    profile: str | None = None
    endpoints: tuple[str, ...] = ()
    endpoint_glob: str | None = None
    attributes: Mapping[str, str] = attrs.field(factory=dict, converter=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.profile is not None:
            out["profile"] = self.profile
        if self.endpoints:
            out["endpoints"] = list(self.endpoints)
        if self.endpoint_glob is not None:
            out["endpoint"] = self.endpoint_glob
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    @classmethod
    def from_json(cls, data: object) -> Target:
        """From the API's ``target`` object; ``CampaignError`` 400 naming the problem."""
        if not isinstance(data, Mapping):
            raise CampaignError(400, "target must be an object: {profile}, {endpoints} or a filter")
        known = {"profile", "endpoints", "endpoint", "attributes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CampaignError(400, f"target: unknown key {unknown[0]!r} (known: {sorted(known)})")
        profile = data.get("profile")
        if profile is not None and (not isinstance(profile, str) or not profile):
            raise CampaignError(400, "target.profile must be a profile name")
        endpoints = data.get("endpoints", [])
        if not isinstance(endpoints, list) or not all(isinstance(e, str) and e for e in endpoints):
            raise CampaignError(400, "target.endpoints must be a list of endpoint names")
        if len(set(endpoints)) != len(endpoints):
            raise CampaignError(400, "target.endpoints names an endpoint twice")
        glob = data.get("endpoint")
        if glob is not None and (not isinstance(glob, str) or not glob):
            raise CampaignError(400, "target.endpoint must be a glob such as sensor-*")
        attributes = data.get("attributes", {})
        if not isinstance(attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise CampaignError(400, 'target.attributes must map names to globs {"binding": "UQ"}')
        kinds = sum([profile is not None, bool(endpoints), glob is not None or bool(attributes)])
        if kinds != 1:
            raise CampaignError(
                400,
                "target: give exactly one of profile, endpoints, or a filter "
                "(endpoint glob and/or attributes)",
            )
        return cls(profile, tuple(endpoints), glob, attributes)

    def matches(self, registration: Registration) -> bool:
        """The filter (not the profile, which the driver resolves with the catalog)."""
        if self.endpoints:
            return registration.endpoint in self.endpoints
        if self.endpoint_glob is not None and not fnmatch.fnmatchcase(
            registration.endpoint, self.endpoint_glob
        ):
            return False
        values = registration_attributes(registration)
        return all(
            name in values and fnmatch.fnmatchcase(values[name], pattern)
            for name, pattern in self.attributes.items()
        )


def registration_attributes(registration: Registration) -> dict[str, str]:
    """What a filter's ``attributes`` can match: ``lwm2m`` (version), ``binding``,
    ``transport`` (coap/coaps), ``queue`` (true/false) and the Register's additional
    attributes by their own names."""
    return {
        **registration.additional_attributes,
        "lwm2m": registration.lwm2m_version,
        "binding": registration.binding,
        "transport": registration.transport,
        "queue": "true" if registration.queue_mode else "false",
    }


@attrs.frozen
class CampaignSpec:
    """What the operator asked for (the package is resolved: an id and its kind)."""

    target: Target
    package_id: str
    kind: PackageKind = PackageKind.FIRMWARE
    strategy: Strategy = Strategy.AUTO
    rate_per_minute: float | None = None
    """Devices started per minute (a token bucket holding at most one second's worth, and at
    least one token); None: as fast as ``max_concurrent`` allows."""
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    failure_threshold: float | None = None
    """Abort when failed / (succeeded + failed) exceeds this (0..1); None: never."""
    min_sample: int = DEFAULT_MIN_SAMPLE
    """Finished devices needed before the threshold applies."""
    name: str = ""
    instance: int | None = None
    """The Software Management instance for software packages (None: the job manager's)."""

    @property
    def burst(self) -> float:
        if self.rate_per_minute is None:
            return math.inf
        return max(1.0, self.rate_per_minute / 60.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target.to_json(),
            "package": self.package_id,
            "kind": self.kind.value,
            "strategy": self.strategy.value,
            "instance": self.instance,
            "ratePerMinute": self.rate_per_minute,
            "maxConcurrent": self.max_concurrent,
            "failureThreshold": self.failure_threshold,
            "minSample": self.min_sample,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CampaignSpec:
        return cls(
            target=Target.from_json(data["target"]),
            package_id=str(data["package"]),
            kind=PackageKind(data.get("kind", "firmware")),
            strategy=Strategy(data.get("strategy", "auto")),
            rate_per_minute=data.get("ratePerMinute"),
            max_concurrent=int(data.get("maxConcurrent", DEFAULT_MAX_CONCURRENT)),
            failure_threshold=data.get("failureThreshold"),
            min_sample=int(data.get("minSample", DEFAULT_MIN_SAMPLE)),
            name=str(data.get("name", "")),
            instance=data.get("instance"),
        )


@attrs.define
class DeviceOutcome:
    endpoint: str
    index: int
    """Its place in the campaign (start order and page order)."""
    status: DeviceStatus = DeviceStatus.PENDING
    job_state: str | None = None
    """The job's last state (``JobState``), e.g. ``downloading``."""
    result: int | None = None
    detail: str = ""
    started_ms: int | None = None
    finished_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "index": self.index,
            "status": self.status.value,
            "jobState": self.job_state,
            "result": self.result,
            "detail": self.detail,
            "started": self.started_ms,
            "finished": self.finished_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceOutcome:
        return cls(
            endpoint=str(data["endpoint"]),
            index=int(data["index"]),
            status=DeviceStatus(data["status"]),
            job_state=data.get("jobState"),
            result=data.get("result"),
            detail=str(data.get("detail", "")),
            started_ms=data.get("started"),
            finished_ms=data.get("finished"),
        )


@attrs.define
class Campaign:
    id: str
    spec: CampaignSpec
    state: CampaignState = CampaignState.RUNNING
    reason: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    finished_ms: int | None = None
    devices: dict[str, DeviceOutcome] = attrs.field(factory=dict)
    tokens: float = 0.0
    refilled_at: float = 0.0
    """When ``tokens`` was last brought up to date (seconds since the epoch)."""
    counts: dict[str, int] = attrs.field(factory=dict)
    _pending: list[str] = attrs.field(factory=list)
    """Pending endpoints, in reverse start order (the next one is popped from the end)."""
    _progress_dirty: bool = False
    _next_progress: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.recount()

    def recount(self) -> None:
        self.counts = dict.fromkeys(COUNTED, 0)
        pending = []
        for device in self.devices.values():
            self.counts[device.status.value] += 1
            if device.status is DeviceStatus.PENDING:
                pending.append(device)
        pending.sort(key=lambda d: d.index, reverse=True)
        self._pending = [d.endpoint for d in pending]

    def _move(self, device: DeviceOutcome, status: DeviceStatus) -> None:
        self.counts[device.status.value] -= 1
        self.counts[status.value] += 1
        device.status = status
        self._progress_dirty = True

    @property
    def total(self) -> int:
        return len(self.devices)

    @property
    def failure_ratio(self) -> float | None:
        finished = self.counts["succeeded"] + self.counts["failed"]
        return self.counts["failed"] / finished if finished else None

    def header_json(self) -> dict[str, Any]:
        """The campaign without its devices (what the store keeps as the campaign's row)."""
        return {
            "id": self.id,
            "spec": self.spec.to_json(),
            "state": self.state.value,
            "reason": self.reason,
            "created": self.created_ms,
            "updated": self.updated_ms,
            "finished": self.finished_ms,
            "tokens": None if math.isinf(self.tokens) else self.tokens,
            "refilledAt": self.refilled_at,
            "counts": dict(self.counts),  # (whether it needs a runner: campaign_store)
        }

    @classmethod
    def from_stored(
        cls, header: Mapping[str, Any], devices: Iterable[Mapping[str, Any]]
    ) -> Campaign:
        spec = CampaignSpec.from_json(header["spec"])
        tokens = header.get("tokens")
        return cls(
            id=str(header["id"]),
            spec=spec,
            state=CampaignState(header["state"]),
            reason=str(header.get("reason", "")),
            created_ms=int(header.get("created", 0)),
            updated_ms=int(header.get("updated", 0)),
            finished_ms=header.get("finished"),
            devices={
                d.endpoint: d
                for d in sorted(
                    (DeviceOutcome.from_json(row) for row in devices), key=lambda d: d.index
                )
            },
            tokens=spec.burst if tokens is None else float(tokens),
            refilled_at=float(header.get("refilledAt", 0.0)),
        )


def campaign_to_json(campaign: Campaign) -> dict[str, Any]:
    """The API's and the events' shape of a campaign (without its devices)."""
    spec = campaign.spec
    ratio = campaign.failure_ratio
    return {
        "id": campaign.id,
        "name": spec.name,
        "state": campaign.state.value,
        "reason": campaign.reason,
        "target": spec.target.to_json(),
        "package": spec.package_id,
        "kind": spec.kind.value,
        "strategy": spec.strategy.value,
        "ratePerMinute": spec.rate_per_minute,
        "maxConcurrent": spec.max_concurrent,
        "failureThreshold": spec.failure_threshold,
        "minSample": spec.min_sample,
        "total": campaign.total,
        "counts": dict(campaign.counts),
        "failureRatio": None if ratio is None else round(ratio, 4),
        "created": campaign.created_ms,
        "updated": campaign.updated_ms,
        "finished": campaign.finished_ms,
    }


# -- effects -------------------------------------------------------------------------------------


@attrs.frozen
class StartJob:
    campaign: str
    endpoint: str


@attrs.frozen
class CancelJob:
    campaign: str
    endpoint: str


@attrs.frozen
class Persist:
    """Write the campaign's row and these devices' rows (all of them after a bulk change)."""

    campaign: str
    endpoints: tuple[str, ...] = ()


@attrs.frozen
class Announce:
    """Publish a CAMPAIGN event: ``state`` (it changed) or ``progress`` (counts changed)."""

    campaign: str
    event: str


Effect = StartJob | CancelJob | Persist | Announce


def _ms(now: float) -> int:
    return int(now * 1000)


class CampaignScheduler:
    """The sans-IO core (module docstring). ``progress_interval``: seconds between two
    progress announcements of one campaign (state changes are announced at once)."""

    def __init__(self, *, progress_interval: float = DEFAULT_PROGRESS_INTERVAL) -> None:
        self.progress_interval = progress_interval
        self._campaigns: dict[str, Campaign] = {}

    # -- reading -------------------------------------------------------------------------------
    def get(self, campaign_id: str) -> Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise CampaignError(404, f"no campaign {campaign_id!r}")
        return campaign

    def campaigns(self) -> list[Campaign]:
        return sorted(self._campaigns.values(), key=lambda c: (c.created_ms, c.id))

    # -- creating and restoring ----------------------------------------------------------------
    def create(
        self, campaign_id: str, spec: CampaignSpec, endpoints: Sequence[str], now: float
    ) -> tuple[Campaign, list[Effect]]:
        if campaign_id in self._campaigns:
            raise CampaignError(409, f"campaign {campaign_id!r} exists")
        campaign = Campaign(
            id=campaign_id,
            spec=spec,
            created_ms=_ms(now),
            updated_ms=_ms(now),
            devices={ep: DeviceOutcome(ep, i) for i, ep in enumerate(endpoints)},
            tokens=spec.burst,
            refilled_at=now,
        )
        campaign._next_progress = now + self.progress_interval  # the state event says it all
        self._campaigns[campaign_id] = campaign
        effects: list[Effect] = [Persist(campaign_id, tuple(endpoints))]
        if not endpoints:
            effects += self._finish(campaign, CampaignState.COMPLETED, "no device to update", now)
        effects.append(Announce(campaign_id, "state"))
        return campaign, effects

    def restore(self, campaign: Campaign) -> None:
        """A campaign read back from the store (``reconcile`` its running devices next)."""
        self._campaigns[campaign.id] = campaign

    def forget(self, campaign_id: str) -> None:
        """Stop scheduling the campaign here (another node runs it now)."""
        self._campaigns.pop(campaign_id, None)

    def __contains__(self, campaign_id: object) -> bool:
        return campaign_id in self._campaigns

    def running_devices(self, campaign_id: str) -> list[str]:
        return [
            d.endpoint
            for d in self.get(campaign_id).devices.values()
            if d.status is DeviceStatus.RUNNING
        ]

    def reconcile(
        self, campaign_id: str, endpoint: str, view: JobView | None, now: float
    ) -> list[Effect]:
        """After a restart: a device the store says is running, and the job manager's view of
        it. A job of this campaign is followed (its outcome recorded if it ended meanwhile);
        no job (the manager lost it) puts the device back in the queue to start again."""
        campaign = self.get(campaign_id)
        device = campaign.devices.get(endpoint)
        if device is None or device.status is not DeviceStatus.RUNNING:
            return []
        if view is not None and view.campaign == campaign_id:
            return self.job_changed(view, now)
        campaign._move(device, DeviceStatus.PENDING)
        device.job_state = None
        device.detail = "restarted: its job was not found after a server restart"
        campaign.recount()
        return [Persist(campaign_id, (endpoint,))]

    # -- operator actions ----------------------------------------------------------------------
    def pause(self, campaign_id: str, now: float) -> list[Effect]:
        campaign = self.get(campaign_id)
        if campaign.state is CampaignState.PAUSED:
            return []
        if campaign.state is not CampaignState.RUNNING:
            raise CampaignError(409, f"campaign {campaign_id} is {campaign.state.value}")
        return self._set_state(campaign, CampaignState.PAUSED, "paused by the operator", now)

    def resume(self, campaign_id: str, now: float) -> list[Effect]:
        campaign = self.get(campaign_id)
        if campaign.state is CampaignState.RUNNING:
            return []
        if campaign.state is not CampaignState.PAUSED:
            raise CampaignError(
                409, f"campaign {campaign_id} is {campaign.state.value}: it cannot resume"
            )
        self._refill(campaign, now)
        effects = self._set_state(campaign, CampaignState.RUNNING, "", now)
        return effects + self._check_done(campaign, now)

    def cancel(self, campaign_id: str, now: float) -> list[Effect]:
        """Cancel: no new device; the pending ones are cancelled; each running job is cancelled
        through the job manager (``CancelJob``; its outcome arrives as a job change)."""
        campaign = self.get(campaign_id)
        if campaign.state.finished:
            raise CampaignError(409, f"campaign {campaign_id} is already {campaign.state.value}")
        effects = self._finish(campaign, CampaignState.CANCELLED, "cancelled by the operator", now)
        effects += [
            CancelJob(campaign_id, d.endpoint)
            for d in campaign.devices.values()
            if d.status is DeviceStatus.RUNNING
        ]
        return effects

    # -- the job manager's answers ---------------------------------------------------------------
    def job_started(
        self,
        campaign_id: str,
        endpoint: str,
        view: JobView | None,
        error: str | None,
        now: float,
    ) -> list[Effect]:
        """The answer to a ``StartJob``: the job (``view``), or why it could not start."""
        campaign = self._campaigns.get(campaign_id)
        device = None if campaign is None else campaign.devices.get(endpoint)
        if campaign is None or device is None or device.status is not DeviceStatus.RUNNING:
            return []
        if error is not None:
            return self._device_done(campaign, device, DeviceStatus.FAILED, None, error, now)
        if view is not None and (view.state.finished or device.job_state is None):
            return self.job_changed(view, now)
        return []

    def job_changed(self, view: JobView, now: float) -> list[Effect]:
        """A job's state changed (``FirmwareUpdates.subscribe``)."""
        if view.campaign is None:
            return []
        campaign = self._campaigns.get(view.campaign)
        device = None if campaign is None else campaign.devices.get(view.endpoint)
        if campaign is None or device is None or device.status is not DeviceStatus.RUNNING:
            return []
        if view.state.finished:
            status = {
                JobState.SUCCEEDED: DeviceStatus.SUCCEEDED,
                JobState.FAILED: DeviceStatus.FAILED,
                JobState.CANCELLED: DeviceStatus.CANCELLED,
            }[view.state]
            device.job_state = view.state.value
            return self._device_done(campaign, device, status, view.result, view.detail, now)
        device.job_state = view.state.value
        device.result = view.result
        device.detail = view.detail
        campaign.updated_ms = _ms(now)
        return [Persist(campaign.id, (device.endpoint,))]

    # -- time ------------------------------------------------------------------------------------
    def poll(self, now: float) -> list[Effect]:
        """Start what the rate and the concurrency allow, announce progress that is due."""
        effects: list[Effect] = []
        for campaign in self._campaigns.values():
            if campaign.state is CampaignState.RUNNING:
                effects += self._start_due(campaign, now)
            if campaign._progress_dirty and now >= campaign._next_progress:
                campaign._progress_dirty = False
                campaign._next_progress = now + self.progress_interval
                effects.append(Announce(campaign.id, "progress"))
        return effects

    def timer(self) -> float | None:
        """When ``poll`` has something to do next (None: only an input can change anything)."""
        due: list[float] = []
        for campaign in self._campaigns.values():
            if campaign._progress_dirty:
                due.append(campaign._next_progress)
            spec = campaign.spec
            if (
                campaign.state is CampaignState.RUNNING
                and campaign._pending
                and campaign.counts["running"] < spec.max_concurrent
            ):
                if campaign.tokens >= 1.0 or spec.rate_per_minute is None:
                    due.append(0.0)
                else:
                    wait = (1.0 - campaign.tokens) * 60.0 / spec.rate_per_minute
                    due.append(campaign.refilled_at + wait)
        return min(due) if due else None

    # -- inside ----------------------------------------------------------------------------------
    def _refill(self, campaign: Campaign, now: float) -> None:
        rate = campaign.spec.rate_per_minute
        if rate is None:
            campaign.tokens = math.inf
        else:
            elapsed = max(0.0, now - campaign.refilled_at)
            campaign.tokens = min(campaign.spec.burst, campaign.tokens + elapsed * rate / 60.0)
        campaign.refilled_at = now

    def _start_due(self, campaign: Campaign, now: float) -> list[Effect]:
        self._refill(campaign, now)
        started: list[str] = []
        effects: list[Effect] = []
        while (
            campaign._pending
            and campaign.counts["running"] < campaign.spec.max_concurrent
            and campaign.tokens >= 1.0
        ):
            endpoint = campaign._pending.pop()
            device = campaign.devices[endpoint]
            campaign._move(device, DeviceStatus.RUNNING)
            device.started_ms = _ms(now)
            device.detail = ""
            campaign.tokens -= 1.0
            started.append(endpoint)
            effects.append(StartJob(campaign.id, endpoint))
        if started:
            campaign.updated_ms = _ms(now)
            effects.insert(0, Persist(campaign.id, tuple(started)))
        return effects

    def _device_done(
        self,
        campaign: Campaign,
        device: DeviceOutcome,
        status: DeviceStatus,
        result: int | None,
        detail: str,
        now: float,
    ) -> list[Effect]:
        campaign._move(device, status)
        device.result = result
        device.detail = detail
        device.finished_ms = _ms(now)
        campaign.updated_ms = _ms(now)
        effects: list[Effect] = [Persist(campaign.id, (device.endpoint,))]
        spec = campaign.spec
        ratio = campaign.failure_ratio
        finished = campaign.counts["succeeded"] + campaign.counts["failed"]
        if (
            campaign.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            and spec.failure_threshold is not None
            and ratio is not None
            and finished >= spec.min_sample
            and ratio > spec.failure_threshold
        ):
            reason = (
                f"failure ratio {ratio:.0%} ({campaign.counts['failed']} of {finished} "
                f"finished devices) exceeds the threshold {spec.failure_threshold:.0%}"
            )
            return effects + self._finish(campaign, CampaignState.ABORTED, reason, now)
        return effects + self._check_done(campaign, now)

    def _check_done(self, campaign: Campaign, now: float) -> list[Effect]:
        if (
            campaign.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            and not campaign._pending
            and campaign.counts["running"] == 0
        ):
            return self._finish(campaign, CampaignState.COMPLETED, "", now)
        return []

    def _finish(
        self, campaign: Campaign, state: CampaignState, reason: str, now: float
    ) -> list[Effect]:
        """End the campaign: the devices never started are cancelled (with why); running jobs
        are left to the caller (``cancel`` cancels them, an abort lets them finish)."""
        skipped = []
        while campaign._pending:
            device = campaign.devices[campaign._pending.pop()]
            campaign._move(device, DeviceStatus.CANCELLED)
            device.detail = f"not started: campaign {state.value}" + (
                f" ({reason})" if reason else ""
            )
            device.finished_ms = _ms(now)
            skipped.append(device.endpoint)
        campaign.finished_ms = _ms(now)
        effects = self._set_state(campaign, state, reason, now)
        if skipped:
            effects.insert(0, Persist(campaign.id, tuple(skipped)))
        return effects

    def _set_state(
        self, campaign: Campaign, state: CampaignState, reason: str, now: float
    ) -> list[Effect]:
        campaign.state = state
        campaign.reason = reason
        campaign.updated_ms = _ms(now)
        campaign._progress_dirty = False  # the state event carries the counts
        campaign._next_progress = now + self.progress_interval
        return [Persist(campaign.id), Announce(campaign.id, "state")]


# -- a create request -------------------------------------------------------------------------

_REQUEST_KEYS = frozenset({
    "name", "target", "package", "kind", "strategy", "instance", "ratePerMinute",
    "maxConcurrent", "failureThreshold", "minSample",
})  # fmt: skip


def _number(body: Mapping[str, Any], key: str, *, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise CampaignError(400, f"{key} must be a number in {lo:g}..{hi:g}, got {value!r}")
    return float(value)


def spec_from_request(
    body: object,
    *,
    packages: PackageLibrary | None = None,
    profile_setting: Callable[[str, PackageKind], UpdateSetting | None] | None = None,
) -> CampaignSpec:
    """A ``POST /api/campaigns`` body → ``CampaignSpec`` (``CampaignError`` 400/404 naming
    the problem). ``package`` is a package id or ``{name, version}``; left out, a campaign
    targeting a profile takes the profile's ``firmware.<kind>`` package (and its strategy when
    the request names none). ``packages``: the library that checks the package exists and
    gives its kind (None: the id is taken as given). ``profile_setting(name, kind)``: a
    profile's setting; raises ``CampaignError`` 404 for an unknown profile."""
    if not isinstance(body, Mapping):
        raise CampaignError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise CampaignError(400, f"unknown key {unknown[0]!r} (known: {sorted(_REQUEST_KEYS)})")
    target = Target.from_json(body.get("target"))
    kind: PackageKind | None = None
    if body.get("kind") is not None:
        try:
            kind = PackageKind(body["kind"])
        except ValueError:
            raise CampaignError(400, "kind must be firmware or software") from None
    strategy: Strategy | None = None
    if body.get("strategy") is not None:
        try:
            strategy = Strategy(str(body["strategy"]).replace("-", "_"))
        except ValueError:
            choices = ", ".join(s.value for s in Strategy)
            raise CampaignError(400, f"strategy must be one of {choices}") from None
    package = body.get("package")
    if package is None:
        if target.profile is None or profile_setting is None:
            raise CampaignError(400, "package is required (unless the target is a profile)")
        setting = profile_setting(target.profile, kind or PackageKind.FIRMWARE)
        if setting is None or (setting.package_id is None and setting.package_name is None):
            raise CampaignError(
                400,
                f"no package given and profile {target.profile!r} names none under "
                f"firmware.{(kind or PackageKind.FIRMWARE).value}.package",
            )
        strategy = strategy or setting.strategy
        package = setting.package_id or {
            "name": setting.package_name,
            "version": setting.package_version,
        }
    package_id, package_kind = _package(package, kind, packages)
    rate = _number(body, "ratePerMinute", lo=0.001, hi=1e9)
    threshold = _number(body, "failureThreshold", lo=0.0, hi=1.0)
    concurrent = _number(body, "maxConcurrent", lo=1, hi=1_000_000)
    sample = _number(body, "minSample", lo=1, hi=1_000_000)
    instance = body.get("instance")
    if instance is not None and (
        isinstance(instance, bool) or not isinstance(instance, int) or not 0 <= instance < 65535
    ):
        raise CampaignError(400, "instance must be an object instance id 0..65534")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise CampaignError(400, "name must be a string of at most 200 characters")
    return CampaignSpec(
        target=target,
        package_id=package_id,
        kind=package_kind,
        strategy=strategy or Strategy.AUTO,
        rate_per_minute=rate,
        max_concurrent=DEFAULT_MAX_CONCURRENT if concurrent is None else int(concurrent),
        failure_threshold=threshold,
        min_sample=DEFAULT_MIN_SAMPLE if sample is None else int(sample),
        name=name,
        instance=instance,
    )


def _package(
    package: object, kind: PackageKind | None, packages: PackageLibrary | None
) -> tuple[str, PackageKind]:
    if isinstance(package, str):
        package_id = package.strip().lower()
        if packages is None:
            return package_id, kind or PackageKind.FIRMWARE
        found = packages.get(package_id)
        if found is None:
            raise CampaignError(404, f"no package {package_id!r}")
    elif isinstance(package, Mapping) and set(package) == {"name", "version"}:
        name, version = str(package["name"]), str(package["version"])
        if packages is None:
            raise CampaignError(400, "packages by name and version need the package library")
        matches = [
            p
            for p in packages.packages()
            if p.name == name and p.version == version and kind in (None, p.kind)
        ]
        if not matches:
            raise CampaignError(404, f"no package {name} {version}")
        if len(matches) > 1:
            raise CampaignError(
                409, f"{name} {version} is a firmware and a software package: give kind"
            )
        found = matches[0]
    else:
        raise CampaignError(400, 'package must be a package id or {"name": …, "version": …}')
    if kind is not None and found.kind is not kind:
        raise CampaignError(400, f"package {found.id} is {found.kind.value}, not {kind.value}")
    return found.id, found.kind


# -- the asyncio driver ------------------------------------------------------------------------


def new_campaign_id() -> str:
    return "c-" + secrets.token_hex(6)


@attrs.frozen
class CampaignCluster:
    """What the manager needs of a cluster (``for_server``): this node's id, the shared store
    with its leases, the lease (seconds; ``firmware.job_lease``) and how to nudge a node
    (``ClusterNode.post``)."""

    node: str
    store: RedisCampaignStore
    lease: float
    post: Callable[[str, Mapping[str, Any]], None]


ACTIONS = ("pause", "resume", "cancel")
"""The operator actions another node's API may queue for a campaign's runner."""

NUDGE = "fwcampaign"
"""The cluster message telling the node that runs a campaign that an operator action waits
for it in the store (its lease check every third of the lease finds it too)."""


Resolve = Callable[[Target], list[str]]
"""Endpoints of a target, in the order they are started (the driver's caller knows the
registrations and the profile catalog)."""


class CampaignManager:
    """The driver (module docstring). ``resolve``: a target's endpoints; ``clock``: seconds
    since the epoch (the token buckets persist across restarts, so wall time)."""

    def __init__(
        self,
        updates: FirmwareUpdates,
        store: CampaignStore,
        *,
        resolve: Resolve,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        cluster: CampaignCluster | None = None,
    ) -> None:
        self.updates = updates
        self.cluster = cluster
        """On Redis (docs/firmware.md, "Campaigns in a cluster"): the scheduler holds only the
        campaigns this node runs, under a lease; None: every campaign is this node's."""
        self.store = store
        self.resolve = resolve
        self.bus = bus
        self.clock = clock
        self.core = CampaignScheduler(progress_interval=progress_interval)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._subscribed = False
        self._stopping = False
        self._next_store_log = 0.0
        self._next_lease_log = 0.0

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the campaigns from the store, follow the jobs, resume the unfinished ones."""
        if not self._subscribed:
            self.updates.subscribe(self._on_job)
            self._subscribed = True
        self._stopping = False
        if self.cluster is not None:
            self._claim_free()
            self._spawn(self._tend_leases())
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="campaigns")
            return
        now = self.clock()
        effects: list[Effect] = []
        for header in self.store.campaigns():
            campaign_id = str(header["id"])
            try:
                campaign = Campaign.from_stored(header, self.store.devices(campaign_id))
            except (KeyError, ValueError, TypeError) as exc:
                log.error("campaign %s in the store is unreadable, skipped: %s", campaign_id, exc)
                continue
            self.core.restore(campaign)
            if campaign.state.finished and not self.core.running_devices(campaign_id):
                continue
            for endpoint in self.core.running_devices(campaign_id):
                effects += self.core.reconcile(
                    campaign_id, endpoint, self.updates.job(endpoint), now
                )
            log.info(
                "campaign %s resumed (%s, %s)", campaign_id, campaign.state.value, campaign.counts
            )
        self._run(effects)
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="campaigns")

    async def stop(self, *, release: bool = True) -> None:
        """Stop scheduling; on a cluster give the leases up (another node takes the
        campaigns at once). ``release=False`` is what a killed node leaves behind (tests):
        the leases run out by themselves."""
        self._stopping = True
        tasks = [t for t in [self._task, *self._jobs] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._jobs.clear()
        cluster = self.cluster
        if cluster is None:
            return
        for campaign in self.core.campaigns():
            if release:
                try:
                    cluster.store.release(campaign.id, cluster.node)
                except StoreError as exc:
                    log.warning("campaign %s not released: %s", campaign.id, exc)
            self.core.forget(campaign.id)  # not run here any more: the store shows it

    # -- operator actions ------------------------------------------------------------------------
    def create(self, spec: CampaignSpec, campaign_id: str | None = None) -> Campaign:
        endpoints = self.resolve(spec.target)
        campaign_id = campaign_id or new_campaign_id()
        cluster = self.cluster
        if cluster is not None:  # the node that creates a campaign runs it
            try:
                taken = cluster.store.header(campaign_id) is None and cluster.store.acquire(
                    campaign_id, cluster.node, cluster.lease
                )
            except StoreError as exc:
                raise CampaignError(503, f"campaign not created: {exc}") from None
            if not taken:
                raise CampaignError(409, f"campaign {campaign_id!r} exists")
        campaign, effects = self.core.create(campaign_id, spec, endpoints, self.clock())
        self._run(effects)
        log.info(
            "campaign %s created: package %s to %d devices",
            campaign.id,
            spec.package_id,
            campaign.total,
        )
        return campaign

    def pause(self, campaign_id: str) -> Campaign:
        self._run(self.core.pause(campaign_id, self.clock()))
        return self.core.get(campaign_id)

    def resume(self, campaign_id: str) -> Campaign:
        self._run(self.core.resume(campaign_id, self.clock()))
        return self.core.get(campaign_id)

    def cancel(self, campaign_id: str) -> Campaign:
        self._run(self.core.cancel(campaign_id, self.clock()))
        return self.core.get(campaign_id)

    async def act(self, action: str, campaign_id: str) -> tuple[Campaign, bool]:
        """``pause``, ``resume`` or ``cancel`` through this node's API, whichever node runs
        the campaign: the campaign after it, and whether the action was carried out (False:
        queued for a runner that did not take it within the lease). On a cluster, an action
        on a campaign another node runs is checked against the stored state, queued in the
        store for the runner, which is nudged (and finds it at its next lease check anyway);
        a campaign nobody runs is taken over here first."""
        if action not in ACTIONS:
            raise CampaignError(400, f"unknown action {action!r}")
        cluster = self.cluster
        if cluster is None or campaign_id in self.core:
            return getattr(self, action)(campaign_id), True
        stored = self.get(campaign_id)  # 404
        probe = CampaignScheduler()
        probe.restore(stored)
        if not getattr(probe, action)(campaign_id, self.clock()):  # 409, or nothing to do
            return stored, True
        try:
            runner = cluster.store.request(campaign_id, action)
        except StoreError as exc:
            raise CampaignError(503, f"{action} not queued: {exc}") from None
        if runner is None or runner == cluster.node:
            self.nudged(campaign_id)  # nobody runs it: this node does from now on
        else:
            cluster.post(runner, {"op": NUDGE, "id": campaign_id})
        deadline = time.monotonic() + cluster.lease
        while True:
            try:
                waiting = cluster.store.pending_requests(campaign_id)
            except StoreError as exc:
                raise CampaignError(503, f"{action} queued, its outcome unknown: {exc}") from None
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        return self.get(campaign_id), not waiting

    def get(self, campaign_id: str) -> Campaign:
        """The campaign: this node's own copy when it runs it (the latest), else as stored."""
        if self.cluster is None or campaign_id in self.core:
            return self.core.get(campaign_id)
        try:
            header = self.cluster.store.header(campaign_id)
            if header is None:
                raise CampaignError(404, f"no campaign {campaign_id!r}")
            return Campaign.from_stored(header, self.cluster.store.devices(campaign_id))
        except StoreError as exc:
            raise CampaignError(503, str(exc)) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise CampaignError(500, f"campaign {campaign_id} is unreadable: {exc}") from None

    def campaigns(self) -> list[Campaign]:
        """Every campaign: on a cluster those of the shared store (this node's own copies for
        the ones it runs)."""
        if self.cluster is None:
            return self.core.campaigns()
        found = {c.id: c for c in self.core.campaigns()}
        try:
            headers = self.cluster.store.campaigns()
        except StoreError as exc:
            raise CampaignError(503, str(exc)) from None
        for header in headers:
            campaign_id = str(header.get("id"))
            if campaign_id not in found:
                with contextlib.suppress(CampaignError):
                    found[campaign_id] = self.get(campaign_id)
        return sorted(found.values(), key=lambda c: (c.created_ms, c.id))

    def in_use(self, package_id: str) -> str | None:
        """The package library's ``in_use`` hook: an unfinished campaign's package cannot be
        deleted (the 409 names the campaign). On a cluster the shared store's campaigns; when
        it cannot be read, the package is kept (deleting a package a campaign needs is worse
        than refusing a delete)."""
        try:
            campaigns = self.campaigns()
        except CampaignError as exc:
            return f"the campaigns, which cannot be read now ({exc.message})"
        for campaign in campaigns:
            if campaign.spec.package_id == package_id and not campaign.state.finished:
                return f"campaign {campaign.id} ({campaign.state.value})"
        return None

    # -- inside --------------------------------------------------------------------------------
    def _on_job(self, view: JobView) -> None:
        if view.campaign is not None and not self._stopping:
            self._run(self.core.job_changed(view, self.clock()))

    def _run(self, effects: Sequence[Effect]) -> None:
        """Carry out the core's effects: rows to the store, events to the bus, jobs to the job
        manager (as tasks: their answers come back through ``job_started``). On a cluster the
        rows are written first, as a compare-and-set on the lease: a campaign whose write is
        refused was taken by another node, and none of its effects is carried out (no job
        started, no event) — the scheduler forgets it at once."""
        persist: dict[str, set[str]] = {}
        for effect in effects:
            if isinstance(effect, Persist):
                persist.setdefault(effect.campaign, set()).update(effect.endpoints)
        lost: set[str] = set()
        done: set[str] = set()
        for campaign_id, endpoints in persist.items():
            if campaign_id not in self.core:
                lost.add(campaign_id)
                continue
            campaign = self.core.get(campaign_id)
            finished = campaign.state.finished and not campaign.counts["running"]
            try:
                if not self._save(campaign, endpoints, finished):
                    lost.add(campaign_id)
                elif finished and self.cluster is not None:
                    done.add(campaign_id)
            except StoreError as exc:
                # the campaign goes on in memory; a store outage fails every change, so the
                # log says it once a minute (the store logs the outage itself)
                now = time.monotonic()
                if now >= self._next_store_log:
                    self._next_store_log = now + 60.0
                    log.error("campaign %s: cannot persist its state: %s", campaign_id, exc)
        for campaign_id in lost:
            self._lose(campaign_id)
        for effect in effects:
            if effect.campaign in lost:
                continue
            if isinstance(effect, Announce):
                self._announce(effect)
            elif isinstance(effect, StartJob):
                self._spawn(self._start_job(effect))
            elif isinstance(effect, CancelJob):
                self._spawn(self._cancel_job(effect))
        for campaign_id in done:  # its lease went with its last write: the store shows it
            self.core.forget(campaign_id)
        self._wake.set()

    def _save(self, campaign: Campaign, endpoints: Iterable[str], finished: bool) -> bool:
        header = campaign.header_json()
        rows = [campaign.devices[ep].to_json() for ep in sorted(endpoints)]
        cluster = self.cluster
        if cluster is None:
            self.store.save(header, rows)
            return True
        return cluster.store.save_as(header, rows, cluster.node, cluster.lease, done=finished)

    # -- cluster (docs/firmware.md, "Campaigns in a cluster") ---------------------------------
    def running_here(self) -> list[str]:
        """The campaigns this node's scheduler runs."""
        return [c.id for c in self.core.campaigns()]

    def _lose(self, campaign_id: str) -> None:
        """Another node runs the campaign now (or our lease expired): stop at once."""
        if campaign_id in self.core:
            self.core.forget(campaign_id)
            log.info("campaign %s is run by another node now: stopped here", campaign_id)

    def _claim(self, campaign_id: str) -> bool:
        """Take the campaign over if its lease is free, and run it from its stored state (as
        after a restart: running devices matched with their jobs)."""
        cluster = self.cluster
        assert cluster is not None
        try:
            (claimed, _) = cluster.store.claim(campaign_id, cluster.node, cluster.lease)
        except StoreError as exc:
            self._lease_problem(f"cannot claim campaign {campaign_id}: {exc}")
            return False
        if claimed is None:
            return False
        header, rows = claimed
        try:
            campaign = Campaign.from_stored(header, rows)
        except (KeyError, ValueError, TypeError) as exc:
            log.error("campaign %s in the store is unreadable, not run: %s", campaign_id, exc)
            with contextlib.suppress(StoreError):
                cluster.store.release(campaign_id, cluster.node)
            return False
        now = self.clock()
        self.core.restore(campaign)
        effects: list[Effect] = []
        for endpoint in self.core.running_devices(campaign_id):
            effects += self.core.reconcile(campaign_id, endpoint, self.updates.job(endpoint), now)
        log.info(
            "campaign %s taken by this node (%s, %s)",
            campaign_id,
            campaign.state.value,
            campaign.counts,
        )
        self._run(effects)
        if campaign_id in self.core:
            self._obey(campaign_id)
        return True

    def _claim_free(self) -> None:
        """Claim every stored campaign that needs a runner and has none (its node died,
        stopped, or never was: the store written by an older version)."""
        cluster = self.cluster
        assert cluster is not None
        try:
            headers = cluster.store.campaigns()
        except StoreError as exc:
            self._lease_problem(f"cannot read the campaigns: {exc}")
            return
        for header in headers:
            campaign_id = str(header.get("id"))
            if campaign_id not in self.core and needs_runner(header):
                self._claim(campaign_id)

    def _obey(self, campaign_id: str) -> None:
        """Carry out the operator actions other nodes' APIs queued for this campaign."""
        cluster = self.cluster
        assert cluster is not None
        try:
            queued = cluster.store.take_requests(campaign_id, cluster.node)
        except StoreError as exc:
            self._lease_problem(f"cannot take the requests of campaign {campaign_id}: {exc}")
            return
        if queued is None:
            self._lose(campaign_id)
            return
        for action in queued:
            if campaign_id not in self.core:
                return
            if action not in ACTIONS:  # the store is shared: never call what it names blindly
                log.warning("campaign %s: unknown queued action %r ignored", campaign_id, action)
                continue
            try:
                getattr(self, action)(campaign_id)
                log.info("campaign %s: %s asked through another node's API", campaign_id, action)
            except CampaignError as exc:  # checked there against an older state
                log.info("campaign %s: %s from another node refused: %s", campaign_id, action, exc)

    def nudged(self, campaign_id: str) -> None:
        """``NUDGE`` (another node's API queued an action): carry it out now; take the
        campaign first if nobody runs it."""
        if self._stopping:
            return
        if campaign_id in self.core:
            self._obey(campaign_id)
        else:
            self._claim(campaign_id)

    def _check_jobs(self, campaign_id: str) -> None:
        """Job ends this node missed (another node's FIRMWARE event is at most once): each
        running device's job as stored."""
        for endpoint in self.core.running_devices(campaign_id):
            view = self.updates.job(endpoint)
            if view is not None and view.campaign == campaign_id and view.state.finished:
                self._on_job(view)

    async def _tend_leases(self) -> None:
        """Every third of the lease: renew this node's leases (forgetting the campaigns it
        lost), carry out queued actions, look for ended jobs it did not hear of, and claim
        the campaigns whose runner is gone."""
        cluster = self.cluster
        assert cluster is not None
        while not self._stopping:
            await asyncio.sleep(cluster.lease / 3)
            try:
                self._tend(cluster)
            except StoreError as exc:
                self._lease_problem(f"cannot renew or claim campaign leases: {exc}")
            except Exception:  # a bug must not end the renewals for good
                log.exception("renewing the campaign leases failed")

    def _tend(self, cluster: CampaignCluster) -> None:
        for campaign_id in cluster.store.renew(self.running_here(), cluster.node, cluster.lease):
            self._lose(campaign_id)
        for campaign_id in self.running_here():
            self._obey(campaign_id)
            if campaign_id in self.core:
                self._check_jobs(campaign_id)
        self._claim_free()

    def _lease_problem(self, message: str) -> None:
        now = time.monotonic()
        if now >= self._next_lease_log:
            self._next_lease_log = now + 60.0
            log.warning("%s", message)

    def _announce(self, effect: Announce) -> None:
        if self.bus is None:
            return
        campaign = self.core.get(effect.campaign)
        data = {"event": effect.event, "campaign": effect.campaign, **campaign_to_json(campaign)}
        self.bus.publish(CAMPAIGN, "", data)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _start_job(self, effect: StartJob) -> None:
        if effect.campaign not in self.core:  # lost to another node meanwhile
            return
        spec = self.core.get(effect.campaign).spec
        view: JobView | None = None
        error: str | None = None
        try:
            view = await self.updates.start(
                effect.endpoint,
                spec.package_id,
                strategy=spec.strategy,
                instance=spec.instance,
                campaign=effect.campaign,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Lwm2mError above all: 4.04 unknown device, 4.09 busy
            code = getattr(getattr(exc, "code", None), "dotted", None)
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            error = f"not started: {message}" + (f" ({code})" if code else "")
        self._run(
            self.core.job_started(effect.campaign, effect.endpoint, view, error, self.clock())
        )

    async def _cancel_job(self, effect: CancelJob) -> None:
        try:
            view = await self.updates.cancel(effect.endpoint)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "campaign %s: cannot cancel the job of %s: %s",
                effect.campaign,
                effect.endpoint,
                exc,
            )
            return
        if view is not None:
            self._on_job(view)

    async def _loop(self) -> None:
        """Poll the core whenever an input arrived (``_wake``) or its timer is due. Waits
        with ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` swallows a
        cancellation that arrives as the event is set, and ``stop`` then waited forever."""
        while not self._stopping:
            self._wake.clear()
            self._run_quietly(self.core.poll(self.clock()))
            self._wake.clear()
            due = self.core.timer()
            timeout = None if due is None else max(0.001, due - self.clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _run_quietly(self, effects: Sequence[Effect]) -> None:
        try:
            self._run(effects)
        except Exception:
            log.exception("campaigns: a scheduling step failed")


def for_server(server: Lwm2mServer, updates: FirmwareUpdates) -> CampaignManager:
    """The campaigns of a running server: its store engine, its bus, its registrations and
    profile catalog for targets, its package library (``server.packages``) if it has one."""
    from .campaign_store import RedisCampaignStore, open_campaign_store

    def resolve(target: Target) -> list[str]:
        if target.endpoints:
            return list(target.endpoints)
        found = []
        for registration in server.clients():
            if target.profile is not None:
                engine = server.profiles
                if (
                    engine is not None
                    and engine.catalog.resolve(registration.endpoint)[0].name == target.profile
                ):
                    found.append(registration.endpoint)
            elif target.matches(registration):
                found.append(registration.endpoint)
        return sorted(found)

    store = open_campaign_store(server)
    cluster: CampaignCluster | None = None
    node = getattr(server, "cluster", None)
    if node is not None and isinstance(store, RedisCampaignStore):
        cluster = CampaignCluster(
            node=node.node_id, store=store, lease=server.config.firmware.job_lease, post=node.post
        )
    manager = CampaignManager(
        updates,
        store,
        resolve=resolve,
        bus=server.bus,
        clock=server.clock,
        cluster=cluster,
    )
    if cluster is not None and node is not None:
        node.handlers[NUDGE] = lambda message: manager.nudged(str(message["id"]))
    library = getattr(server, "packages", None)
    if library is not None and hasattr(library, "add_in_use"):

        def in_use(package_id: str) -> str | None:
            return manager.in_use(package_id) or profile_in_use(server, package_id)

        library.add_in_use(in_use)
    return manager


def profile_in_use(server: Any, package_id: str) -> str | None:
    """The package library's ``in_use`` hook for profiles: a profile naming the package by id
    in its ``firmware`` section keeps it (a campaign targeting the profile would need it)."""
    engine = getattr(server, "profiles", None)
    if engine is None:
        return None
    for profile in engine.catalog.profiles():
        for kind, setting in profile.firmware.items():
            if setting.package_id == package_id:
                return f"profile {profile.name} (firmware.{kind.value}.package)"
    return None


def profile_setting_of(server: Any) -> Callable[[str, PackageKind], UpdateSetting | None]:
    """``spec_from_request``'s profile lookup over the server's profile catalog."""

    def setting(name: str, kind: PackageKind) -> UpdateSetting | None:
        engine = getattr(server, "profiles", None)
        profile = None if engine is None else engine.catalog.get(name)
        if profile is None:
            raise CampaignError(404, f"no profile {name!r}")
        return profile.firmware.get(kind)  # type: ignore[no-any-return]

    return setting


__all__ = [
    "CAMPAIGN",
    "Announce",
    "Campaign",
    "CampaignCluster",
    "CampaignError",
    "CampaignManager",
    "CampaignScheduler",
    "CampaignSpec",
    "CampaignState",
    "CancelJob",
    "DeviceOutcome",
    "DeviceStatus",
    "Effect",
    "Persist",
    "StartJob",
    "Target",
    "campaign_to_json",
    "for_server",
    "profile_setting_of",
    "registration_attributes",
    "spec_from_request",
]

"""``FirmwareManager``: drives the per-device update jobs (``jobs.UpdateJob``) against a running
server; implements ``contracts.FirmwareUpdates`` for the API and the campaigns.

It is a consumer of the server, like the profile engine: it performs the jobs' actions with
``ServerOperations`` (read, observe, write, execute) and feeds back what the device says, from
three sources:

* the answers of its own requests (a request queued for a sleeping device answers
  ``DeviceResponse(queued=True)``; its real answer comes later as a ``REQUEST_RESPONSE`` event
  carrying the same ``requestId``, which is routed back to the job's request);
* the server's events, followed with ``EventBus.listen`` (an in-process listener sees every
  event, in order, and never gets a GAP): ``NOTIFICATION`` of State / Update Result,
  ``REGISTRATION`` (the device rebooted), ``UPDATED``, ``REQUEST_RESPONSE``;
* the download server's ``DownloadEvent``s (a refused fetch is recorded in the job).

After every change of a job it is stored (``job_store``), a ``FIRMWARE`` event goes on the bus
(the job as ``job_to_json``) and the subscribers (campaigns) are called with its ``JobView``.
At start it loads the stored jobs and resumes the unfinished ones (``UpdateJob.resume``:
observe again, repeat the step's requests; deadlines as stored).

On a cluster (``JobCluster``; docs/firmware.md, "Updates in a cluster") a job is driven by one
node at a time, the node that holds the device, under a lease in the shared store: every
change is written only if this node still holds the job's lease (``RedisJobStore.put_as``), and
a node that finds it was taken over stops driving it at once (nothing of the refused change is
published or sent). A node takes a job over when the device's Register or Update makes it the
holder (``gained``, at once: it steals the lease), when another node's API starts or cancels a
job of a device it holds (a hint on its channel, and its lease scan), and when a job's lease
expired because its node died (the scan every third of the lease). The API of every node shows
the shared store's jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container, Mapping
from typing import Any, Protocol

import attrs

from keystore.store.errors import StoreError
from lwm2m_runtime.http_errors import ApiError
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from ..events_bus import FIRMWARE, REQUEST_RESPONSE
from ..operations import (
    DeviceResponse,
    DeviceTimeoutError,
    ServerEvent,
    ServerOperations,
    UnknownClientError,
)
from .contracts import (
    DownloadEvent,
    DownloadGrants,
    DownloadOutcome,
    JobState,
    JobView,
    PackageKind,
    PackageLibrary,
    Strategy,
)
from .job_store import JobStore, RedisJobStore
from .jobs import (
    Action,
    CancelObserve,
    Execute,
    JobSettings,
    Observe,
    Read,
    ResetDownload,
    Revoke,
    UpdateJob,
    WritePackage,
    WriteUri,
)

log = logging.getLogger(__name__)


class Listen(Protocol):
    """``EventBus.listen``: ``endpoints``/``kinds`` narrow the events the callback gets."""

    def __call__(
        self,
        callback: Callable[[ServerEvent], None],
        *,
        endpoints: Container[str] | None = None,
        kinds: Container[str] = (),
    ) -> Callable[[], None]: ...


_ANY_DEVICE = frozenset({REQUEST_RESPONSE})
"""The events the manager needs whatever the device (off a cluster): the answer to a request
it queued, which may come after the job ended (``_queued``)."""
Publish = Callable[[str, str, Mapping[str, object]], object]


@attrs.frozen
class JobCluster:
    """What the manager needs of a cluster (``setup._cluster_link``): this node's id, the
    shared job store with its leases, the lease (seconds), the node that holds a device (None:
    nobody), whether a node is alive (it listens on its channel) and how to tell a node that
    a job of one of its devices waits for it."""

    node: str
    store: RedisJobStore
    lease: float
    holder: Callable[[str], str | None]
    alive: Callable[[str], bool]
    hint: Callable[[str, str], None]
    """``hint(node, endpoint)``."""


class UnknownPackageError(Lwm2mError):
    """No package with that id (HTTP 404)."""

    code = ResponseCode.NOT_FOUND


class JobConflictError(Lwm2mError):
    """The device already has a running job (HTTP 409): one update at a time per device."""

    code = ResponseCode.CONFLICT


def job_to_json(view: JobView) -> dict[str, object]:
    """A job as the API and the event stream show it."""
    from .contracts import FIRMWARE_RESULTS, SOFTWARE_RESULTS

    table = FIRMWARE_RESULTS if view.kind is PackageKind.FIRMWARE else SOFTWARE_RESULTS
    return {
        "endpoint": view.endpoint,
        "package": view.package_id,
        "kind": view.kind.value,
        "strategy": view.strategy.value,
        "state": view.state.value,
        "finished": view.state.finished,
        "instance": view.instance,
        "result": view.result,
        "resultText": None if view.result is None else table.get(view.result, "unknown"),
        "detail": view.detail,
        "attempts": view.attempts,
        "campaign": view.campaign,
        "created": view.created_ms,
        "updated": view.updated_ms,
    }


def job_from_json(data: Mapping[str, Any]) -> JobView:
    """The inverse of ``job_to_json`` (a FIRMWARE event of another node). ``ValueError``,
    ``KeyError`` or ``TypeError`` when ``data`` is not a job."""
    result = data["result"]
    campaign = data["campaign"]
    return JobView(
        endpoint=str(data["endpoint"]),
        package_id=str(data["package"]),
        kind=PackageKind(data["kind"]),
        strategy=Strategy(data["strategy"]),
        state=JobState(data["state"]),
        instance=int(data["instance"]),
        result=None if result is None else int(result),
        detail=str(data["detail"]),
        attempts=int(data["attempts"]),
        campaign=None if campaign is None else str(campaign),
        created_ms=int(data["created"]),
        updated_ms=int(data["updated"]),
    )


def settings_from(config: Any) -> JobSettings:
    """``JobSettings`` from the ``firmware`` section of ``ServerConfig``."""
    return JobSettings(
        request_timeout=config.request_timeout,
        download_timeout=config.download_timeout,
        update_timeout=config.update_timeout,
        queued_timeout=config.queued_timeout,
        retries=config.retries,
        backoff=config.retry_backoff,
        activate=config.software_activate,
    )


def node_value(node: LwM2mNode | None) -> Any:
    """A read/observed node as the job machine takes it: a resource's value, a multiple
    resource as ``{instance: value}``, an object instance as ``{resource id: value}``."""
    if isinstance(node, LwM2mSingleResource | LwM2mResourceInstance):
        return node.value
    if isinstance(node, LwM2mMultipleResource):
        return node.values
    if isinstance(node, LwM2mObjectInstance):
        return {rid: node_value(r) for rid, r in node.resources.items()}
    return None


class FirmwareManager:
    """``contracts.FirmwareUpdates`` over a server's ``ServerOperations`` (module docstring).
    ``packages``/``downloads``: the package library and the download server (None: no job can
    be started that needs them). ``transport``: how a device reached us (``coap`` or
    ``coaps``), to give it a Package URI on the same transport."""

    def __init__(
        self,
        ops: ServerOperations,
        store: JobStore,
        *,
        packages: PackageLibrary | None,
        downloads: DownloadGrants | None,
        listen: Listen,
        publish: Publish,
        settings: JobSettings | None = None,
        clock: Callable[[], float] = time.time,
        transport: Callable[[str], str] | None = None,
        owns: Callable[[str], bool] | None = None,
        cluster: JobCluster | None = None,
    ) -> None:
        self.ops = ops
        self.store = store
        self.packages = packages
        self.downloads = downloads
        self.settings = settings or JobSettings()
        self.clock = clock
        self._listen = listen
        self._publish = publish
        self._transport = transport
        self._owns = owns
        """On a cluster: whether this node holds the device (only it resumes the device's job:
        it is the node that hears the device's events)."""
        self._jobs: dict[str, UpdateJob] = {}
        """Endpoint → its job (finished ones too). Never replaced: the bus reads this very
        dict to tell which devices' events to give ``_on_event`` (``open``)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._queued: dict[str, tuple[UpdateJob, int, str]] = {}
        """requestId of a queued request → (the job that sent it, seq, path)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests: dict[asyncio.Task[None], UpdateJob] = {}
        """The request in flight → the job that sent it (cancelled when the job is lost)."""
        self._listeners: list[Callable[[JobView], None]] = []
        self._shown: dict[str, JobView] = {}
        """The view last published per endpoint: an event only when it changes."""
        self._unlisten: Callable[[], None] | None = None
        self._running = False
        self._cluster = cluster
        self._tending: asyncio.Task[None] | None = None
        self._tend_failed = 0.0
        self._last_event = -1
        """The id of the latest event the listener saw (on a cluster, where it sees them all)."""
        self._registered: tuple[str, int] | None = None
        """(endpoint, event id) of the latest REGISTRATION of a device with no job driven
        here: a Register that makes this node the holder is published before the holder hook
        runs (``gained``), which then knows the device re-registered."""

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Follow the events, then resume every unfinished stored job."""
        self._running = True
        if self._cluster is None:
            # only the events of devices with a job here (``_jobs``, read by the bus at each
            # event) and those of ``_ANY_DEVICE``: for any other ``_on_event`` does nothing
            # but note the id, which only a cluster node reads (``gained``); so a keep-alive
            # or a Register of a device without a job costs no call here
            self._unlisten = self._listen(self._on_event, endpoints=self._jobs, kinds=_ANY_DEVICE)
        else:
            self._unlisten = self._listen(self._on_event)
        if self.downloads is not None:
            self.downloads.subscribe(self._on_download)
        try:
            stored = self.store.all()
        except StoreError as exc:
            log.error("cannot read the update jobs, none resumed: %s", exc)
            stored = []
        if self._cluster is not None:
            self._open_cluster(stored)
            return
        resumed = 0
        now = self.clock()
        for job in stored:
            self._jobs[job.endpoint] = job
            self._shown[job.endpoint] = job.view()
            if not job.finished:
                if self._owns is not None and not self._owned(job.endpoint):
                    continue
                resumed += 1
                self._after(job, job.resume(now), changed=False)
        if resumed:
            log.info("resumed %d unfinished update jobs from the store", resumed)

    def _owned(self, endpoint: str) -> bool:
        if self._cluster is not None:
            try:
                return self._elsewhere(endpoint) is None
            except Exception as exc:  # the store is down: nothing can be claimed anyway
                log.warning("cannot tell which node holds %s: %s", endpoint, exc)
                return False
        assert self._owns is not None
        try:
            return self._owns(endpoint)
        except Exception as exc:  # the store is down: resume it (a duplicate beats a stall)
            log.warning("cannot tell which node holds %s (%s): resuming its job", endpoint, exc)
            return True

    def _open_cluster(self, stored: list[UpdateJob]) -> None:
        """Claim the unfinished jobs of the devices this node holds (or nobody alive does) and
        whose lease is free; the others are driven elsewhere, or will be claimed by the scan
        once their lease expires."""
        claimed = 0
        for job in stored:
            if not job.finished and self._owned(job.endpoint):
                claimed += self._claim(job.endpoint) is not None
        if claimed:
            log.info("took %d unfinished update jobs from the store", claimed)
        self._tending = asyncio.get_running_loop().create_task(self._tend_leases())

    async def close(self) -> None:
        self._running = False
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._tending is not None:
            self._tending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._tending
            self._tending = None
        if self._cluster is not None:  # free at once for the node that takes over
            for endpoint, job in list(self._jobs.items()):
                if not job.finished:
                    try:
                        self._cluster.store.release(endpoint, self._cluster.node)
                    except StoreError as exc:
                        log.warning("update job of %s not released: %s", endpoint, exc)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- FirmwareUpdates ------------------------------------------------------------------------
    async def start(
        self,
        endpoint: str,
        package_id: str,
        *,
        strategy: Strategy = Strategy.AUTO,
        instance: int | None = None,
        campaign: str | None = None,
    ) -> JobView:
        self.ops.client(endpoint)  # UnknownClientError (4.04)
        if self.packages is None:
            raise ApiError(503, "no package library: firmware updates are not available")
        package = self.packages.get(package_id)
        if package is None:
            raise UnknownPackageError(f"no package {package_id!r}")
        if strategy in (Strategy.PULL_COAP, Strategy.PULL_HTTP, Strategy.AUTO) and (
            self.downloads is None
        ):
            if strategy is not Strategy.AUTO:
                raise ApiError(503, "no download server: use the push strategy")
            strategy = Strategy.PUSH
        if instance is not None and (instance < 0 or instance > 65534):
            raise ApiError(400, f"instance {instance} is not an object instance id")
        if package.kind is PackageKind.FIRMWARE and instance not in (None, 0):
            raise ApiError(400, "a firmware package goes to /5/0: instance must be 0")
        current = self._jobs.get(endpoint)
        if self._cluster is not None and current is None:
            current = self._cluster.store.get(endpoint)
        if current is not None and not current.finished:
            raise self._conflict(endpoint, current)
        now = self.clock()
        job = UpdateJob.new(
            endpoint,
            package.id,
            package.version,
            package.kind,
            strategy=strategy,
            instance=instance or 0,
            campaign=campaign,
            settings=self.settings,
            offered=self._offered(),
            now=now,
        )
        log.info(
            "update job for %s: %s %s (%s), %s",
            endpoint,
            package.name,
            package.version,
            package.id[:12],
            strategy.value,
        )
        if self._cluster is not None:
            holder = self._elsewhere(endpoint)
            cluster = self._cluster
            if not cluster.store.create(job, cluster.node, cluster.lease, drive=holder is None):
                raise self._conflict(endpoint, cluster.store.get(endpoint))
            if holder is not None:  # the node the device talks to drives it
                log.info("update job for %s handed to node %s, which holds it", endpoint, holder)
                cluster.hint(holder, endpoint)
                return job.view()
        self._jobs[endpoint] = job
        self._after(job, job.start(now))
        return job.view()

    @staticmethod
    def _conflict(endpoint: str, current: UpdateJob | None) -> JobConflictError:
        if current is None:
            return JobConflictError(f"{endpoint!r} already has an update job; cancel it first")
        return JobConflictError(
            f"{endpoint!r} already has a {current.state.value} update job "
            f"(package {current.package_id[:12]}…); cancel it first",
        )

    def _elsewhere(self, endpoint: str) -> str | None:
        """On a cluster: the live node that holds the device when it is not this one (it
        should drive the device's job); None when this node should (it holds the device,
        nobody does, or its holder is gone)."""
        assert self._cluster is not None
        holder = self._cluster.holder(endpoint)
        if holder in (None, self._cluster.node):
            return None
        assert holder is not None
        return holder if self._cluster.alive(holder) else None

    def job(self, endpoint: str) -> JobView | None:
        job = self._jobs.get(endpoint)
        if job is None and self._cluster is not None:  # any node's job, as stored
            job = self._cluster.store.get(endpoint)
        return None if job is None else job.view()

    def _all(self) -> dict[str, UpdateJob]:
        """Every job: on a cluster the shared store's, those driven here as they are now."""
        if self._cluster is None:
            return self._jobs
        return {**{j.endpoint: j for j in self._cluster.store.all()}, **self._jobs}

    def jobs(self, campaign: str | None = None) -> list[JobView]:
        return [
            j.view()
            for _, j in sorted(self._all().items())
            if campaign is None or j.campaign == campaign
        ]

    async def cancel(self, endpoint: str) -> JobView | None:
        job = self._jobs.get(endpoint)
        if job is None and self._cluster is not None:
            # driven by another node (or by none): take it, so that the cancel is the last
            # change of the job (its former driver can no longer write it)
            cluster = self._cluster
            job, _ = cluster.store.claim(endpoint, cluster.node, cluster.lease, steal=True)
            if job is None:
                stored = cluster.store.get(endpoint)
                return None if stored is None else stored.view()
            self._jobs[endpoint] = job
            self._shown[endpoint] = job.view()
        if job is None:
            return None
        if not job.finished:
            log.info("update job for %s cancelled in step %s", endpoint, job.step.value)
            self._after(job, job.cancel(self.clock()))
        return job.view()

    def subscribe(self, listener: Callable[[JobView], None]) -> None:
        """``listener`` is called with a job's view each time it changes: the jobs this node
        drives, in order; on a cluster also those other nodes drive, from their FIRMWARE
        events (``remote_job``: at most once, like all pub/sub; ``jobs()`` is the truth)."""
        self._listeners.append(listener)

    def remote_job(self, event: ServerEvent) -> None:
        """``ClusterNode`` remote-event hook: another node's job changed. For a job this node
        still believes it drives, only a change newer than what it has shown: either the job
        was taken from us (the renewal will notice), or it is the former driver's last event,
        arriving late after we took the job over."""
        if event.kind != FIRMWARE:
            return
        try:
            view = job_from_json(event.data)
        except (ValueError, KeyError, TypeError) as exc:
            log.debug("a FIRMWARE event of another node is not a job: %s", exc)
            return
        shown = self._shown.get(view.endpoint)
        ours = view.endpoint in self._jobs and shown is not None
        if ours and shown is not None and view.updated_ms <= shown.updated_ms:
            return
        self._tell(view)

    def _tell(self, view: JobView) -> None:
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                log.exception("firmware job listener failed on %s", view.endpoint)

    def in_use(self, package_id: str) -> str | None:
        """The package library's ``in_use`` hook: a package an unfinished job delivers cannot
        be deleted (a finished job's can: it only names it)."""
        for endpoint, job in sorted(self._all().items()):
            if job.package_id == package_id and not job.finished:
                return f"the {job.state.value} update job of {endpoint}"
        return None

    # -- inputs ---------------------------------------------------------------------------------
    def _live(self, endpoint: str) -> UpdateJob | None:
        job = self._jobs.get(endpoint)
        return None if job is None or job.finished else job

    def _on_event(self, event: ServerEvent) -> None:
        """``EventBus.listen`` callback: runs inside ``publish``, so it only decides and
        schedules (the machine is synchronous; requests are tasks)."""
        self._last_event = event.id
        if event.kind == FIRMWARE:
            return
        if event.kind == "REQUEST_RESPONSE":
            self._on_request_response(event)
            return
        job = self._jobs.get(event.endpoint)  # ``_live`` written out: every event of the bus
        if job is None or job.finished:
            if event.kind == "REGISTRATION" and self._cluster is not None:
                self._registered = (event.endpoint, event.id)
            return
        now = self.clock()
        if event.kind == "NOTIFICATION":
            self._on_notification(job, event.data, now)
        elif event.kind == "REGISTRATION":
            self._after(job, job.registered(now))
        elif event.kind == "UPDATED":
            self._after(job, job.updated(now))

    def _on_notification(self, job: UpdateJob, data: Mapping[str, object], now: float) -> None:
        paths = data.get("paths")
        watched = set(job.observed_paths)
        if not isinstance(paths, list) or not watched & {str(p) for p in paths}:
            return
        values: dict[str, int] = {}
        points = data.get("points")
        for point in points if isinstance(points, list) else []:
            if isinstance(point, Mapping) and point.get("path") in watched:
                value = point.get("value")
                if isinstance(value, int) and not isinstance(value, bool):
                    values[str(point["path"])] = value
        if not values:  # undecodable, or a profile mapped the values away: ask
            self._after(job, job.refresh(now), changed=False)
            return
        actions = job.reported(
            now, state=values.get(job.state_path), result=values.get(job.result_path)
        )
        self._after(job, actions)

    def _on_request_response(self, event: ServerEvent) -> None:
        request_id = event.data.get("requestId")
        if not isinstance(request_id, str) or request_id not in self._queued:
            return
        job, seq, path = self._queued.pop(request_id)
        endpoint = job.endpoint
        if job.finished or self._jobs.get(endpoint) is not job:
            return  # a job that ended, or was replaced by a newer one (its seqs start over)
        now = self.clock()
        response = event.data.get("response")
        if isinstance(response, DeviceResponse):
            self._answer(job, seq, path, response, now)
        else:
            error = str(event.data.get("error") or "no answer")
            log.info("queued request %s %s of %s failed: %s", seq, path, endpoint, error)
            self._after(job, job.answered(seq, now, error=error))

    def _on_download(self, event: DownloadEvent) -> None:
        if event.endpoint is None:
            return
        job = self._live(event.endpoint)
        if job is None or event.package_id not in (None, job.package_id):
            return
        if event.outcome is DownloadOutcome.REFUSED:
            log.info("download of %s refused: %s", event.endpoint, event.reason)
            self._after(job, job.download_refused(self.clock(), event.reason))

    def _on_timer(self, endpoint: str) -> None:
        self._timers.pop(endpoint, None)
        job = self._live(endpoint)
        if job is not None:
            self._after(job, job.tick(self.clock()))

    # -- effects --------------------------------------------------------------------------------
    def _after(self, job: UpdateJob, actions: list[Action], *, changed: bool = True) -> None:
        """Store the job, tell everyone when its view changed, perform its actions, re-arm
        its timer. On a cluster, only while this node drives it: a job another node took over
        is dropped here, and nothing of this change is published or sent."""
        cluster = self._cluster
        try:
            if cluster is not None:
                if not cluster.store.put_as(job, cluster.node, cluster.lease):
                    self._lost(job)
                    return
            else:
                self.store.put(job)
        except StoreError as exc:
            log.error("update job of %s not stored: %s", job.endpoint, exc)
        view = job.view()
        if changed and self._shown.get(job.endpoint) != view:
            self._shown[job.endpoint] = view
            self._publish(FIRMWARE, job.endpoint, job_to_json(view))
            self._tell(view)
            if view.state.finished:
                level = logging.INFO if view.state.value == "succeeded" else logging.WARNING
                log.log(
                    level,
                    "update job for %s %s%s",
                    job.endpoint,
                    view.state.value,
                    f": {view.detail}" if view.detail else "",
                )
        for action in actions:
            self._perform(job, action)
        self._arm(job)
        if cluster is not None and job.finished and self._jobs.get(job.endpoint) is job:
            del self._jobs[job.endpoint]  # the store shows it; the next job may start anywhere

    # -- cluster ----------------------------------------------------------------------------------
    def driving(self) -> list[str]:
        """The endpoints whose unfinished job this node drives."""
        return sorted(e for e, j in self._jobs.items() if not j.finished)

    def _lost(self, job: UpdateJob) -> None:
        """Another node took the job over (the device moved there, a cancel through its API,
        or our lease expired): stop driving it."""
        endpoint = job.endpoint
        # its requests in flight stop too: a push still sending blocks while the new driver
        # (another node, or this one again once its lapsed lease is free) resets the device
        # and pushes anew would interleave two Block1 transfers of one resource at the device
        current = asyncio.current_task()
        for task, owner in list(self._requests.items()):
            if owner is job and task is not current:
                task.cancel()
        if self._jobs.get(endpoint) is job:
            del self._jobs[endpoint]
            timer = self._timers.pop(endpoint, None)
            if timer is not None:
                timer.cancel()
            log.info(
                "update job of %s: this node's lease is lost (taken by another node, or it "
                "lapsed): no longer driven from here",
                endpoint,
            )

    def _claim(
        self, endpoint: str, *, steal: bool = False, registered: bool = False
    ) -> UpdateJob | None:
        """Take the endpoint's unfinished job if free (or ``steal`` it) and drive it from
        where it stands: started if nobody did, else resumed (observe again, the step's
        requests again, the stored deadlines)."""
        cluster = self._cluster
        assert cluster is not None
        try:
            job, _ = cluster.store.claim(endpoint, cluster.node, cluster.lease, steal=steal)
        except StoreError as exc:
            log.warning("cannot claim the update job of %s: %s", endpoint, exc)
            return None
        if job is None:
            return None
        now = self.clock()
        self._jobs[endpoint] = job
        fresh = job.seq == 0  # created by a node that handed it here: never started
        if not fresh:
            self._shown[endpoint] = job.view()
        log.info(
            "update job of %s (%s, step %s) taken over by this node%s",
            endpoint,
            job.state.value,
            job.step.value,
            " from a node that no longer holds the device" if steal else "",
        )
        self._after(job, job.start(now) if fresh else job.resume(now), changed=fresh)
        if registered and self._jobs.get(endpoint) is job:
            self._after(job, job.registered(now))  # the Register we were too late to see
        return job

    def gained(self, endpoint: str) -> None:
        """``ClusterNode`` hook: this node became the device's holder, taking it from another
        node (a Register or Update landed here). Its unfinished job follows it: claimed at
        once, before the event of that Register reaches the job."""
        if self._running and endpoint not in self._jobs:
            registered = self._registered == (endpoint, self._last_event)
            self._claim(endpoint, steal=True, registered=registered)

    def hinted(self, endpoint: str) -> None:
        """Another node's API started a job of a device this node holds."""
        if self._running and endpoint not in self._jobs:
            self._claim(endpoint)

    async def _tend_leases(self) -> None:
        """Every third of the lease: renew this node's leases (dropping a job another node
        took), and claim the jobs whose lease expired, for devices this node holds or whose
        holder is gone (their node died)."""
        cluster = self._cluster
        assert cluster is not None
        while self._running:
            await asyncio.sleep(cluster.lease / 3)
            try:
                self._tend(cluster)
            except StoreError as exc:
                now = time.monotonic()
                if now - self._tend_failed > 60.0:
                    self._tend_failed = now
                    log.warning("cannot renew or claim update job leases: %s", exc)
            except Exception:  # a bug must not end the renewals for good
                log.exception("renewing the update job leases failed")

    def _tend(self, cluster: JobCluster) -> None:
        for endpoint in cluster.store.renew(self.driving(), cluster.node, cluster.lease):
            job = self._jobs.get(endpoint)
            if job is not None:
                self._lost(job)
        for endpoint in cluster.store.expired(time.time()):
            if endpoint not in self._jobs and self._owned(endpoint):
                self._claim(endpoint)

    def _arm(self, job: UpdateJob) -> None:
        timer = self._timers.pop(job.endpoint, None)
        if timer is not None:
            timer.cancel()
        at = job.timer
        if at is None or not self._running:
            return
        delay = max(0.0, at - self.clock())
        loop = asyncio.get_running_loop()
        self._timers[job.endpoint] = loop.call_later(delay, self._on_timer, job.endpoint)

    def _perform(self, job: UpdateJob, action: Action) -> None:
        if isinstance(action, Revoke):
            if self.downloads is not None:
                try:
                    self.downloads.revoke(job.endpoint)
                except Exception:
                    log.exception("revoking the download grants of %s failed", job.endpoint)
            return
        if not self._running:
            return
        task = asyncio.get_running_loop().create_task(self._request(job, action))
        self._tasks.add(task)
        self._requests[task] = job
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._forget_request)

    def _forget_request(self, task: asyncio.Task[None]) -> None:
        self._requests.pop(task, None)

    async def _request(self, job: UpdateJob, action: Action) -> None:
        endpoint = job.endpoint
        ops = self.ops
        path = LwM2mPath.parse(action.path) if action.path else None
        try:
            assert path is not None
            if isinstance(action, CancelObserve):
                await ops.cancel_observation(endpoint, path, active=False)
                return
            if isinstance(action, Read):
                response = await ops.read(endpoint, path, timeout=action.timeout)
            elif isinstance(action, Observe):
                response = await ops.observe(endpoint, path, timeout=action.timeout)
            elif isinstance(action, Execute):
                response = await ops.execute(
                    endpoint, path, action.arguments, timeout=action.timeout
                )
            elif isinstance(action, ResetDownload | WriteUri | WritePackage):
                node, fmt = self._payload(job, action, path)
                response = await ops.write(endpoint, path, node, fmt=fmt, timeout=action.timeout)
            else:
                return
        except asyncio.CancelledError:
            raise
        except DeviceTimeoutError:
            self._feed(job, action.seq, timed_out=True)
            return
        except Lwm2mError as exc:
            code = exc.code.dotted if isinstance(exc.code, ResponseCode) else None
            if isinstance(action, CancelObserve):
                return
            log.info("%s of %s for %s failed: %s", type(action).__name__, path, endpoint, exc)
            # the device is not registered (rebooting) or its queue is full: worth a retry;
            # anything else (a package gone, a URI the download server cannot make) is final
            retriable = isinstance(exc, UnknownClientError) or code == "5.03"
            self._feed(job, action.seq, code=None if retriable else code, error=exc.message)
            return
        except Exception as exc:  # never leave a job hanging on a bug: it fails, stated
            log.exception("%s of %s for %s failed", type(action).__name__, path, endpoint)
            self._feed(job, action.seq, code="5.00", error=f"{type(exc).__name__}: {exc}")
            return
        if response.queued and response.request_id is not None:
            self._queued[response.request_id] = (job, action.seq, action.path)
            self._feed(job, action.seq, queued=True)
            return
        if self._jobs.get(endpoint) is job:
            self._answer(job, action.seq, action.path, response, self.clock())

    def _payload(
        self, job: UpdateJob, action: Action, path: LwM2mPath
    ) -> tuple[LwM2mNode, ContentFormat | None]:
        rid = path.ids[-1]
        if isinstance(action, ResetDownload):
            return LwM2mSingleResource.new(rid, "", ResourceType.STRING), ContentFormat.TEXT
        if isinstance(action, WriteUri):
            assert self.downloads is not None
            ttl = self.settings.download_timeout
            if self.ops.is_sleeping(job.endpoint):
                ttl += self.settings.queued_timeout
            grant = self.downloads.grant(job.package_id, job.endpoint, ttl)
            scheme = action.transport
            if scheme == "coap" and self._transport is not None:
                scheme = self._transport(job.endpoint)
            try:
                device_host: str | None = self.ops.client(job.endpoint).address.host
            except Lwm2mError:
                device_host = None
            if scheme == "http":
                scheme = self._http_scheme(action.schemes)
            uri = self.downloads.package_uri(grant, scheme, device_host=device_host)
            return LwM2mSingleResource.new(rid, uri, ResourceType.STRING), ContentFormat.TEXT
        assert self.packages is not None
        data = self.packages.read(job.package_id)
        return LwM2mSingleResource.new(rid, data, ResourceType.OPAQUE), ContentFormat.OPAQUE

    def _offered(self) -> frozenset[str] | None:
        """The schemes the download server serves now (None: it cannot say, e.g. a stand-in)."""
        served = getattr(self.downloads, "served_schemes", None)
        return None if served is None else frozenset(served())

    def _http_scheme(self, wanted: tuple[str, ...]) -> str:
        """``https`` or ``http`` for a pull over HTTP(S): the device's preference among what
        the server serves (``https`` first when the device said nothing). When none fits, the
        device's first choice: ``package_uri`` then refuses it with the reason."""
        wanted = wanted or ("https", "http")
        offered = self._offered()
        if offered is None:
            return "http" if "http" in wanted else wanted[0]
        for scheme in wanted:
            if scheme in offered:
                return scheme
        return wanted[0]

    def _answer(
        self, job: UpdateJob, seq: int, path: str, response: DeviceResponse, now: float
    ) -> None:
        value = node_value(response.node)
        self._after(job, job.answered(seq, now, code=response.dotted_code, value=value))

    def _feed(self, job: UpdateJob, seq: int, **answer: Any) -> None:
        if self._jobs.get(job.endpoint) is not job:
            return  # a newer job replaced it
        self._after(job, job.answered(seq, self.clock(), **answer))


def registration_transport(ops: ServerOperations) -> Callable[[str], str]:
    """``coaps`` for a device registered over DTLS, ``coap`` otherwise."""

    def transport(endpoint: str) -> str:
        try:
            return "coaps" if ops.client(endpoint).transport == "coaps" else "coap"
        except Lwm2mError:
            return "coap"

    return transport

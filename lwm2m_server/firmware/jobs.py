"""One device's update job as a sans-IO state machine (h11 style).

The machine never sends anything and never reads a clock: the manager (``manager.py``) feeds it
what happened, with the time, and performs the actions it returns.

* inputs: ``start(now)``, ``answered(seq, now, ...)`` (the device's answer to an action, or its
  failure: a timeout, an error code, "queued" for a sleeping device), ``reported(now, state=,
  result=)`` (values of the State and Update Result resources, from a notification, an observe
  answer or a read), ``registered(now)`` / ``updated(now)`` (the device's Register / Update),
  ``download_event(...)`` (from the download server), ``tick(now)`` (``deadline`` passed),
  ``cancel(now)``;
* outputs: a list of ``Action`` (each request action carries a ``seq`` its answer must quote:
  answers to anything but the requests the current step waits for are ignored, so a late
  answer of an earlier attempt cannot move the job) and the machine's new ``state``.

Why sans-IO: every transition, timeout and retry is tested in memory with explicit times
(tests/unit/firmware/test_jobs.py); the machine is also a plain value that ``to_json`` /
``from_json`` store, so a restarted server resumes it (``resume``) where it stopped.

The steps (docs/firmware.md, "Update jobs", has the diagram):

``capabilities`` (AUTO only: read the instance for ``/5/0/8``, ``/5/0/9``) → ``observe`` (State
and Update Result) → ``reset`` (only when the device is not idle: an empty Package URI) →
``deliver`` (Write the Package URI, or the package itself: push) → ``download`` (wait for State
Downloaded) → ``execute`` (Execute Update ``/5/0/2``; object 9: Install ``/9/x/4``) →
``reboot`` (wait for the re-registration, or an Update Result "success") → [``activate``,
object 9 when asked] → ``result`` (read the Update Result: a failure code fails the job,
explained) → ``verify`` (read the version it runs) → SUCCEEDED / FAILED / CANCELLED.

Retries: a request that timed out or got a 5.xx is sent again after ``backoff * 2**n``
seconds, ``retries`` times; a download that does not finish within ``download_timeout`` (the
device went away mid-download) or that the device reports failed with "connection lost" starts
again from the delivery (an empty Package URI first, which resets the device's state machine).
A push delivery cannot continue where it stopped: an RFC 7959 Block1 transfer is one request's
body, which the server assembles only within that request; a new request starts at block 0
(the device may keep the blocks it has, but nothing in CoAP lets us ask which ones it holds).
A 4.xx answer is the device's final word and fails the job at once (with the code).
An Execute is never sent twice blind: before a retried or resumed one (after a restart, or
when another node, or this one once its lease lapsed, takes the job over) the instance is
read, and only a device still in Downloaded (object 9: Delivered) is asked again; one that is
Updating already waits for its reboot (a second Execute would be a 4.05 of a good update).
An Activate (object 9) likewise: a retried or resumed one reads Activation State first.
Nor is a delivery sent twice blind: a retried one (timeout, 5.xx; object 9: resumed) reads
the instance first (``_probed``) and goes on from the device's State, keeping its attempt
count so that a device that never answers still runs out of retries.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .contracts import (
    FIRMWARE_RESULTS,
    SOFTWARE_RESULTS,
    JobState,
    JobView,
    PackageKind,
    Strategy,
)

# -- the objects' resources -----------------------------------------------------------------------

FW_STATES = {0: "Idle", 1: "Downloading", 2: "Downloaded", 3: "Updating"}
"""Object 5 State (``/5/0/3``)."""
SW_STATES = {0: "Initial", 1: "Download Started", 2: "Downloaded", 3: "Delivered", 4: "Installed"}
"""Object 9 Update State (``/9/x/7``)."""

FW_TRANSITIONS = frozenset({(0, 1), (0, 2), (1, 2), (1, 0), (2, 3), (2, 0), (3, 0), (3, 2)})
"""Object 5 State changes a device may report (LwM2M Core, Firmware Update state machine).
``0 → 2`` is allowed: notifications may skip a state (RFC 7641 only promises the latest)."""
SW_TRANSITIONS = frozenset(
    {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (1, 0), (2, 3), (2, 0), (3, 4), (3, 0), (4, 0), (4, 3)}
)
"""Object 9 Update State changes a device may report (OMA Software Management)."""

FW_RETRIABLE = frozenset({4})
"""Update Results worth a new delivery: "connection lost during download"."""
SW_RETRIABLE = frozenset({52})


class Step(enum.Enum):
    CAPABILITIES = "capabilities"
    OBSERVE = "observe"
    RESET = "reset"
    DELIVER = "deliver"
    DOWNLOAD = "download"
    EXECUTE = "execute"
    REBOOT = "reboot"
    ACTIVATE = "activate"
    RESULT = "result"
    VERIFY = "verify"
    DONE = "done"


STEP_STATE = {
    Step.CAPABILITIES: JobState.PENDING,
    Step.OBSERVE: JobState.PENDING,
    Step.RESET: JobState.PENDING,
    Step.DELIVER: JobState.DOWNLOADING,
    Step.DOWNLOAD: JobState.DOWNLOADING,
    Step.EXECUTE: JobState.DOWNLOADED,
    Step.REBOOT: JobState.UPDATING,
    Step.ACTIVATE: JobState.UPDATING,
    Step.RESULT: JobState.VERIFYING,
    Step.VERIFY: JobState.VERIFYING,
}


@attrs.frozen
class JobSettings:
    """Timeouts (seconds) and retries (``firmware.*`` in the configuration)."""

    request_timeout: float = 30.0
    """Each request (read, observe, write of a URI, execute)."""
    download_timeout: float = 600.0
    """From the delivery to State Downloaded; also the push write's own timeout."""
    update_timeout: float = 600.0
    """From Execute Update / Install to the re-registration or the success result."""
    queued_timeout: float = 86_400.0
    """Extra time a step gets when its request was queued for a sleeping device."""
    retries: int = 2
    """New attempts of a step after the first (requests that timed out, downloads)."""
    backoff: float = 5.0
    """Seconds before the first retry; doubled for each further one."""
    activate: bool = False
    """Object 9: Execute Activate (``/9/x/10``) after a successful install."""


# -- actions --------------------------------------------------------------------------------------


@attrs.frozen
class Action:
    """Something the manager must do. Request actions have ``seq`` > 0: their answer goes to
    ``answered(seq, ...)``; ``timeout`` is the seconds to give the device."""

    seq: int
    path: str
    timeout: float


@attrs.frozen
class Read(Action):
    """Read ``path``; answer with ``value`` (a resource's value, or for an instance a dict of
    resource id → value)."""


@attrs.frozen
class Observe(Action):
    """Observe ``path``; answer with its current value (``value``)."""


@attrs.frozen
class WriteUri(Action):
    """Write a Package URI for a download ``transport`` (``"coap"`` or ``"http"``): the
    manager asks the download server for a grant and the URI (``coaps`` over DTLS)."""

    transport: str
    schemes: tuple[str, ...] = ()
    """For ``http``: the schemes the device takes, preferred first (``https`` before
    ``http``); empty: not known (the manager offers ``https``, else ``http``)."""


@attrs.frozen
class WritePackage(Action):
    """Write the package's bytes to ``path`` (Block1)."""


@attrs.frozen
class ResetDownload(Action):
    """Write an empty Package URI: the device drops what it downloaded and becomes idle."""


@attrs.frozen
class Execute(Action):
    arguments: str | None = None
    """Execute arguments (Core §5.4.5), e.g. ``"1"`` for Uninstall "ForUpdate"."""


@attrs.frozen
class CancelObserve(Action):
    """Stop observing ``path`` (no answer expected; ``seq`` 0)."""


@attrs.frozen
class Revoke(Action):
    """Forget the download grants of the endpoint (no answer; ``seq`` 0, ``path`` "")."""


# -- the machine ----------------------------------------------------------------------------------


def _transport_of(strategy: Strategy) -> str:
    return "http" if strategy is Strategy.PULL_HTTP else "coap"


@attrs.define
class UpdateJob:
    """One device's update (module docstring). Create with ``UpdateJob.new``."""

    endpoint: str
    package_id: str
    package_version: str
    kind: PackageKind
    strategy: Strategy
    instance: int = 0
    campaign: str | None = None
    settings: JobSettings = attrs.field(factory=JobSettings)
    state: JobState = JobState.PENDING
    step: Step = Step.CAPABILITIES
    attempt: int = 1
    """Attempt of the current step (1 = first try)."""
    deliveries: int = 0
    """Deliveries sent (what ``JobView.attempts`` shows)."""
    deadline: float | None = None
    retry_at: float | None = None
    """The current step waits for this time to be tried again (backoff)."""
    device_state: int | None = None
    result: int | None = None
    executed: bool = False
    delivered: bool = False
    """A delivery of this attempt was accepted (transitions are checked from then on)."""
    detail: str = ""
    seq: int = 0
    pending: dict[int, str] = attrs.field(factory=dict)
    """Requests the current step waits for: seq → path."""
    side: dict[int, str] = attrs.field(factory=dict)
    """Reads and observes no step waits for (their values count as reports): seq → path."""
    queued: dict[int, tuple[str, Step]] = attrs.field(factory=dict)
    """A delivery or Execute queued for a sleeping device, which the job went past: seq →
    (path, step); its late answer still counts if it is a refusal."""
    created_ms: int = 0
    updated_ms: int = 0
    observed_version: str | None = None
    cause: str = ""
    """Why the delivery is being retried (kept in ``detail`` if the retry fails too)."""
    offered: tuple[str, ...] | None = None
    """The download schemes this server served when the job was made (None: not known, as
    in jobs stored before it was kept): AUTO picks no pull the server cannot serve."""
    http_schemes: tuple[str, ...] = ()
    """The HTTP(S) schemes the device advertised in ``/5/0/8`` that the server serves,
    preferred first (read by AUTO; empty: not known)."""
    probing: bool = False
    """The next delivery is a retry (its predecessor timed out, got a 5.xx, or was in flight
    at a stop): read the instance before it (``_probed``); that one may have reached the
    device."""
    retrying: bool = False
    """The reset step runs for a retried delivery: the delivery after it keeps ``attempt``
    (so a device that never answers the delivery still runs out of retries)."""
    clean: bool = False
    """The device was seen idle (State 0) when this job's delivery went out: a package it
    holds afterwards can only be ours (otherwise it may be another job's: reset first)."""
    side_observes: set[int] = attrs.field(factory=set)
    """The seqs in ``side`` that are Observes (not stored: ``resume`` observes again)."""
    unobserved: set[str] = attrs.field(factory=set)
    """Paths whose Observe (a side one: after a restart or a takeover, or a re-registration)
    got no answer or a failure: observed again with the next delivery, so that the job does
    not wait for a State change it can no longer hear (not stored, as above)."""

    @classmethod
    def new(
        cls,
        endpoint: str,
        package_id: str,
        package_version: str,
        kind: PackageKind,
        *,
        strategy: Strategy = Strategy.AUTO,
        instance: int = 0,
        campaign: str | None = None,
        settings: JobSettings | None = None,
        offered: Iterable[str] | None = None,
        now: float,
    ) -> UpdateJob:
        """``offered``: the download schemes the server serves (``DownloadServer.bases``)."""
        ms = int(now * 1000)
        return cls(
            endpoint,
            package_id,
            package_version,
            kind,
            strategy,
            0 if kind is PackageKind.FIRMWARE else instance,
            campaign,
            settings or JobSettings(),
            created_ms=ms,
            updated_ms=ms,
            offered=None if offered is None else tuple(sorted(offered)),
        )

    # -- paths ------------------------------------------------------------------------------
    @property
    def firmware(self) -> bool:
        return self.kind is PackageKind.FIRMWARE

    def _path(self, firmware_rid: int, software_rid: int) -> str:
        if self.firmware:
            return f"/5/0/{firmware_rid}"
        return f"/9/{self.instance}/{software_rid}"

    @property
    def instance_path(self) -> str:
        return "/5/0" if self.firmware else f"/9/{self.instance}"

    @property
    def state_path(self) -> str:
        return self._path(3, 7)

    @property
    def result_path(self) -> str:
        return self._path(5, 9)

    @property
    def version_path(self) -> str:
        return "/3/0/3" if self.firmware else f"/9/{self.instance}/1"

    @property
    def observed_paths(self) -> tuple[str, str]:
        return (self.state_path, self.result_path)

    def explain(self, result: int) -> str:
        table = FIRMWARE_RESULTS if self.firmware else SOFTWARE_RESULTS
        return table.get(result, "unknown result code")

    def _state_name(self, state: int) -> str:
        names = FW_STATES if self.firmware else SW_STATES
        return f"{state} ({names.get(state, 'unknown')})"

    # -- the view ---------------------------------------------------------------------------
    def view(self) -> JobView:
        return JobView(
            endpoint=self.endpoint,
            package_id=self.package_id,
            kind=self.kind,
            strategy=self.strategy,
            state=self.state,
            instance=self.instance,
            result=self.result,
            detail=self.detail,
            attempts=self.deliveries,
            campaign=self.campaign,
            created_ms=self.created_ms,
            updated_ms=self.updated_ms,
        )

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def timer(self) -> float | None:
        """When ``tick`` must be called next (a retry's time or the step's deadline)."""
        if self.finished:
            return None
        if self.retry_at is not None:
            return self.retry_at
        return self.deadline

    # -- inputs -----------------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        """Begin (or, with ``resume``, begin again after a restart)."""
        if self.strategy is Strategy.AUTO and self.firmware:
            return self._enter(Step.CAPABILITIES, now)
        if self.strategy is Strategy.AUTO:
            self.strategy = Strategy.PULL_COAP  # object 9 advertises nothing: pull over CoAP
        return self._enter(Step.OBSERVE, now)

    def resume(self, now: float) -> list[Action]:
        """After a restart: observe again (the observations may be gone) and repeat the
        current step's requests; a step that waits for the device (download, reboot) or for
        a retry keeps its stored deadline, so one that expired while the server was down
        times out at the next ``tick``."""
        if self.finished:
            return []
        self.pending.clear()
        if self.step is Step.OBSERVE and self.retry_at is None:
            return self._enter(Step.OBSERVE, now, fresh=False)
        actions = self._observe_actions(now, wait=False)
        if self.retry_at is not None or self.step in (Step.DOWNLOAD, Step.REBOOT):
            return actions
        if self.step is Step.DELIVER and self.firmware:
            # the delivery may have reached the device before the stop: a second one would
            # be refused (4.05) while it downloads the first, so reset it first
            self.deliveries -= 1
            return actions + self._enter(Step.RESET, now, fresh=False)
        if self.step is Step.DELIVER:
            self.probing = True  # object 9: the delivery may have reached the device
        return actions + self._enter(self.step, now, fresh=False)

    def answered(
        self,
        seq: int,
        now: float,
        *,
        code: str | None = None,
        value: Any = None,
        error: str | None = None,
        queued: bool = False,
        timed_out: bool = False,
    ) -> list[Action]:
        """The answer to request ``seq``: success when ``code`` starts with ``2.`` (with the
        value read or observed); an error code (``4.04``), ``timed_out``, or ``error`` (a
        failure without a code) otherwise. ``queued``: the device sleeps, the request waits
        in its queue (the real answer comes later with the same ``seq``)."""
        if self.finished:
            return []
        if seq in self.side:
            path = self.side.pop(seq)
            if queued:
                self.side[seq] = path
                return []
            if seq in self.side_observes:
                self.side_observes.discard(seq)
                if code is not None and code.startswith("2."):
                    self.unobserved.discard(path)
                else:
                    self.unobserved.add(path)
            if code is not None and code.startswith("2.") and isinstance(value, int):
                if path == self.state_path:
                    return self.reported(now, state=value)
                if path == self.result_path:
                    return self.reported(now, result=value)
            return []
        if seq in self.queued:
            return self._late_answer(seq, now, code=code, error=error, timed_out=timed_out)
        if seq not in self.pending:
            return []
        path = self.pending[seq]
        if queued:
            self.deadline = now + self.settings.queued_timeout + self._step_timeout()
            if self.step is Step.OBSERVE:  # do not wait: the delivery queues behind it
                del self.pending[seq]
                self.side[seq] = path  # its answer, when it comes, is a report
                if not self.pending:
                    return self._after_observe(now)
            elif (self.step is Step.DELIVER or self.step is Step.EXECUTE) and (
                path != self.instance_path  # not a Read before a second delivery / Execute
            ):
                del self.pending[seq]
                self.queued[seq] = (path, self.step)
                if self.step is Step.DELIVER:
                    return self._delivered(now, queued=True)
                return self._executed(now, queued=True)
            self._touch(now)
            return []
        del self.pending[seq]
        ok = code is not None and code.startswith("2.")
        if not ok:
            return self._request_failed(path, now, code=code, error=error, timed_out=timed_out)
        return self._request_succeeded(path, value, now)

    def _late_answer(
        self, seq: int, now: float, *, code: str | None, error: str | None, timed_out: bool
    ) -> list[Action]:
        """The answer of a queued delivery or Execute, after the job moved on: a success
        changes nothing; a refusal fails the job as it would have at once; a lost delivery
        is delivered again (a lost Execute is not: the device may have rebooted)."""
        path, step = self.queued.pop(seq)
        if code is not None and code.startswith("2."):
            return []
        what = f"{step.value} ({path})"
        if code is not None and code.startswith("4."):
            detail = f"{what}: {error} ({code})" if error else f"{what}: the device answered {code}"
            return self._fail(detail, now)
        if step is Step.DELIVER and self.step is Step.DOWNLOAD:
            return self._redeliver(f"{what} failed: {code or error or 'no answer'}", now)
        return []

    def reported(
        self, now: float, *, state: int | None = None, result: int | None = None
    ) -> list[Action]:
        """New values of State / Update Result (from any source)."""
        if self.finished:
            return []
        actions: list[Action] = []
        if result is not None:
            actions += self._on_result(result, now)
        if state is not None and not self.finished:
            actions += self._on_state(state, now)
        return actions

    def registered(self, now: float) -> list[Action]:
        """The device sent a Register: it rebooted (or lost its session); its observations
        went with the old registration."""
        if self.finished:
            return []
        if self.step is Step.REBOOT:
            self.detail = ""
            return self._enter(Step.ACTIVATE if self._activating else Step.RESULT, now)
        return self._observe_actions(now, wait=False)

    def updated(self, now: float) -> list[Action]:
        """The device sent an Update. While waiting for an update to apply, read its Update
        Result: a device that applies the update without re-registering says so there."""
        if self.finished or self.step is not Step.REBOOT:
            return []
        return [self._request(Read, self.result_path, now, wait=False)]

    def refresh(self, now: float) -> list[Action]:
        """Read State and Update Result (a notification said they changed but carried no
        value we could use, e.g. a profile mapped them away)."""
        if self.finished:
            return []
        return [self._request(Read, p, now, wait=False) for p in self.observed_paths]

    def download_refused(self, now: float, reason: str) -> list[Action]:
        """The download server refused the device's fetch: recorded (the device will report
        the failure, or the download times out)."""
        if not self.finished:
            self.detail = f"download refused: {reason}" if reason else "download refused"
            self._touch(now)
        return []

    def tick(self, now: float) -> list[Action]:
        """The time came: a retry is due, or the step's deadline passed."""
        if self.finished:
            return []
        if self.retry_at is not None:
            if now < self.retry_at:
                return []
            self.retry_at = None
            return self._enter(self.step, now, fresh=False)
        if self.deadline is None or now < self.deadline:
            return []
        return self._timed_out(now)

    def cancel(self, now: float) -> list[Action]:
        if self.finished:
            return []
        note = "cancelled"
        if self.executed:
            note += " after Execute Update: the device may still apply the update"
        actions: list[Action] = []
        if self.delivered and not self.executed and self.firmware:
            actions.append(self._request(ResetDownload, self._path(1, 3), now, wait=False))
        return actions + self._finish(JobState.CANCELLED, note, now)

    # -- transitions ------------------------------------------------------------------------
    def _touch(self, now: float) -> None:
        self.updated_ms = int(now * 1000)

    def _step_timeout(self) -> float:
        if self.step in (Step.DOWNLOAD,) or (
            self.step is Step.DELIVER and self.strategy is Strategy.PUSH and not self.probing
        ):
            return self.settings.download_timeout
        if self.step is Step.REBOOT:
            return self.settings.update_timeout
        return self.settings.request_timeout

    def _request(
        self, cls: type[Action], path: str, now: float, *, wait: bool = True, **extra: Any
    ) -> Action:
        self.seq += 1
        if wait:
            self.pending[self.seq] = path
        else:
            self.side[self.seq] = path
            if cls is Observe:
                self.side_observes.add(self.seq)
        timeout = self._step_timeout() if wait else self.settings.request_timeout
        return cls(self.seq, path, timeout, **extra)

    def _observe_actions(self, now: float, *, wait: bool) -> list[Action]:
        return [self._request(Observe, p, now, wait=wait) for p in self.observed_paths]

    @property
    def _activating(self) -> bool:
        return not self.firmware and self.settings.activate

    def _enter(self, step: Step, now: float, *, fresh: bool = True) -> list[Action]:
        """Start ``step`` (``fresh``: its first attempt)."""
        self.step = step
        if fresh:
            self.attempt = 1
        self.pending.clear()
        self.retry_at = None
        self.state = STEP_STATE.get(step, self.state)
        self._touch(now)
        self.deadline = now + self._step_timeout()
        if step is Step.CAPABILITIES:
            return [self._request(Read, self.instance_path, now)]
        if step is Step.OBSERVE:
            return self._observe_actions(now, wait=True)
        if step is Step.RESET:
            if not self.firmware:
                return [self._uninstall(now)]
            return [self._request(ResetDownload, self._path(1, 3), now)]
        if step is Step.DELIVER:
            self.delivered = False
            if self.probing:
                # a retried delivery: the first may have reached the device, which may even
                # have finished the download; a second would then be a 4.05. Ask (_probed).
                return [self._request(Read, self.instance_path, now)]
            self.clean = self.device_state == 0
            self.deliveries += 1
            again = [self._request(Observe, p, now, wait=False) for p in sorted(self.unobserved)]
            self.unobserved.clear()
            if self.strategy is Strategy.PUSH:
                return [*again, self._request(WritePackage, self._path(0, 2), now)]
            transport = _transport_of(self.strategy)
            schemes = self.http_schemes if transport == "http" else ()
            return [
                *again,
                self._request(
                    WriteUri, self._path(1, 3), now, transport=transport, schemes=schemes
                ),
            ]
        if step is Step.EXECUTE:
            if not fresh:
                # a retry, or a resume after a restart or a takeover: an earlier Execute may
                # have reached the device (its answer lost with the node or the lease that
                # waited for it), and a second one would be refused (4.05: not Downloaded
                # any more) though the update is under way. Ask the State first (_confirmed).
                return [self._request(Read, self.instance_path, now)]
            return self._execute(now)
        if step is Step.ACTIVATE:
            if not fresh:
                # a retry or a resume: an earlier Activate may have been carried out (its
                # answer lost); read Activation State (/9/x/12) before sending another
                return [self._request(Read, self.instance_path, now)]
            return [self._request(Execute, f"/9/{self.instance}/10", now)]
        if step is Step.RESULT:
            return [self._request(Read, self.result_path, now)]
        if step is Step.VERIFY:
            return [self._request(Read, self.version_path, now)]
        return []  # DOWNLOAD, REBOOT: waiting for the device

    def _execute(self, now: float) -> list[Action]:
        self.executed = True  # sent: a State Updating racing its answer is legitimate
        return [self._request(Execute, self._path(2, 4), now)]

    def _confirmed(self, value: Any, now: float) -> list[Action]:
        """The instance, read before an Execute is sent again (``_enter``): Execute only a
        device still holding the package (Downloaded / Delivered); one already updating, or
        updated, goes on from there; one that lost the package gets it again."""
        state = _get(value, int(self.state_path.rsplit("/", 1)[1]))
        result = _get(value, int(self.result_path.rsplit("/", 1)[1]))
        if isinstance(result, int) and not isinstance(result, bool):
            self.result = result
        if not isinstance(state, int) or isinstance(state, bool):
            return self._execute(now)  # the device does not say: as before, send it
        self.device_state = state
        ready, applying = (2, 3) if self.firmware else (3, 4)
        if state == ready:
            if isinstance(result, int) and self._failure(result):
                return self._fail(f"Update Result {result}: {self.explain(result)}", now)
            return self._execute(now)
        if state == applying:
            if self.firmware:
                return self._executed(now, queued=False)  # the earlier Execute got there
            return self._enter(Step.ACTIVATE if self._activating else Step.RESULT, now)
        if self.firmware and state == 0 and result == 1:
            return self._enter(Step.RESULT, now)  # it rebooted into the update already
        why = f"the device no longer holds the package (State {self._state_name(state)})"
        return self._redeliver(why, now)

    def _probed(self, value: Any, now: float) -> list[Action]:
        """The instance, read before a retried delivery (``_enter``). A device still idle
        gets the delivery; one that holds our package (it was idle when we delivered: it can
        hold no other) goes on from there: downloading → wait for it, downloaded → Execute
        (Install); anything else (a package that may be another job's, an update under way)
        goes through the reset step first. A device whose answer carries no State is
        delivered to again, as before this read existed (``_confirmed`` does the same).
        ``attempt`` is kept throughout: the retries of a delivery the device never answers
        still run out."""
        self.probing = False
        state = _get(value, int(self.state_path.rsplit("/", 1)[1]))
        if not isinstance(state, int) or isinstance(state, bool):
            state = None
        else:
            self.device_state = state
        downloading, ready = ((1,), 2) if self.firmware else ((1, 2), 3)
        if state is None or state == 0:  # not said (as _confirmed: as before) or idle
            return self._enter(Step.DELIVER, now, fresh=False)
        if self.clean and (state in downloading or state == ready):
            self.delivered = True
            self.retrying = False
            self.cause = ""
            self.detail = "the earlier delivery reached the device"
            if state == ready:
                return self._enter(Step.EXECUTE, now)
            self._enter(Step.DOWNLOAD, now)
            return []
        self.retrying = True
        return self._enter(Step.RESET, now, fresh=False)

    def _finish(self, state: JobState, detail: str, now: float) -> list[Action]:
        self.state = state
        self.step = Step.DONE
        if detail:
            self.detail = detail
        self.pending.clear()
        self.side.clear()
        self.queued.clear()
        self.deadline = None
        self.retry_at = None
        self._touch(now)
        actions: list[Action] = [CancelObserve(0, p, 0.0) for p in self.observed_paths]
        actions.append(Revoke(0, "", 0.0))
        return actions

    def _fail(self, detail: str, now: float) -> list[Action]:
        return self._finish(JobState.FAILED, detail, now)

    def _retry(self, why: str, now: float, *, step: Step | None = None) -> list[Action]:
        """Try ``step`` (the current one by default) again after the backoff, or fail."""
        if self.attempt > self.settings.retries:
            tries = self.attempt
            why = f"{why} ({tries} attempt{'s' if tries > 1 else ''})"
            if self.cause and self.step in (Step.RESET, Step.DELIVER):
                why = f"{self.cause}; then {why}"
            return self._fail(why, now)
        delay = self.settings.backoff * (2 ** (self.attempt - 1))
        self.attempt += 1
        if step is not None:
            self.step = step
            self.state = STEP_STATE.get(step, self.state)
        self.pending.clear()
        self.detail = f"{why}; attempt {self.attempt} in {delay:g} s"
        self.retry_at = now + delay
        self.deadline = None
        self._touch(now)
        return []

    def _redeliver(self, why: str, now: float) -> list[Action]:
        """A download that did not finish: after the backoff, an empty Package URI (the
        device drops what it has; object 5) and the delivery again; FAILED once ``retries``
        new deliveries were tried."""
        if self.deliveries > self.settings.retries:
            n = self.deliveries
            return self._fail(f"{why} ({n} deliveries)", now)
        delay = self.settings.backoff * (2 ** (self.deliveries - 1))
        self.cause = why
        self.step = Step.RESET if self.firmware else Step.DELIVER
        self.state = STEP_STATE[self.step]
        self.attempt = 1
        self.probing = self.retrying = False  # a new delivery round, after a reset (object 5)
        self.delivered = False  # what the device reports now belongs to the dead download
        self.pending.clear()
        self.detail = f"{why}; delivery {self.deliveries + 1} in {delay:g} s"
        self.retry_at = now + delay
        self.deadline = None
        self._touch(now)
        return []

    def _request_failed(
        self, path: str, now: float, *, code: str | None, error: str | None, timed_out: bool
    ) -> list[Action]:
        what = f"{self.step.value} ({path})"
        if (
            self.step is Step.EXECUTE
            and timed_out
            and self.firmware
            and path != self.instance_path  # not the State read before a second Execute
        ):
            # a device may reboot into the new firmware before it answers the Execute
            self.detail = "Execute Update not answered: waiting for the device to re-register"
            return self._executed(now, queued=False)
        if code is not None and code.startswith("4."):
            if self.step is Step.RESET:
                # a device that refuses an empty URI: try the delivery anyway
                return self._enter(Step.DELIVER, now, fresh=not self.retrying)
            if error:  # refused before it reached the device (no package, no such URI)
                return self._fail(f"{what}: {error} ({code})", now)
            return self._fail(f"{what}: the device answered {code}", now)
        if timed_out:
            reason = f"timeout: {what} not answered within {self._step_timeout():g} s"
        else:
            reason = f"{what} failed: {code or error or 'no answer'}"
        if self.step is Step.DELIVER:
            self.probing = True  # the delivery may have reached the device: ask before again
        return self._retry(reason, now)

    def _request_succeeded(self, path: str, value: Any, now: float) -> list[Action]:
        step = self.step
        if step is Step.CAPABILITIES:
            chosen = self._choose(value)
            if chosen is None:
                return self._fail(
                    "the device supports no delivery method this server offers "
                    f"(/5/0/8 = {_get(value, 8)!r}, /5/0/9 = {_get(value, 9)!r})",
                    now,
                )
            self.strategy = chosen
            state, result = _get(value, 3), _get(value, 5)
            if isinstance(state, int):
                self.device_state = state
            if isinstance(result, int):
                self.result = result
            return self._enter(Step.OBSERVE, now)
        if step is Step.OBSERVE:
            self._absorb(path, value)
            return self._after_observe(now) if not self.pending else []
        if step is Step.RESET:
            self.device_state = 0
            return self._enter(Step.DELIVER, now, fresh=not self.retrying)
        if step is Step.DELIVER:
            if self.probing and path == self.instance_path:
                return self._probed(value, now)
            return self._delivered(now, queued=False)
        if step is Step.EXECUTE:
            if path == self.instance_path:
                return self._confirmed(value, now)
            return self._executed(now, queued=False)
        if step is Step.ACTIVATE:
            if path == self.instance_path:
                if _get(value, 12) is True:
                    return self._enter(Step.RESULT, now)  # the earlier Activate got there
                return [self._request(Execute, f"/9/{self.instance}/10", now)]
            return self._enter(Step.RESULT, now)
        if step is Step.RESULT:
            if isinstance(value, int) and not isinstance(value, bool):
                self.result = value
                if self._failure(value):
                    return self._fail(f"Update Result {value}: {self.explain(value)}", now)
            return self._enter(Step.VERIFY, now)
        if step is Step.VERIFY:
            version = "" if value is None else str(value)
            self.observed_version = version
            if version == self.package_version:
                return self._finish(JobState.SUCCEEDED, "", now)
            runs = f"the device runs version {version!r}, not {self.package_version!r}"
            if self.result is not None:
                runs += f"; Update Result {self.result}: {self.explain(self.result)}"
            return self._fail(runs, now)
        if path == self.result_path and isinstance(value, int):  # a read outside the steps
            return self.reported(now, result=value)
        return []

    def _failure(self, result: int) -> bool:
        """Whether an Update Result says the update failed."""
        if self.firmware:
            return result not in (0, 1, 11)
        return result >= 50

    def _absorb(self, path: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            return
        if path == self.state_path:
            self.device_state = value
        elif path == self.result_path:
            self.result = value

    def _after_observe(self, now: float) -> list[Action]:
        if self.device_state not in (None, 0) and self.firmware:
            return self._enter(Step.RESET, now)
        if not self.firmware and self.device_state in (3, 4):
            # object 9 takes a new package only in INITIAL (OMA Software Management state
            # diagram): a delivered package is dropped, an installed one is uninstalled
            # "ForUpdate" first; a Package URI written in DELIVERED/INSTALLED is 4.05
            return self._enter(Step.RESET, now)
        return self._enter(Step.DELIVER, now)

    def _uninstall(self, now: float) -> Execute:
        """Object 9's way back to INITIAL: Uninstall (``/9/x/6``), with the argument ``1``
        ("ForUpdate": keep the installed software until the new one is installed) when the
        device is INSTALLED; without one when a package is only DELIVERED."""
        arguments = "1" if self.device_state == 4 else None
        action = self._request(Execute, f"/9/{self.instance}/6", now, arguments=arguments)
        assert isinstance(action, Execute)
        return action

    def _delivered(self, now: float, *, queued: bool) -> list[Action]:
        self.delivered = True
        self.probing = self.retrying = False
        self.cause = ""
        downloaded = 3 if not self.firmware else 2
        if not queued and self.device_state == downloaded:
            return self._enter(Step.EXECUTE, now)
        self._enter(Step.DOWNLOAD, now)
        if queued:
            self.deadline = now + self.settings.queued_timeout + self.settings.download_timeout
        return []

    def _executed(self, now: float, *, queued: bool) -> list[Action]:
        self._enter(Step.REBOOT, now)
        if queued:
            self.deadline = now + self.settings.queued_timeout + self.settings.update_timeout
        return []

    def _choose(self, value: Any) -> Strategy | None:
        """AUTO: pull over CoAP when the device can pull and speaks CoAP(S), else pull over
        HTTP(S), else push; absent resources (LwM2M 1.0 devices) mean "both" and "CoAP"."""
        method = _get(value, 9)
        protocols = _get(value, 8)
        if isinstance(protocols, Mapping):
            supported = {v for v in protocols.values() if isinstance(v, int)}
        elif isinstance(protocols, int):
            supported = {protocols}
        else:
            supported = {0, 1}
        can_pull = method in (None, 0, 2)
        can_push = method in (None, 1, 2)
        if can_pull and supported & {0, 1}:
            return Strategy.PULL_COAP
        # HTTPS (3) before HTTP (2); only a scheme both sides have (a device that advertises
        # HTTPS alone is never handed an http:// URI, nor one the server has no listener for)
        http = [name for number, name in ((3, "https"), (2, "http")) if number in supported]
        served = [name for name in http if self.offered is None or name in self.offered]
        if can_pull and served:
            self.http_schemes = tuple(served)
            return Strategy.PULL_HTTP
        if can_push:
            return Strategy.PUSH
        return None

    def _timed_out(self, now: float) -> list[Action]:
        step = self.step
        if step is Step.DOWNLOAD:
            why = (
                f"timeout: the download did not finish within {self.settings.download_timeout:g} s"
            )
            return self._redeliver(why, now)
        if step is Step.REBOOT:
            return self._fail(
                f"timeout: the device did not re-register within "
                f"{self.settings.update_timeout:g} s after "
                f"{'Execute Update' if self.firmware else 'Install'}",
                now,
            )
        if step is Step.OBSERVE and not self.pending:
            return []
        paths = ", ".join(sorted(set(self.pending.values()))) or step.value
        why = f"timeout: {step.value} ({paths}) not answered within {self._step_timeout():g} s"
        return self._retry(why, now)

    def _on_result(self, result: int, now: float) -> list[Action]:
        previous, self.result = self.result, result
        if result != previous:
            self._touch(now)
        table = FIRMWARE_RESULTS if self.firmware else SOFTWARE_RESULTS
        if result not in table:
            return self._fail(f"the device reports an unknown Update Result {result}", now)
        if not self.delivered and self.step not in (Step.REBOOT, Step.ACTIVATE):
            return []  # a result of an earlier update: not ours
        if self.firmware:
            success, neutral = {1}, {0, 11}
            retriable = FW_RETRIABLE
        else:
            success, neutral = {2, 3}, {0, 1}
            retriable = SW_RETRIABLE
        if result in neutral:
            if result == 11 and self.firmware:
                self.detail = "the device deferred the update (Update Result 11)"
            return []
        if result in success:
            if self.step is Step.REBOOT and (self.firmware or result == 2):
                return self._enter(Step.ACTIVATE if self._activating else Step.RESULT, now)
            return []
        why = f"Update Result {result}: {self.explain(result)}"
        if result in retriable and self.step in (Step.DELIVER, Step.DOWNLOAD):
            return self._redeliver(why, now)
        return self._fail(why, now)

    def _on_state(self, state: int, now: float) -> list[Action]:
        previous = self.device_state
        names = FW_STATES if self.firmware else SW_STATES
        if state not in names:
            return self._fail(f"the device reports an unknown State {state}", now)
        self.device_state = state
        if previous != state:
            self._touch(now)
        updating = 3 if self.firmware else 4
        if state == updating and not self.executed and self.delivered:
            what = "Execute Update" if self.firmware else "Install"
            return self._fail(
                f"impossible transition: the device reports State {self._state_name(state)} "
                f"but {what} was never sent",
                now,
            )
        allowed = FW_TRANSITIONS if self.firmware else SW_TRANSITIONS
        if (
            self.delivered
            and previous is not None
            and previous != state
            and (previous, state) not in allowed
        ):
            return self._fail(
                "impossible transition reported by the device: State "
                f"{self._state_name(previous)} → {self._state_name(state)}",
                now,
            )
        if not self.delivered:
            return []
        downloaded = 2 if self.firmware else 3
        if state == downloaded and self.step is Step.DOWNLOAD:
            return self._enter(Step.EXECUTE, now)
        if state == 0 and previous not in (None, 0) and self.step is Step.DOWNLOAD:
            return self._redeliver("the device went back to Idle during the download", now)
        if self.firmware and self.step is Step.REBOOT and previous == 3 and state == 2:
            # back to Downloaded: the update failed; the Update Result says why
            return [self._request(Read, self.result_path, now, wait=False)]
        if not self.firmware and self.step is Step.REBOOT and state == 4:
            return self._enter(Step.ACTIVATE if self._activating else Step.RESULT, now)
        return []

    # -- persistence ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "package_id": self.package_id,
            "package_version": self.package_version,
            "kind": self.kind.value,
            "strategy": self.strategy.value,
            "instance": self.instance,
            "campaign": self.campaign,
            "settings": attrs.asdict(self.settings),
            "state": self.state.value,
            "step": self.step.value,
            "attempt": self.attempt,
            "deliveries": self.deliveries,
            "deadline": self.deadline,
            "retry_at": self.retry_at,
            "device_state": self.device_state,
            "result": self.result,
            "executed": self.executed,
            "delivered": self.delivered,
            "detail": self.detail,
            "seq": self.seq,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "observed_version": self.observed_version,
            "cause": self.cause,
            "offered": None if self.offered is None else list(self.offered),
            "http_schemes": list(self.http_schemes),
            "probing": self.probing,
            "retrying": self.retrying,
            "clean": self.clean,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UpdateJob:
        """The inverse of ``to_json`` (``pending`` is not kept: ``resume`` asks again).
        ``ValueError``/``TypeError``/``KeyError`` when ``data`` is not a stored job."""
        if not isinstance(data, Mapping):
            raise TypeError("a stored job is a JSON object")
        return cls(
            endpoint=str(data["endpoint"]),
            package_id=str(data["package_id"]),
            package_version=str(data["package_version"]),
            kind=PackageKind(data["kind"]),
            strategy=Strategy(data["strategy"]),
            instance=int(data["instance"]),
            campaign=None if data["campaign"] is None else str(data["campaign"]),
            settings=JobSettings(**data["settings"]),
            state=JobState(data["state"]),
            step=Step(data["step"]),
            attempt=int(data["attempt"]),
            deliveries=int(data["deliveries"]),
            deadline=_opt_float(data["deadline"]),
            retry_at=_opt_float(data["retry_at"]),
            device_state=_opt_int(data["device_state"]),
            result=_opt_int(data["result"]),
            executed=bool(data["executed"]),
            delivered=bool(data["delivered"]),
            detail=str(data["detail"]),
            seq=int(data["seq"]),
            created_ms=int(data["created_ms"]),
            updated_ms=int(data["updated_ms"]),
            observed_version=(
                None if data.get("observed_version") is None else str(data["observed_version"])
            ),
            cause=str(data.get("cause", "")),
            offered=(
                None if data.get("offered") is None else tuple(str(o) for o in data["offered"])
            ),
            http_schemes=tuple(str(o) for o in data.get("http_schemes", ())),
            probing=bool(data.get("probing", False)),
            retrying=bool(data.get("retrying", False)),
            clean=bool(data.get("clean", False)),
        )


def _get(value: Any, rid: int) -> Any:
    return value.get(rid) if isinstance(value, Mapping) else None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


__all__ = [
    "Action",
    "CancelObserve",
    "Execute",
    "JobSettings",
    "Observe",
    "Read",
    "ResetDownload",
    "Revoke",
    "Step",
    "UpdateJob",
    "WritePackage",
    "WriteUri",
]

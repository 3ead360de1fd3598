"""One bootstrap session as a sans-IO state machine: it says which request to send next and is
told what came back (or that nothing did), with the time passed in.

Sequence (Core 1.1/1.2 §6.1): Bootstrap-Discover ``/`` → optional Bootstrap-Read ``/1`` (1.1+
clients, ``bootstrap_read: true``) → plan (``plan.make_plan``: nothing is sent if the config
cannot be applied) → Bootstrap-Delete of each planned path → Bootstrap-Write of each planned
instance → Bootstrap-Finish (``POST /bs``). One request is outstanding at a time: clients
apply bootstrap operations in order and many cannot take two at once.

Answers: any 2.xx moves on. A Discover answered 4.00/4.04/4.05 means an LwM2M 1.0 client (no
Bootstrap-Discover): the session goes on blind (``ClientInfo.unknown``). A Delete answered 4.04
is taken as done (nothing to delete is what we wanted). Any other error ends the session with
the step, the path, the client's code and its diagnostic text.

Time: each attempt has ``timeout`` seconds (the CoAP layer retransmits a CON inside it); after
a timeout the same request is sent again as a new message, ``retries`` times at most, then the
session fails ("no answer"). Operations are idempotent (PUT, DELETE, Discover, Read, Finish), so a
repeat after a lost answer is harmless. Late answers to an abandoned attempt are ignored by
``seq``.

Outcome: ``outcome`` is set once, success or the failed step with the reason; ``records`` keeps
one line per step for the operator (``lwm2m-bootstrap sessions``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from keystore.bootstrap_config.loader import INSTANCE_FORMATS
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, ResponseCode
from object_models.model import ModelProvider
from object_models.node import LwM2mNode
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry

from .client_info import ClientInfo
from .plan import Plan, PlanError, client_models

NO_DISCOVER = frozenset({ResponseCode.BAD_REQUEST, ResponseCode.NOT_FOUND,
                         ResponseCode.METHOD_NOT_ALLOWED})  # fmt: skip


class Step(enum.Enum):
    DISCOVER = "discover"
    READ = "read"
    PLAN = "plan"
    DELETE = "delete"
    WRITE = "write"
    FINISH = "finish"
    REQUEST = "request"
    """Before any downlink: the Bootstrap-Request itself was refused or superseded."""
    PACK = "pack"
    """A Bootstrap-Pack-Request (``GET /bspack``) and the answer it got."""


class State(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_NAMES = {
    Step.DISCOVER: "Bootstrap-Discover",
    Step.READ: "Bootstrap-Read",
    Step.DELETE: "Bootstrap-Delete",
    Step.WRITE: "Bootstrap-Write",
    Step.FINISH: "Bootstrap-Finish",
}


@attrs.frozen
class Request:
    """The next request to send to the client (the adapter maps it to CoAP)."""

    seq: int
    step: Step
    method: str
    path: LwM2mPath | None
    """``None`` for Bootstrap-Finish, which goes to ``/bs``."""
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    attempt: int = 1

    @property
    def uri_path(self) -> tuple[str, ...]:
        return ("bs",) if self.path is None else tuple(str(i) for i in self.path.ids)

    @property
    def target(self) -> str:
        return "/bs" if self.path is None else str(self.path)

    def describe(self) -> str:
        return f"{_NAMES.get(self.step, self.step.value)} {self.target}"


@attrs.frozen
class Reply:
    """What the client answered: CoAP code (``class << 5 | detail``), payload, format."""

    code: int
    payload: bytes = b""
    content_format: int | None = None

    @property
    def success(self) -> bool:
        return self.code >> 5 == 2

    @property
    def dotted(self) -> str:
        return f"{self.code >> 5}.{self.code & 0x1F:02d}"

    def diagnostic(self) -> str:
        text = self.payload[:200].decode("utf-8", "replace").strip()
        return f" ({text})" if text and not self.success else ""


@attrs.frozen
class StepRecord:
    step: Step
    target: str
    result: str
    """``2.04``, ``4.00 (reason)``, ``timeout``, ``skipped: …`` …"""
    attempts: int
    started: float
    ended: float


@attrs.frozen
class Outcome:
    success: bool
    step: Step | None = None
    target: str | None = None
    reason: str = ""
    code: int | None = None

    def describe(self) -> str:
        if self.success:
            return "succeeded"
        where = f" at {self.step.value}" if self.step else ""
        target = f" {self.target}" if self.target else ""
        return f"failed{where}{target}: {self.reason}"


@attrs.frozen
class Timing:
    timeout: float = 30.0
    retries: int = 2


DEFAULT_TIMING = Timing()

Planner = Callable[[ClientInfo], Plan]


def choose_format(forced: int | None, preferred: int | None) -> int:
    """The Bootstrap-Write format: the config's, else the client's ``pct`` when we can write
    object instances in it, else TLV (the structured format every 1.0/1.1 client reads)."""
    if forced is not None:
        return forced
    if (
        preferred is not None
        and preferred in INSTANCE_FORMATS
        and codecs.supports(preferred, "encode")
    ):
        return preferred
    return int(ContentFormat.TLV)


class BootstrapSession:
    def __init__(
        self,
        session_id: str,
        endpoint: str,
        planner: Planner,
        *,
        now: float,
        timing: Timing = DEFAULT_TIMING,
        forced_format: int | None = None,
        preferred_format: int | None = None,
        read_servers: bool = False,
        initiated_by: str = "client",
        registry: ModelRegistry | None = None,
    ) -> None:
        self.session_id = session_id
        self.endpoint = endpoint
        self.planner = planner
        self.timing = timing
        self.forced_format = forced_format
        self.preferred_format = preferred_format
        self.read_servers = read_servers
        self.initiated_by = initiated_by
        self.registry = registry
        self.started = now
        self.ended: float | None = None
        self.state = State.RUNNING
        self.outcome: Outcome | None = None
        self.records: list[StepRecord] = []
        self.notes: list[str] = []
        self.client: ClientInfo | None = None
        self.plan: Plan | None = None
        self.read_result: LwM2mNode | None = None
        self.format = choose_format(forced_format, preferred_format)
        self.deadline: float | None = None
        self._seq = 0
        self._current: Request | None = None
        self._step_started = now
        self._queue: list[Request] = []

    # -- driving ---------------------------------------------------------------------------------
    def start(self, now: float) -> Request:
        self._step_started = now
        return self._send(Request(0, Step.DISCOVER, "GET", LwM2mPath(), accept=ContentFormat.LINK),
                          now)  # fmt: skip

    def receive(self, seq: int, reply: Reply, now: float) -> Request | None:
        """The client's answer to request ``seq``; returns the next request, or ``None``
        (the session ended, or the answer was stale and is ignored)."""
        current = self._current
        if self.state is not State.RUNNING or current is None or seq != current.seq:
            return None
        self._current = None
        handler = {
            Step.DISCOVER: self._on_discover,
            Step.READ: self._on_read,
            Step.DELETE: self._on_delete,
            Step.WRITE: self._on_write,
            Step.FINISH: self._on_finish,
        }[current.step]
        return handler(current, reply, now)

    def timeout(self, now: float) -> Request | None:
        """Call at (or after) ``deadline``: resend, or fail once the retries are spent."""
        current = self._current
        if self.state is not State.RUNNING or current is None:
            return None
        if self.deadline is not None and now < self.deadline:
            return current  # not yet: the adapter woke early; keep waiting
        if current.attempt > self.timing.retries:
            self._record(current, "timeout", now)
            self._fail(current.step, current.target,
                       f"no answer to {current.describe()} after {current.attempt} attempts "
                       f"of {self.timing.timeout:g} s", None, now)  # fmt: skip
            return None
        return self._send(attrs.evolve(current, attempt=current.attempt + 1), now)

    def abort(self, reason: str, now: float, *, step: Step | None = None) -> None:
        """End the session from outside (client unreachable, superseded, server stopping)."""
        if self.state is not State.RUNNING:
            return
        current = self._current
        self._current = None
        if current is not None:
            self._record(current, f"aborted: {reason}", now)
        failed_step = step or (current.step if current is not None else Step.REQUEST)
        self._fail(failed_step, None if current is None else current.target, reason, None, now)

    @property
    def current(self) -> Request | None:
        return self._current

    @property
    def done(self) -> bool:
        return self.state is not State.RUNNING

    # -- steps ----------------------------------------------------------------------------------
    def _on_discover(self, request: Request, reply: Reply, now: float) -> Request | None:
        if reply.success:
            try:
                self.client = ClientInfo.from_discover(reply.payload)
            except CodecError as exc:
                return self._error(request, reply, now, f"malformed answer: {exc.message}")
        elif reply.code in NO_DISCOVER:
            self.client = ClientInfo.unknown()
            self.notes.append(
                f"Bootstrap-Discover answered {reply.dotted}: an LwM2M 1.0 client "
                "is assumed (object versions 1.0, Bootstrap-Server account /0/0)"
            )
        else:
            return self._error(request, reply, now)
        self._record(request, reply.dotted, now)
        if self.read_servers and self.client.version_at_least("1.1"):
            accept = self.format if codecs.supports(self.format, "decode") else None
            return self._send(Request(0, Step.READ, "GET", LwM2mPath(1), accept=accept), now)
        return self._planned(now)

    def _on_read(self, request: Request, reply: Reply, now: float) -> Request | None:
        if not reply.success:
            return self._error(request, reply, now)
        assert self.client is not None
        models: ModelProvider = (
            _NoModels() if self.registry is None else client_models(self.registry, self.client)
        )
        try:
            fmt = reply.content_format if reply.content_format is not None else self.format
            self.read_result = codecs.decode(reply.payload, LwM2mPath(1), fmt, models)
        except CodecError as exc:
            self.notes.append(f"Bootstrap-Read /1 answer not decoded: {exc.message}")
        self._record(request, reply.dotted, now)
        return self._planned(now)

    def _planned(self, now: float) -> Request | None:
        assert self.client is not None
        started = now
        try:
            plan = self.planner(self.client)
            payloads = [
                codecs.encode(w.node, w.path, self.format, plan.models) for w in plan.writes
            ]
        except (PlanError, CodecError) as exc:
            self.records.append(StepRecord(Step.PLAN, "/", f"refused: {exc.message}", 1,
                                           started, now))  # fmt: skip
            self._fail(Step.PLAN, None, f"the configuration cannot be applied: {exc.message}",
                       None, now)  # fmt: skip
            return None
        self.plan = plan
        self.notes.extend(plan.notes)
        queue = [Request(0, Step.DELETE, "DELETE", p) for p in plan.deletes]
        queue += [
            Request(0, Step.WRITE, "PUT", w.path, payload=data, content_format=self.format)
            for w, data in zip(plan.writes, payloads, strict=True)
        ]
        queue.append(Request(0, Step.FINISH, "POST", None))
        self._queue = queue
        return self._next(now)

    def _on_delete(self, request: Request, reply: Reply, now: float) -> Request | None:
        if reply.code == ResponseCode.NOT_FOUND:
            self._record(request, f"{reply.dotted} (nothing to delete)", now)
            return self._next(now)
        if not reply.success:
            return self._error(request, reply, now)
        self._record(request, reply.dotted, now)
        return self._next(now)

    def _on_write(self, request: Request, reply: Reply, now: float) -> Request | None:
        if not reply.success:
            return self._error(request, reply, now)
        self._record(request, reply.dotted, now)
        return self._next(now)

    def _on_finish(self, request: Request, reply: Reply, now: float) -> Request | None:
        if not reply.success:
            reason = (
                "the client refused the configuration"
                if (reply.code == ResponseCode.NOT_ACCEPTABLE)
                else ""
            )
            return self._error(request, reply, now, reason)
        self._record(request, reply.dotted, now)
        self.state = State.SUCCEEDED
        self.outcome = Outcome(True)
        self.ended = now
        self.deadline = None
        return None

    # -- helpers ---------------------------------------------------------------------------------
    def _next(self, now: float) -> Request | None:
        request = self._queue.pop(0)
        self._step_started = now
        return self._send(request, now)

    def _send(self, request: Request, now: float) -> Request:
        if request.attempt == 1:
            self._step_started = now
        self._seq += 1
        request = attrs.evolve(request, seq=self._seq)
        self._current = request
        self.deadline = now + self.timing.timeout
        return request

    def _record(self, request: Request, result: str, now: float) -> None:
        self.records.append(StepRecord(request.step, request.target, result, request.attempt,
                                       self._step_started, now))  # fmt: skip

    def _error(
        self, request: Request, reply: Reply, now: float, reason: str = ""
    ) -> Request | None:
        result = f"{reply.dotted}{reply.diagnostic()}"
        self._record(request, result, now)
        text = reason or f"the client answered {result}"
        if reason and not reason.startswith("malformed"):
            text = f"{reason}: {result}"
        self._fail(request.step, request.target, f"{request.describe()}: {text}", reply.code, now)
        return None

    def _fail(self, step: Step, target: str | None, reason: str, code: int | None,
              now: float) -> None:  # fmt: skip
        self.state = State.FAILED
        self.outcome = Outcome(False, step, target, reason, code)
        self.ended = now
        self.deadline = None
        self._current = None


class _NoModels:
    """Without a registry, Bootstrap-Read /1 (informational) decodes with the payload's types."""

    def get_object(self, object_id: int) -> None:
        return None


if TYPE_CHECKING:
    _check: ModelProvider = _NoModels()


def summary(records: Sequence[StepRecord]) -> list[str]:
    return [f"{r.step.value} {r.target}: {r.result}" + (f" (attempt {r.attempts})"
            if r.attempts > 1 else "") for r in records]  # fmt: skip

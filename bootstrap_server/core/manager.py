"""The bootstrap server's core: Bootstrap-Requests in, sessions driven, outcomes recorded.

Sans-IO like the sessions it runs: the CoAP adapter calls ``bootstrap_request``/``receive``/
``timeout`` with ``now`` and sends the ``Request`` values it gets back. Around each session it
does what a single session cannot: decide who the peer is (``identity``), whether a profile
device may come in (``provisioning.admit``), issue its credentials, and once the session ends,
commit them to the shared keystore (success only) and record ``provisionState`` and the outcome.

Two Bootstrap-Requests for one endpoint: the newer one **supersedes** the running session (which
ends as failed, "superseded"), rather than being refused. A client that rebooted or gave up
mid-sequence asks again, and refusing it would lock it out until our timeouts run out; the
sequence is idempotent, so starting over is safe. Credentials of the superseded session were
never stored, so nothing is left half-written. Late answers to the old session's requests are
ignored (``seq``).
"""

from __future__ import annotations

import collections
import datetime
import itertools
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs

from keystore.bootstrap_config.model import BootstrapConfig, ConfigKind
from keystore.credentials import DeviceCredentials, ServerIdentity
from keystore.resolver import PeerIdentity
from object_models.errors import Lwm2mError, ResponseCode
from object_models.registry import ModelRegistry

from .catalog import Catalog
from .client_info import ClientInfo, DiscoveryLog, MemoryDiscoveries, PackAccount
from .identity import NotAllowed, Target, resolve
from .pack import build_pack, pack_format
from .plan import AccountConflict, Plan, PlanError, make_plan
from .provisioning import (
    DeviceRecord,
    DeviceRegistry,
    Issued,
    ProvisioningCa,
    ProvisionState,
    Refused,
    admit,
    commit,
    issue,
    server_keys,
)
from .session import (
    DEFAULT_TIMING,
    BootstrapSession,
    Outcome,
    Planner,
    Reply,
    Request,
    Step,
    StepRecord,
    Timing,
)

HISTORY = 1000


class Keystore(Protocol):
    """What the core needs of the shared ``CredentialStore``."""

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None: ...

    def server_identity(self) -> ServerIdentity | None: ...

    def put_device(self, device: DeviceCredentials) -> DeviceCredentials | None: ...


@attrs.frozen
class BootstrapQuery:
    """``POST /bs?ep=…&pct=…`` (and ``GET /bspack?ep=…&acc=…``)."""

    endpoint: str
    preferred_format: int | None = None
    account: PackAccount | None = None
    """``acc=`` (Bootstrap-Pack-Request, LwM2M 1.2.2): where the client's account is."""

    @classmethod
    def parse(cls, query: Sequence[str], *, pack: bool = False) -> BootstrapQuery:
        """``pack``: a Bootstrap-Pack-Request, where ``acc=`` means something."""
        params: dict[str, str] = {}
        for item in query:
            name, sep, value = item.partition("=")
            if name in params:
                raise Lwm2mError(f"{name} given twice", code=ResponseCode.BAD_REQUEST)
            params[name] = value if sep else ""
        endpoint = params.get("ep", "")
        if not endpoint:
            raise Lwm2mError("ep (the endpoint name) is required", code=ResponseCode.BAD_REQUEST)
        pct = params.get("pct")
        if pct is not None and not (pct.isdigit() and int(pct) < 65536):
            raise Lwm2mError(f"pct={pct!r} is not a content format", code=ResponseCode.BAD_REQUEST)
        acc = params.get("acc") if pack else None
        return cls(endpoint, None if pct is None else int(pct),
                   None if acc is None else PackAccount.parse(acc))  # fmt: skip


@attrs.frozen
class SessionSummary:
    """A finished session as shown by ``lwm2m-bootstrap sessions`` and the API."""

    session_id: str
    endpoint: str
    profile: str | None
    initiated_by: str
    started: float
    ended: float
    success: bool
    outcome: str
    failed_step: str | None
    records: tuple[StepRecord, ...]
    notes: tuple[str, ...]
    kind: str = "bootstrap"
    """``bootstrap`` (``POST /bs`` and its session) or ``pack`` (``GET /bspack``)."""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.session_id,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "profile": self.profile,
            "initiatedBy": self.initiated_by,
            "started": self.started,
            "ended": self.ended,
            "success": self.success,
            "outcome": self.outcome,
            "failedStep": self.failed_step,
            "steps": [
                {
                    "step": r.step.value,
                    "target": r.target,
                    "result": r.result,
                    "attempts": r.attempts,
                }
                for r in self.records
            ],
            "notes": list(self.notes),
        }


@attrs.define
class _Context:
    target: Target
    record: DeviceRecord
    issued: Issued | None


Clock = Callable[[], datetime.datetime]


class BootstrapManager:
    def __init__(
        self,
        catalog: Catalog,
        registry: ModelRegistry,
        devices: DeviceRegistry,
        keystore: Keystore,
        *,
        timing: Timing = DEFAULT_TIMING,
        ca: ProvisioningCa | None = None,
        history: int = HISTORY,
        on_finished: Callable[[SessionSummary], None] | None = None,
        wall_clock: Clock = lambda: datetime.datetime.now(datetime.UTC),
        discoveries: DiscoveryLog | None = None,
    ) -> None:
        self.catalog = catalog
        self.discoveries: DiscoveryLog = discoveries or MemoryDiscoveries()
        self.registry = registry
        self.devices = devices
        self.keystore = keystore
        self.timing = timing
        self.ca = ca
        self.on_finished = on_finished
        self.wall_clock = wall_clock
        self.history: collections.deque[SessionSummary] = collections.deque(maxlen=history)
        self._sessions: dict[str, BootstrapSession] = {}
        self._context: dict[str, _Context] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)

    # -- entry points ----------------------------------------------------------------------------
    def bootstrap_request(
        self, peer: PeerIdentity, query: Sequence[str], now: float
    ) -> tuple[BootstrapSession, Request]:
        """A client's ``POST /bs``: the session and its first request (send it after the
        2.04). ``Lwm2mError`` (4.00/4.01/4.03/5.00) refuses the request; it is recorded too."""
        parsed = BootstrapQuery.parse(query)
        return self._open(parsed.endpoint, now, initiated_by="client",
                          preferred=parsed.preferred_format,
                          target=lambda: self._resolve(peer, parsed.endpoint))  # fmt: skip

    def server_initiated(self, endpoint: str, now: float) -> tuple[BootstrapSession, Request]:
        """Start a bootstrap towards a client we can reach (its config by endpoint, else its
        device record's profile)."""
        return self._open(endpoint, now, initiated_by="server", preferred=None,
                          target=lambda: self._target_for(endpoint))  # fmt: skip

    def bootstrap_pack(
        self, peer: PeerIdentity, query: Sequence[str], accept: int | None, now: float
    ) -> tuple[bytes, int]:
        """``GET /bspack``: the whole configuration in one payload, and its format.

        Security instances are placed around the client's Bootstrap-Server account: where its
        ``acc=`` says, else where its last Bootstrap-Discover saw it, else around both /0/0 and
        /0/1 (``ClientInfo.for_pack``). A config whose fixed ``security_instance`` is (or may
        be) the account gets 4.05 with the reason, not a pack that would destroy the account:
        clients fall back to Bootstrap-Request, whose Discover settles it.

        The pack's credentials are committed before the answer leaves (there is no Finish to
        wait for); a lost answer makes the client ask again, and the new pack's credentials
        replace these, so the keystore always matches the last pack sent. Every exchange, served
        or refused, is recorded like a classic session (``kind: pack``)."""
        try:
            parsed = BootstrapQuery.parse(query, pack=True)
        except Lwm2mError as exc:  # recorded when it names an endpoint (a bad acc=, say)
            endpoint = next((q[3:] for q in query if q.startswith("ep=")), "")
            if endpoint:
                exchange = _PackExchange(f"{self._prefix}-{next(self._ids)}", endpoint, now)
                self._remember(exchange.failed(exc.code, exc.message, Step.REQUEST))
            raise
        exchange = _PackExchange(f"{self._prefix}-{next(self._ids)}", parsed.endpoint, now)
        try:
            fmt = pack_format(accept)
            target = self._resolve(peer, parsed.endpoint)
            exchange.endpoint, exchange.profile = target.endpoint, target.profile
            record = admit(target.endpoint, target.config, self.devices, now)
        except Lwm2mError as exc:
            self._remember(exchange.failed(exc.code, exc.message, Step.REQUEST))
            raise
        client = ClientInfo.for_pack(parsed.account,
                                     self.discoveries.last_discover(target.endpoint))  # fmt: skip
        exchange.notes.append(f"Bootstrap-Server account {client.account_paths()} "
                              f"({client.account_basis.value}): not written")  # fmt: skip
        try:
            issued = issue(target.endpoint, target.config, self.keystore, ca=self.ca)
            plan = make_plan(target.config, client, self.registry,
                             issued=None if issued is None else issued.security,
                             server_keys=server_keys(self.keystore))  # fmt: skip
            payload = build_pack(plan, fmt)
            if issued is not None:
                commit(issued, self.keystore)
        except AccountConflict as exc:
            reason = (f"{exc.message}; the client may send acc= or use Bootstrap-Request, "
                      "whose Bootstrap-Discover tells where its account is")  # fmt: skip
            self._set_state(record, ProvisionState.FAILED, f"bootstrap-pack: {reason}", now)
            self._remember(exchange.failed(ResponseCode.METHOD_NOT_ALLOWED, reason, Step.PLAN))
            raise Lwm2mError(reason, code=ResponseCode.METHOD_NOT_ALLOWED) from None
        except Lwm2mError as exc:
            self._set_state(record, ProvisionState.FAILED, f"bootstrap-pack: {exc.message}", now)
            code = ResponseCode.INTERNAL_SERVER_ERROR
            self._remember(exchange.failed(code, exc.message, Step.PLAN))
            raise Lwm2mError(exc.message, code=code) from None
        self._set_state(record, ProvisionState.PROVISIONED, "bootstrap-pack", now)
        written = sorted({(w.path.ids[0], w.path.ids[1]) for w in plan.writes})
        exchange.notes.extend(plan.notes)
        self._remember(exchange.succeeded(
            f"2.05 ({', '.join(f'/{o}/{i}' for o, i in written)})"))  # fmt: skip
        return payload, fmt

    def receive(self, session: BootstrapSession, seq: int, reply: Reply,
                now: float) -> Request | None:  # fmt: skip
        request = session.receive(seq, reply, now)
        self._after(session, now)
        return request

    def timeout(self, session: BootstrapSession, now: float) -> Request | None:
        request = session.timeout(now)
        self._after(session, now)
        return request

    def abort(self, session: BootstrapSession, reason: str, now: float) -> None:
        session.abort(reason, now)
        self._after(session, now)

    # -- views ----------------------------------------------------------------------------------
    def session(self, endpoint: str) -> BootstrapSession | None:
        return self._sessions.get(endpoint)

    def active(self) -> list[BootstrapSession]:
        return list(self._sessions.values())

    def next_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self._sessions.values() if s.deadline is not None]
        return min(deadlines, default=None)

    # -- internals -------------------------------------------------------------------------------
    def _resolve(self, peer: PeerIdentity, endpoint: str) -> Target:
        return resolve(self.catalog, self.devices, peer, endpoint, self.wall_clock())

    def _target_for(self, endpoint: str) -> Target:
        config = self.catalog.endpoint(endpoint)
        if config is None:
            record = self.devices.get_device(endpoint)
            if record is not None and record.profile is not None:
                config = self.catalog.profile(record.profile)
        if config is None:
            raise Lwm2mError(f"no bootstrap configuration for {endpoint!r}",
                             code=ResponseCode.NOT_FOUND)  # fmt: skip
        return Target(endpoint, config)

    def _open(
        self,
        endpoint: str,
        now: float,
        *,
        initiated_by: str,
        preferred: int | None,
        target: Callable[[], Target],
    ) -> tuple[BootstrapSession, Request]:
        session_id = f"{self._prefix}-{next(self._ids)}"
        try:
            resolved = target()
            record = admit(resolved.endpoint, resolved.config, self.devices, now)
            issued = issue(resolved.endpoint, resolved.config, self.keystore, ca=self.ca)
        except (NotAllowed, Refused) as exc:
            self._refused(session_id, endpoint, initiated_by, exc.message, now)
            raise
        except PlanError as exc:
            self._refused(session_id, endpoint, initiated_by, exc.message, now)
            raise Lwm2mError(exc.message, code=ResponseCode.INTERNAL_SERVER_ERROR) from None
        except Lwm2mError as exc:
            self._refused(session_id, endpoint, initiated_by, exc.message, now)
            raise
        previous = self._sessions.get(resolved.endpoint)
        if previous is not None:
            self.abort(previous, f"superseded by a new bootstrap ({session_id})", now)
        config = resolved.config
        session = BootstrapSession(
            session_id,
            resolved.endpoint,
            self._planner(config, issued),
            now=now,
            timing=self.timing,
            forced_format=config.content_format,
            preferred_format=preferred,
            read_servers=config.bootstrap_read,
            initiated_by=initiated_by,
            registry=self.registry,
        )
        self._sessions[resolved.endpoint] = session
        self._context[session_id] = _Context(resolved, record, issued)
        self._set_state(record, ProvisionState.BOOTSTRAPPING, f"session {session_id}", now)
        return session, session.start(now)

    def _planner(self, config: BootstrapConfig, issued: Issued | None) -> Planner:
        keys = server_keys(self.keystore)

        def plan(client: ClientInfo) -> Plan:
            return make_plan(config, client, self.registry,
                             issued=None if issued is None else issued.security,
                             server_keys=keys)  # fmt: skip

        return plan

    def _after(self, session: BootstrapSession, now: float) -> None:
        if not session.done or session.session_id not in self._context:
            return
        context = self._context.pop(session.session_id)
        if self._sessions.get(session.endpoint) is session:
            del self._sessions[session.endpoint]
        outcome = session.outcome
        assert outcome is not None
        notes = list(session.notes)
        if session.client is not None and session.client.discovered:
            try:
                self.discoveries.put_discover(session.endpoint, session.client, now)
            except Lwm2mError as exc:
                notes.append(f"the Bootstrap-Discover answer was not recorded: {exc.message}")
        if outcome.success and context.issued is not None:
            try:
                commit(context.issued, self.keystore)
            except Lwm2mError as exc:
                outcome = Outcome(False, Step.FINISH, "/bs",
                                  f"the client is bootstrapped but its credentials could not be "
                                  f"stored in the keystore: {exc.message}")  # fmt: skip
        if outcome.success:
            self._set_state(context.record, ProvisionState.PROVISIONED, "", now)
        else:
            self._set_state(context.record, ProvisionState.FAILED, outcome.describe(), now)
        self._remember(SessionSummary(
            session.session_id, session.endpoint, context.target.profile, session.initiated_by,
            session.started, session.ended or now, outcome.success, outcome.describe(),
            None if outcome.step is None else outcome.step.value, tuple(session.records),
            tuple(notes),
        ))  # fmt: skip

    def _refused(self, session_id: str, endpoint: str, initiated_by: str, reason: str,
                 now: float) -> None:  # fmt: skip
        self._remember(SessionSummary(session_id, endpoint, None, initiated_by, now, now, False,
                                      f"failed at request: {reason}", Step.REQUEST.value, (),
                                      ()))  # fmt: skip

    def _remember(self, summary: SessionSummary) -> None:
        self.history.append(summary)
        if self.on_finished is not None:
            self.on_finished(summary)

    def _set_state(self, record: DeviceRecord, state: ProvisionState, reason: str,
                   now: float) -> None:  # fmt: skip
        current = self.devices.get_device(record.endpoint) or record
        self.devices.put_device(
            attrs.evolve(
                current,
                state=state,
                reason=reason,
                updated=now,
                profile=current.profile or record.profile,
            )
        )


@attrs.define
class _PackExchange:
    """One Bootstrap-Pack-Request on its way to a ``SessionSummary``."""

    session_id: str
    endpoint: str
    now: float
    profile: str | None = None
    notes: list[str] = attrs.Factory(list)

    def _summary(self, success: bool, outcome: str, failed: Step | None,
                 result: str) -> SessionSummary:  # fmt: skip
        record = StepRecord(Step.PACK, "/bspack", result, 1, self.now, self.now)
        return SessionSummary(self.session_id, self.endpoint, self.profile, "client", self.now,
                              self.now, success, outcome,
                              None if failed is None else failed.value, (record,),
                              tuple(self.notes), kind="pack")  # fmt: skip

    def succeeded(self, result: str) -> SessionSummary:
        return self._summary(True, "succeeded", None, result)

    def failed(self, code: ResponseCode, reason: str, step: Step) -> SessionSummary:
        return self._summary(False, f"failed at {step.value}: {reason}", step,
                             f"{code.dotted} ({reason})")  # fmt: skip


def history_view(history: Sequence[SessionSummary],
                 endpoint: str | None = None) -> list[Mapping[str, object]]:  # fmt: skip
    return [s.to_json() for s in reversed(history) if endpoint in (None, s.endpoint)]


__all__ = ["BootstrapManager", "BootstrapQuery", "ConfigKind", "SessionSummary"]

"""The session state machine with a fake clock: the full sequence, a client error at every
step, loss at every step with retries, a vanishing client, formats."""

from __future__ import annotations

import pytest

from bootstrap_server.core.plan import make_plan
from bootstrap_server.core.session import (
    BootstrapSession,
    Reply,
    Request,
    State,
    Step,
    Timing,
    choose_format,
)
from object_models.content_format import ContentFormat
from object_models.errors import ResponseCode

from .fake_client import FakeClient
from .helpers import REGISTRY, Clock, drive, endpoint_doc, parse

DOC = endpoint_doc(bootstrap_read=True, objects={"/3/0/14": "+02:00"})


def _session(clock: Clock, doc: dict[str, object] | None = None, **kwargs: object
             ) -> BootstrapSession:  # fmt: skip
    config = parse(doc or DOC)
    return BootstrapSession(
        "s1", "dev-1", lambda client: make_plan(config, client, REGISTRY), now=clock.now,
        timing=Timing(timeout=10.0, retries=2), read_servers=config.bootstrap_read,
        registry=REGISTRY, forced_format=config.content_format, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


SEQUENCE = ["GET /", "GET /1", "DELETE /1", "PUT /0/1", "PUT /1/0", "PUT /3/0", "POST /bs"]


def test_full_sequence() -> None:
    clock, client = Clock(), FakeClient()
    session = _session(clock)
    drive(session, client, clock, session.start(clock.now))
    assert session.state is State.SUCCEEDED and session.outcome is not None
    assert session.outcome.success and client.finished
    assert client.log == SEQUENCE
    assert client.servers() == {1: (1, 0)}
    assert client.value("/0/1/3") == b"dev-1" and client.value("/0/0/1") is True
    assert client.value("/1/0/1") == 300 and client.value("/3/0/14") == "+02:00"
    assert [r.step for r in session.records] == [
        Step.DISCOVER,
        Step.READ,
        Step.DELETE,
        Step.WRITE,
        Step.WRITE,
        Step.WRITE,
        Step.FINISH,
    ]
    assert session.deadline is None and session.current is None


STEPS = [
    ("discover", "/", 0xA0),
    ("read", "/1", 0x81),
    ("delete", "/1", 0x80),
    ("write", "/0/1", 0x80),
    ("write", "/1/0", 0x8F),
    ("write", "/3/0", 0x85),
    ("finish", "/bs", 0x86),
]


@pytest.mark.parametrize(("step", "target", "code"), STEPS, ids=[f"{s}{t}" for s, t, _ in STEPS])
def test_client_error_at_every_step(step: str, target: str, code: int) -> None:
    clock, client = Clock(), FakeClient()
    client.errors[(step, target)] = code
    session = _session(clock)
    drive(session, client, clock, session.start(clock.now))
    outcome = session.outcome
    assert session.state is State.FAILED and outcome is not None
    assert outcome.step is Step(step) and outcome.target == target and outcome.code == code
    assert "injected failure" in outcome.reason
    assert client.log[-1].endswith(target) and not client.finished
    assert session.records[-1].result.startswith(f"{code >> 5}.{code & 31:02d}")


@pytest.mark.parametrize("index", range(len(SEQUENCE)), ids=SEQUENCE)
def test_loss_at_every_step_is_retried(index: int) -> None:
    clock, client = Clock(), FakeClient()
    session = _session(clock)
    lost: list[Request] = []

    def lose(request: Request) -> bool:
        if f"{request.method} {request.target}" == SEQUENCE[index] and request.attempt < 3:
            lost.append(request)
            return True
        return False

    drive(session, client, clock, session.start(clock.now), lose=lose)
    assert session.state is State.SUCCEEDED
    assert [r.attempt for r in lost] == [1, 2]
    assert len({r.seq for r in lost}) == 2  # each repeat is a new message
    record = session.records[index]
    assert record.attempts == 3 and record.ended - record.started >= 20.0


@pytest.mark.parametrize("index", range(len(SEQUENCE)), ids=SEQUENCE)
def test_timeout_at_every_step_fails_after_the_retries(index: int) -> None:
    clock, client = Clock(), FakeClient()
    session = _session(clock)
    drive(session, client, clock, session.start(clock.now),
          lose=lambda r: f"{r.method} {r.target}" == SEQUENCE[index])  # fmt: skip
    outcome = session.outcome
    assert outcome is not None and not outcome.success
    assert "no answer" in outcome.reason and "after 3 attempts of 10 s" in outcome.reason
    assert session.records[-1].result == "timeout"
    assert client.log.count(SEQUENCE[index]) == 0 and not client.finished


def test_early_timeout_call_and_stale_answers_are_ignored() -> None:
    clock, client = Clock(), FakeClient()
    session = _session(clock)
    first = session.start(clock.now)
    assert session.timeout(clock.advance(1.0)) == first  # before the deadline: keep waiting
    clock.now = session.deadline or 0.0
    second = session.timeout(clock.now)
    assert second is not None and second.attempt == 2
    assert session.receive(first.seq, client.handle(first), clock.advance(0.1)) is None
    nxt = session.receive(second.seq, client.handle(second), clock.advance(0.1))
    assert nxt is not None and nxt.target == "/1"
    assert session.receive(second.seq, Reply(0x45), clock.now) is None  # duplicate answer


def test_client_that_disappears_mid_sequence() -> None:
    clock, client = Clock(), FakeClient()
    session = _session(clock)
    request: Request | None = session.start(clock.now)
    for _ in range(3):
        assert request is not None
        request = session.receive(request.seq, client.handle(request), clock.advance(0.1))
    session.abort("client unreachable (ICMP port unreachable)", clock.advance(1))
    assert session.outcome is not None and session.outcome.step is Step.WRITE
    assert session.outcome.target == "/0/1" and "unreachable" in session.outcome.reason
    assert session.receive(99, Reply(0x44), clock.now) is None
    session.abort("again", clock.now)  # idempotent
    assert "unreachable" in session.outcome.reason


def test_lwm2m_1_0_client_without_discover() -> None:
    clock, client = Clock(), FakeClient(discover=False, versions={0: "1.0", 1: "1.0", 3: "1.0"})
    session = _session(clock, endpoint_doc())
    drive(session, client, clock, session.start(clock.now))
    assert session.state is State.SUCCEEDED
    assert client.log == ["GET /", "DELETE /0", "DELETE /1", "PUT /0/1", "PUT /1/0", "POST /bs"]
    assert any("LwM2M 1.0 client is assumed" in n for n in session.notes)


def test_config_that_cannot_be_applied_sends_nothing_after_discover() -> None:
    clock, client = Clock(), FakeClient(versions={0: "1.0", 1: "1.0", 3: "1.0"})
    session = _session(clock, endpoint_doc(objects={"/3303/0/5700": 1.5}))
    drive(session, client, clock, session.start(clock.now))
    assert session.outcome is not None and session.outcome.step is Step.PLAN
    assert "does not support object 3303" in session.outcome.reason
    assert client.log == ["GET /"]


def test_malformed_discover_answer() -> None:
    clock = Clock()
    session = _session(clock)
    first = session.start(clock.now)
    assert session.receive(first.seq, Reply(0x45, b"<not closed"), clock.now) is None
    assert session.outcome is not None and "malformed answer" in session.outcome.reason


@pytest.mark.parametrize(("pct", "forced", "expected"), [
    (None, None, ContentFormat.TLV),
    (ContentFormat.SENML_CBOR, None, ContentFormat.SENML_CBOR),
    (ContentFormat.LWM2M_CBOR, None, ContentFormat.LWM2M_CBOR),
    (ContentFormat.TEXT, None, ContentFormat.TLV),
    (4242, None, ContentFormat.TLV),
    (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.SENML_JSON),
])  # fmt: skip
def test_write_format(pct: int | None, forced: int | None, expected: int) -> None:
    assert choose_format(forced, pct) == expected
    clock, client = Clock(), FakeClient()
    session = _session(clock, preferred_format=pct) if forced is None else _session(
        clock, endpoint_doc(content_format=int(forced)), preferred_format=pct)  # fmt: skip
    writes: list[Request] = []

    def spy(request: Request) -> bool:
        if request.method == "PUT":
            writes.append(request)
        return False

    drive(session, client, clock, session.start(clock.now), lose=spy)
    assert session.state is State.SUCCEEDED
    assert {w.content_format for w in writes} == {expected}


def test_delete_not_found_is_done_and_bad_codes_are_named() -> None:
    clock, client = Clock(), FakeClient()
    client.errors[("delete", "/1")] = ResponseCode.NOT_FOUND
    session = _session(clock)
    drive(session, client, clock, session.start(clock.now))
    assert session.state is State.SUCCEEDED
    assert "nothing to delete" in session.records[2].result

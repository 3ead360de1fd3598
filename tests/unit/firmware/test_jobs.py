"""The per-device update state machine, in memory: every transition, timeouts, retries and
impossible transitions (``lwm2m_server.firmware.jobs``)."""

from __future__ import annotations

from typing import Any

import pytest

from lwm2m_server.firmware.contracts import JobState, PackageKind, Strategy
from lwm2m_server.firmware.jobs import (
    Action,
    CancelObserve,
    Execute,
    JobSettings,
    Observe,
    Read,
    ResetDownload,
    Revoke,
    Step,
    UpdateJob,
    WritePackage,
    WriteUri,
)

SETTINGS = JobSettings(
    request_timeout=10, download_timeout=100, update_timeout=200, retries=2, backoff=5
)


def job(
    strategy: Strategy = Strategy.PULL_COAP,
    kind: PackageKind = PackageKind.FIRMWARE,
    settings: JobSettings = SETTINGS,
    **kw: Any,
) -> UpdateJob:
    return UpdateJob.new(
        "dev", "pkg", "2.0", kind, strategy=strategy, settings=settings, now=0.0, **kw
    )


def one(actions: list[Action], cls: type[Action]) -> Action:
    found = [a for a in actions if isinstance(a, cls)]
    assert len(found) == 1, actions
    return found[0]


def ok(j: UpdateJob, action: Action, now: float, value: Any = None) -> list[Action]:
    return j.answered(action.seq, now, code="2.04", value=value)


def observed(j: UpdateJob, actions: list[Action], now: float, state: int = 0) -> list[Action]:
    """Answer the two Observe actions (State, Update Result)."""
    observes = [a for a in actions if isinstance(a, Observe)]
    assert {a.path for a in observes} == set(j.observed_paths)
    out: list[Action] = []
    for a in observes:
        value = state if a.path == j.state_path else 0
        out += j.answered(a.seq, now, code="2.05", value=value)
    return out


def to_downloading(j: UpdateJob, now: float = 1.0) -> Action:
    """start → observe → deliver; returns the delivery action (answered)."""
    deliver = observed(j, j.start(now), now)
    action = deliver[0]
    assert ok(j, action, now) == []
    assert j.state is JobState.DOWNLOADING and j.step is Step.DOWNLOAD
    return action


def to_updating(j: UpdateJob, now: float = 2.0) -> Action:
    to_downloading(j)
    execute = one(j.reported(now, state=1) + j.reported(now, state=2), Execute)
    assert j.state is JobState.DOWNLOADED
    assert ok(j, execute, now) == []
    assert j.state is JobState.UPDATING
    return execute


# -- the happy paths ----------------------------------------------------------------------------


def test_pull_coap_firmware_update_from_start_to_success() -> None:
    j = job()
    actions = j.start(0.0)
    assert j.state is JobState.PENDING
    assert {(type(a), a.path) for a in actions} == {(Observe, "/5/0/3"), (Observe, "/5/0/5")}
    deliver = observed(j, actions, 1.0)
    write = one(deliver, WriteUri)
    assert isinstance(write, WriteUri) and write.path == "/5/0/1" and write.transport == "coap"
    assert j.state is JobState.DOWNLOADING and j.view().attempts == 1
    assert ok(j, write, 1.0) == []
    assert j.reported(5.0, state=1) == []
    execute = one(j.reported(9.0, state=2), Execute)
    assert execute.path == "/5/0/2" and j.state is JobState.DOWNLOADED
    assert ok(j, execute, 9.5) == []
    assert j.state is JobState.UPDATING
    assert j.reported(10.0, state=3) == []  # Updating after our Execute: fine
    result = one(j.registered(30.0), Read)
    assert result.path == "/5/0/5" and j.state is JobState.VERIFYING
    verify = one(j.answered(result.seq, 30.5, code="2.05", value=1), Read)
    assert verify.path == "/3/0/3" and j.state is JobState.VERIFYING
    end = j.answered(verify.seq, 31.0, code="2.05", value="2.0")
    assert j.state is JobState.SUCCEEDED and j.finished and j.timer is None
    assert {a.path for a in end if isinstance(a, CancelObserve)} == {"/5/0/3", "/5/0/5"}
    assert any(isinstance(a, Revoke) for a in end)
    assert j.view().updated_ms == 31_000


def test_push_writes_the_package_with_the_download_timeout() -> None:
    j = job(Strategy.PUSH)
    write = one(observed(j, j.start(0.0), 0.0), WritePackage)
    assert write.path == "/5/0/0" and write.timeout == 100
    # the device reports Downloaded before the write's answer arrives
    assert j.reported(3.0, state=1) == [] and j.reported(4.0, state=2) == []
    assert isinstance(one(ok(j, write, 4.5), Execute), Execute)


def test_pull_http_writes_an_http_uri() -> None:
    j = job(Strategy.PULL_HTTP)
    write = one(observed(j, j.start(0.0), 0.0), WriteUri)
    assert isinstance(write, WriteUri) and write.transport == "http"


def test_update_result_success_without_re_registration() -> None:
    j = job()
    to_updating(j)
    read = one(j.reported(50.0, result=1), Read)
    assert read.path == "/5/0/5" and j.state is JobState.VERIFYING and j.result == 1


def test_an_update_message_reads_the_result_of_a_device_that_does_not_re_register() -> None:
    j = job()
    to_updating(j)
    read = one(j.updated(40.0), Read)
    assert read.path == "/5/0/5" and j.state is JobState.UPDATING
    result = one(j.answered(read.seq, 41.0, code="2.05", value=1), Read)
    assert result.path == "/5/0/5" and j.state is JobState.VERIFYING


@pytest.mark.parametrize(
    ("value", "choice"),
    [
        ({8: {0: 0, 1: 1}, 9: 2}, Strategy.PULL_COAP),
        ({8: {0: 3}, 9: 0}, Strategy.PULL_HTTP),
        ({8: {0: 0}, 9: 1}, Strategy.PUSH),
        ({3: 0, 5: 0}, Strategy.PULL_COAP),  # LwM2M 1.0: nothing advertised
    ],
)
def test_auto_reads_the_instance_to_choose(value: dict[int, Any], choice: Strategy) -> None:
    j = job(Strategy.AUTO)
    read = one(j.start(0.0), Read)
    assert read.path == "/5/0"
    observes = j.answered(read.seq, 1.0, code="2.05", value=value)
    assert j.strategy is choice and len(observes) == 2


def test_auto_with_nothing_the_server_offers_fails_with_what_the_device_said() -> None:
    j = job(Strategy.AUTO)
    read = one(j.start(0.0), Read)
    j.answered(read.seq, 1.0, code="2.05", value={8: {0: 4}, 9: 0})
    assert j.state is JobState.FAILED
    assert "no delivery method" in j.detail and "/5/0/8" in j.detail


def test_a_device_not_idle_is_reset_with_an_empty_uri_first() -> None:
    j = job()
    reset = one(observed(j, j.start(0.0), 0.0, state=2), ResetDownload)
    assert reset.path == "/5/0/1" and j.state is JobState.PENDING
    assert isinstance(one(ok(j, reset, 1.0), WriteUri), WriteUri)


def test_a_failure_result_after_the_reboot_is_explained() -> None:
    j = job()
    to_updating(j)
    result = one(j.registered(30.0), Read)
    j.answered(result.seq, 31.0, code="2.05", value=8)
    assert j.state is JobState.FAILED and j.detail == "Update Result 8: firmware update failed"


def test_a_version_mismatch_fails_with_both_versions_and_the_result() -> None:
    j = job()
    to_updating(j)
    result = one(j.registered(30.0), Read)
    verify = one(j.answered(result.seq, 31.0, code="2.05", value=0), Read)
    assert verify.path == "/3/0/3"
    j.answered(verify.seq, 32.0, code="2.05", value="1.0")
    assert j.state is JobState.FAILED
    assert j.detail == "the device runs version '1.0', not '2.0'; Update Result 0: initial value"


# -- failures the device reports ----------------------------------------------------------------


def test_update_result_8_during_updating_fails_with_the_explanation() -> None:
    j = job()
    to_updating(j)
    j.reported(40.0, result=8)
    assert j.state is JobState.FAILED
    assert j.detail == "Update Result 8: firmware update failed"
    assert j.view().result == 8


def test_back_to_downloaded_during_updating_reads_the_result() -> None:
    j = job()
    to_updating(j)
    assert j.reported(39.0, state=3) == []
    read = one(j.reported(40.0, state=2), Read)
    j.answered(read.seq, 41.0, code="2.05", value=8)
    assert j.state is JobState.FAILED and "firmware update failed" in j.detail


@pytest.mark.parametrize("result", [2, 3, 5, 6, 7, 9])
def test_a_download_failure_result_fails_at_once(result: int) -> None:
    j = job()
    to_downloading(j)
    j.reported(5.0, result=result)
    assert j.state is JobState.FAILED and j.detail.startswith(f"Update Result {result}: ")


def test_connection_lost_during_download_is_delivered_again() -> None:
    j = job()
    to_downloading(j)
    assert j.reported(5.0, result=4) == []
    assert j.state is JobState.PENDING and j.timer == 10.0  # backoff 5 s
    assert "connection lost" in j.detail
    reset = one(j.tick(10.0), ResetDownload)
    write = one(ok(j, reset, 10.5), WriteUri)
    assert j.view().attempts == 2 and isinstance(write, WriteUri)


def test_an_unknown_update_result_fails() -> None:
    j = job()
    to_downloading(j)
    j.reported(5.0, result=42)
    assert j.state is JobState.FAILED and "unknown Update Result 42" in j.detail


# -- impossible transitions ---------------------------------------------------------------------


def test_updating_reported_though_never_executed_fails_clearly() -> None:
    j = job()
    to_downloading(j)
    j.reported(5.0, state=3)
    assert j.state is JobState.FAILED
    assert "State 3 (Updating)" in j.detail and "Execute Update was never sent" in j.detail


def test_an_impossible_state_change_fails_with_both_states_named() -> None:
    j = job()
    to_updating(j)
    j.reported(10.0, state=3)
    j.reported(11.0, state=1)  # Updating → Downloading: no such edge
    assert j.state is JobState.FAILED
    assert "State 3 (Updating) → 1 (Downloading)" in j.detail


def test_an_unknown_state_fails() -> None:
    j = job()
    to_downloading(j)
    j.reported(5.0, state=9)
    assert j.state is JobState.FAILED and "unknown State 9" in j.detail


def test_values_before_the_delivery_are_not_judged() -> None:
    j = job()
    j.start(0.0)
    assert j.reported(0.5, state=3, result=8) == [] and not j.finished


# -- timeouts and retries -----------------------------------------------------------------------


def test_a_request_timeout_is_retried_with_backoff_then_fails() -> None:
    j = job()
    j.start(0.0)
    assert j.tick(9.9) == [] and j.timer == 10.0
    assert j.tick(10.0) == [] and j.timer == 15.0 and j.attempt == 2  # backoff 5 s
    assert len(j.tick(15.0)) == 2 and j.timer == 25.0
    assert j.tick(25.0) == [] and j.timer == 35.0 and j.attempt == 3  # then 10 s
    assert len(j.tick(35.0)) == 2
    j.tick(45.0)
    assert j.state is JobState.FAILED
    assert j.detail == "timeout: observe (/5/0/3, /5/0/5) not answered within 10 s (3 attempts)"


def test_late_answers_of_an_earlier_attempt_are_ignored() -> None:
    j = job()
    first = j.start(0.0)
    j.tick(10.0)
    second = j.tick(15.0)
    assert observed(j, first, 16.0) == [] and j.step is Step.OBSERVE
    assert isinstance(one(observed(j, second, 16.0), WriteUri), WriteUri)


def test_a_device_that_disappears_mid_download_is_retried_then_fails() -> None:
    j = job()
    to_downloading(j, now=1.0)
    j.reported(2.0, state=1)
    assert j.timer == 101.0
    j.tick(101.0)  # delivery 2 after 5 s
    assert j.state is JobState.PENDING and "did not finish within 100 s" in j.detail
    reset = one(j.tick(106.0), ResetDownload)
    ok(j, one(ok(j, reset, 106.0), WriteUri), 106.0)
    j.tick(206.0)  # delivery 3 after 10 s
    ok(j, one(ok(j, one(j.tick(216.0), ResetDownload), 216.0), WriteUri), 216.0)
    end = j.tick(316.0)
    assert j.state is JobState.FAILED
    assert j.detail == "timeout: the download did not finish within 100 s (3 deliveries)"
    assert any(isinstance(a, Revoke) for a in end)


def test_a_redelivery_that_fails_too_keeps_the_first_reason() -> None:
    j = job(settings=JobSettings(request_timeout=10, download_timeout=100, retries=1, backoff=5))
    to_downloading(j, now=1.0)
    j.tick(101.0)
    reset = one(j.tick(106.0), ResetDownload)
    j.answered(reset.seq, 116.0, timed_out=True)
    j.answered(one(j.tick(121.0), ResetDownload).seq, 131.0, timed_out=True)
    assert j.state is JobState.FAILED
    assert j.detail == (
        "timeout: the download did not finish within 100 s; "
        "then timeout: reset (/5/0/1) not answered within 10 s (2 attempts)"
    )


def test_a_push_write_that_times_out_is_sent_again_from_the_start() -> None:
    j = job(Strategy.PUSH)
    write = one(observed(j, j.start(0.0), 0.0), WritePackage)
    j.answered(write.seq, 100.0, timed_out=True)
    assert j.state is JobState.DOWNLOADING and j.timer == 105.0
    read = one(j.tick(105.0), Read)  # the first write may have got there: ask first
    assert read.path == "/5/0" and read.timeout == 10
    again = one(j.answered(read.seq, 105.5, code="2.05", value={3: 0, 5: 0}), WritePackage)
    assert again.seq != write.seq and j.view().attempts == 2


def test_a_4xx_answer_fails_at_once_with_the_code() -> None:
    j = job()
    write = one(observed(j, j.start(0.0), 0.0), WriteUri)
    j.answered(write.seq, 1.0, code="4.00")
    assert j.state is JobState.FAILED
    assert j.detail == "deliver (/5/0/1): the device answered 4.00"


def test_a_5xx_answer_is_retried() -> None:
    j = job()
    write = one(observed(j, j.start(0.0), 0.0), WriteUri)
    j.answered(write.seq, 1.0, code="5.03")
    assert not j.finished and j.timer == 6.0 and "5.03" in j.detail


def test_no_re_registration_times_out_with_the_step_named() -> None:
    j = job()
    to_updating(j, now=2.0)
    assert j.timer == 202.0
    j.tick(202.0)
    assert j.state is JobState.FAILED
    assert "did not re-register within 200 s after Execute Update" in j.detail


def test_an_execute_not_answered_still_waits_for_the_reboot() -> None:
    j = job()
    to_downloading(j)
    execute = one(j.reported(2.0, state=2), Execute)
    assert j.answered(execute.seq, 12.0, timed_out=True) == []
    assert j.state is JobState.UPDATING
    assert one(j.registered(20.0), Read).path == "/5/0/5"


# -- queue mode, re-registration, download events, cancel ---------------------------------------


def test_queued_requests_extend_the_deadline_and_proceed_when_answered() -> None:
    settings = JobSettings(request_timeout=10, download_timeout=100, queued_timeout=1000)
    j = job(settings=settings)
    actions = j.start(0.0)
    observes = [a for a in actions if isinstance(a, Observe)]
    assert j.answered(observes[0].seq, 0.0, queued=True) == []
    write = one(j.answered(observes[1].seq, 0.0, queued=True), WriteUri)
    assert j.answered(write.seq, 0.0, queued=True) == []
    assert j.step is Step.DOWNLOAD and j.timer == 1100.0
    # the device wakes: the queued observe's answer comes as a REQUEST_RESPONSE
    assert j.answered(observes[0].seq, 500.0, code="2.05", value=0) == []
    assert j.reported(501.0, state=1) == []
    assert isinstance(one(j.reported(502.0, state=2), Execute), Execute)


def test_a_queued_delivery_the_device_refuses_when_it_wakes_fails_the_job() -> None:
    j = job()
    first, second = j.start(0.0)
    assert j.answered(first.seq, 0.0, queued=True) == []
    write = one(j.answered(second.seq, 0.0, queued=True), WriteUri)
    assert j.answered(write.seq, 0.0, queued=True) == [] and j.step is Step.DOWNLOAD
    # the device wakes: the answers come; the observe's is a report, the write's a refusal
    assert j.answered(first.seq, 50.0, code="2.05", value=0) == [] and j.device_state == 0
    j.answered(write.seq, 51.0, code="4.05")
    assert j.state is JobState.FAILED and j.detail == "deliver (/5/0/1): the device answered 4.05"


def test_a_queued_delivery_lost_is_delivered_again() -> None:
    j = job()
    first, second = j.start(0.0)
    j.answered(first.seq, 0.0, queued=True)
    write = one(j.answered(second.seq, 0.0, queued=True), WriteUri)
    j.answered(write.seq, 0.0, queued=True)
    j.answered(write.seq, 60.0, error="expired in the queue")
    assert j.step is Step.RESET and j.retry_at == 65.0
    assert j.detail.startswith("deliver (/5/0/1) failed: expired in the queue")


def test_a_re_registration_mid_download_observes_again() -> None:
    j = job()
    to_downloading(j)
    again = j.registered(5.0)
    assert {a.path for a in again if isinstance(a, Observe)} == {"/5/0/3", "/5/0/5"}
    assert j.step is Step.DOWNLOAD
    # those observes' answers count as reports
    obs = next(a for a in again if a.path == "/5/0/3")
    assert isinstance(one(j.answered(obs.seq, 6.0, code="2.05", value=2), Execute), Execute)


def test_a_refused_download_is_recorded() -> None:
    j = job()
    to_downloading(j)
    j.download_refused(3.0, "expired token")
    assert j.detail == "download refused: expired token" and not j.finished


def test_cancel_resets_the_device_and_stops_observing() -> None:
    j = job()
    to_downloading(j)
    actions = j.cancel(4.0)
    assert j.state is JobState.CANCELLED and j.detail == "cancelled"
    assert one(actions, ResetDownload).path == "/5/0/1"
    assert len([a for a in actions if isinstance(a, CancelObserve)]) == 2
    assert j.cancel(5.0) == [] and j.tick(1e9) == []


def test_cancel_after_execute_says_the_device_may_still_update() -> None:
    j = job()
    to_updating(j)
    j.cancel(4.0)
    assert "may still apply the update" in j.detail


# -- object 9 ---------------------------------------------------------------------------------


def test_software_install_on_instance_2_with_activate() -> None:
    j = job(
        Strategy.PUSH,
        PackageKind.SOFTWARE,
        JobSettings(request_timeout=10, activate=True),
        instance=2,
    )
    actions = j.start(0.0)
    assert {a.path for a in actions} == {"/9/2/7", "/9/2/9"}
    write = one(observed(j, actions, 0.0), WritePackage)
    assert write.path == "/9/2/2"
    ok(j, write, 1.0)
    assert j.reported(2.0, state=1) == [] and j.reported(3.0, state=2) == []
    install = one(j.reported(4.0, state=3), Execute)
    assert install.path == "/9/2/4"
    ok(j, install, 5.0)
    activate = one(j.reported(6.0, result=2) + j.reported(6.0, state=4), Execute)
    assert activate.path == "/9/2/10"
    result = one(ok(j, activate, 7.0), Read)
    assert result.path == "/9/2/9"
    verify = one(j.answered(result.seq, 7.5, code="2.05", value=2), Read)
    assert verify.path == "/9/2/1"
    j.answered(verify.seq, 8.0, code="2.05", value="2.0")
    assert j.state is JobState.SUCCEEDED


def test_software_installation_failure_is_explained() -> None:
    j = job(Strategy.PULL_COAP, PackageKind.SOFTWARE, instance=0)
    write = one(observed(j, j.start(0.0), 0.0), WriteUri)
    assert write.path == "/9/0/3"
    ok(j, write, 1.0)
    ok(j, one(j.reported(2.0, state=3), Execute), 3.0)
    j.reported(4.0, result=58)
    assert j.state is JobState.FAILED
    assert j.detail == "Update Result 58: software installation failure"


def test_software_install_state_without_install_is_impossible() -> None:
    j = job(Strategy.PULL_COAP, PackageKind.SOFTWARE)
    ok(j, one(observed(j, j.start(0.0), 0.0), WriteUri), 1.0)
    j.reported(2.0, state=4)
    assert j.state is JobState.FAILED and "Install was never sent" in j.detail


def test_an_installed_software_is_uninstalled_for_update_before_the_new_package() -> None:
    """Object 9 takes a package only in INITIAL: INSTALLED → Uninstall "1" (ForUpdate)."""
    j = job(Strategy.PULL_COAP, PackageKind.SOFTWARE, instance=1)
    uninstall = one(observed(j, j.start(0.0), 0.0, state=4), Execute)
    assert (uninstall.path, uninstall.arguments) == ("/9/1/6", "1")
    assert isinstance(uninstall, Execute)
    write = one(ok(j, uninstall, 1.0), WriteUri)
    assert write.path == "/9/1/3"


def test_a_delivered_software_package_is_dropped_before_the_new_one() -> None:
    j = job(Strategy.PUSH, PackageKind.SOFTWARE)
    uninstall = one(observed(j, j.start(0.0), 0.0, state=3), Execute)
    assert isinstance(uninstall, Execute)
    assert (uninstall.path, uninstall.arguments) == ("/9/0/6", None)
    assert one(ok(j, uninstall, 1.0), WritePackage).path == "/9/0/2"


# -- persistence --------------------------------------------------------------------------------


def test_a_stored_job_resumes_where_it_stopped() -> None:
    j = job()
    to_downloading(j, now=1.0)
    stored = UpdateJob.from_json(j.to_json())
    assert stored.view() == j.view() and stored.timer == j.timer
    actions = stored.resume(50.0)
    assert {a.path for a in actions if isinstance(a, Observe)} == {"/5/0/3", "/5/0/5"}
    assert stored.timer == 101.0  # the stored deadline, not a new one
    assert isinstance(one(stored.reported(51.0, state=2), Execute), Execute)


def test_a_job_whose_observes_failed_on_resume_observes_again_with_the_next_delivery() -> None:
    """Resumed (a restart, or a takeover by another node) while the device is out of reach:
    the Observes time out; when the download is delivered again the Observes go with it,
    else the job could never hear State Downloaded."""
    j = job()
    to_downloading(j, now=1.0)
    stored = UpdateJob.from_json(j.to_json())
    for action in stored.resume(50.0):
        assert stored.answered(action.seq, 55.0, timed_out=True) == []
    assert stored.unobserved == {"/5/0/3", "/5/0/5"}
    assert stored.tick(101.0) == []  # the stored download deadline: a new delivery, later
    assert stored.timer is not None
    reset = one(stored.tick(stored.timer), ResetDownload)
    again = ok(stored, reset, 110.0)
    assert isinstance(one(again, WriteUri), WriteUri)
    observed(stored, again, 110.5)  # the device answers them this time
    assert stored.unobserved == set()
    assert ok(stored, one(again, WriteUri), 111.0) == []
    assert isinstance(one(stored.reported(112.0, state=2), Execute), Execute)


def test_a_stored_job_in_a_request_step_sends_it_again() -> None:
    j = job()
    to_updating(j)
    result = one(j.registered(30.0), Read)
    verify = one(j.answered(result.seq, 31.0, code="2.05", value=1), Read)
    stored = UpdateJob.from_json(j.to_json())
    again = one(stored.resume(40.0), Read)
    assert again.path == "/3/0/3" and again.seq > verify.seq
    stored.answered(again.seq, 41.0, code="2.05", value="2.0")
    assert stored.state is JobState.SUCCEEDED


def test_a_delivery_in_flight_at_the_stop_is_reset_then_sent_again() -> None:
    j = job()
    observed(j, j.start(0.0), 0.0)
    assert j.step is Step.DELIVER
    stored = UpdateJob.from_json(j.to_json())
    reset = one(stored.resume(5.0), ResetDownload)
    assert isinstance(one(ok(stored, reset, 6.0), WriteUri), WriteUri)
    assert stored.view().attempts == 1


def test_from_json_refuses_what_is_not_a_job() -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        UpdateJob.from_json({"endpoint": "x"})


@pytest.mark.parametrize(
    ("protocols", "offered", "choice", "schemes"),
    [
        # a device that advertises HTTPS alone is handed https, never http
        ({0: 3}, ("coap", "http", "https"), Strategy.PULL_HTTP, ("https",)),
        ({0: 2}, ("coap", "http", "https"), Strategy.PULL_HTTP, ("http",)),
        ({0: 2, 1: 3}, ("coap", "http", "https"), Strategy.PULL_HTTP, ("https", "http")),
        ({0: 2, 1: 3}, ("coap", "https"), Strategy.PULL_HTTP, ("https",)),
        # a scheme the server has no listener for is not chosen: push instead
        ({0: 2}, ("coap", "https"), Strategy.PUSH, ()),
        ({0: 3}, ("coap", "http"), Strategy.PUSH, ()),
    ],
)
def test_auto_picks_an_http_scheme_both_sides_have(
    protocols: dict[int, int],
    offered: tuple[str, ...],
    choice: Strategy,
    schemes: tuple[str, ...],
) -> None:
    j = job(Strategy.AUTO, offered=offered)
    read = one(j.start(0.0), Read)
    actions = j.answered(read.seq, 1.0, code="2.05", value={8: protocols, 9: 2})
    assert j.strategy is choice
    if choice is Strategy.PULL_HTTP:
        write = one(observed(j, actions, 1.0), WriteUri)
        assert isinstance(write, WriteUri)
        assert write.transport == "http" and write.schemes == schemes
        # kept across a restart
        again = UpdateJob.from_json(j.to_json())
        assert again.http_schemes == schemes and again.offered == tuple(sorted(offered))


def test_auto_fails_when_the_only_http_scheme_is_not_served_and_push_is_refused() -> None:
    j = job(Strategy.AUTO, offered=("coap", "https"))
    read = one(j.start(0.0), Read)
    j.answered(read.seq, 1.0, code="2.05", value={8: {0: 2}, 9: 0})
    assert j.state is JobState.FAILED and "no delivery method" in j.detail


# -- an Execute sent again (resume, takeover, retry) ----------------------------------------------


def executing(strategy: Strategy = Strategy.PUSH) -> tuple[UpdateJob, Action]:
    """A job that sent Execute Update and was stored before its answer came back (what the
    node that takes it over after a lapsed lease, or a restarted server, reads)."""
    j = job(strategy)
    to_downloading(j)
    execute = one(j.reported(2.0, state=2), Execute)
    assert j.step is Step.EXECUTE
    return UpdateJob.from_json(j.to_json()), execute


def test_a_job_resumed_after_its_execute_reached_the_device_does_not_execute_again() -> None:
    """The flaky campaign takeover: the first Execute reached the device (Updating), the
    lease lapsed before its answer; the job taken over must not send a second one, which the
    device refuses with 4.05 (not Downloaded) though the update is under way."""
    stored, _ = executing()
    actions = stored.resume(3.0)
    assert not any(isinstance(a, Execute) for a in actions)
    read = one(actions, Read)
    assert read.path == "/5/0"
    assert stored.answered(read.seq, 3.1, code="2.05", value={3: 3, 5: 0}) == []
    assert stored.step is Step.REBOOT and stored.state is JobState.UPDATING
    verify = one(
        stored.answered(one(stored.registered(4.0), Read).seq, 4.1, code="2.05", value=1), Read
    )
    stored.answered(verify.seq, 4.2, code="2.05", value="2.0")
    assert stored.state is JobState.SUCCEEDED


def test_a_resumed_execute_goes_out_when_the_device_is_still_downloaded() -> None:
    stored, first = executing()
    read = one(stored.resume(3.0), Read)
    execute = one(stored.answered(read.seq, 3.1, code="2.05", value={3: 2, 5: 0}), Execute)
    assert execute.path == "/5/0/2" and execute.seq > first.seq
    assert ok(stored, execute, 3.2) == [] and stored.step is Step.REBOOT


def test_a_resumed_execute_of_a_device_that_already_rebooted_reads_the_result() -> None:
    stored, _ = executing()
    read = one(stored.resume(3.0), Read)
    result = one(stored.answered(read.seq, 3.1, code="2.05", value={3: 0, 5: 1}), Read)
    assert result.path == "/5/0/5" and stored.state is JobState.VERIFYING


def test_a_resumed_execute_of_a_device_that_lost_the_package_delivers_it_again() -> None:
    stored, _ = executing()
    read = one(stored.resume(3.0), Read)
    assert stored.answered(read.seq, 3.1, code="2.05", value={3: 0, 5: 0}) == []
    assert stored.step is Step.RESET and "no longer holds the package" in stored.detail
    assert stored.timer is not None
    assert isinstance(one(stored.tick(stored.timer), ResetDownload), ResetDownload)


def test_a_resumed_execute_of_a_failed_update_fails_with_the_result() -> None:
    stored, _ = executing()
    read = one(stored.resume(3.0), Read)
    stored.answered(read.seq, 3.1, code="2.05", value={3: 2, 5: 8})
    assert stored.state is JobState.FAILED and stored.detail.startswith("Update Result 8")


def test_an_execute_retried_after_a_5xx_asks_the_state_first() -> None:
    j = job()
    to_downloading(j)
    execute = one(j.reported(2.0, state=2), Execute)
    j.answered(execute.seq, 2.5, code="5.03")
    assert j.timer is not None and "5.03" in j.detail
    read = one(j.tick(j.timer), Read)
    assert read.path == "/5/0"
    assert j.answered(read.seq, 8.0, code="2.05", value={3: 3, 5: 0}) == []
    assert j.step is Step.REBOOT


def test_a_resumed_execute_whose_state_read_times_out_is_retried() -> None:
    stored, _ = executing()
    read = one(stored.resume(3.0), Read)
    assert stored.answered(read.seq, 13.0, timed_out=True) == []
    assert stored.step is Step.EXECUTE and stored.timer == 18.0
    assert one(stored.tick(18.0), Read).path == "/5/0"


def test_a_resumed_software_install_that_happened_goes_on_to_the_result() -> None:
    j = job(kind=PackageKind.SOFTWARE, instance=1)
    to_downloading(j)
    install = one(j.reported(2.0, state=3), Execute)
    assert install.path == "/9/1/4"
    stored = UpdateJob.from_json(j.to_json())
    read = one(stored.resume(3.0), Read)
    assert read.path == "/9/1"
    result = one(stored.answered(read.seq, 3.1, code="2.05", value={7: 4, 9: 3}), Read)
    assert result.path == "/9/1/9"


# -- a delivery sent again (timeout, 5.xx, resume) ------------------------------------------------


def delivery_lost(
    strategy: Strategy = Strategy.PULL_COAP, kind: PackageKind = PackageKind.FIRMWARE
) -> tuple[UpdateJob, Action]:
    """A job whose first delivery got no answer (it may have reached the device); returns
    the Read the retry sends first."""
    j = job(strategy, kind, instance=1)
    delivery = observed(j, j.start(0.0), 0.0)[-1]
    assert isinstance(delivery, (WriteUri, WritePackage))
    assert j.answered(delivery.seq, 10.0, timed_out=True) == []
    assert j.timer is not None
    actions = j.tick(j.timer)
    assert not any(isinstance(a, (WriteUri, WritePackage)) for a in actions)
    read = one(actions, Read)
    assert read.path == j.instance_path
    return j, read


def test_a_delivery_retried_after_the_device_finished_the_download_goes_on_to_execute() -> None:
    """The first Package URI got there but its answer was lost; the device downloaded the
    package meanwhile (Downloaded): a second Write would be refused (4.05) and fail a good
    update. The job learns the State and executes instead."""
    j, read = delivery_lost()
    actions = j.answered(read.seq, 16.0, code="2.05", value={3: 2, 5: 0})
    assert not any(isinstance(a, WriteUri) for a in actions)
    execute = one(actions, Execute)
    assert execute.path == "/5/0/2" and j.state is JobState.DOWNLOADED
    assert ok(j, execute, 17.0) == [] and j.step is Step.REBOOT
    assert j.view().attempts == 1


def test_a_push_retried_after_a_5xx_while_the_device_downloads_waits_for_it() -> None:
    j = job(Strategy.PUSH)
    write = one(observed(j, j.start(0.0), 0.0), WritePackage)
    j.answered(write.seq, 1.0, code="5.03")
    assert j.timer == 6.0
    read = one(j.tick(6.0), Read)
    assert read.timeout == 10  # a Read, not the push: the request timeout
    assert j.answered(read.seq, 7.0, code="2.05", value={3: 1, 5: 0}) == []
    assert j.step is Step.DOWNLOAD and j.timer == 107.0  # its own download timeout
    assert isinstance(one(j.reported(50.0, state=2), Execute), Execute)


def test_a_retried_delivery_to_a_device_still_idle_delivers_again() -> None:
    j, read = delivery_lost()
    again = one(j.answered(read.seq, 16.0, code="2.05", value={3: 0, 5: 0}), WriteUri)
    assert again.path == "/5/0/1" and j.view().attempts == 2
    assert ok(j, again, 17.0) == [] and j.step is Step.DOWNLOAD


def test_a_retried_delivery_to_a_device_holding_a_package_maybe_not_ours_resets_it() -> None:
    """The device was not seen idle when the delivery went out (its State was not known):
    the package it holds now may be another job's, so it is dropped and delivered again."""
    j = job()
    observes = [a for a in j.start(0.0) if isinstance(a, Observe)]
    write = None
    for a in observes:  # the device's answers carry no value
        for b in j.answered(a.seq, 0.0, code="2.05", value=None):
            write = b
    assert isinstance(write, WriteUri)
    j.answered(write.seq, 10.0, timed_out=True)
    assert j.timer is not None
    read = one(j.tick(j.timer), Read)
    reset = one(j.answered(read.seq, 16.0, code="2.05", value={3: 2, 5: 0}), ResetDownload)
    assert isinstance(one(ok(j, reset, 17.0), WriteUri), WriteUri)


def test_a_device_that_never_answers_the_delivery_fails_after_the_retries() -> None:
    """A retry that goes through the reset step (a package not known to be ours) keeps its
    attempt count: the retries still run out instead of starting over at attempt 1."""
    j = job()
    observes = [a for a in j.start(0.0) if isinstance(a, Observe)]
    write = [b for a in observes for b in j.answered(a.seq, 0.0, code="2.05", value=None)][-1]
    now, turns = 0.0, 0
    while turns < 10:
        now += 10.0
        j.answered(write.seq, now, timed_out=True)
        if j.finished:
            break
        assert j.timer is not None
        now = j.timer
        read = one(j.tick(now), Read)
        state = 2 if turns == 0 else 0  # a package maybe not ours, then idle after the reset
        actions = j.answered(read.seq, now, code="2.05", value={3: state, 5: 0})
        if turns == 0:
            actions = ok(j, one(actions, ResetDownload), now)
        write = one(actions, WriteUri)
        turns += 1
    assert turns == 2 and j.state is JobState.FAILED
    assert j.detail == "timeout: deliver (/5/0/1) not answered within 10 s (3 attempts)"


def test_a_device_that_never_answers_a_delivery_while_idle_fails_after_the_retries() -> None:
    j, read = delivery_lost()
    write = one(j.answered(read.seq, 16.0, code="2.05", value={3: 0, 5: 0}), WriteUri)
    j.answered(write.seq, 26.0, timed_out=True)
    read = one(j.tick(36.0), Read)
    write = one(j.answered(read.seq, 36.0, code="2.05", value={3: 0, 5: 0}), WriteUri)
    j.answered(write.seq, 46.0, timed_out=True)
    assert j.state is JobState.FAILED and j.detail.endswith("(3 attempts)")


def test_a_software_delivery_retried_after_the_package_was_delivered_installs_it() -> None:
    j, read = delivery_lost(kind=PackageKind.SOFTWARE)
    assert read.path == "/9/1"
    install = one(j.answered(read.seq, 16.0, code="2.05", value={7: 3, 9: 3}), Execute)
    assert install.path == "/9/1/4"


def test_a_software_delivery_retried_on_an_installed_device_uninstalls_first() -> None:
    j, read = delivery_lost(kind=PackageKind.SOFTWARE)
    uninstall = one(j.answered(read.seq, 16.0, code="2.05", value={7: 4, 9: 3}), Execute)
    assert uninstall.path == "/9/1/6" and uninstall.arguments == "1"
    assert isinstance(one(ok(j, uninstall, 17.0), WriteUri), WriteUri)


def test_a_software_job_resumed_in_its_delivery_reads_the_state_first() -> None:
    j = job(kind=PackageKind.SOFTWARE, instance=1)
    observed(j, j.start(0.0), 0.0)
    assert j.step is Step.DELIVER
    stored = UpdateJob.from_json(j.to_json())
    actions = stored.resume(5.0)
    assert not any(isinstance(a, WriteUri) for a in actions)
    read = one(actions, Read)
    assert read.path == "/9/1"
    install = one(stored.answered(read.seq, 6.0, code="2.05", value={7: 3, 9: 3}), Execute)
    assert install.path == "/9/1/4"


# -- an Activate sent again (resume, retry) -------------------------------------------------------


def activating(*, stored: bool = True) -> tuple[UpdateJob, Action]:
    """An object 9 job that sent Execute Activate (/9/2/10) (``stored``: and was stored
    before its answer)."""
    j = job(
        Strategy.PUSH,
        PackageKind.SOFTWARE,
        JobSettings(request_timeout=10, activate=True),
        instance=2,
    )
    ok(j, one(observed(j, j.start(0.0), 0.0), WritePackage), 1.0)
    ok(j, one(j.reported(4.0, state=3), Execute), 5.0)
    activate = one(j.reported(6.0, result=2) + j.reported(6.0, state=4), Execute)
    assert activate.path == "/9/2/10" and j.step is Step.ACTIVATE
    return (UpdateJob.from_json(j.to_json()) if stored else j), activate


def test_a_job_resumed_after_its_activate_reached_the_device_does_not_activate_again() -> None:
    stored, _ = activating()
    actions = stored.resume(7.0)
    assert not any(isinstance(a, Execute) for a in actions)
    read = one(actions, Read)
    assert read.path == "/9/2"
    result = one(stored.answered(read.seq, 7.1, code="2.05", value={7: 4, 9: 3, 12: True}), Read)
    assert result.path == "/9/2/9" and stored.state is JobState.VERIFYING


def test_a_resumed_activate_goes_out_when_the_software_is_not_active() -> None:
    stored, first = activating()
    read = one(stored.resume(7.0), Read)
    again = one(stored.answered(read.seq, 7.1, code="2.05", value={7: 4, 12: False}), Execute)
    assert again.path == "/9/2/10" and again.seq > first.seq
    assert one(ok(stored, again, 7.2), Read).path == "/9/2/9"


def test_an_activate_retried_after_a_5xx_asks_the_activation_state_first() -> None:
    j, activate = activating(stored=False)
    j.answered(activate.seq, 7.0, code="5.03")
    assert j.timer == 12.0
    read = one(j.tick(12.0), Read)
    assert read.path == "/9/2"
    assert one(j.answered(read.seq, 12.1, code="2.05", value={12: True}), Read).path == "/9/2/9"

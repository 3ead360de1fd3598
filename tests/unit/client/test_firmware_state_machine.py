"""Object 5's state machine in memory: every transition of the Core specification's Firmware
Update diagram, the refused ones (4.05, nothing changed), and the failure knobs."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m_client.firmware import FirmwareUpdate, FwResult, FwState, UpdateSimulation
from lwm2m_client.firmware_image import make_image
from lwm2m_client.objects import ObjectTree
from lwm2m_client.package_download import DownloadError, DownloadFailure

from .update_helpers import (
    CHANGED,
    METHOD_NOT_ALLOWED,
    FakeHost,
    execute,
    management,
    recorder,
    tree,
    uri_with_digest,
    write_opaque,
    write_text,
)

IMAGE = make_image("demo-fw", "1.2.3", b"firmware body " * 100)
URI = uri_with_digest("coap://fw.example/fw/a", IMAGE)


def setup(
    simulation: UpdateSimulation | None = None,
) -> tuple[ObjectTree, FakeHost, FirmwareUpdate]:
    objects, host = tree(), FakeHost()
    host.packages[URI] = IMAGE
    return (
        objects,
        host,
        FirmwareUpdate(objects, host, simulation or UpdateSimulation(reboot_delay=0)),
    )


async def downloaded(fw: FirmwareUpdate, objects: ObjectTree) -> None:
    dm = management(objects)
    assert (await write_text(dm, "/5/0/1", URI)).code == CHANGED
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.DOWNLOADED, FwResult.INITIAL)


async def test_initial_resources() -> None:
    objects, _host, fw = setup()
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.INITIAL)
    assert objects.get_value("/5/0/8") == {0: 0, 1: 1, 2: 2, 3: 3}
    assert objects.get_value("/5/0/9") == 2
    assert objects.get_value("/5/0/6") == "pylwm2m-demo"
    assert objects.get_value("/5/0/1") == ""


async def test_pull_idle_downloading_downloaded() -> None:
    objects, host, fw = setup()
    seen = recorder(objects, "/5/0/3", "/5/0/5")
    host.hold = asyncio.Event()
    dm = management(objects)
    assert (await write_text(dm, "/5/0/1", URI)).code == CHANGED
    assert fw.state is FwState.DOWNLOADING
    assert objects.get_value("/5/0/1") == URI
    host.hold.set()
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.DOWNLOADED, FwResult.INITIAL)
    assert seen == [("/5/0/3", 1), ("/5/0/3", 2)]
    assert host.fetched == [URI]


async def test_update_reboots_into_the_new_version() -> None:
    objects, host, fw = setup()
    await downloaded(fw, objects)
    seen = recorder(objects, "/5/0/3", "/5/0/5")
    dm = management(objects)
    assert (await execute(dm, "/5/0/2")).code == CHANGED
    assert fw.state is FwState.UPDATING
    await fw.settle()
    assert host.reboots == 1
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.SUCCESS)
    assert objects.get_value("/3/0/3") == "1.2.3"
    assert objects.get_value("/5/0/6") == "demo-fw" and objects.get_value("/5/0/7") == "1.2.3"
    # the result is set before the State it goes with
    assert seen == [("/5/0/3", 3), ("/5/0/5", 1), ("/5/0/3", 0)]


@pytest.mark.parametrize("state", ["idle", "downloading", "updating"])
async def test_execute_update_outside_downloaded_is_refused(state: str) -> None:
    objects, host, fw = setup()
    dm = management(objects)
    if state == "downloading":
        host.hold = asyncio.Event()
        await write_text(dm, "/5/0/1", URI)
    elif state == "updating":
        await downloaded(fw, objects)
        host_reboot = asyncio.Event()

        async def slow_reboot(apply: object) -> None:
            await host_reboot.wait()

        host.reboot = slow_reboot  # type: ignore[method-assign, assignment]
        await execute(dm, "/5/0/2")
    before = (fw.state, fw.result)
    response = await execute(dm, "/5/0/2")
    assert response.code == METHOD_NOT_ALLOWED
    assert (fw.state, fw.result) == before
    if state == "updating":
        # nor can the server reset an update in progress
        assert (await write_text(dm, "/5/0/1", "")).code == METHOD_NOT_ALLOWED
        assert (await write_opaque(dm, "/5/0/0", b"\x00")).code == METHOD_NOT_ALLOWED
    await fw.close()


async def test_writes_while_downloading_or_downloaded_are_refused() -> None:
    objects, host, fw = setup()
    dm = management(objects)
    host.hold = asyncio.Event()
    await write_text(dm, "/5/0/1", URI)
    assert (await write_text(dm, "/5/0/1", URI)).code == METHOD_NOT_ALLOWED
    assert (await write_opaque(dm, "/5/0/0", IMAGE)).code == METHOD_NOT_ALLOWED
    host.hold.set()
    await fw.settle()
    assert fw.state is FwState.DOWNLOADED
    assert (await write_text(dm, "/5/0/1", URI)).code == METHOD_NOT_ALLOWED
    assert (await write_opaque(dm, "/5/0/0", IMAGE)).code == METHOD_NOT_ALLOWED
    assert host.fetched == [URI]


@pytest.mark.parametrize("reset", ["empty uri", "null package", "empty package"])
async def test_reset_from_downloaded_and_downloading(reset: str) -> None:
    objects, host, fw = setup()
    dm = management(objects)

    async def do_reset() -> None:
        if reset == "empty uri":
            assert (await write_text(dm, "/5/0/1", "")).code == CHANGED
        else:
            data = b"\x00" if reset == "null package" else b""
            assert (await write_opaque(dm, "/5/0/0", data)).code == CHANGED

    await downloaded(fw, objects)
    await do_reset()
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.INITIAL)
    assert fw.image is None and objects.get_value("/5/0/1") == ""
    host.hold = asyncio.Event()
    await write_text(dm, "/5/0/1", URI)
    assert fw.state is FwState.DOWNLOADING
    await do_reset()
    host.hold.set()
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.INITIAL)  # the download was dropped


async def test_cancel() -> None:
    objects, host, fw = setup()
    dm = management(objects)
    assert (await execute(dm, "/5/0/10")).code == METHOD_NOT_ALLOWED
    host.hold = asyncio.Event()
    await write_text(dm, "/5/0/1", URI)
    assert (await execute(dm, "/5/0/10")).code == CHANGED
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.CANCELLED)
    host.hold.set()
    await fw.settle()
    assert fw.state is FwState.IDLE


async def test_push_whole_package() -> None:
    objects, _host, fw = setup()
    dm = management(objects)
    assert (await write_opaque(dm, "/5/0/0", IMAGE)).code == CHANGED
    assert (fw.state, fw.result) == (FwState.DOWNLOADED, FwResult.INITIAL)
    assert fw.image is not None and fw.image.version == "1.2.3"


async def test_push_blocks_show_downloading_and_a_stalled_push_is_lost() -> None:
    _objects, _host, fw = setup(UpdateSimulation(push_timeout=0.05))
    fw.push_block(0, True)
    assert fw.state is FwState.DOWNLOADING
    fw.push_block(1, True)
    await fw.settle()  # no more blocks: the watchdog fires
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.CONNECTION_LOST)


async def test_a_push_completes_after_its_blocks() -> None:
    objects, _host, fw = setup()
    dm = management(objects)
    fw.push_block(0, True)
    fw.push_block(1, False)
    assert (await write_opaque(dm, "/5/0/0", IMAGE)).code == CHANGED
    await fw.settle()
    assert fw.state is FwState.DOWNLOADED


@pytest.mark.parametrize(
    ("served", "uri", "result"),
    [
        (IMAGE, "coap://fw.example/x?sha256=" + "ab" * 32, FwResult.INTEGRITY_FAILURE),
        (IMAGE[:-1] + b"!", "coap://fw.example/x", FwResult.INTEGRITY_FAILURE),  # image digest
        (IMAGE[:-10], "coap://fw.example/x", FwResult.INTEGRITY_FAILURE),  # truncated body
        (b"ELF not ours", "coap://fw.example/x", FwResult.UNSUPPORTED_PACKAGE),
        (DownloadError(DownloadFailure.INVALID_URI, "4.04"), "coap://h/x", FwResult.INVALID_URI),
        (
            DownloadError(DownloadFailure.CONNECTION_LOST, "timeout"),
            "http://h/x",
            FwResult.CONNECTION_LOST,
        ),
    ],
)
async def test_download_failures_go_back_to_idle_with_the_result(
    served: bytes | DownloadError, uri: str, result: FwResult
) -> None:
    objects, host, fw = setup()
    host.packages[uri] = served
    dm = management(objects)
    assert (await write_text(dm, "/5/0/1", uri)).code == CHANGED
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.IDLE, result)
    assert objects.get_value("/3/0/3") == "0.1.0"
    # a new attempt starts from result 0 again
    assert (await write_text(dm, "/5/0/1", URI)).code == CHANGED
    assert fw.result is FwResult.INITIAL
    await fw.settle()
    assert fw.state is FwState.DOWNLOADED


@pytest.mark.parametrize(
    ("uri", "result"),
    [
        ("ftp://fw.example/a", FwResult.UNSUPPORTED_PROTOCOL),
        ("tftp://fw.example/a", FwResult.UNSUPPORTED_PROTOCOL),
        ("no scheme at all", FwResult.INVALID_URI),
        ("coap:///no-host", FwResult.INVALID_URI),
        ("coap://fw.example:99999/a", FwResult.INVALID_URI),
    ],
)
async def test_unusable_uri_is_accepted_then_reported(uri: str, result: FwResult) -> None:
    objects, host, fw = setup()
    dm = management(objects)
    assert (await write_text(dm, "/5/0/1", uri)).code == CHANGED
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.IDLE, result)
    assert host.fetched == []


async def test_unsupported_scheme_follows_what_the_host_supports() -> None:
    objects, host, fw = setup()
    host.schemes = ("coap",)  # type: ignore[misc]
    dm = management(objects)
    await write_text(dm, "/5/0/1", "https://fw.example/a")
    assert fw.result is FwResult.UNSUPPORTED_PROTOCOL


async def test_knob_corrupt_download() -> None:
    objects, _host, fw = setup(UpdateSimulation(corrupt_download=True))
    dm = management(objects)
    await write_text(dm, "/5/0/1", URI)
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.INTEGRITY_FAILURE)
    assert (await write_opaque(dm, "/5/0/0", IMAGE)).code == CHANGED  # push too
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.INTEGRITY_FAILURE)


async def test_knob_fail_update() -> None:
    objects, host, fw = setup(UpdateSimulation(fail_update=True, reboot_delay=0))
    await downloaded(fw, objects)
    dm = management(objects)
    assert (await execute(dm, "/5/0/2")).code == CHANGED
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.DOWNLOADED, FwResult.UPDATE_FAILED)
    assert host.reboots == 0 and objects.get_value("/3/0/3") == "0.1.0"


async def test_knob_vanish_mid_pull_and_come_back() -> None:
    objects, host, fw = setup(UpdateSimulation(vanish_after_blocks=2, vanish_for=3.0))
    dm = management(objects)
    await write_text(dm, "/5/0/1", URI)
    for _ in range(5):
        await asyncio.sleep(0)
    assert host.vanished == [3.0] and fw.vanished
    assert fw.state is FwState.DOWNLOADING  # nobody hears from it meanwhile
    assert host.back is not None
    host.back.set_result(None)
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.CONNECTION_LOST)


async def test_knob_vanish_mid_push() -> None:
    objects, host, fw = setup(
        UpdateSimulation(vanish_after_blocks=3, vanish_for=None, push_timeout=0.01)
    )
    for number in range(3):
        fw.push_block(number, True)
    await asyncio.sleep(0.05)  # longer than push_timeout: the loss waits for the device
    assert host.vanished == [None]
    assert fw.state is FwState.DOWNLOADING  # noticed only once it is back (or it could not tell)
    dm = management(objects)
    # the body aiocoap may still complete is not taken: the device is out of reach
    assert (await write_opaque(dm, "/5/0/0", IMAGE)).code == CHANGED
    assert fw.state is FwState.DOWNLOADING
    assert host.back is not None
    host.back.set_result(None)
    await asyncio.sleep(0)
    await fw.settle()
    assert (fw.state, fw.result) == (FwState.IDLE, FwResult.CONNECTION_LOST)


async def test_package_is_write_only_and_state_read_only() -> None:
    objects, _host, _fw = setup()
    dm = management(objects)
    from lwm2m_client.management import Request
    from object_models.path import LwM2mPath

    read = await dm.handle(Request("GET", LwM2mPath(5, 0, 0)))
    assert read.code == METHOD_NOT_ALLOWED
    assert (await write_text(dm, "/5/0/3", "2")).code == METHOD_NOT_ALLOWED
    assert (await write_text(dm, "/5/0/5", "1")).code == METHOD_NOT_ALLOWED


async def test_a_refused_push_counts_no_blocks() -> None:
    objects, host, fw = setup(UpdateSimulation(vanish_after_blocks=2, push_timeout=0.01))
    assert (await write_opaque(management(objects), "/5/0/0", IMAGE)).code == CHANGED
    assert fw.state is FwState.DOWNLOADED
    for number in range(4):
        fw.push_block(number, True)
    await asyncio.sleep(0)
    assert host.vanished == []  # the knob counts only blocks of a push the device took
    assert (fw.state, fw.result) == (FwState.DOWNLOADED, FwResult.INITIAL)
    assert (await write_opaque(management(objects), "/5/0/0", IMAGE)).code == METHOD_NOT_ALLOWED


async def test_protocol_support_follows_the_credentials() -> None:
    objects, host, fw = setup()
    host.schemes = ("coap", "http")  # type: ignore[misc]
    fw.refresh_protocols()
    assert objects.get_value("/5/0/8") == {0: 0, 1: 2}

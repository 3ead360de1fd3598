"""Object 9's Package Installation and Activation state machines in memory: every transition,
the refused ones (4.05, nothing changed) and the knobs."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m_client.firmware import UpdateSimulation
from lwm2m_client.firmware_image import make_image
from lwm2m_client.objects import ObjectTree
from lwm2m_client.package_download import DownloadError, DownloadFailure
from lwm2m_client.software import SoftwareManagement, SwResult, SwState

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

IMAGE = make_image("analytics", "5.0", b"software " * 50)
URI = uri_with_digest("http://sw.example/a", IMAGE)


def setup(
    simulation: UpdateSimulation | None = None,
) -> tuple[ObjectTree, FakeHost, SoftwareManagement]:
    objects, host = tree(), FakeHost()
    host.packages[URI] = IMAGE
    return objects, host, SoftwareManagement(objects, host, simulation)


async def delivered(sw: SoftwareManagement, objects: ObjectTree) -> None:
    assert (await write_text(management(objects), "/9/0/3", URI)).code == CHANGED
    await sw.settle()
    assert (sw.state, sw.result) == (SwState.DELIVERED, SwResult.DOWNLOADED_VERIFIED)


async def installed(sw: SoftwareManagement, objects: ObjectTree) -> None:
    await delivered(sw, objects)
    assert (await execute(management(objects), "/9/0/4")).code == CHANGED
    assert (sw.state, sw.result) == (SwState.INSTALLED, SwResult.INSTALLED)


async def test_initial() -> None:
    objects, _host, sw = setup()
    assert (sw.state, sw.result, sw.active) == (SwState.INITIAL, SwResult.INITIAL, False)
    assert objects.get_value("/9/0/0") == "" and objects.get_value("/9/0/8") is False


async def test_pull_download_started_downloaded_delivered() -> None:
    objects, host, sw = setup()
    seen = recorder(objects, "/9/0/7", "/9/0/9")
    host.hold = asyncio.Event()
    assert (await write_text(management(objects), "/9/0/3", URI)).code == CHANGED
    assert (sw.state, sw.result) == (SwState.DOWNLOAD_STARTED, SwResult.DOWNLOADING)
    host.hold.set()
    await sw.settle()
    assert seen == [
        ("/9/0/9", 1),
        ("/9/0/7", 1),
        ("/9/0/7", 2),
        ("/9/0/9", 3),
        ("/9/0/7", 3),
    ]


async def test_install_then_activate_and_deactivate() -> None:
    objects, host, sw = setup()
    dm = management(objects)
    assert (await execute(dm, "/9/0/10")).code == METHOD_NOT_ALLOWED  # nothing installed
    await installed(sw, objects)
    assert objects.get_value("/9/0/0") == "analytics" and objects.get_value("/9/0/1") == "5.0"
    assert sw.active is False and host.announced == 0
    assert (await execute(dm, "/9/0/10")).code == CHANGED
    assert sw.active is True
    assert (await execute(dm, "/9/0/11")).code == CHANGED
    assert sw.active is False


async def test_install_outside_delivered_is_refused() -> None:
    objects, host, sw = setup()
    dm = management(objects)
    assert (await execute(dm, "/9/0/4")).code == METHOD_NOT_ALLOWED
    host.hold = asyncio.Event()
    await write_text(dm, "/9/0/3", URI)
    assert (await execute(dm, "/9/0/4")).code == METHOD_NOT_ALLOWED
    assert sw.state is SwState.DOWNLOAD_STARTED
    host.hold.set()
    await sw.settle()


async def test_a_new_package_needs_initial() -> None:
    objects, _host, sw = setup()
    dm = management(objects)
    await delivered(sw, objects)
    assert (await write_text(dm, "/9/0/3", URI)).code == METHOD_NOT_ALLOWED
    assert (await execute(dm, "/9/0/4")).code == CHANGED
    assert (await write_text(dm, "/9/0/3", URI)).code == METHOD_NOT_ALLOWED
    assert (await write_opaque(dm, "/9/0/2", IMAGE)).code == METHOD_NOT_ALLOWED
    # Uninstall "for update": back to INITIAL, the installed software stays
    assert (await execute(dm, "/9/0/6", "1")).code == CHANGED
    assert (sw.state, sw.result) == (SwState.INITIAL, SwResult.INITIAL)
    assert objects.get_value("/9/0/1") == "5.0"
    newer = make_image("analytics", "5.1", b"newer")
    assert (await write_opaque(dm, "/9/0/2", newer)).code == CHANGED
    assert sw.state is SwState.DELIVERED
    await execute(dm, "/9/0/4")
    assert objects.get_value("/9/0/1") == "5.1"


async def test_uninstall() -> None:
    objects, _host, sw = setup()
    dm = management(objects)
    assert (await execute(dm, "/9/0/6")).code == METHOD_NOT_ALLOWED
    assert (await execute(dm, "/9/0/6", "1")).code == METHOD_NOT_ALLOWED
    await installed(sw, objects)
    await execute(dm, "/9/0/10")
    assert (await execute(dm, "/9/0/6")).code == CHANGED
    assert (sw.state, sw.result, sw.active) == (SwState.INITIAL, SwResult.INITIAL, False)
    assert objects.get_value("/9/0/0") == "" and objects.get_value("/9/0/1") == ""
    await delivered(sw, objects)  # a delivered package can be removed before Install too
    assert (await execute(dm, "/9/0/6", "0")).code == CHANGED
    assert sw.state is SwState.INITIAL and sw.image is None


async def test_abandon_a_pending_package_with_an_empty_uri() -> None:
    objects, _host, sw = setup()
    dm = management(objects)
    await delivered(sw, objects)
    assert (await write_text(dm, "/9/0/3", "")).code == CHANGED
    assert (sw.state, sw.result) == (SwState.INITIAL, SwResult.INITIAL)
    await installed(sw, objects)
    assert (await write_text(dm, "/9/0/3", "")).code == METHOD_NOT_ALLOWED


@pytest.mark.parametrize(
    ("served", "uri", "result"),
    [
        (IMAGE, "http://sw/x?sha256=" + "00" * 32, SwResult.INTEGRITY_FAILURE),
        (IMAGE[:-1] + b"?", "http://sw/x", SwResult.INTEGRITY_FAILURE),
        (b"tarball", "http://sw/x", SwResult.UNSUPPORTED_PACKAGE),
        (DownloadError(DownloadFailure.CONNECTION_LOST, "reset"), "http://sw/x",
         SwResult.CONNECTION_LOST),
        (DownloadError(DownloadFailure.INVALID_URI, "404"), "http://sw/x", SwResult.INVALID_URI),
    ],
)  # fmt: skip
async def test_download_failures(served: bytes | DownloadError, uri: str, result: SwResult) -> None:
    objects, host, sw = setup()
    host.packages[uri] = served
    await write_text(management(objects), "/9/0/3", uri)
    await sw.settle()
    assert (sw.state, sw.result) == (SwState.INITIAL, result)


async def test_unusable_uri_is_invalid() -> None:
    objects, host, sw = setup()
    assert (await write_text(management(objects), "/9/0/3", "gopher://x/y")).code == CHANGED
    assert (sw.state, sw.result) == (SwState.INITIAL, SwResult.INVALID_URI)
    assert host.fetched == []


async def test_knob_fail_install() -> None:
    objects, _host, sw = setup(UpdateSimulation(fail_update=True))
    await delivered(sw, objects)
    assert (await execute(management(objects), "/9/0/4")).code == CHANGED
    assert (sw.state, sw.result) == (SwState.DELIVERED, SwResult.INSTALL_FAILED)
    assert objects.get_value("/9/0/1") == ""


async def test_knob_corrupt() -> None:
    objects, _host, sw = setup(UpdateSimulation(corrupt_download=True))
    await write_opaque(management(objects), "/9/0/2", IMAGE)
    assert (sw.state, sw.result) == (SwState.INITIAL, SwResult.INTEGRITY_FAILURE)


async def test_knob_vanish_mid_pull() -> None:
    objects, host, sw = setup(UpdateSimulation(vanish_after_blocks=1, vanish_for=1.0))
    await write_text(management(objects), "/9/0/3", URI)
    for _ in range(5):
        await asyncio.sleep(0)
    assert host.vanished == [1.0] and host.back is not None
    host.back.set_result(None)
    await sw.settle()
    assert (sw.state, sw.result) == (SwState.INITIAL, SwResult.CONNECTION_LOST)


async def test_update_supported_objects_announces_after_install() -> None:
    objects, host, sw = setup()
    dm = management(objects)
    assert (await write_text(dm, "/9/0/8", "1")).code == CHANGED
    await installed(sw, objects)
    await sw.settle()
    assert host.announced == 1


async def test_instances_are_independent() -> None:
    objects, host = tree(), FakeHost()
    host.packages[URI] = IMAGE
    first = SoftwareManagement(objects, host, instance_id=0)
    second = SoftwareManagement(objects, host, instance_id=1)
    await write_text(management(objects), "/9/1/3", URI)
    await second.settle()
    assert second.state is SwState.DELIVERED and first.state is SwState.INITIAL

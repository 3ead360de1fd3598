"""The download server's decisions with an explicit clock, fed CoAP requests directly (no
sockets): expiry at the exact millisecond, revocation through the lookup cache, a package deleted
under a cached grant, Block2 numbering and the events."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lwm2m_runtime.coap import Block, Code, Message, OptionNumber
from lwm2m_runtime.server import IncomingRequest
from lwm2m_server.config import FirmwareSettings, ServerConfig
from lwm2m_server.firmware.contracts import DownloadEvent, DownloadOutcome, PackageKind
from lwm2m_server.firmware.downloads import DownloadServer
from lwm2m_server.firmware.package_store import MemoryBlobs, MemoryFirmwareRecords
from lwm2m_server.firmware.packages import Library
from lwm2m_server.firmware.setup import set_coap_bases
from object_models.errors import Lwm2mError

IMAGE = bytes(range(256)) * 10  # 2560 bytes: blocks of 1024, 1024, 512
SHA = hashlib.sha256(IMAGE).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _setup() -> tuple[Clock, Library, DownloadServer, list[DownloadEvent]]:
    clock = Clock()
    library = Library(MemoryFirmwareRecords(), MemoryBlobs(), clock=clock)
    library.add(IMAGE, kind=PackageKind.FIRMWARE, name="fw", version="1")
    downloads = DownloadServer(library.records, library, clock=clock)
    events: list[DownloadEvent] = []
    downloads.subscribe(events.append)
    return clock, library, downloads, events


def _get(downloads: DownloadServer, token: str, block: Block | None = None) -> Message:
    message = Message.request(Code.GET, ["fw", token])
    return downloads.coap(IncomingRequest(message, ("127.0.0.1", 5683), block))


def test_blocks_in_order_with_size2_etag_and_events() -> None:
    _, _, downloads, events = _setup()
    token = downloads.grant(SHA, "dev-1", 60).token
    answers = [_get(downloads, token, Block(n, False, 6)) for n in range(3)]
    assert b"".join(a.payload for a in answers) == IMAGE
    assert [a.block2 for a in answers] == [
        Block(0, True, 6), Block(1, True, 6), Block(2, False, 6)
    ]  # fmt: skip
    assert answers[0].size2 == len(IMAGE) and answers[1].size2 is None
    assert {a.etag for a in answers} == {bytes.fromhex(SHA[:16])}
    assert all(a.content_format == 42 for a in answers)
    assert [e.outcome for e in events] == [DownloadOutcome.STARTED, DownloadOutcome.COMPLETED]
    # no Block2 asked for: the first block, announced as such
    first = _get(downloads, token)
    assert first.block2 == Block(0, True, 6) and first.payload == IMAGE[:1024]


def test_expiry_is_exact_even_for_a_cached_grant() -> None:
    clock, _, downloads, events = _setup()
    grant = downloads.grant(SHA, "dev-1", 60)
    assert grant.expires_ms == 1_060_000
    assert _get(downloads, grant.token).code == Code.CONTENT  # cached from here on
    clock.now = 1059.999
    assert _get(downloads, grant.token).code == Code.CONTENT
    clock.now = 1060.0
    expired = _get(downloads, grant.token)
    assert expired.code == Code.NOT_FOUND and expired.payload == b"download token expired"
    assert events[-1] == DownloadEvent(
        DownloadOutcome.REFUSED, "dev-1", SHA, "download token expired"
    )


def test_revoke_and_delete_take_effect_through_the_cache() -> None:
    _, library, downloads, _ = _setup()
    token = downloads.grant(SHA, "dev-1", 60).token
    other = downloads.grant(SHA, "dev-2", 60).token
    assert _get(downloads, token).code == Code.CONTENT
    downloads.revoke("dev-1")
    assert _get(downloads, token).payload == b"unknown download token"
    assert _get(downloads, other).code == Code.CONTENT
    library.delete(SHA)
    downloads.forget_package(SHA)
    assert _get(downloads, other).payload == b"package no longer available"


def test_bad_requests() -> None:
    _, _, downloads, _ = _setup()
    token = downloads.grant(SHA, "dev-1", 60).token
    past = _get(downloads, token, Block(3, False, 6))
    assert past.code == Code.BAD_OPTION
    put = downloads.coap(IncomingRequest(Message.request(Code.PUT, ["fw", token]), ("h", 1)))
    assert put.code == Code.METHOD_NOT_ALLOWED
    assert _get(downloads, "x" * 200).code == Code.NOT_FOUND  # never looked up: not a token
    bare = downloads.coap(IncomingRequest(Message.request(Code.GET, ["fw"]), ("h", 1)))
    assert bare.code == Code.NOT_FOUND
    small = _get(downloads, token, Block(0, False, 2))  # 64-byte blocks asked for
    assert small.block2 == Block(0, True, 2) and small.payload == IMAGE[:64]
    assert small.options[-1][0] == int(OptionNumber.SIZE2)  # options in number order


def test_package_uri_names_the_base_and_the_hash() -> None:
    _, _, downloads, _ = _setup()
    grant = downloads.grant(SHA, "dev-1", 60)
    downloads.set_base("coap", "coap://fw.example.com:5683/")
    uri = downloads.package_uri(grant, "coap")
    assert uri == f"coap://fw.example.com:5683/fw/{grant.token}?sha256={SHA}"
    for scheme in ("coaps", "https", "ftp"):
        with pytest.raises(Lwm2mError, match=scheme):
            downloads.package_uri(grant, scheme)


def test_a_device_on_loopback_gets_a_loopback_uri_when_the_listener_binds_a_wildcard(
    tmp_path: Path,
) -> None:
    """The guessed outward address is unreachable for a device bound to 127.0.0.1 (the local
    demo: the README's update failed with "connection lost" before)."""
    _, library, downloads, _ = _setup()
    package = library.add(b"image", kind=PackageKind.FIRMWARE, name="fw", version="2")
    grant = downloads.grant(package.id, "dev", 600)
    set_coap_bases(downloads, ServerConfig(data_dir=tmp_path, host="0.0.0.0"), 5683, 5684)
    local = downloads.package_uri(grant, "coap", device_host="127.0.0.1")
    assert local.startswith("coap://127.0.0.1:5683/fw/")
    assert downloads.package_uri(grant, "coaps", device_host="::1").startswith(
        "coaps://127.0.0.1:5684/fw/"
    )
    outward = downloads.package_uri(grant, "coap", device_host="198.51.100.7")
    assert not outward.startswith("coap://127.0.0.1") and outward.endswith(local[-80:])
    configured = ServerConfig(
        data_dir=tmp_path, host="0.0.0.0", firmware=FirmwareSettings(download_base="fw.example")
    )
    set_coap_bases(downloads, configured, 5683, 5684)
    assert downloads.package_uri(grant, "coap", device_host="127.0.0.1").startswith(
        "coap://fw.example:5683/fw/"
    )

"""The download server over real sockets: packages uploaded through the HTTP API, fetched by
independent CoAP clients (aiocoap over NoSec, aiocoap on our DTLS client transport with PSK,
libcoap's ``coap-client`` when installed) with Block2, and over HTTP with Range; the refusals a
device or an operator sees (4.04 unknown/expired, 4.03 another device's credentials, 413 over
the size limit, 409 deleting a package in use)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiocoap
import aiohttp
import pytest
from aiocoap.numbers.codes import Code

from keystore.coaps.client import client_dtls_config
from lwm2m_client.coaps import create_client_context
from lwm2m_server.firmware.contracts import DownloadOutcome
from lwm2m_server.service import Lwm2mServer
from tests.auth import HEADERS

from .conftest import LIMIT, PACKAGE, PSK_A, PSK_B, SHA, Running


async def _added(running: Running) -> str:
    response = await running.upload()
    assert response.status == 201, await response.text()
    return SHA


async def test_coap_block2_download_of_a_200_kib_package(
    running: Running, coap_client: Any
) -> None:
    await _added(running)
    grant = running.downloads.grant(SHA, "dev-1", 600)
    uri = running.downloads.package_uri(grant, "coap")
    port = running.server.coap_address.port
    assert uri == f"coap://127.0.0.1:{port}/fw/{grant.token}?sha256={SHA}"
    assert len(uri) <= 255  # object 5's Package URI resource
    response = await coap_client.request(aiocoap.Message(code=Code.GET, uri=uri)).response
    assert response.code == Code.CONTENT
    assert response.payload == PACKAGE
    assert (
        hashlib.sha256(response.payload).hexdigest() == parse_qs(urlsplit(uri).query)["sha256"][0]
    )
    outcomes = [(e.outcome, e.endpoint, e.package_id) for e in running.events]
    assert outcomes == [
        (DownloadOutcome.STARTED, "dev-1", SHA),
        (DownloadOutcome.COMPLETED, "dev-1", SHA),
    ]


async def test_block_options_etag_and_size2(running: Running, coap_client: Any) -> None:
    await _added(running)
    uri = running.downloads.package_uri(running.downloads.grant(SHA, "dev-1", 600), "coap")
    base = uri.split("?")[0]
    first = aiocoap.Message(code=Code.GET, uri=base)
    first.opt.block2 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(0, False, 6)
    block0 = await coap_client.request(first, handle_blockwise=False).response
    assert block0.code == Code.CONTENT and block0.payload == PACKAGE[:1024]
    assert block0.opt.size2 == len(PACKAGE)
    assert block0.opt.etag == bytes.fromhex(SHA[:16])
    assert block0.opt.content_format == 42
    assert (block0.opt.block2.block_number, block0.opt.block2.more) == (0, True)
    # a smaller block size asked for by the device is honoured, and the last block says so
    last_num = (len(PACKAGE) - 1) // 256
    last = aiocoap.Message(code=Code.GET, uri=base)
    last.opt.block2 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(last_num, False, 4)
    answer = await coap_client.request(last, handle_blockwise=False).response
    assert answer.payload == PACKAGE[last_num * 256 :]
    assert answer.opt.block2.more is False and answer.opt.block2.size_exponent == 4
    assert answer.opt.size2 is None and answer.opt.etag == bytes.fromhex(SHA[:16])
    past = aiocoap.Message(code=Code.GET, uri=base)
    past.opt.block2 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(last_num + 1, False, 4)
    refused = await coap_client.request(past, handle_blockwise=False).response
    assert refused.code == Code.BAD_OPTION


async def test_unknown_and_expired_tokens_get_4_04_with_the_reason(
    running: Running, coap_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lwm2m_server")
    await _added(running)
    port = running.server.coap_address.port
    unknown = f"coap://127.0.0.1:{port}/fw/no-such-token-0123456789abcdefghij"
    response = await coap_client.request(aiocoap.Message(code=Code.GET, uri=unknown)).response
    assert response.code == Code.NOT_FOUND and response.payload == b"unknown download token"
    grant = running.downloads.grant(SHA, "dev-1", 60)
    uri = running.downloads.package_uri(grant, "coap")
    running.clock.now += 61
    response = await coap_client.request(aiocoap.Message(code=Code.GET, uri=uri)).response
    assert response.code == Code.NOT_FOUND and response.payload == b"download token expired"
    refused = [e for e in running.events if e.outcome is DownloadOutcome.REFUSED]
    assert [(e.endpoint, e.reason) for e in refused] == [
        (None, "unknown download token"),
        ("dev-1", "download token expired"),
    ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert grant.token not in logged and grant.token[:6] in logged  # a prefix, never the token
    # refusals are logged once per peer host a minute (DEBUG after)
    refusals = [r.levelno for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == [logging.INFO, logging.DEBUG]


async def test_over_dtls_only_the_granted_device_gets_the_package(running: Running) -> None:
    await _added(running)
    grant = running.downloads.grant(SHA, "dev-a", 600)
    uri = running.downloads.package_uri(grant, "coaps")
    assert uri.startswith(f"coaps://127.0.0.1:{running.server.coaps_address.port}/fw/")
    for psk, code in ((PSK_A, Code.CONTENT), (PSK_B, Code.FORBIDDEN)):
        context = await create_client_context(
            None, client_config=client_dtls_config(psk=psk), bind=("127.0.0.1", 0)
        )
        try:
            response = await asyncio.wait_for(
                context.request(aiocoap.Message(code=Code.GET, uri=uri)).response, 20
            )
        finally:
            await context.shutdown()
        assert response.code == code
        if code == Code.CONTENT:
            assert response.payload == PACKAGE
        else:
            assert b"dev-a" in response.payload  # whose download it is
    refused = [e for e in running.events if e.outcome is DownloadOutcome.REFUSED]
    assert len(refused) == 1 and refused[0].endpoint == "dev-a"


async def test_nosec_refuses_a_grant_of_an_endpoint_that_requires_dtls(
    running: Running, coap_client: Any
) -> None:
    await _added(running)
    uri = running.downloads.package_uri(running.downloads.grant(SHA, "dev-a", 600), "coap")
    response = await coap_client.request(aiocoap.Message(code=Code.GET, uri=uri)).response
    assert response.code == Code.FORBIDDEN


async def test_http_download_with_range_and_no_bearer_token(running: Running) -> None:
    await _added(running)
    grant = running.downloads.grant(SHA, "dev-1", 600)
    uri = running.downloads.package_uri(grant, "http")
    assert uri.startswith(running.http + "/fw/")
    async with aiohttp.ClientSession() as session:
        async with session.get(uri) as whole:
            assert whole.status == 200
            assert whole.headers["Content-Type"] == "application/octet-stream"
            assert await whole.read() == PACKAGE
        async with session.get(uri, headers={"Range": "bytes=1000-1999"}) as part:
            assert part.status == 206
            assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(PACKAGE)}"
            assert await part.read() == PACKAGE[1000:2000]
        async with session.get(uri, headers={"Range": "bytes=200000-"}) as tail:
            assert tail.status == 206 and await tail.read() == PACKAGE[200000:]
        async with session.get(running.http + "/fw/nope") as unknown:
            assert unknown.status == 404
            assert (await unknown.json())["error"] == "unknown download token"
        running.clock.now += 601
        async with session.get(uri) as expired:
            assert expired.status == 404
            assert (await expired.json())["error"] == "download token expired"
    outcomes = [e.outcome for e in running.events]
    assert outcomes == [
        DownloadOutcome.STARTED,
        DownloadOutcome.COMPLETED,  # the whole body
        DownloadOutcome.COMPLETED,  # the tail range reached the end
        DownloadOutcome.REFUSED,
        DownloadOutcome.REFUSED,
    ]


async def test_package_api_add_list_show_and_same_bytes_twice(running: Running) -> None:
    first = await running.upload(profile="trackers")
    assert first.status == 201 and first.headers["Location"] == f"/api/packages/{SHA}"
    again = await running.upload(name="renamed", version="9")
    assert again.status == 200  # the same bytes are the same package
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        listed = await (await session.get(f"{running.http}/api/packages")).json()
        assert [p["id"] for p in listed["packages"]] == [SHA]
        shown = await (await session.get(f"{running.http}/api/packages/{SHA}")).json()
    assert shown == {
        "id": SHA,
        "sha256": SHA,
        "kind": "firmware",
        "name": "tracker-fw",
        "version": "1.4.2",
        "size": len(PACKAGE),
        "createdMs": shown["createdMs"],
        "profile": "trackers",
    }
    path = running.server.config.data_dir / "packages" / SHA[:2] / SHA
    assert path.read_bytes() == PACKAGE


async def test_multipart_upload(running: Running) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "file", b"multipart image", filename="fw.bin", content_type="application/octet-stream"
    )
    form.add_field("version", "2")
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        response = await session.post(
            f"{running.http}/api/packages?kind=software&name=app", data=form
        )
        body = await response.json()
    assert response.status == 201, body
    assert body["kind"] == "software" and body["version"] == "2" and body["size"] == 15


async def test_over_the_size_limit_is_413_naming_the_setting(running: Running) -> None:
    too_big = await running.upload(data=b"x" * (LIMIT + 1))
    assert too_big.status == 413
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        # chunked, without Content-Length: refused while reading
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(LIMIT // 65536 + 2):
                yield b"y" * 65536

        response = await session.post(
            f"{running.http}/api/packages?kind=firmware&name=a&version=1", data=chunks()
        )
        body = await response.json()
        assert response.status == 413
        assert "firmware.max_package_size" in body["error"] and str(LIMIT) in body["error"]
        listed = await (await session.get(f"{running.http}/api/packages")).json()
    assert listed["packages"] == []


async def test_bad_uploads_are_400(running: Running) -> None:
    assert (await running.upload(kind="bios")).status == 400
    assert (await running.upload(name="")).status == 400
    assert (await running.upload(data=b"")).status == 400


async def test_delete_in_use_is_409_then_deleted(running: Running) -> None:
    await _added(running)
    library = running.server.packages
    assert library is not None
    users = {SHA: "update job of dev-7"}
    library.add_in_use(users.get)
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        url = f"{running.http}/api/packages/{SHA}"
        refused = await session.delete(url)
        body = await refused.json()
        assert refused.status == 409 and "update job of dev-7" in body["error"]
        users.clear()
        deleted = await session.delete(url)
        assert deleted.status == 200 and (await deleted.json()) == {"deleted": SHA}
        assert (await session.get(url)).status == 404
        assert (await session.delete(url)).status == 404
    assert not (running.server.config.data_dir / "packages" / SHA[:2] / SHA).exists()


async def test_writes_need_an_admin_token(running: Running) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{running.http}/api/packages?kind=firmware&name=a&version=1", data=b"x"
        )
        assert response.status == 401
        assert (await session.get(f"{running.http}/api/packages")).status == 401


async def test_a_download_granted_before_a_restart_is_served_after_it(
    running: Running, tmp_path: Path, coap_client: Any
) -> None:
    await _added(running)
    grant = running.downloads.grant(SHA, "dev-1", 600)
    config = running.server.config
    await running.server.stop()
    restarted = Lwm2mServer(config)
    await restarted.start()
    try:
        assert restarted.downloads is not None
        uri = restarted.downloads.package_uri(grant, "coap")
        response = await coap_client.request(aiocoap.Message(code=Code.GET, uri=uri)).response
        assert response.code == Code.CONTENT and response.payload == PACKAGE
    finally:
        await restarted.stop()
        await running.server.start()  # the fixture stops it again


def _libcoap(*names: str) -> str | None:
    return next((found for n in names if (found := shutil.which(n)) is not None), None)


NOTLS = _libcoap("coap-client-notls", "coap-client", "coap-client-openssl")
OPENSSL = _libcoap("coap-client-openssl")


async def _coap_client(tool: str, uri: str, out: Path, *options: str) -> None:
    process = await asyncio.create_subprocess_exec(
        tool, "-m", "get", "-b", "1024", "-o", str(out), *options, uri,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode(errors="replace")


@pytest.mark.skipif(NOTLS is None, reason="libcoap3-bin is not installed")
async def test_libcoap_coap_client_downloads_with_1024_byte_blocks(
    running: Running, tmp_path: Path
) -> None:
    """An independent CoAP implementation follows our Block2 answers to the end."""
    assert NOTLS is not None
    await _added(running)
    uri = running.downloads.package_uri(running.downloads.grant(SHA, "dev-1", 600), "coap")
    out = tmp_path / "fw.bin"
    await _coap_client(NOTLS, uri.split("?")[0], out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SHA


@pytest.mark.skipif(OPENSSL is None, reason="libcoap3-bin is not installed")
async def test_libcoap_over_dtls_psk(running: Running, tmp_path: Path) -> None:
    assert OPENSSL is not None
    await _added(running)
    uri = running.downloads.package_uri(running.downloads.grant(SHA, "dev-b", 600), "coaps")
    out = tmp_path / "fw.bin"
    await _coap_client(
        OPENSSL, uri.split("?")[0], out, "-u", PSK_B[0].decode(), "-k", PSK_B[1].decode()
    )
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SHA

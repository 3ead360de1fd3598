"""HTTPS on the HTTP listener (``http_tls``) over real loopback sockets: the API answers over TLS
to a client that trusts the certificate's CA and not over plain HTTP; a ``pull_http`` update
writes an ``https://`` Package URI and succeeds on a demo device given the CA (``ca_file``),
and fails with Update Result 4 on one that does not trust it; OpenSSL, an independent peer,
sees TLS 1.2 or 1.3.

The certificate is made here with ``keystore.tools`` (``cryptography``): a CA and a server
certificate for 127.0.0.1 issued by it."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from keystore import tools
from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.cli import _start_http
from lwm2m_server.config import HttpTlsSettings, ServerConfig
from lwm2m_server.firmware.contracts import JobState
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS
from tests.integration.firmware.test_update_flow import SIMULATION, Jobs, make_config, upload


@attrs.frozen
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = tools.make_ca("pylwm2m https test CA")
    key = tools.generate_private_key()
    cert = tools.issue_certificate(
        key.public_key(),
        "127.0.0.1",
        issuer_key=ca_key,
        issuer_cert=ca,
        sans=["127.0.0.1", "localhost"],
        server=True,
    )
    ca_file = folder / "ca.crt"
    ca_file.write_bytes(tools.certificate_pem(ca))
    cert_file = folder / "server.crt"
    cert_file.write_bytes(tools.certificate_pem(cert))
    key_file = folder / "server.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(tools.private_key_pem(key))
    return Pki(ca_file, cert_file, key_file)


@attrs.define
class Https:
    server: Lwm2mServer
    port: int
    pki: Pki
    jobs: Jobs

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_file))


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[Https]:
    pki = make_pki(tmp_path / "pki")
    config: ServerConfig = attrs.evolve(
        make_config(tmp_path),
        http_host="127.0.0.1",
        http_port=0,
        http_tls=HttpTlsSettings(cert=pki.cert_file, key=pki.key_file),
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
    )
    server = Lwm2mServer(config)
    await server.start()
    runner = await _start_http(server, config)
    jobs = Jobs()
    jobs.follow(server)
    try:
        yield Https(server, int(runner.addresses[0][1]), pki, jobs)
    finally:
        await runner.cleanup()
        await server.stop()


async def test_the_api_answers_over_https_to_a_client_that_trusts_the_ca(https: Https) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{https.base}/api/clients", headers=HEADERS, ssl=https.trusting()) as reply,
    ):
        assert reply.status == 200
        assert await reply.json() is not None


async def test_plain_http_to_the_tls_port_gets_no_answer(https: Https) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(
                f"http://127.0.0.1:{https.port}/api/clients", headers=HEADERS
            ) as reply:
                await reply.read()


async def test_a_client_without_the_ca_refuses_the_certificate(https: Https) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"{https.base}/api/clients", headers=HEADERS) as reply:
                await reply.read()


async def test_only_https_package_uris_are_offered(https: Https) -> None:
    assert https.server.downloads is not None
    served = https.server.downloads.served_schemes()
    assert "https" in served and "http" not in served


async def device(https: Https, endpoint: str, **kwargs: Any) -> Lwm2mClient:
    uri = f"coap://127.0.0.1:{https.server.coap_address.port}"
    client = Lwm2mClient(endpoint, uri, auto_update=False, update_simulation=SIMULATION, **kwargs)
    await client.start()
    await client.register()
    return client


def spy_on_uris(client: Lwm2mClient) -> list[str]:
    """The Package URIs the device fetched."""
    seen: list[str] = []
    host = client.update_host
    fetch = host.fetch

    async def recording(uri: str, on_block: Any) -> bytes:
        seen.append(uri)
        return await fetch(uri, on_block)

    host.fetch = recording  # type: ignore[method-assign]
    return seen


async def start_job(https: Https, endpoint: str, package_id: str, strategy: str) -> None:
    body = {"package": package_id, "strategy": strategy}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{https.base}/api/clients/{endpoint}/firmware",
            json=body,
            headers=HEADERS,
            ssl=https.trusting(),
        ) as reply,
    ):
        assert reply.status == 201, await reply.text()


@pytest.mark.parametrize("strategy", ["pull_http", "auto_https_only"])
async def test_a_pull_http_update_over_https_succeeds_on_a_device_trusting_the_ca(
    https: Https, strategy: str
) -> None:
    client = await device(https, "fw-https", ca_file=https.pki.ca_file)
    try:
        if strategy == "auto_https_only":
            # a device that pulls over HTTPS only (/5/0/8 = [3], /5/0/9 = pull): AUTO picks it
            client.objects.set_value("/5/0/8", {0: 3})
            client.objects.set_value("/5/0/9", 0)
        uris = spy_on_uris(client)
        package = upload(https.server, "4.0.0")
        await start_job(https, "fw-https", package.id, strategy.partition("_https")[0])
        view = await https.jobs.finished("fw-https")
        assert view.state is JobState.SUCCEEDED, view.detail
        assert view.strategy.value == "pull_http"
        assert client.get_value("/3/0/3") == "4.0.0"
        assert uris and all(u.startswith(f"{https.base}/fw/") for u in uris), uris
    finally:
        await client.stop()


async def test_a_device_that_does_not_trust_the_certificate_fails_the_download(
    https: Https,
) -> None:
    client = await device(https, "fw-untrusting")  # the system's trust store only
    try:
        package = upload(https.server, "4.0.1")
        await start_job(https, "fw-untrusting", package.id, "pull_http")
        view = await https.jobs.finished("fw-untrusting")
        assert view.state is JobState.FAILED
        assert view.result == 4  # connection lost during download, as the demo client maps it
        assert "Update Result 4" in view.detail, view.detail
        assert client.get_value("/5/0/5") == 4
        assert client.get_value("/3/0/3") != "4.0.1"
    finally:
        await client.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
async def test_openssl_s_client_negotiates_tls_1_2_or_1_3(https: Https) -> None:
    for version in ("-tls1_2", "-tls1_3"):
        process = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"127.0.0.1:{https.port}",
            "-CAfile", str(https.pki.ca_file), "-verify_return_error", version, "-brief",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        text = output.decode(errors="replace")
        assert process.returncode == 0, text
        expected = "TLSv1.2" if version == "-tls1_2" else "TLSv1.3"
        assert f"Protocol version: {expected}" in text, text
        assert "Verification: OK" in text, text


async def test_the_operator_commands_reach_the_https_api_trusting_ssl_cert_file(
    https: Https, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lwm2m-server clients --api https://…`` (urllib): a private CA is given the OpenSSL
    way, ``SSL_CERT_FILE`` (docs/http-api.md, "TLS")."""
    from lwm2m_runtime.api_client import ApiClient

    monkeypatch.setenv("SSL_CERT_FILE", str(https.pki.ca_file))
    client = ApiClient(https.base, 10.0, token=ADMIN_TOKEN)
    status, body = await asyncio.to_thread(client.call, "GET", "/api/clients")
    assert status == 200 and body is not None


async def test_plain_http_on_a_non_loopback_address_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config: ServerConfig = attrs.evolve(
        make_config(tmp_path),
        http_host="0.0.0.0",
        http_port=0,
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
    )
    server = Lwm2mServer(config)
    await server.start()
    try:
        runner = await _start_http(server, config)
        assert server.downloads is not None
        assert server.downloads.served_schemes() >= {"http"}
        assert "https" not in server.downloads.served_schemes()
        await runner.cleanup()
    finally:
        await server.stop()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("without TLS" in m and "http_tls" in m for m in warned), warned

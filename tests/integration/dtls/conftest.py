"""Fixtures of the CoAPs interop suite: an in-process ``Lwm2mServer`` listening on ephemeral
loopback CoAP and CoAPs ports, with open registration off and the test devices provisioned
through the keystore API before it starts.

Provisioned endpoints (see ``pki.py``):

| endpoint     | mode  | credential                                        |
|--------------|-------|---------------------------------------------------|
| dev-psk      | psk   | identity ``dev-psk-identity``, 16-byte key        |
| dev-rpk      | rpk   | the raw public key of ``pki.rpk_device``          |
| dev-x509     | x509  | none: "trust CA" (any CA certificate with CN=dev-x509) |
| dev-pinned   | x509  | pinned self-signed certificate (CN does not matter) |
| someone-else | psk   | another identity (target of impersonation attempts) |
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from keystore.credentials import DeviceCredentials, ServerIdentity, TrustedCa, certificate_der
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_server.service import Lwm2mServer
from tests.integration.server.conftest import eventually as eventually  # re-exported
from tests.live import loopback_config, running

from . import pki as pki_mod
from .pki import PSK_IDENTITY, PSK_KEY, Pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return pki_mod.build(tmp_path_factory.mktemp("pki"))


def provision(store: SqliteCredentialStore, pki: Pki) -> None:
    """The keystore records of the suite (see the module docstring)."""
    store.put_server_identity(ServerIdentity(pki_mod.key_pem(pki.server_key), pki.server_chain))
    store.put_trusted_ca(TrustedCa(certificate_der(pki.ca)))
    store.put_device(DeviceCredentials.for_psk("dev-psk", PSK_IDENTITY, PSK_KEY))
    store.put_device(DeviceCredentials.for_psk("someone-else", b"other-identity", b"k" * 16))
    store.put_device(DeviceCredentials.for_rpk("dev-rpk", pki_mod.spki(pki.rpk_device.key)))
    store.put_device(DeviceCredentials.for_x509("dev-x509"))
    store.put_device(DeviceCredentials.for_x509("dev-pinned", pki.pinned_device.cert))


@asynccontextmanager
async def provisioned_server(
    data_dir: Path, pki: Pki, **changes: Any
) -> AsyncIterator[Lwm2mServer]:
    """A running server on loopback ports with open registration off, a 5 s request timeout
    and the suite's devices provisioned before it starts (``changes`` on top of that)."""
    config = loopback_config(data_dir, open_registration=False, request_timeout=5.0, **changes)
    with SqliteCredentialStore.open(config.database) as store:
        provision(store, pki)
    async with running(config) as srv:
        yield srv


@pytest.fixture
async def server(tmp_path: Path, pki: Pki) -> AsyncIterator[Lwm2mServer]:
    async with provisioned_server(tmp_path / "data", pki) as srv:
        yield srv


def coaps_port(server: Lwm2mServer) -> int:
    return server.coaps_address.port


def need(binary: str) -> str:
    """The path of an external tool, or skip the test saying which package provides it."""
    path = shutil.which(binary)
    if path is None:
        package = {
            "openssl": "openssl",
            "gnutls-cli": "gnutls-bin",
            "coap-client-openssl": "libcoap3-bin",
            "coap-client-gnutls": "libcoap3-bin",
        }.get(binary, binary)
        pytest.skip(f"{binary} not installed (Debian package {package})")
    return path


async def run_tool(
    *args: str | Path, stdin: bytes | None = None, timeout: float = 15.0
) -> tuple[int, bytes]:
    """Run an external tool to completion (without blocking the server's event loop);
    returns (exit status, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -9, out
    assert proc.returncode is not None
    return proc.returncode, out


class Interactive:
    """A long-running tool (``openssl s_client``, ``gnutls-cli``) whose stdout is collected
    while the test writes to its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout = b""
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, *args: str | Path) -> Interactive:
        proc = await asyncio.create_subprocess_exec(
            *map(str, args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            self.stdout += chunk

    async def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def wait_for(self, marker: bytes, timeout: float = 5.0) -> bool:
        try:
            await eventually(lambda: marker in self.stdout or self.proc.returncode is not None,
                             timeout)  # fmt: skip
        except AssertionError:
            return False
        return marker in self.stdout

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.kill()
        status = await self.proc.wait()
        await self._reader
        return status


def established_sessions(server: Lwm2mServer) -> list[Any]:
    return [s for s in server.dtls.sessions if s.established]

"""``openssl s_client -dtls1_2`` and ``gnutls-cli --udp`` against the server's CoAPs port:
handshakes in PSK (CCM-8 and CBC-SHA256 with encrypt-then-MAC), ECDHE-ECDSA with X.509, and
(gnutls) raw public keys; then a hand-built CoAP Register written to the tool's stdin travels
as one DTLS record, and the server's decrypted answer (2.01 + Location-Path) comes back on
its stdout.

Tool facts: OpenSSL needs ``@SECLEVEL=0`` for the CCM-8 suites; ``-quiet`` still prints
verification lines on stderr, so stdout alone carries the server's bytes (stderr goes
elsewhere here). gnutls-cli lists X.509 before RawPublicKey in its certificate-type extensions
unless told ``-CTYPE-ALL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK``; our server takes the client's
first supported type (RFC 7250 §4.2), so without that it picks X.509 and the handshake fails
for lack of a certificate. Its "Simple Client Mode" prints received records raw after
``- Simple Client Mode:``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lwm2m_server.service import Lwm2mServer

from . import coap
from .conftest import Interactive, coaps_port, established_sessions, eventually, need
from .pki import PSK_IDENTITY, PSK_KEY, Pki

OPENSSL_CASES = {
    "psk-ccm8": ["-psk_identity", PSK_IDENTITY.decode(), "-psk", PSK_KEY.hex(),
                 "-cipher", "PSK-AES128-CCM8@SECLEVEL=0"],
    "psk-cbc-sha256": ["-psk_identity", PSK_IDENTITY.decode(), "-psk", PSK_KEY.hex(),
                       "-cipher", "PSK-AES128-CBC-SHA256"],
    "x509-ecdhe-ccm8": ["-cipher", "ECDHE-ECDSA-AES128-CCM8@SECLEVEL=0"],
}  # fmt: skip


def _x509_args(pki: Pki) -> list[str | Path]:
    device = pki.x509_device
    assert device.cert_file is not None
    return ["-cert", device.cert_file, "-key", device.key_file, "-CAfile", pki.ca_file,
            "-verify_return_error"]  # fmt: skip


async def _register_through(tool: Interactive, server: Lwm2mServer, endpoint: str) -> None:
    await eventually(lambda: established_sessions(server), timeout=10)
    await tool.write(coap.register(endpoint))


@pytest.mark.parametrize("case", sorted(OPENSSL_CASES))
async def test_openssl_s_client(server: Lwm2mServer, pki: Pki, case: str) -> None:
    openssl = need("openssl")
    endpoint = "dev-x509" if case.startswith("x509") else "dev-psk"
    args: list[str | Path] = [*OPENSSL_CASES[case]]
    if case.startswith("x509"):
        args += _x509_args(pki)
    tool = await Interactive.start(
        openssl, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{coaps_port(server)}",
        "-quiet", "-ign_eof", "-nocommands", *args,
    )  # fmt: skip
    try:
        await _register_through(tool, server, endpoint)
        # stdout mixes s_client's text with the server's raw bytes: find our ACK's header
        header = bytes([0x61, 0x41, 0x12, 0x34])  # ver 1, ACK, TKL 1; 2.01; our message id
        await eventually(lambda: header in tool.stdout, timeout=5)
        answer = coap.decode(tool.stdout[tool.stdout.index(header) :])
        assert str(answer.code) == "2.01 Created"
        registration = server.client(endpoint)
        assert tuple(answer.opt.location_path) == ("rd", registration.registration_id)
    finally:
        await tool.stop()


GNUTLS_BASE = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:+AES-128-CCM-8"


def _gnutls_args(mode: str, pki: Pki, tmp_path: Path) -> list[str | Path]:
    if mode == "psk":
        return ["--pskusername", PSK_IDENTITY.decode(), "--pskkey", PSK_KEY.hex(),
                "--priority", f"{GNUTLS_BASE}:+PSK"]  # fmt: skip
    if mode == "x509":
        device = pki.x509_device
        assert device.cert_file is not None
        return ["--x509certfile", device.cert_file, "--x509keyfile", device.key_file,
                "--x509cafile", pki.ca_file, "--priority", GNUTLS_BASE]  # fmt: skip
    assert mode == "rpk"
    public = tmp_path / "dev-rpk.pub.pem"
    public.write_bytes(pki.rpk_device.rpk_file.read_bytes().split(b"-----BEGIN PRIVATE")[0])
    # --insecure: gnutls-cli cannot pin the server's raw public key on the command line
    priority = f"{GNUTLS_BASE}:-CTYPE-ALL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK"
    return ["--rawpkkeyfile", pki.rpk_device.key_file, "--rawpkfile", public, "--insecure",
            "--priority", priority]  # fmt: skip


@pytest.mark.parametrize("mode", ["psk", "x509", "rpk"])
async def test_gnutls_cli(server: Lwm2mServer, pki: Pki, tmp_path: Path, mode: str) -> None:
    gnutls = need("gnutls-cli")
    endpoint = {"psk": "dev-psk", "x509": "dev-x509", "rpk": "dev-rpk"}[mode]
    tool = await Interactive.start(
        gnutls, "--udp", "-p", str(coaps_port(server)), "127.0.0.1",
        *_gnutls_args(mode, pki, tmp_path),
    )  # fmt: skip
    try:
        assert await tool.wait_for(b"Handshake was completed", timeout=10), tool.stdout.decode(
            errors="replace"
        )
        await _register_through(tool, server, endpoint)
        await eventually(lambda: server.clients(), timeout=5)
        registration = server.client(endpoint)
        assert registration.identity is not None and registration.identity.mode == mode
        await eventually(lambda: registration.registration_id.encode() in tool.stdout, timeout=5)
    finally:
        await tool.stop()


async def test_openssl_wrong_psk_fails_without_a_session(server: Lwm2mServer) -> None:
    openssl = need("openssl")
    tool = await Interactive.start(
        openssl, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{coaps_port(server)}",
        "-quiet", "-psk_identity", PSK_IDENTITY.decode(), "-psk", "00" * 16,
        "-cipher", "PSK-AES128-CCM8@SECLEVEL=0",
    )  # fmt: skip
    try:
        await eventually(lambda: server.dtls.stats.handshakes_failed, timeout=10)
        await asyncio.wait_for(tool.proc.wait(), 10)
        assert tool.proc.returncode != 0
        assert b"alert bad record mac" in tool.stdout
        assert len(server.dtls.sessions) == 0
    finally:
        await tool.stop()

"""Interop with the ``openssl`` binary over real loopback UDP (skipped when it is absent).

OpenSSL's s_server/s_client are an implementation independent of ours and of Mbed TLS; they also
exercise real datagram boundaries, HelloVerifyRequest from OpenSSL's side, and EtM for CBC.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keystore.dtls import (
    ApplicationData,
    CipherSuite,
    ClientConfig,
    HandshakeComplete,
    LruSessionCache,
    PskIdentity,
    ServerConfig,
    X509Identity,
)

from . import pki
from .conftest import Pki
from .udp_loop import UdpServer, free_udp_port, run_client

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")

PSK_HEX = "000102030405060708090a0b0c0d0e0f"
PSK_ID = "urn:imei:49015420323751"
OPENSSL_NAMES = {
    CipherSuite.TLS_PSK_WITH_AES_128_CCM_8: "PSK-AES128-CCM8",
    CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256: "PSK-AES128-CBC-SHA256",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: "ECDHE-ECDSA-AES128-CCM8",
    CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
}
CASES = [
    ("psk", CipherSuite.TLS_PSK_WITH_AES_128_CCM_8),
    ("psk", CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256),
    ("x509", CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
]


class Proc:
    """An openssl child process whose merged output is collected by a reader thread."""

    def __init__(self, args: list[str]) -> None:
        assert OPENSSL is not None
        self.proc = subprocess.Popen(
            [OPENSSL, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output += line

    def wait_for(self, text: bytes, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.05)
                return text in self.output
            time.sleep(0.02)
        return False

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # our own child, by its Popen handle
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pem_files(tmp_path: Path, test_pki: Pki) -> dict[str, str]:
    files = {
        "ca": pki.pem_cert(test_pki.ca),
        "server_cert": pki.pem_cert(test_pki.server_cert),
        "server_key": pki.pem_key(test_pki.server_key),
        "client_cert": pki.pem_cert(test_pki.client_cert),
        "client_key": pki.pem_key(test_pki.client_key),
    }
    out = {}
    for name, data in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_bytes(data)
        out[name] = str(path)
    return out


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def _cipher_args(suite: CipherSuite) -> list[str]:
    return ["-dtls1_2", "-cipher", f"{OPENSSL_NAMES[suite]}:@SECLEVEL=0"]


def _auth_args(mode: str, files: dict[str, str], server: bool) -> list[str]:
    if mode == "psk":
        return ["-psk", PSK_HEX, "-psk_identity", PSK_ID] + (["-nocert"] if server else [])
    who = "server" if server else "client"
    args = ["-cert", files[f"{who}_cert"], "-key", files[f"{who}_key"], "-CAfile", files["ca"]]
    return [*args, "-Verify", "1"] if server else [*args, "-verify_return_error"]


@pytest.mark.parametrize(("mode", "suite"), CASES, ids=lambda v: getattr(v, "name", v))
def test_our_client_against_openssl_s_server(
    test_pki: Pki, pem_files: dict[str, str], procs: list[Proc], mode: str, suite: CipherSuite
) -> None:
    port = free_udp_port()
    server = Proc(
        [
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            *_cipher_args(suite),
            *_auth_args(mode, pem_files, server=True),
        ]
    )
    procs.append(server)
    assert server.wait_for(b"ACCEPT"), server.output.decode(errors="replace")

    config: dict[str, Any] = {"cipher_suites": [suite]}
    if mode == "psk":
        config.update(psk_identity=PSK_ID.encode(), psk=bytes.fromhex(PSK_HEX))
    else:
        config.update(
            private_key=test_pki.client_key,
            certificate_chain=[pki.der(test_pki.client_cert)],
            trust_store=[test_pki.ca],
        )

    def on_established(engine: Any) -> None:
        engine.send_application_data(b"hello from pylwm2m\n")
        server.send(b"hello from openssl\n")

    engine, events = run_client(
        ClientConfig(**config),
        ("127.0.0.1", port),
        until=lambda ev: any(isinstance(e, ApplicationData) for e in ev),
        on_established=on_established,
    )
    assert ApplicationData(b"hello from openssl\n") in events, server.output
    assert server.wait_for(b"hello from pylwm2m"), server.output
    assert f"CIPHER is {OPENSSL_NAMES[suite]}".encode() in server.output
    if mode == "x509":
        # s_server appends the CA from -CAfile to the chain it sends
        assert isinstance(engine.peer_identity, X509Identity)
        assert engine.peer_identity.chain[0] == pki.der(test_pki.server_cert)


@pytest.mark.parametrize(("mode", "suite"), CASES, ids=lambda v: getattr(v, "name", v))
def test_openssl_s_client_against_our_server(
    test_pki: Pki, pem_files: dict[str, str], procs: list[Proc], mode: str, suite: CipherSuite
) -> None:
    config: dict[str, Any] = {"cipher_suites": [suite]}
    if mode == "psk":
        psk = bytes.fromhex(PSK_HEX)
        config["psk_for_identity"] = lambda i: psk if i == PSK_ID.encode() else None
    else:
        config.update(
            private_key=test_pki.server_key,
            certificate_chain=[pki.der(test_pki.server_cert)],
            trust_store=[test_pki.ca],
        )
    ours = UdpServer(ServerConfig(**config), reply=lambda data: b"pong:" + data)
    ours.start()
    try:
        client = Proc(
            [
                "s_client",
                "-connect",
                f"127.0.0.1:{ours.port}",
                *_cipher_args(suite),
                *_auth_args(mode, pem_files, server=False),
            ]
        )
        procs.append(client)
        assert client.wait_for(b"Cipher is", timeout=5), client.output.decode(errors="replace")
        client.send(b"ping\n")
        assert client.wait_for(b"pong:ping"), client.output.decode(errors="replace")
        (done,) = ours.completed()
        assert done.cipher_suite == suite
        if mode == "psk":
            assert done.peer_identity == PskIdentity(PSK_ID.encode())
        else:  # s_client also sends the CA it found in -CAfile
            assert isinstance(done.peer_identity, X509Identity)
            assert done.peer_identity.chain[0] == pki.der(test_pki.client_cert)
        assert ApplicationData(b"ping\n") in ours.events
    finally:
        ours.stop()


def test_mac_then_encrypt_with_openssl_both_ways(procs: list[Proc]) -> None:
    """CBC without EtM is off by default; when both sides allow it, MtE interoperates."""
    suite = CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256
    psk = bytes.fromhex(PSK_HEX)
    # our server, s_client refusing EtM
    ours = UdpServer(
        ServerConfig(
            cipher_suites=[suite],
            psk_for_identity=lambda i: psk,
            allow_mac_then_encrypt=True,
        ),
        reply=lambda data: b"pong:" + data,
    )
    ours.start()
    try:
        client = Proc(
            [
                "s_client",
                "-connect",
                f"127.0.0.1:{ours.port}",
                *_cipher_args(suite),
                "-no_etm",
                *_auth_args("psk", {}, server=False),
            ]
        )
        procs.append(client)
        assert client.wait_for(b"Cipher is", timeout=5), client.output.decode(errors="replace")
        client.send(b"mte\n")
        assert client.wait_for(b"pong:mte"), client.output.decode(errors="replace")
    finally:
        ours.stop()

    # our client not offering EtM, s_server accepting MtE
    port = free_udp_port()
    server = Proc(
        [
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            *_cipher_args(suite),
            *_auth_args("psk", {}, server=True),
        ]
    )
    procs.append(server)
    assert server.wait_for(b"ACCEPT")
    config = ClientConfig(
        cipher_suites=[suite],
        psk_identity=PSK_ID.encode(),
        psk=psk,
        offer_encrypt_then_mac=False,
        allow_mac_then_encrypt=True,
    )

    def on_established(engine: Any) -> None:
        engine.send_application_data(b"mte from pylwm2m\n")
        server.send(b"mte from openssl\n")

    _, events = run_client(
        config,
        ("127.0.0.1", port),
        until=lambda ev: any(isinstance(e, ApplicationData) for e in ev),
        on_established=on_established,
    )
    assert ApplicationData(b"mte from openssl\n") in events, server.output
    assert server.wait_for(b"mte from pylwm2m"), server.output


def test_resumption_with_openssl_both_ways(tmp_path: Path, procs: list[Proc]) -> None:
    """Abbreviated handshakes against OpenSSL's session cache and s_client's saved session."""
    suite = CipherSuite.TLS_PSK_WITH_AES_128_CCM_8
    psk = bytes.fromhex(PSK_HEX)

    # our client resumes with s_server (which caches sessions by id by default)
    port = free_udp_port()
    server = Proc(
        [
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            *_cipher_args(suite),
            *_auth_args("psk", {}, server=True),
        ]
    )
    procs.append(server)
    assert server.wait_for(b"ACCEPT")
    config = ClientConfig(cipher_suites=[suite], psk_identity=PSK_ID.encode(), psk=psk)

    def done(ev: list[Any]) -> bool:
        return any(isinstance(e, HandshakeComplete) for e in ev)

    # s_server serves one DTLS peer at a time: close_notify lets it accept the next one
    first, _ = run_client(config, ("127.0.0.1", port), until=done, close=True)
    assert first.session is not None and first.session.session_id
    config.session = first.session
    _, events = run_client(config, ("127.0.0.1", port), until=done)
    (complete,) = [e for e in events if isinstance(e, HandshakeComplete)]
    assert complete.resumed and complete.session_id == first.session.session_id

    # s_client resumes with our server
    ours = UdpServer(
        ServerConfig(
            cipher_suites=[suite],
            psk_for_identity=lambda i: psk,
            session_cache=LruSessionCache(),
        ),
        reply=lambda data: b"pong:" + data,
    )
    ours.start()
    session_file = str(tmp_path / "session.pem")
    try:
        for extra in (["-sess_out", session_file], ["-sess_in", session_file]):
            client = Proc(
                [
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{ours.port}",
                    *_cipher_args(suite),
                    *_auth_args("psk", {}, server=False),
                    *extra,
                ]
            )
            procs.append(client)
            assert client.wait_for(b"Cipher is"), client.output.decode(errors="replace")
            client.send(b"hi\n")
            assert client.wait_for(b"pong:hi"), client.output.decode(errors="replace")
            client.stop()
        resumed = [c.resumed for c in ours.completed()]
        assert resumed == [False, True], resumed
    finally:
        ours.stop()

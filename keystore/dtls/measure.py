"""Measure the engine: handshakes per second per mode, and idle memory per established session.

Why it ships with the package: the bench/ scripts and CI call it to keep the numbers honest
(the design targets ~4 KB per idle session so that 100k devices fit in well under 1 GB).
Everything runs in memory with our own client and server engines; no sockets.

Run ``python -m keystore.dtls.measure --isolated`` (``--quick`` for a fast smoke run); it
prints one JSON object per line, e.g.::

    {"metric": "handshakes_per_second", "mode": "psk-ccm8", "value": 812.3, "n": 200}
    {"metric": "idle_bytes_per_session", "mode": "psk-ccm8", "n": 2000, "tracemalloc": 880, ...}
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .config import ClientConfig, ServerConfig
from .constants import CipherSuite
from .cookie import CookieVerifier
from .engine import DtlsEngine
from .session import LruSessionCache

ConfigPair = tuple[ClientConfig, ServerConfig]

MODES = ("psk-ccm8", "psk-cbc", "rpk-ccm8", "x509-ccm8", "psk-ccm8-resumed")


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer if not ca else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_configs(mode: str) -> ConfigPair:
    """Client/server configs for one measurement mode (fresh keys, a throwaway CA)."""
    ccm = [CipherSuite.TLS_PSK_WITH_AES_128_CCM_8]
    if mode.startswith("psk"):
        suites = ccm if "ccm8" in mode else [CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256]
        psk = os.urandom(16)
        cache = LruSessionCache() if mode.endswith("resumed") else None
        return (
            ClientConfig(cipher_suites=suites, psk_identity=b"bench-device", psk=psk),
            ServerConfig(
                cipher_suites=suites,
                psk_for_identity=lambda identity: psk,
                session_cache=cache,
            ),
        )
    suites = [CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8]
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    if mode.startswith("rpk"):

        def spki(k: ec.EllipticCurvePrivateKey) -> bytes:
            return k.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )

        server_spki, client_spki = spki(server_key), spki(client_key)
        return (
            ClientConfig(
                cipher_suites=suites,
                private_key=client_key,
                verify_rpk=lambda k: k == server_spki,
            ),
            ServerConfig(
                cipher_suites=suites,
                private_key=server_key,
                verify_rpk=lambda k: k == client_spki,
            ),
        )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Bench CA", ca_key, ca_key, ca=True)
    der = serialization.Encoding.DER
    return (
        ClientConfig(
            cipher_suites=suites,
            private_key=client_key,
            certificate_chain=[_cert("device", client_key, ca_key, False).public_bytes(der)],
            trust_store=[ca],
        ),
        ServerConfig(
            cipher_suites=suites,
            private_key=server_key,
            certificate_chain=[_cert("server", server_key, ca_key, False).public_bytes(der)],
            trust_store=[ca],
        ),
    )


class _Timed:
    """Context manager accumulating the time spent inside server-side calls."""

    __slots__ = ("_start", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def run_handshake(
    client_config: ClientConfig,
    server_config: ServerConfig,
    cookies: CookieVerifier,
    server_timer: _Timed | None = None,
    addr: object = ("192.0.2.1", 5684),
) -> tuple[DtlsEngine, DtlsEngine]:
    """One complete handshake (with cookie exchange) plus one client->server record.

    The record matters for the idle figure: it tells the server that its final flight arrived,
    so the server forgets it, exactly as the first LwM2M request does in real life.
    """
    timed = server_timer or _Timed()
    client = DtlsEngine.client(client_config)
    client.connect(0.0)
    server: DtlsEngine | None = None
    for _ in range(20):
        for d in client.datagrams_to_send():
            if server is None:
                with timed:
                    reply, ok = cookies.server_handle_initial_datagram(d, addr, 0.0)
                if reply is not None:
                    client.receive_datagram(reply, 0.0)
                if not ok:
                    continue
                with timed:
                    server = DtlsEngine.server(server_config, addr)
            with timed:
                server.receive_datagram(d, 0.0, addr)
        if server is not None:
            with timed:
                replies = server.datagrams_to_send()
            for d in replies:
                client.receive_datagram(d, 0.0)
            if client.is_established and server.is_established:
                break
    if server is None or not (client.is_established and server.is_established):
        raise RuntimeError("benchmark handshake failed")
    client.send_application_data(b"\x44\x02\x00\x01")
    for d in client.datagrams_to_send():
        server.receive_datagram(d, 0.0, addr)
    return client, server


def handshakes_per_second(mode: str, n: int = 100) -> dict[str, object]:
    client_config, server_config = make_configs(mode)
    cookies = CookieVerifier()
    if mode.endswith("resumed"):
        first, _ = run_handshake(client_config, server_config, cookies)
        client_config.session = first.session
    server_time = _Timed()
    start = time.perf_counter()
    for _ in range(n):
        run_handshake(client_config, server_config, cookies, server_time)
    total = time.perf_counter() - start
    return {
        "metric": "handshakes_per_second",
        "mode": mode,
        "n": n,
        # both engines in one process, one core: what a load test in memory achieves
        "value": round(n / total, 1),
        # CPU spent in the server side only (cookie check + server engine): capacity of a server
        "server_side_value": round(n / server_time.seconds, 1),
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def idle_bytes_per_session(mode: str, n: int = 1000) -> dict[str, object]:
    """Memory held by ``n`` established, idle server sessions, per session.

    ``tracemalloc`` counts Python allocations (objects, bytes, lists); the RSS delta also sees
    OpenSSL's allocations behind the ``cryptography`` cipher objects, and allocator slack.
    """
    client_config, server_config = make_configs(mode)
    cookies = CookieVerifier()
    if mode.endswith("resumed"):
        first, _ = run_handshake(client_config, server_config, cookies)
        client_config.session = first.session
    run_handshake(client_config, server_config, cookies)  # warm caches and lazy imports
    gc.collect()
    sessions: list[DtlsEngine] = []
    tracemalloc.start()
    try:
        gc.collect()
        base_traced = tracemalloc.get_traced_memory()[0]
        base_rss = _rss_bytes()
        for i in range(n):
            _, server = run_handshake(
                client_config, server_config, cookies, addr=("198.51.100.1", 1024 + i)
            )
            sessions.append(server)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base_traced
        rss = _rss_bytes() - base_rss
    finally:
        tracemalloc.stop()
    # The session list itself (8 bytes per entry) is the caller's, not the session's.
    traced -= sys.getsizeof(sessions)
    if not all(s.is_established for s in sessions):
        raise RuntimeError("a measured session is not established")
    return {
        "metric": "idle_bytes_per_session",
        "mode": mode,
        "n": n,
        "tracemalloc": round(traced / n),
        "rss": round(rss / n),
    }


def _idle_isolated(mode: str, n: int) -> dict[str, object]:
    """Run the idle measurement in a fresh interpreter so RSS is not blurred by earlier runs."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keystore.dtls.measure",
            "--idle-only",
            "--mode",
            mode,
            "--n-idle",
            str(n),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small n, for CI smoke runs")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable")
    parser.add_argument("--idle-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n-idle", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="measure idle memory of each mode in a fresh interpreter (meaningful RSS)",
    )
    args = parser.parse_args(argv)
    modes = args.mode or list(MODES)
    n_hs, n_idle = (20, 200) if args.quick else (200, 2000)
    n_idle = args.n_idle or n_idle
    if not args.idle_only:
        for mode in modes:
            print(json.dumps(handshakes_per_second(mode, n_hs)), flush=True)
    for mode in modes:
        if args.isolated and not args.idle_only:
            result = _idle_isolated(mode, n_idle)
        else:
            result = idle_bytes_per_session(mode, n_idle)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

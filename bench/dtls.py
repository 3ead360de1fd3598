"""CoAPs benchmark: the server transport (the runtime's ``CoapServer`` over ``keystore.coaps``)
driven by our client engine over real loopback UDP, beside plain CoAP (NoSec) from the same run.

Usage: ``python bench/dtls.py [--quick] [--handshakes N] [--concurrency C] [--seconds T]
[--idle N] [--mode MODE ...]``; one JSON object per line on stdout::

    {"metric": "handshakes_per_second", "mode": "psk-ccm8", "value": 410.2, ...}
    {"metric": "round_trips_per_second", "transport": "coaps", "value": 2950.1, ...}
    {"metric": "round_trips_per_second", "transport": "coap", "value": 3400.7, ...}
    {"metric": "idle_bytes_per_session", "mode": "psk-ccm8", "server_rss": 4100, ...}

Why this shape: the server runs in its own process (``--serve``), as in production, with its
DTLS configuration built exactly as ``lwm2m-server`` builds it (``Resolver`` callbacks over a
sqlite keystore, the server identity from the store, a session cache), so a handshake includes
the cookie round trip, the resolver's store lookup and the CoAP layer. The clients are raw
``DtlsEngine`` instances on asyncio sockets (no aiocoap on the client side), so the client costs
as little as possible; on a 2-core machine both processes still compete for the CPU, which is
why the NoSec figure is measured with the same generator in the same run.

* handshakes/s: ``--handshakes`` full handshakes per mode, ``--concurrency`` at a time, each
  from a fresh socket (a new peer address); ``psk-ccm8-resumed`` uses abbreviated handshakes.
* round trips/s: ``--concurrency`` established PSK sessions each keep one CON GET outstanding
  for ``--seconds``; the same over plain CoAP against the same process's NoSec port.
* idle bytes/session: RSS growth of the server process for ``--idle`` idle PSK sessions (each
  has exchanged one request, so the engine has released its final flight), i.e. engine +
  transport (session object, table entries, CoAP per-peer state); beside it the engine alone in
  memory from ``keystore.dtls.measure`` (tracemalloc and RSS, fresh interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from keystore import tools  # noqa: E402
from keystore.credentials import (  # noqa: E402
    DeviceCredentials,
    ServerIdentity,
    TrustedCa,
    certificate_der,
)
from keystore.dtls import (  # noqa: E402
    ApplicationData,
    CipherSuite,
    ClientConfig,
    DtlsEngine,
    HandshakeComplete,
)
from keystore.store.credentials import SqliteCredentialStore  # noqa: E402

MODES = ("psk-ccm8", "psk-cbc", "rpk-ccm8", "x509-ccm8", "psk-ccm8-resumed")
PSK_IDENTITY = b"bench-psk"
PSK_KEY = b"0123456789abcdef"


# -- provisioning -------------------------------------------------------------------------------


@dataclasses.dataclass
class Clients:
    configs: dict[str, ClientConfig]


def provision(db: Path) -> Clients:
    """Keystore records for every mode, and the matching client configurations."""
    ca_key, ca = tools.make_ca("bench CA")
    server_key = tools.generate_private_key()
    server_cert = tools.issue_certificate(
        server_key.public_key(), "127.0.0.1", issuer_key=ca_key, issuer_cert=ca, server=True
    )
    rpk_key = tools.generate_private_key()
    x509_key = tools.generate_private_key()
    x509_cert = tools.issue_certificate(
        x509_key.public_key(), "bench-x509", issuer_key=ca_key, issuer_cert=ca
    )
    with SqliteCredentialStore.open(db) as store:
        store.put_server_identity(
            ServerIdentity(tools.private_key_pem(server_key), (certificate_der(server_cert),))
        )
        store.put_trusted_ca(TrustedCa(certificate_der(ca)))
        store.put_device(DeviceCredentials.for_psk("bench-psk", PSK_IDENTITY, PSK_KEY))
        store.put_device(
            DeviceCredentials.for_rpk("bench-rpk", tools.spki_der(rpk_key.public_key()))
        )
        store.put_device(DeviceCredentials.for_x509("bench-x509"))
    server_spki = tools.spki_der(server_key.public_key())
    ccm_psk = [CipherSuite.TLS_PSK_WITH_AES_128_CCM_8]
    ccm_ecdhe = [CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8]
    psk = ClientConfig(cipher_suites=ccm_psk, psk_identity=PSK_IDENTITY, psk=PSK_KEY)
    return Clients(
        {
            "psk-ccm8": psk,
            "psk-ccm8-resumed": psk,
            "psk-cbc": ClientConfig(
                cipher_suites=[CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256],
                psk_identity=PSK_IDENTITY,
                psk=PSK_KEY,
            ),
            "rpk-ccm8": ClientConfig(
                cipher_suites=ccm_ecdhe, private_key=rpk_key, verify_rpk=lambda k: k == server_spki
            ),
            "x509-ccm8": ClientConfig(
                cipher_suites=ccm_ecdhe,
                private_key=x509_key,
                certificate_chain=[certificate_der(x509_cert)],
                trust_store=[ca],
            ),
        }
    )


# -- the server process -------------------------------------------------------------------------


async def serve(db: Path) -> None:
    """``--serve DB``: print the ports as JSON, then answer ``rss`` lines on stdin until EOF."""
    from keystore.coaps import server_dtls_config
    from keystore.resolver import Resolver
    from keystore.store.database import SqliteDatabase
    from lwm2m_runtime.coap import Code, Message
    from lwm2m_runtime.server import CoapServer, IncomingRequest

    def echo(request: IncomingRequest) -> Message:
        if request.message.uri_path == ["echo"]:
            return Message.response(Code.CONTENT, b"22.5")
        return Message.response(Code.NOT_FOUND)

    store = SqliteDatabase(db)
    credentials = SqliteCredentialStore(store)
    resolver = Resolver(credentials, open_registration=False)
    identity = credentials.server_identity()
    assert identity is not None
    server = CoapServer(echo)
    await server.start(
        host="127.0.0.1",
        port=0,
        coaps_port=0,
        dtls_config=server_dtls_config(resolver, identity),
    )
    assert server.coap_address is not None and server.coaps_address is not None
    ready = {"coap_port": server.coap_address[1], "coaps_port": server.coaps_address[1]}
    print(json.dumps(ready), flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "rss":
            assert server.coaps is not None and server.coaps.dtls is not None
            sessions = len(server.coaps.dtls.sessions)
            print(json.dumps({"rss": rss_bytes(), "sessions": sessions}), flush=True)
    await server.stop()


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ServerProcess:
    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.coap_port: int = ready["coap_port"]
        self.coaps_port: int = ready["coaps_port"]

    def rss(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("rss\n")
        self.proc.stdin.flush()
        return cast(dict[str, int], json.loads(self.proc.stdout.readline()))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- clients ------------------------------------------------------------------------------------


class _Queue(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


class Peer:
    """A UDP socket, and optionally a DTLS client session on it."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Queue) -> None:
        self.transport = transport
        self.protocol = protocol
        self.engine: DtlsEngine | None = None
        self.complete: HandshakeComplete | None = None
        self.mid = 0

    @classmethod
    async def open(cls, port: int) -> Peer:
        transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            _Queue, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port)
        )
        return cls(transport, protocol)

    def _flush(self) -> None:
        assert self.engine is not None
        for datagram in self.engine.datagrams_to_send():
            self.transport.sendto(datagram)

    async def handshake(self, config: ClientConfig) -> DtlsEngine:
        loop = asyncio.get_running_loop()
        self.engine = engine = DtlsEngine.client(config)
        engine.connect(loop.time())
        self._flush()
        while not engine.is_established:
            if engine.is_closed:
                raise ConnectionError("handshake failed")
            try:
                data = await asyncio.wait_for(self.protocol.queue.get(), 1.0)
            except TimeoutError:
                engine.handle_timer(loop.time())
            else:
                for event in engine.receive_datagram(data, loop.time()):
                    if isinstance(event, HandshakeComplete):
                        self.complete = event
            self._flush()
        return engine

    def _request(self) -> bytes:
        self.mid = (self.mid + 1) & 0xFFFF
        # CON GET /echo, token = 2 bytes of the message id
        return (
            bytes([0x42, 0x01])
            + self.mid.to_bytes(2, "big")
            + self.mid.to_bytes(2, "big")
            + (b"\xb4echo")
        )

    async def round_trip(self) -> None:
        request = self._request()
        if self.engine is None:
            self.transport.sendto(request)
        else:
            self.engine.send_application_data(request)
            self._flush()
        while True:
            data = await asyncio.wait_for(self.protocol.queue.get(), 5.0)
            if self.engine is None:
                payload = data
            else:
                events = self.engine.receive_datagram(data, asyncio.get_running_loop().time())
                found = [e.data for e in events if isinstance(e, ApplicationData)]
                if not found:
                    continue
                payload = found[0]
            if payload[2:4] == request[2:4]:
                return

    def close(self) -> None:
        self.transport.close()


async def handshake_rate(port: int, config: ClientConfig, n: int, concurrency: int,
                         resumed: bool) -> dict[str, Any]:  # fmt: skip
    if resumed:
        first = await Peer.open(port)
        engine = await first.handshake(config)
        first.close()
        config = dataclasses.replace(config, session=engine.session)
    done = 0
    failures = 0
    abbreviated = 0

    async def worker(count: int) -> None:
        nonlocal done, failures, abbreviated
        for _ in range(count):
            peer = await Peer.open(port)
            try:
                await peer.handshake(config)
                abbreviated += bool(peer.complete and peer.complete.resumed)
                done += 1
            except (ConnectionError, TimeoutError):
                failures += 1
            finally:
                peer.close()

    per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in per if c))
    elapsed = time.perf_counter() - start
    return {"value": round(done / elapsed, 1), "n": n, "concurrency": concurrency,
            "failures": failures, "resumed": abbreviated}  # fmt: skip


async def round_trip_rate(
    port: int, config: ClientConfig | None, concurrency: int, seconds: float
) -> dict[str, Any]:
    peers = [await Peer.open(port) for _ in range(concurrency)]
    if config is not None:
        await asyncio.gather(*(p.handshake(config) for p in peers))
    for p in peers:  # warm up (and release the engines' final flights)
        await p.round_trip()
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(peer: Peer) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await peer.round_trip()
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(p) for p in peers))
    elapsed = time.perf_counter() - start
    for p in peers:
        p.close()
    return {"value": round(count / elapsed, 1), "n": count, "concurrency": concurrency}


async def idle_growth(server: ServerProcess, config: ClientConfig, n: int) -> dict[str, Any]:
    before = server.rss()

    async def one() -> None:
        peer = await Peer.open(server.coaps_port)
        try:
            await peer.handshake(config)
            await peer.round_trip()
        finally:
            peer.close()

    for start in range(0, n, 32):
        await asyncio.gather(*(one() for _ in range(min(32, n - start))))
    after = server.rss()
    added = after["sessions"] - before["sessions"]
    return {"server_rss": round((after["rss"] - before["rss"]) / max(1, added)), "n": added}


def engine_idle(mode: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "keystore.dtls.measure", "--idle-only", "--mode", mode,
         "--n-idle", str(n)],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout  # fmt: skip
    return cast(dict[str, Any], json.loads(out.strip().splitlines()[-1]))


# -- main ---------------------------------------------------------------------------------------


def emit(record: dict[str, Any]) -> None:
    print(json.dumps({"bench": "dtls-transport", **record}), flush=True)


async def run(args: argparse.Namespace, clients: Clients, server: ServerProcess) -> None:
    for mode in args.mode:
        result = await handshake_rate(
            server.coaps_port,
            clients.configs[mode],
            args.handshakes,
            args.concurrency,
            resumed=mode.endswith("resumed"),
        )
        emit({"metric": "handshakes_per_second", "mode": mode, **result})
    for transport, port, config in (
        ("coaps", server.coaps_port, clients.configs["psk-ccm8"]),
        ("coap", server.coap_port, None),
    ):
        result = await round_trip_rate(port, config, args.concurrency, args.seconds)
        emit({"metric": "round_trips_per_second", "transport": transport,
              **({"mode": "psk-ccm8"} if config else {}), **result})  # fmt: skip
    growth = await idle_growth(server, clients.configs["psk-ccm8"], args.idle)
    engine = engine_idle("psk-ccm8", args.idle)
    emit({"metric": "idle_bytes_per_session", "mode": "psk-ccm8", **growth,
          "engine_tracemalloc": engine["tracemalloc"], "engine_rss": engine["rss"]})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small numbers (CI smoke run)")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable (default all)")
    parser.add_argument("--handshakes", type=int, help="full handshakes per mode (default 300)")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel peers (16)")
    parser.add_argument("--seconds", type=float, help="round-trip phase length (default 5)")
    parser.add_argument("--idle", type=int, help="idle sessions for the memory figure (2000)")
    args = parser.parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    args.mode = args.mode or list(MODES)
    args.handshakes = args.handshakes or (40 if args.quick else 300)
    args.seconds = args.seconds or (1.0 if args.quick else 5.0)
    args.idle = args.idle or (200 if args.quick else 2000)
    with tempfile.TemporaryDirectory(prefix="bench-dtls-") as tmp:
        db = Path(tmp) / "keystore.sqlite"
        clients = provision(db)
        server = ServerProcess(db)
        try:
            asyncio.run(run(args, clients, server))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fault injection against the real server processes (issue 11, "A documented fault-injection
run"; issue 10, "Bad input"), one JSON line per figure.

Usage (from the repository root; the ``loss`` part needs root for ``ip netns`` and ``nft``)::

    python bench/fault_injection.py [--quick] [--only malformed,kill9,loss] [--datagrams 200000]

1. **malformed**: for ``lwm2m-server`` and ``lwm2m-bootstrap`` in turn (each started as
   ``python -m … serve`` on free loopback ports with a data dir of its own, through
   ``tests/integration/processes.ServerProcess``), ``--datagrams`` malformed datagrams split
   between the NoSec CoAP port and the CoAPs (DTLS) port: mutated valid CoAP messages (bit
   flips, truncation, reserved option delta/length nibbles, option lengths past the end, token
   length 9-15, invalid UTF-8 in Uri-Path/Uri-Query, unknown critical options, huge or reserved
   Block1/Block2 values, bad versions, splices, random bytes up to 5000 bytes) and, for DTLS,
   mutated records of real handshakes (``fuzz.seeds``), forged record headers and random
   bytes. They come from many source ports (a new socket every few batches) in batches of
   64; after each batch a legitimate client does one exchange on the same port
   (lwm2m-server NoSec: an Update of its registration, a new Register every 20th; bootstrap
   NoSec: a Bootstrap-Request or a CoAP ping; DTLS: a ClientHello answered by a
   HelloVerifyRequest). The server reads its socket in order, so that answer also paces the
   flood: nothing is lost in a full socket buffer, every datagram is read by the server.
   Afterwards: the process is alive and answers a fresh Register (Bootstrap-Request); its log
   has no ``Traceback`` and no refusal twice from one peer within 60 s (``log_findings``); it
   exits 0 on SIGTERM; the sqlite file passes ``PRAGMA integrity_check``; every stored
   registration row decodes, ``/api/health`` shows ``quarantined: 0``, and every Register the
   legitimate client saw answered 2.01 is stored.
2. **kill9**: ``--k9-workers`` concurrent simulated devices (``bench.load``'s ``ClientSocket``:
   CON with retransmission, same Message ID) Register and Update (each Update a new, higher
   lifetime) against ``lwm2m-server``; it is SIGKILLed three times mid-load and restarted on
   the same ports. After the load, every Register answered 2.01 must be stored, with a lifetime
   at least the highest one an Update was answered 2.04 for.
3. **loss**: two network namespaces joined by a veth pair; ``nft`` in the client's namespace
   drops ``--loss`` % of UDP datagrams in each direction (``numgen random mod 100 < 30``; the
   HTTP API over TCP is left alone: it is the operator's path, not the device's). The server
   runs in one namespace; a client (this file with ``--loss-client``, under ``ip netns exec``)
   in the other Registers, sends Updates, has the server Read it through the HTTP API, is
   observed and sends CON notifications with distinct values, while it counts the server's
   events (``/api/event``). Every exchange must complete, and nothing may be processed twice:
   exactly one REGISTRATION event, one UPDATED event per Update, one NOTIFICATION event and one
   telemetry row per notification, although lost ACKs made the client retransmit: a packet
   counter in the server's namespace (``--sniff``) counts the copies of CON messages that
   reached the server, the chances it had to process one twice. The namespaces are deleted on exit,
   also on errors and Ctrl-C.

It reports, it never fails on a figure (each line has ``ok``); it prints ``{"skipped": …}`` when
it cannot run a part (no root, no ``nft``), exits 130 when interrupted, non-zero on a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # ``python bench/fault_injection.py`` puts bench/ first
    sys.path.insert(0, str(REPO))

from bench.load import generator as g  # noqa: E402
from bench.server_load import CannotRun, run_as_main  # noqa: E402
from lwm2m_runtime.coap import (  # noqa: E402
    CoapError,
    Code,
    Message,
    Type,
    options,
    parse,
    serialize,
)
from tests.auth import HEADERS  # noqa: E402
from tests.integration.processes import ServerProcess  # noqa: E402
from tests.integration.server import rawcoap as raw  # noqa: E402

BENCH = "fault_injection"
LOOPBACK = "127.0.0.1"


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"bench": BENCH, "figure": figure, **values}), flush=True)


@dataclass
class Config:
    """Every bound of a run; the defaults are the full run (about 15 minutes on 2 cores)."""

    parts: tuple[str, ...] = ("malformed", "kill9", "loss")
    datagrams: int = 200_000
    """Malformed datagrams per server (NoSec and DTLS ports together)."""
    dtls_share: float = 0.25
    batch: int = 64
    new_socket_every: int = 4
    """Batches between two new source sockets (so the flood comes from many source ports)."""
    sockets: int = 32
    seed: int = 11
    k9_workers: int = 64
    k9_seconds: float = 60.0
    k9_updates: int = 8
    """Updates per registered device before it registers anew under a new name."""
    loss_percent: int = 30
    loss_updates: int = 50
    loss_reads: int = 20
    loss_notifications: int = 50
    workdir: Path | None = None
    """Where the servers' data dirs and logs go (kept); default a temporary folder."""
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Config:
        return cls(
            datagrams=5_000,
            k9_workers=16,
            k9_seconds=15.0,
            loss_updates=8,
            loss_reads=4,
            loss_notifications=8,
            quick=True,
        )


# -- malformed datagrams ------------------------------------------------------------------------

URI_HOST, OBSERVE, URI_PATH, CONTENT_FORMAT, URI_QUERY = 3, 6, 11, 12, 15
BLOCK2, BLOCK1, SIZE1 = 23, 27, 60
CRITICAL_UNKNOWN = (9, 13, 19, 25, 2049, 65001)
"""Odd option numbers (critical, RFC 7252 §5.4.1) that neither server knows."""


def raw_message(
    mtype: int,
    code: int,
    mid: int,
    token: bytes,
    opts: list[tuple[int, bytes]],
    payload: bytes = b"",
    *,
    tkl: int | None = None,
    version: int = 1,
) -> bytes:
    """A CoAP datagram written by the tests' hand-built encoder (``rawcoap``), with the first
    byte rewritten when asked, so that what our codec refuses to write can be sent (a token
    length over 8, a wrong version); option values are any bytes."""
    data = bytearray(raw.encode(raw.Msg(mtype, code, mid, token, opts, payload)))
    if tkl is not None or version != 1:
        tkl = len(token) if tkl is None else tkl
        data[0] = (version << 6) | (mtype << 4) | (tkl & 0xF)
    return bytes(data)


def block_value(num: int, more: bool, szx: int) -> bytes:
    raw = (num << 4) | (int(more) << 3) | szx
    return raw.to_bytes(max(1, (raw.bit_length() + 7) // 8), "big")


class Mutator:
    """Malformed datagrams from templates of what each server accepts. The templates use
    endpoint names and registration ids of their own (``fz…``), so a mutation that happens to
    be valid cannot touch the legitimate client's registration."""

    COAP_KINDS = (
        "bitflip",
        "truncate",
        "option_nibble_15",
        "option_past_end",
        "token_length",
        "bad_utf8",
        "critical_option",
        "huge_block",
        "bad_version",
        "splice",
        "random",
    )
    DTLS_KINDS = ("bitflip", "truncate", "record_header", "epoch1_garbage", "splice", "random")

    def __init__(self, seed: int, bootstrap: bool) -> None:
        self.rng = random.Random(seed)
        self.bootstrap = bootstrap
        self.coap_templates = self._coap_templates()
        self.dtls_templates = self._dtls_templates()
        self.kinds: Counter[str] = Counter()

    def _coap_templates(self) -> list[bytes]:
        links = g.REGISTRATION_LINKS
        path = "bs" if self.bootstrap else "rd"
        msgs = [
            raw_message(
                0,
                2,
                1,
                b"\x01\x02",
                [
                    (URI_PATH, b"rd"),
                    (CONTENT_FORMAT, b"\x28"),
                    (URI_QUERY, b"ep=fz-1"),
                    (URI_QUERY, b"lt=300"),
                    (URI_QUERY, b"b=U"),
                    (URI_QUERY, b"lwm2m=1.1"),
                ],
                links,
            ),
            raw_message(
                0,
                2,
                2,
                b"\x03",
                [(URI_PATH, b"rd"), (URI_PATH, b"fzfzfzfz"), (URI_QUERY, b"lt=60")],
            ),
            raw_message(0, 2, 3, b"\x04", [(URI_PATH, b"bs"), (URI_QUERY, b"ep=fz-2")]),
            raw_message(0, 4, 4, b"\x05", [(URI_PATH, b"rd"), (URI_PATH, b"fzfzfzfz")]),
            raw_message(
                0,
                2,
                5,
                b"\x06",
                [(URI_PATH, b"dp"), (CONTENT_FORMAT, b"\x70")],
                g.senml_cbor("/3303/0/", "5700", 21.5),
            ),
            raw_message(0, 1, 6, b"\x07\x08", [(URI_PATH, b"3"), (URI_PATH, b"0")]),
            raw_message(
                0,
                2,
                7,
                b"\x09",
                [
                    (URI_PATH, path.encode()),
                    (BLOCK1, block_value(0, True, 2)),
                    (URI_QUERY, b"ep=fz-3"),
                ],
                b"\xaa" * 64,
            ),
            raw_message(
                2,
                0x45,
                8,
                os.urandom(8),
                [(CONTENT_FORMAT, b"\x70"), (BLOCK2, block_value(0, True, 6))],
                b"\xbf" * 32,
            ),
            raw_message(
                0, 0x45, 9, os.urandom(8), [(OBSERVE, b"\x07"), (CONTENT_FORMAT, b"")], b"21.5"
            ),
            raw_message(2, 0, 10, b"", []),
            raw_message(3, 0, 11, b"", []),
            raw_message(0, 0, 12, b"", []),
            raw_message(
                0, 5, 13, b"\x0a", [(URI_PATH, b"rd"), (CONTENT_FORMAT, b"\x6e")], b"\x81\x63/3/"
            ),
        ]
        return msgs

    @staticmethod
    def _dtls_templates() -> list[bytes]:
        from fuzz.seeds import _dtls_group  # real PSK/RPK handshakes, client and server side

        return list(_dtls_group()["dtls_record"])

    # -- one datagram ------------------------------------------------------------------------
    def generic(self, kind: str, base: bytes, templates: list[bytes]) -> bytes:
        """The mutations that know nothing of the protocol: 1-8 bit flips, truncation, or the
        head of ``base`` joined to the tail of another template."""
        rng = self.rng
        if kind == "bitflip":
            out = bytearray(base)
            for _ in range(rng.randint(1, 8)):
                bit = rng.randrange(len(out) * 8)
                out[bit // 8] ^= 1 << (bit % 8)
            return bytes(out)
        if kind == "truncate":
            return base[: rng.randrange(len(base))]
        other = rng.choice(templates)
        return base[: rng.randrange(1, len(base))] + other[rng.randrange(len(other)) :]

    def coap(self) -> bytes:
        kind = self.rng.choice(self.COAP_KINDS)
        self.kinds["coap_" + kind] += 1
        rng = self.rng
        base = rng.choice(self.coap_templates)
        mid = rng.randrange(0x10000)
        if kind in ("bitflip", "truncate", "splice"):
            return self.generic(kind, base, self.coap_templates)
        if kind == "option_nibble_15":
            # delta or length nibble 15 without the payload marker: a format error (§3.1)
            byte = rng.choice([0xF0 | rng.randrange(15), 0x0F | (rng.randrange(15) << 4)])
            return raw_message(0, 2, mid, b"\x01", [(URI_PATH, b"rd")]) + bytes([byte]) + b"x"
        if kind == "option_past_end":
            # an extended delta/length claiming bytes the datagram does not have
            head = raw_message(0, 2, mid, b"\x01", [(URI_PATH, b"rd")])
            return head + rng.choice(
                [b"\xd0", b"\xe0\x01", b"\x0d\xff", b"\x0e\xff\xff", b"\x04ab"]
            )
        if kind == "token_length":
            return raw_message(
                0, 2, mid, os.urandom(8), [(URI_PATH, b"rd")], tkl=rng.randint(9, 15)
            )
        if kind == "bad_utf8":
            bad = rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"ep=\x80fz", b"\xf8\x88"])
            opts = [(URI_PATH, b"rd"), (URI_QUERY, b"lt=60")]
            if rng.random() < 0.5:
                opts[0] = (URI_PATH, bad)
            else:
                opts.append((URI_QUERY, bad))
            if self.bootstrap:
                opts[0] = (URI_PATH, b"bs") if opts[0][1] == b"rd" else opts[0]
            return raw_message(0, 2, mid, b"\x02", opts, g.REGISTRATION_LINKS)
        if kind == "critical_option":
            number = rng.choice(CRITICAL_UNKNOWN)
            opts = [
                (URI_PATH, b"bs" if self.bootstrap else b"rd"),
                (URI_QUERY, b"ep=fz-4"),
                (number, os.urandom(rng.randint(0, 4))),
            ]
            return raw_message(0, 2, mid, b"\x03", opts, g.REGISTRATION_LINKS)
        if kind == "huge_block":
            option = rng.choice([BLOCK1, BLOCK2])
            value = rng.choice(
                [
                    block_value((1 << 20) - 1, True, 6),  # the last block number there is
                    block_value(rng.randrange(1 << 20), rng.random() < 0.5, 7),  # SZX 7: reserved
                    os.urandom(4),  # longer than the 3 bytes a Block option may have
                    block_value(rng.randrange(1, 1 << 16), True, rng.randrange(7)),
                ]
            )
            opts = [
                (URI_PATH, b"bs" if self.bootstrap else b"rd"),
                (URI_QUERY, b"ep=fz-5"),
                (option, value),
            ]
            if rng.random() < 0.3:
                opts.append((SIZE1, struct.pack("!I", rng.randrange(1 << 32))))
            return raw_message(0, 2, mid, b"\x04", opts, os.urandom(rng.choice([16, 64, 1024])))
        if kind == "bad_version":
            return bytes([(rng.choice([0, 2, 3]) << 6) | (base[0] & 0x3F)]) + base[1:]
        size = rng.choice([0, 1, 3, 4, 5, 16, 100, 1024, 1500, 4096, 4097, 5000])
        return os.urandom(size)

    def dtls(self) -> bytes:
        kind = self.rng.choice(self.DTLS_KINDS)
        self.kinds["dtls_" + kind] += 1
        rng = self.rng
        base = rng.choice(self.dtls_templates)
        if kind in ("bitflip", "truncate", "splice"):
            return self.generic(kind, base, self.dtls_templates)
        if kind == "record_header":
            # content type, version, epoch, sequence and length: any of them forged
            fragment = base[13:]
            ctype = rng.choice([20, 21, 22, 23, 24, 25, rng.randrange(256)])
            version = rng.choice([b"\xfe\xfd", b"\xfe\xff", b"\x03\x03", os.urandom(2)])
            epoch = struct.pack("!H", rng.choice([0, 1, 2, 0xFFFF]))
            seq = os.urandom(6)
            length = rng.choice(
                [len(fragment), 0, 0xFFFF, len(fragment) + 1, max(0, len(fragment) - 1)]
            )
            return bytes([ctype]) + version + epoch + seq + struct.pack("!H", length) + fragment
        if kind == "epoch1_garbage":
            # an application-data record "of a session" nobody established
            body = os.urandom(rng.choice([0, 8, 24, 64, 300]))
            return b"\x17\xfe\xfd\x00\x01" + os.urandom(6) + struct.pack("!H", len(body)) + body
        return os.urandom(rng.choice([1, 13, 14, 25, 100, 600, 1500, 4096]))


class Flood:
    """Many source sockets; sends a batch of datagrams, drains and counts what comes back."""

    def __init__(self, target: tuple[str, int], sockets: int, rng: random.Random) -> None:
        self.target = target
        self.rng = rng
        self.socks: list[socket.socket] = []
        self.ports: set[int] = set()
        self.answers: Counter[str] = Counter()
        for _ in range(sockets):
            self.replace(None)

    def replace(self, index: int | None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        self.ports.add(sock.getsockname()[1])
        if index is None:
            self.socks.append(sock)
        else:
            self.drain_one(self.socks[index])
            self.socks[index].close()
            self.socks[index] = sock

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.rng.choice(self.socks).sendto(data, self.target)

    def drain_one(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, OSError):
                return
            self.answers[_answer_kind(data)] += 1

    def drain(self) -> None:
        for sock in self.socks:
            self.drain_one(sock)

    def close(self) -> None:
        self.drain()
        for sock in self.socks:
            sock.close()


def _answer_kind(data: bytes) -> str:
    if len(data) >= 13 and data[0] in (20, 21, 22, 23) and data[1] == 0xFE:
        return (
            "dtls_hello_verify" if data[0] == 22 and data[13:14] == b"\x03" else f"dtls_{data[0]}"
        )
    try:
        msg = parse(data)
    except CoapError:
        return "unparsable"
    if msg.mtype == Type.RST:
        return "RST"
    if msg.code == 0:
        return Type(msg.mtype).name
    if msg.is_request:  # the bootstrap server starting a session with a fuzzed endpoint
        return f"request {Code(msg.code).name}"
    return f"{msg.code >> 5}.{msg.code & 0x1F:02d}"


class Legit:
    """The legitimate client: a blocking UDP socket, CON with retransmission (same MID)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.mid = random.randrange(0x10000)
        self.failures = 0

    def next_mid(self) -> int:
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def exchange(
        self, data: bytes, match: Callable[[bytes], bool], attempts: int = 5
    ) -> bytes | None:
        timeout = 1.0
        for _ in range(attempts):
            self.sock.sendto(data, self.target)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    reply = self.sock.recv(65536)
                except (TimeoutError, OSError):
                    break
                if match(reply):
                    return reply
                self.answer_server(reply)
            timeout *= 2
        self.failures += 1
        return None

    def answer_server(self, data: bytes) -> None:
        """A request of the server (a bootstrap session's Discover, Write…): acknowledged
        with 2.04/2.02/2.05 so the session goes on; it is not what is measured."""
        with contextlib.suppress(CoapError, OSError):
            msg = parse(data)
            if msg.is_request and msg.mtype == Type.CON:
                answers = {int(Code.DELETE): Code.DELETED, int(Code.GET): Code.CONTENT}
                code = answers.get(msg.code, Code.CHANGED)
                payload = b"</0/0>,</1>,</3/0>" if msg.code == Code.GET else b""
                opts = options(content_format=40) if payload else ()
                reply = Message(Type.ACK, code, msg.mid, msg.token, opts, payload)
                self.sock.sendto(serialize(reply), self.target)

    def request(self, msg: Message) -> Message | None:
        mid = self.next_mid()
        msg = msg.replace(mid=mid)

        def match(reply: bytes) -> bool:
            with contextlib.suppress(CoapError):
                answer = parse(reply)
                return answer.mid == mid and answer.mtype in (Type.ACK, Type.RST)
            return False

        reply = self.exchange(serialize(msg), match)
        return None if reply is None else parse(reply)

    def close(self) -> None:
        self.sock.close()


def register_message(endpoint: str, lifetime: int = 86400) -> Message:
    return Message(
        Type.CON,
        Code.POST,
        0,
        os.urandom(4),
        options(
            uri_path=["rd"],
            uri_query=[f"ep={endpoint}", f"lt={lifetime}", "lwm2m=1.1", "b=U"],
            content_format=40,
        ),
        g.REGISTRATION_LINKS,
    )


def bootstrap_request(endpoint: str) -> Message:
    return Message(
        Type.CON,
        Code.POST,
        0,
        os.urandom(4),
        options(uri_path=["bs"], uri_query=[f"ep={endpoint}"]),
    )


def client_hello() -> bytes:
    """A fresh cookie-less ClientHello of the project's own DTLS client: the server answers it
    with a HelloVerifyRequest without keeping state (RFC 6347 §4.2.1)."""
    from keystore.dtls import ClientConfig, DtlsEngine
    from keystore.dtls.constants import CipherSuite

    client = DtlsEngine.client(
        ClientConfig(
            cipher_suites=[CipherSuite.TLS_PSK_WITH_AES_128_CCM_8],
            psk_identity=b"fi",
            psk=bytes(16),
        )
    )
    client.connect(0.0)
    return client.datagrams_to_send(0.0)[0]


def is_hello_verify(data: bytes) -> bool:
    return len(data) > 13 and data[0] == 22 and data[13] == 3


# -- checks on a stopped/running server --------------------------------------------------------

_NUMBERS = re.compile(r"0x[0-9a-f]+|\d+", re.IGNORECASE)
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?)\s+(\w+)\s+(.*)$")
_PEER = re.compile(r"\bfrom (\[?[0-9a-f.:]+\]?(?::\d+)?)", re.IGNORECASE)
_REFUSAL = re.compile(r"refus|malformed|invalid|reject|drop", re.IGNORECASE)


def log_findings(text: str) -> dict[str, Any]:
    """Tracebacks, and refusals logged more than once per peer per minute.

    A refusal is a WARNING/ERROR line or a line saying refused/malformed/invalid/rejected/
    dropped, at any level; its peer is the ``from ADDRESS[:PORT]`` it names (or none), and two
    refusals are the same when the line is the same with the peer taken out and every number
    blanked. The same refusal from the same peer twice within 60 s is a repeat."""
    last: dict[tuple[str, str], float] = {}
    repeats: list[str] = []
    levels: Counter[str] = Counter()
    refusals = 0
    lines = text.splitlines()
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            continue
        level, message = m.group(2), m.group(3)
        levels[level] += 1
        if level not in ("WARNING", "ERROR", "CRITICAL") and not _REFUSAL.search(message):
            continue
        refusals += 1
        when = datetime.fromisoformat(m.group(1).replace(",", ".")).timestamp()
        peer = _PEER.search(message)
        key = (peer.group(1) if peer else "", _NUMBERS.sub("#", _PEER.sub("from …", message)))
        previous = last.get(key)
        if previous is not None and when - previous < 59.0:
            repeats.append(line)
        last[key] = when
    return {
        "log_lines": len(lines),
        "log_levels": dict(levels),
        "tracebacks": text.count("Traceback"),
        "refusal_lines": refusals,
        "distinct_refusals": len({k[1] for k in last}),
        "repeated_per_peer_within_60s": len(repeats),
        "repeat_examples": repeats[:3],
    }


def store_findings(database: Path) -> dict[str, Any]:
    """``PRAGMA integrity_check`` and, for the LwM2M server's file, every registration row
    decoded the way the server loads it."""
    from lwm2m_server.store.records import registration_from_json

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows, bad, endpoints = 0, [], {}
        if "registrations" in tables:
            for (data,) in conn.execute("SELECT data FROM registrations"):
                rows += 1
                try:
                    reg = registration_from_json(json.loads(data))
                    endpoints[reg.endpoint] = reg.lifetime
                except Exception as exc:
                    bad.append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()
    return {
        "integrity_check": integrity[0] if integrity == ["ok"] else integrity[:5],
        "registration_rows": rows,
        "undecodable_rows": len(bad),
        "undecodable_examples": bad[:3],
        "_endpoints": endpoints,
    }


def http_json(url: str, timeout: float = 10.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


@contextlib.contextmanager
def server_process(
    workdir: Path, name: str, program: str, **kwargs: Any
) -> Iterator[ServerProcess]:
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(data, workdir / f"{name}.log", program=program, **kwargs)
    if program == "lwm2m_server":
        proc.env["LWM2M_SERVER_OPEN_REGISTRATION"] = "true"
    try:
        yield proc
    finally:
        proc.stop()


BOOTSTRAP_PROFILE = """\
profile: fault-injection
bootstrap_security:
  - mode: nosec
servers:
  - uri: coaps://127.0.0.1:5684
    short_server_id: 1
    security: {mode: psk, generate: true}
"""


def run_malformed(cfg: Config, workdir: Path) -> bool:
    ok = True
    for program in ("lwm2m_server", "bootstrap_server"):
        ok &= bool(malformed_one(cfg, workdir, program)["ok"])
    return ok


def socket_drops(port: int) -> int | None:
    """The kernel's count of datagrams dropped at the server's UDP socket (receive buffer full:
    the flood went faster than the server read), from ``/proc/net/udp``'s ``drops`` column."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                return int(fields[-1])
    return None


def malformed_one(cfg: Config, workdir: Path, program: str) -> dict[str, Any]:
    """Flood one server (see the module docstring, part 1); the result line, also printed."""
    bootstrap = program == "bootstrap_server"
    name = "bootstrap" if bootstrap else "server"
    with server_process(workdir, f"malformed-{name}", program) as proc:
        if bootstrap:
            configs = proc.data_dir / "bootstrap-configs"
            configs.mkdir(exist_ok=True)
            (configs / "fault-injection.yaml").write_text(BOOTSTRAP_PROFILE)
        try:
            proc.start()
        except AssertionError as exc:
            raise CannotRun(str(exc)) from None
        mutator = Mutator(cfg.seed, bootstrap)
        hello = client_hello()
        acknowledged: dict[str, str] = {}
        legit_ok, legit_refused = Counter[str](), Counter[str]()
        start = time.perf_counter()
        sent = {"coap": 0, "dtls": 0}
        dtls_count = int(cfg.datagrams * cfg.dtls_share)
        plan_by_port = {"coap": cfg.datagrams - dtls_count, "dtls": dtls_count}
        location: str | None = None
        register_count = 0
        for port_kind in ("coap", "dtls"):
            port = proc.coap_port if port_kind == "coap" else proc.coaps_port
            flood = Flood((LOOPBACK, port), cfg.sockets, mutator.rng)
            legit = Legit((LOOPBACK, port))
            batches = 0
            try:
                while sent[port_kind] < plan_by_port[port_kind]:
                    n = min(cfg.batch, plan_by_port[port_kind] - sent[port_kind])
                    make = mutator.coap if port_kind == "coap" else mutator.dtls
                    for _ in range(n):
                        flood.send(make())
                    sent[port_kind] += n
                    batches += 1
                    if batches % cfg.new_socket_every == 0:
                        flood.replace(mutator.rng.randrange(len(flood.socks)))
                    flood.drain()
                    # the legitimate client's exchange: pacing and liveness at once
                    if port_kind == "dtls":
                        got = legit.exchange(hello, is_hello_verify, attempts=3)
                        (legit_ok if got else legit_refused)["dtls_hello"] += 1
                        continue
                    if bootstrap:
                        if batches % 20 == 1:
                            what = "bootstrap_request"
                            reply = legit.request(bootstrap_request(f"fi-legit-{batches}"))
                        else:
                            what = "ping"
                            reply = legit.request(Message(Type.CON, Code.EMPTY, 0))
                        good = reply is not None and (
                            reply.code == Code.CHANGED or reply.mtype == Type.RST
                        )
                    elif location is None or batches % 20 == 1:
                        what = "register"
                        register_count += 1
                        endpoint = f"fi-legit-{register_count}"
                        reply = legit.request(register_message(endpoint))
                        good = reply is not None and reply.code == Code.CREATED
                        if good and reply is not None:
                            location = "/".join(reply.location_path)
                            acknowledged[endpoint] = location
                    else:
                        what = "update"
                        reply = legit.request(
                            Message(
                                Type.CON,
                                Code.POST,
                                0,
                                os.urandom(4),
                                options(uri_path=location.split("/")),
                            )
                        )
                        good = reply is not None and reply.code == Code.CHANGED
                    (legit_ok if good else legit_refused)[what] += 1
            finally:
                flood.close()
                legit.close()
            emit(
                "malformed_datagrams",
                server=name,
                port=port_kind,
                datagrams=sent[port_kind],
                source_ports=len(flood.ports),
                answers=dict(flood.answers.most_common(12)),
            )
        elapsed = time.perf_counter() - start
        # afterwards: alive, a fresh Register / Bootstrap-Request, health
        alive = proc.alive()
        fresh = Legit((LOOPBACK, proc.coap_port))
        try:
            if bootstrap:
                reply = fresh.request(bootstrap_request("fi-fresh"))
                fresh_ok = reply is not None and reply.code == Code.CHANGED
            else:
                reply = fresh.request(register_message("fi-fresh"))
                fresh_ok = reply is not None and reply.code == Code.CREATED
                if fresh_ok:
                    acknowledged["fi-fresh"] = ""
        finally:
            fresh.close()
        health = None if bootstrap else http_json(proc.api + "/health")
        drops = {"coap": socket_drops(proc.coap_port), "dtls": socket_drops(proc.coaps_port)}
        exit_code = proc.stop()
        log = log_findings(proc.log())
        store = store_findings(proc.database)
        endpoints = store.pop("_endpoints")
        missing = sorted(set(acknowledged) - set(endpoints)) if not bootstrap else []
        quarantined = None if health is None else health.get("quarantined")
        ok = (
            alive
            and fresh_ok
            and exit_code == 0
            and log["tracebacks"] == 0
            and log["repeated_per_peer_within_60s"] == 0
            and store["integrity_check"] == "ok"
            and store["undecodable_rows"] == 0
            and not missing
            and (bootstrap or quarantined == 0)
        )
        result = dict(
            server=name,
            ok=ok,
            datagrams=sum(sent.values()),
            seconds=round(elapsed, 1),
            datagrams_per_s=round(sum(sent.values()) / elapsed),
            alive=alive,
            fresh_request_answered=fresh_ok,
            exit_code=exit_code,
            legit_ok=dict(legit_ok),
            legit_not_ok=dict(legit_refused),
            acknowledged_registers=len(acknowledged),
            acknowledged_missing=missing[:10],
            quarantined=quarantined,
            server_socket_drops=drops,
            mutations=dict(mutator.kinds),
            **log,
            **store,
        )
        emit("malformed_result", **result)
        return result


# -- kill -9 under load -------------------------------------------------------------------------


@dataclass
class K9State:
    registered: dict[str, str] = field(default_factory=dict)
    """endpoint -> location of every 2.01 seen"""
    lifetimes: dict[str, int] = field(default_factory=dict)
    """endpoint -> the highest lifetime an Update was answered 2.04 for"""
    exchanges: Counter[str] = field(default_factory=Counter)
    stop: bool = False


async def k9_worker(
    index: int, target: tuple[str, int], state: K9State, cfg: Config, stats: g.Stats
) -> None:
    loop = asyncio.get_running_loop()
    _, sock = await loop.create_datagram_endpoint(
        lambda: g.ClientSocket(False, stats), local_addr=(LOOPBACK, 0), remote_addr=target
    )
    generation = 0
    try:
        while not state.stop:
            generation += 1
            endpoint = f"k9-{index:03d}-{generation:04d}"
            token, mid = sock.next_token(), sock.next_mid()
            reply = await sock.exchange(
                g.registration_request(endpoint, mid, token, 86400),
                mid,
                token,
                wants_response=True,
                timeout=1.0,
                attempts=5,
            )
            if reply is None or reply.code != Code.CREATED:
                state.exchanges["register_failed"] += 1
                continue
            state.exchanges["register_acknowledged"] += 1
            location = "/".join(reply.location_path)
            state.registered[endpoint] = location
            for lifetime in range(100_001, 100_001 + cfg.k9_updates):
                if state.stop:
                    break
                token = sock.next_token()
                mid = sock.next_mid()
                opts = options(uri_path=location.split("/"), uri_query=[f"lt={lifetime}"])
                data = serialize(Message(Type.CON, Code.POST, mid, token, opts))
                reply = await sock.exchange(
                    data, mid, token, wants_response=True, timeout=1.0, attempts=5
                )
                if reply is None or reply.code != Code.CHANGED:
                    state.exchanges["update_failed"] += 1
                    break  # a 4.04 after a lost Register: register anew
                state.exchanges["update_acknowledged"] += 1
                state.lifetimes[endpoint] = lifetime
    finally:
        sock.close()


def run_kill9(cfg: Config, workdir: Path) -> bool:
    with server_process(workdir, "kill9", "lwm2m_server") as proc:
        try:
            proc.start()
        except AssertionError as exc:
            raise CannotRun(str(exc)) from None
        logs: list[str] = []
        state = K9State()
        stats = g.Stats()
        kills: list[dict[str, Any]] = []

        async def main() -> None:
            target = (LOOPBACK, proc.coap_port)
            workers = [
                asyncio.create_task(k9_worker(i, target, state, cfg, stats))
                for i in range(cfg.k9_workers)
            ]
            start = time.monotonic()
            for i in range(3):
                # kill at evenly spaced points of the run, while every worker is mid-exchange
                await asyncio.sleep(cfg.k9_seconds / 4)
                acked = sum(
                    state.exchanges[k] for k in ("register_acknowledged", "update_acknowledged")
                )
                logs.append(proc.log())
                proc.kill9()
                killed_at = time.monotonic()
                await asyncio.to_thread(proc.start, proc.coap_port, proc.coaps_port)
                kills.append(
                    {
                        "kill": i + 1,
                        "at_s": round(killed_at - start, 1),
                        "acknowledged_before": acked,
                        "restart_s": round(time.monotonic() - killed_at, 2),
                    }
                )
            await asyncio.sleep(cfg.k9_seconds / 4)
            state.stop = True
            await asyncio.gather(*workers)

        asyncio.run(main())
        exit_code = proc.stop()
        logs.append(proc.log())
        log = log_findings("\n".join(logs))
        store = store_findings(proc.database)
        stored = store.pop("_endpoints")
        lost_registrations = sorted(set(state.registered) - set(stored))
        lost_updates = sorted(
            ep for ep, lifetime in state.lifetimes.items() if ep in stored and stored[ep] < lifetime
        )
        ok = (
            not lost_registrations
            and not lost_updates
            and all(k["acknowledged_before"] > 0 for k in kills)
            and exit_code == 0
            and log["tracebacks"] == 0
            and store["integrity_check"] == "ok"
            and store["undecodable_rows"] == 0
        )
        emit(
            "kill9_under_load",
            ok=ok,
            kills=kills,
            workers=cfg.k9_workers,
            exchanges=dict(state.exchanges),
            retransmissions=stats.retransmissions,
            acknowledged_registrations=len(state.registered),
            acknowledged_registrations_lost=len(lost_registrations),
            acknowledged_updates_lost=len(lost_updates),
            lost_examples=(lost_registrations + lost_updates)[:5],
            exit_code=exit_code,
            tracebacks=log["tracebacks"],
            **store,
        )
        return ok


# -- 30 % loss in a network namespace ---------------------------------------------------------


class Namespaces:
    """Two network namespaces joined by a veth pair, with ``nft`` dropping a share of the UDP
    datagrams in both directions at the client's side. ``close`` deletes both (the veth pair
    goes with them) and runs on every exit path."""

    def __init__(self, loss: int) -> None:
        tag = f"{os.getpid() % 100000}"
        self.server_ns, self.client_ns = f"fi-srv-{tag}", f"fi-cli-{tag}"
        self.server_ip, self.client_ip = "10.231.0.1", "10.231.0.2"
        self.loss = loss
        self.created: list[str] = []

    @staticmethod
    def run(*args: str) -> None:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise CannotRun(f"{' '.join(args)}: {result.stderr.strip()}")

    def open(self) -> None:
        if os.geteuid() != 0:
            raise CannotRun("the loss run needs root (ip netns, nft)")
        if shutil.which("nft") is None or shutil.which("ip") is None:
            raise CannotRun("the loss run needs `ip` and `nft` (apt-get install iproute2 nftables)")
        for ns in (self.server_ns, self.client_ns):
            self.run("ip", "netns", "add", ns)
            self.created.append(ns)
            self.run("ip", "-n", ns, "link", "set", "lo", "up")
        self.run(
            "ip",
            "-n",
            self.server_ns,
            "link",
            "add",
            "fi-s",
            "type",
            "veth",
            "peer",
            "name",
            "fi-c",
            "netns",
            self.client_ns,
        )
        self.run("ip", "-n", self.server_ns, "addr", "add", f"{self.server_ip}/24", "dev", "fi-s")
        self.run("ip", "-n", self.client_ns, "addr", "add", f"{self.client_ip}/24", "dev", "fi-c")
        self.run("ip", "-n", self.server_ns, "link", "set", "fi-s", "up")
        self.run("ip", "-n", self.client_ns, "link", "set", "fi-c", "up")
        rules = f"""
table inet faultinjection {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "fi-c" meta l4proto udp numgen random mod 100 < {self.loss} counter drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    oifname "fi-c" meta l4proto udp numgen random mod 100 < {self.loss} counter drop
  }}
}}
"""
        result = subprocess.run(
            ["ip", "netns", "exec", self.client_ns, "nft", "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise CannotRun(f"nft: {result.stderr.strip()}")

    def dropped(self) -> dict[str, int]:
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.client_ns,
                "nft",
                "-j",
                "list",
                "table",
                "inet",
                "faultinjection",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        out: dict[str, int] = {}
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for item in json.loads(result.stdout)["nftables"]:
                rule = item.get("rule")
                if rule:
                    for expr in rule["expr"]:
                        if "counter" in expr:
                            out[rule["chain"]] = expr["counter"]["packets"]
        return out

    def close(self) -> None:
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.created.clear()


def run_loss(cfg: Config, workdir: Path) -> bool:
    nets = Namespaces(cfg.loss_percent)
    try:
        nets.open()
        with server_process(
            workdir,
            "loss",
            "lwm2m_server",
            host="0.0.0.0",
            http_host=nets.server_ip,
            prefix=["ip", "netns", "exec", nets.server_ns],
        ) as proc:
            try:
                proc.start()
            except AssertionError as exc:
                raise CannotRun(str(exc)) from None
            params = {
                "coap": f"{nets.server_ip}:{proc.coap_port}",
                "api": proc.api,
                "updates": cfg.loss_updates,
                "reads": cfg.loss_reads,
                "notifications": cfg.loss_notifications,
            }
            command = [
                "ip",
                "netns",
                "exec",
                nets.client_ns,
                sys.executable,
                str(Path(__file__).resolve()),
                "--loss-client",
                json.dumps(params),
            ]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            sniffer = subprocess.Popen(
                ["ip", "netns", "exec", nets.server_ns, sys.executable,
                 str(Path(__file__).resolve()), "--sniff", f"fi-s:{proc.coap_port}"],
                stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            try:
                assert sniffer.stdout is not None
                if sniffer.stdout.readline().strip() != "ready":
                    raise CannotRun("the packet counter in the server's namespace did not start")
                result = subprocess.run(
                    command, capture_output=True, text=True, timeout=1800, env=env
                )
            finally:
                sniffer.terminate()
                copies_out, _ = sniffer.communicate(timeout=30)
            if result.returncode != 0:
                raise RuntimeError(f"loss client failed:\n{result.stderr[-3000:]}")
            client = json.loads(result.stdout.strip().splitlines()[-1])
            copies = json.loads(copies_out.strip().splitlines()[-1])
            dropped = nets.dropped()
            exit_code = proc.stop()
            log = log_findings(proc.log())
            conn = sqlite3.connect(f"file:{proc.database}?mode=ro", uri=True)
            try:
                rows = conn.execute(
                    "SELECT count(*), count(DISTINCT value) FROM telemetry"
                    " WHERE endpoint = ? AND path = ?",
                    (client["endpoint"], "/3303/0/5700"),
                ).fetchone()
            finally:
                conn.close()
        events = client["events"]
        n_notify = client["notifications_sent"]
        # the initial Observe answer is stored as a point too: notifications + 1 rows
        # one NOTIFICATION event per notification; the telemetry rows also hold the value of
        # the Observe answer
        expected_rows = n_notify + client["observe_answers_stored"]
        ok = (
            client["complete"]
            and events.get("REGISTRATION", 0) == 1
            and events.get("UPDATED", 0) == client["updates_acknowledged"] == cfg.loss_updates
            and events.get("NOTIFICATION", 0) == n_notify
            and rows[0] == expected_rows
            and rows[1] == rows[0]
            and exit_code == 0
            and log["tracebacks"] == 0
        )
        emit(
            "loss",
            ok=ok,
            loss_percent=cfg.loss_percent,
            dropped_by_nft=dropped,
            **copies,
            telemetry_rows=rows[0],
            telemetry_distinct_values=rows[1],
            expected_rows=expected_rows,
            exit_code=exit_code,
            tracebacks=log["tracebacks"],
            **client,
        )
        return ok
    finally:
        nets.close()


def sniff(interface: str, port: int) -> None:
    """Run in the server's namespace (``--sniff``): count the CoAP CON messages that reach the
    server's ``port`` on ``interface`` after the loss, by (source port, Message ID); on SIGTERM
    print how many arrived and how many were copies of one that had arrived before. A copy is
    a retransmission the server must answer from its deduplication cache without processing it
    again, so this is how many chances the server had to process something twice."""
    seen: Counter[tuple[int, int]] = Counter()
    stop = False

    def finish(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    eth_p_ip = 0x0800
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(eth_p_ip)) as raw:
        raw.bind((interface, 0))
        raw.settimeout(0.2)
        print("ready", flush=True)
        while not stop:
            try:
                frame, meta = raw.recvfrom(65536)
            except TimeoutError:
                continue
            except InterruptedError:
                break
            if meta[2] == socket.PACKET_OUTGOING:
                continue
            ip = frame[14:]
            if len(ip) < 20 or ip[9] != 17:  # UDP only
                continue
            udp = ip[(ip[0] & 0x0F) * 4 :]
            if len(udp) < 12 or int.from_bytes(udp[2:4], "big") != port:
                continue
            coap = udp[8:]
            if coap[0] >> 6 == 1 and (coap[0] >> 4) & 3 == 0:  # version 1, CON
                seen[int.from_bytes(udp[0:2], "big"), int.from_bytes(coap[2:4], "big")] += 1
    received = sum(seen.values())
    print(json.dumps({"con_received": received, "con_copies": received - len(seen)}), flush=True)


# the client side, run inside the client namespace -----------------------------------------------


class SteadySocket(g.ClientSocket):
    """``bench.load``'s client socket, retransmitting at a constant interval."""

    def _retransmit(self, pending: Any) -> None:
        """Every ``LOSS_RETRY_S`` instead of doubling (RFC 7252's backoff is a device's
        choice): at 30 % loss each way a round trip fails half the time, and doubling from 1 s
        over 10 transmissions makes the expected wait per exchange several seconds."""
        pending.timeout = LOSS_RETRY_S / 2  # the base class doubles it
        super()._retransmit(pending)


LOSS_RETRY_S = 1.0


async def loss_client(params: dict[str, Any]) -> dict[str, Any]:
    """Register, Updates, API Reads, an Observe and notifications over the lossy link, while
    counting the server's events for this endpoint. Exchanges are CON with up to 10
    transmissions 1 s apart (a round trip fails with chance 1 - 0.7², 0.51: 0.12 % to lose all
    10)."""
    import aiohttp

    host, port = params["coap"].rsplit(":", 1)
    target = (host, int(port))
    api = params["api"]
    endpoint = f"fi-loss-{os.getpid()}"
    stats = g.Stats()
    loop = asyncio.get_running_loop()
    _, sock = await loop.create_datagram_endpoint(
        lambda: SteadySocket(False, stats), local_addr=("0.0.0.0", 0), remote_addr=target
    )
    client = g.SimClient(0, endpoint, sock)
    sock.owner = client
    events: Counter[str] = Counter()
    result: dict[str, Any] = {"endpoint": endpoint}
    incomplete: list[str] = []
    api_retries = 0

    async def follow(http: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with http.get(
            f"{api}/event", params={"ep": endpoint}, timeout=aiohttp.ClientTimeout(total=None)
        ) as r:
            ready.set()
            kind = None
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind:
                    events[kind] += 1
                    kind = None

    async def exchange(data_of: Callable[[int, bytes], bytes]) -> Message | None:
        token, mid = sock.next_token(), sock.next_mid()
        return await sock.exchange(
            data_of(mid, token), mid, token, wants_response=True, timeout=1.0, attempts=10
        )

    async def api_call(method: str, path: str, http: aiohttp.ClientSession) -> bool:
        """An API call that makes the server talk to the device; retried (a new server
        request) when the server's own CoAP retransmissions all got lost."""
        nonlocal api_retries
        for _ in range(5):
            async with http.request(
                method, f"{api}/clients/{endpoint}{path}", params={"timeout": "120"}
            ) as r:
                if r.status == 200:
                    return True
            api_retries += 1
        return False

    # the admin token ServerProcess starts the server with (tests/auth.py)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300), headers=HEADERS)
    async with session as http:
        ready = asyncio.Event()
        follower = asyncio.create_task(follow(http, ready))
        await asyncio.wait_for(ready.wait(), 30)
        reply = await exchange(
            lambda mid, token: g.registration_request(endpoint, mid, token, 86400)
        )
        if reply is None or reply.code != Code.CREATED:
            incomplete.append("register")
            result["complete"] = False
        else:
            client.location = "/".join(reply.location_path)
        updates_ok = 0
        for i in range(params["updates"]):
            reply = await exchange(lambda mid, token: client.update_request(mid, token))
            if reply is not None and reply.code == Code.CHANGED:
                updates_ok += 1
            else:
                incomplete.append(f"update {i}")
        reads_ok = 0
        for _ in range(params["reads"]):
            reads_ok += await api_call("GET", "/3/0/0", http)
        observed = await api_call("POST", "/3303/0/5700/observe", http)
        if not observed:
            incomplete.append("observe")
        notified = 0
        for i in range(params["notifications"] if observed else 0):
            value = round(30.0 + i / 100, 2)
            payload = g.senml_cbor("/3303/0/", "5700", value)

            # the next Observe number after the device's own: the server answered every
            # retransmitted Observe GET (lost ACKs), and each answer took a number; RFC 7641
            # §3.4 has the server ignore a notification not newer than the last
            client.observe_seq += 1
            opts = options(observe=client.observe_seq, content_format=g.SENML_CBOR)
            token = client.observe_token or b""
            mid = sock.next_mid()
            data = serialize(Message(Type.CON, Code.CONTENT, mid, token, opts, payload))
            # a CON notification: the ACK is what is waited for (no response follows)
            ack = await sock.exchange(
                data, mid, b"", wants_response=False, timeout=1.0, attempts=10
            )
            if ack is not None and ack.mtype == Type.ACK:
                notified += 1
            else:
                incomplete.append(f"notification {i}")
        # let the last events arrive: each exchange's event precedes its ACK, so a short
        # grace for the stream to deliver them is enough
        expected = 1 + updates_ok + notified
        deadline = loop.time() + 30
        while (
            sum(events[k] for k in ("REGISTRATION", "UPDATED", "NOTIFICATION")) < expected
            and loop.time() < deadline
        ):
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a duplicate would be processed within the ACK's round trip
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
    sock.close()
    result.update(
        complete=not incomplete,
        incomplete=incomplete,
        updates_acknowledged=updates_ok,
        reads_ok=reads_ok,
        api_retries=api_retries,
        notifications_sent=notified,
        observe_answers_stored=1 if observed else 0,
        coap_retransmissions=stats.retransmissions,
        coap_failures=stats.failures,
        events=dict(events),
    )
    return result


# -- entry point ---------------------------------------------------------------------------------


def run(cfg: Config) -> None:
    with contextlib.ExitStack() as stack:
        if cfg.workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="fault-injection-"))
            )
        else:
            workdir = cfg.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        results: dict[str, bool | str] = {}
        runners = {"malformed": run_malformed, "kill9": run_kill9, "loss": run_loss}
        for part in cfg.parts:
            try:
                results[part] = runners[part](cfg, workdir)
            except CannotRun as exc:
                emit(part, skipped=str(exc))
                results[part] = "skipped"
        emit("summary", quick=cfg.quick, results=results)


def parse_args(argv: list[str] | None) -> Config | dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (about a minute)")
    parser.add_argument("--only", default="malformed,kill9,loss", help="comma-separated parts")
    parser.add_argument("--datagrams", type=int, help="malformed datagrams per server")
    parser.add_argument("--k9-seconds", type=float, help="duration of the kill -9 load")
    parser.add_argument("--loss", type=int, help="percent of UDP datagrams dropped each way")
    parser.add_argument("--workdir", type=Path, help="keep data dirs and logs here")
    parser.add_argument("--loss-client", help=argparse.SUPPRESS)
    parser.add_argument("--sniff", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sniff:
        interface, port = args.sniff.rsplit(":", 1)
        sniff(interface, int(port))
        sys.exit(0)
    if args.loss_client:
        params: dict[str, Any] = json.loads(args.loss_client)
        return params
    cfg = Config.quick_run() if args.quick else Config()
    cfg.parts = tuple(p for p in args.only.split(",") if p)
    unknown = set(cfg.parts) - {"malformed", "kill9", "loss"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if args.datagrams is not None:
        cfg.datagrams = args.datagrams
    if args.k9_seconds is not None:
        cfg.k9_seconds = args.k9_seconds
    cfg.workdir = args.workdir
    if args.loss is not None:
        cfg.loss_percent = args.loss
    return cfg


def main(argv: list[str] | None = None) -> int:
    parsed = parse_args(argv)
    if isinstance(parsed, dict):
        print(json.dumps(asyncio.run(loss_client(parsed))), flush=True)
        return 0
    return run_as_main(BENCH, lambda: run(parsed))


if __name__ == "__main__":
    sys.exit(main())

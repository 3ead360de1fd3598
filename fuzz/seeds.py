"""Write the seed corpora: ``python -m fuzz.seeds [TARGET ...]`` -> ``fuzz/corpus/<target>/``.

Why generated and not committed: seeds come from the project's own encoders (codec encodes of
example nodes of the built-in models, the CoAP serializer, a real in-memory DTLS handshake), so
they follow the code when a format changes; the folders are gitignored and rebuilt in a second.
Committed vectors of the test-suite (``EXTRA_SEEDS``) are read in place by ``python -m fuzz``.
Each seed is written in the input layout of its harness (see ``fuzz/targets/``).
"""

from __future__ import annotations

import functools
import hashlib
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from xml.sax.saxutils import escape

from . import CODECS, CORPUS, TARGETS
from .targets._chunks import PEERS, TOKEN, chunk

# == codecs =======================================================================================


def _codec_seeds() -> dict[str, list[bytes]]:
    from object_models import codecs
    from object_models.content_format import ContentFormat
    from object_models.errors import CodecError
    from object_models.node import (
        LwM2mMultipleResource,
        LwM2mNode,
        LwM2mObject,
        LwM2mObjectInstance,
        LwM2mResourceInstance,
        LwM2mSingleResource,
        TimestampedNodes,
    )
    from object_models.path import LwM2mPath
    from object_models.registry import ModelRegistry
    from object_models.types import ObjectLink, ResourceType, Value

    from .targets._codec_layout import header

    t = ResourceType
    example: dict[ResourceType, Value] = {
        t.STRING: "example",
        t.INTEGER: -42,
        t.UNSIGNED_INTEGER: 42,
        t.FLOAT: 3.5,
        t.BOOLEAN: True,
        t.OPAQUE: b"\x00\x01\xfe",
        t.TIME: 1700000000,
        t.OBJLNK: ObjectLink(3, 0),
        t.CORELNK: "</3/0>",
    }
    registry = ModelRegistry.builtin()
    cases: list[tuple[LwM2mPath, LwM2mNode]] = []
    for object_id in (0, 1, 3, 4, 5, 6, 3303):
        model = registry.get_object(object_id)
        if model is None:
            continue
        resources: dict[int, LwM2mSingleResource | LwM2mMultipleResource] = {}
        for rid, rm in model.resources.items():
            if rm.type is t.NONE:
                continue
            value = example[rm.type]
            if rm.multiple:
                resources[rid] = LwM2mMultipleResource.from_values(
                    rid, {0: value, 1: value}, rm.type
                )
            else:
                resources[rid] = LwM2mSingleResource(rid, value, rm.type)
        instance = LwM2mObjectInstance(0, resources)
        cases.append((LwM2mPath(object_id), LwM2mObject(object_id, {0: instance})))
        cases.append((LwM2mPath(object_id, 0), instance))
        for rid, resource in list(resources.items())[:6]:
            cases.append((LwM2mPath(object_id, 0, rid), resource))
            if isinstance(resource, LwM2mMultipleResource):
                ri = resource.instances[1]
                cases.append(
                    (LwM2mPath(object_id, 0, rid, 1), LwM2mResourceInstance(1, ri.value, ri.type))
                )

    out: dict[str, list[bytes]] = {}
    for target, member in CODECS.items():
        fmt = ContentFormat[member]
        seeds: list[bytes] = []

        def attempt(encode: Callable[..., bytes], args: tuple[object, ...], *heads: bytes) -> None:
            try:
                payload = encode(*args)
            except CodecError:
                return
            seeds.extend(head + payload for head in heads)  # noqa: B023

        for path, node in cases:
            attempt(codecs.encode, (node, path, fmt, registry), header(0, path), header(1, path))
            if codecs.supports(fmt, "encode_nodes"):
                attempt(codecs.encode_nodes, ({path: node}, fmt, registry), header(2, path))
            if codecs.supports(fmt, "encode_paths"):
                attempt(codecs.encode_paths, ([path, LwM2mPath(3, 0, 9)], fmt), header(0, path))
            if codecs.supports(fmt, "encode_timestamped"):
                data = TimestampedNodes(((1700000000.0, {path: node}), (None, {path: node})))
                attempt(codecs.encode_timestamped, (data, fmt, registry), header(2, path))
        out[target] = seeds
    return out


# == link format and models =======================================================================


def _link_format_seeds() -> list[bytes]:
    from object_models.codecs.link_format import format_discover, format_links, parse_links
    from object_models.path import LwM2mPath

    docs = [
        '</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</3303/0>;ver=1.1,</3303/1>',
        "</1>;ver=1.1,</1/0>,</2>,</3/0>,</4/0>,</5>,</6/0>",
        '</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>',
        "</3/0>;pmin=10;pmax=60;gt=20.5;lt=-3;st=0.5;epmin=1;epmax=2;dim=3",
        '<coap://example.com/x>;title="a \\"quoted\\" value";anchor="/3";rel=alternate',
        "",
    ]
    seeds = [d.encode() for d in docs]
    seeds.append(format_links(parse_links(docs[0])).encode())
    seeds.append(
        format_discover(
            [
                (LwM2mPath(3), {}),
                (LwM2mPath(3, 0), {"pmin": 10, "pmax": 60}),
                (LwM2mPath(3, 0, 7), {"dim": 2}),
            ]
        ).encode()
    )
    return seeds


def _model_json_seeds() -> list[bytes]:
    from object_models import json_models
    from object_models.registry import ModelRegistry

    registry = ModelRegistry.builtin()
    models = [m for m in (registry.get_object(i) for i in (1, 3, 3303)) if m is not None]
    return [json_models.dumps(m).encode() for m in models] + [
        json_models.dumps(models[0], indent=None).encode()
    ]


def _model_ddf_seeds() -> list[bytes]:
    from object_models.registry import ModelRegistry

    registry = ModelRegistry.builtin()
    seeds = []
    for object_id in (1, 3, 3303):
        model = registry.get_object(object_id)
        if model is None:
            continue
        items = "".join(
            f'<Item ID="{rid}"><Name>{escape(r.name)}</Name>'
            f"<Operations>{r.operations.value}</Operations>"
            f"<MultipleInstances>{'Multiple' if r.multiple else 'Single'}</MultipleInstances>"
            f"<Mandatory>{'Mandatory' if r.mandatory else 'Optional'}</Mandatory>"
            f"<Type>{r.type.value if r.type.value != 'none' else ''}</Type>"
            f"<RangeEnumeration>{escape(r.range_enumeration)}</RangeEnumeration>"
            f"<Units>{escape(r.units)}</Units><Description></Description></Item>\n"
            for rid, r in model.resources.items()
        )
        multiple = "Multiple" if model.multiple else "Single"
        seeds.append(
            (
                '<?xml version="1.0" encoding="UTF-8"?>\n<LWM2M><Object ObjectType="MODefinition">'
                f"<Name>{escape(model.name)}</Name><Description1></Description1>"
                f"<ObjectID>{model.id}</ObjectID><ObjectURN>{escape(model.urn)}</ObjectURN>"
                f"<LWM2MVersion>{model.lwm2m_version}</LWM2MVersion>"
                f"<ObjectVersion>{model.version}</ObjectVersion>"
                f"<MultipleInstances>{multiple}</MultipleInstances>"
                f"<Mandatory>{'Mandatory' if model.mandatory else 'Optional'}</Mandatory>"
                f"<Resources>\n{items}</Resources><Description2></Description2>"
                "</Object></LWM2M>\n"
            ).encode()
        )
    return seeds


# == CoAP =========================================================================================


def _coap_messages() -> list[bytes]:
    from lwm2m_runtime.coap.message import Block, Message, options, serialize
    from lwm2m_runtime.coap.numbers import Code, Type

    register = Message.request(
        Code.POST,
        "/rd",
        query=["ep=urn:imei:0001", "lt=300", "lwm2m=1.1", "b=U"],
        payload=b'</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>',
        content_format=40,
        token=b"\x01\x02\x03\x04",
    )
    messages = [
        register.replace(mid=1),
        Message.request(Code.POST, "/rd/abc", query=["lt=60"], token=b"\x05").replace(mid=2),
        Message.request(Code.GET, "/3/0", accept=11543, token=b"\x06\x07").replace(mid=3),
        Message.request(Code.GET, "/3/0/13", observe=0, token=b"\x08", mtype=Type.NON).replace(
            mid=4
        ),
        Message(
            Type.CON,
            Code.PUT,
            5,
            b"\x09",
            options(uri_path=["5", "0", "0"], content_format=42, block1=Block(0, True, 2)),
            b"\xaa" * 64,
        ),
        Message(
            Type.ACK,
            Code.CONTENT,
            3,
            b"\x06\x07",
            options(content_format=11543, block2=Block(0, True, 6)),
            b"\xbf" * 32,
        ),
        Message(Type.CON, Code.CONTENT, 6, TOKEN, options(observe=7, content_format=0), b"21.5"),
        Message(Type.ACK, 0, 7),
        Message(Type.RST, 0, 8),
        Message(Type.CON, 0, 9),
        Message.request(Code.FETCH, "/", payload=b"\x81\x63/3/", content_format=110).replace(
            mid=10
        ),
    ]
    return [serialize(m) for m in messages]


def _coap_endpoint_seeds() -> list[bytes]:
    import random as _random

    from lwm2m_runtime.coap.endpoint import Endpoint
    from lwm2m_runtime.coap.message import Block, Message, options, parse, serialize
    from lwm2m_runtime.coap.numbers import Code, Type

    # the observation the harness opens, to learn its MID (same rng seed, same MID)
    endpoint = Endpoint(rng=_random.Random(0))
    endpoint.send_request(PEERS[0], Message.request(Code.GET, "/3/0/13", token=TOKEN, observe=0))
    ((sent, _),) = endpoint.datagrams_to_send(0.0)
    mid = parse(sent).mid
    ack = serialize(
        Message(Type.ACK, Code.CONTENT, mid, TOKEN, options(observe=1, content_format=0), b"1")
    )
    notify = serialize(
        Message(Type.CON, Code.CONTENT, 77, TOKEN, options(observe=2, content_format=0), b"2")
    )
    block1 = [
        serialize(
            Message(
                Type.CON,
                Code.PUT,
                100 + n,
                b"\x42",
                options(uri_path=["5", "0", "0"], block1=Block(n, n < 2, 0)),
                bytes([n]) * 16,
            )
        )
        for n in range(3)
    ]
    big_get = serialize(
        Message.request(Code.GET, "/3/0", token=b"\x43", payload=b"").replace(mid=200)
    )
    messages = _coap_messages()
    seeds = [chunk(1, m) for m in messages]
    seeds.append(b"".join(chunk(1, m) for m in messages))
    seeds.append(chunk(0, ack) + chunk(4 << 2, notify) + chunk(0, notify))
    seeds.append(b"".join(chunk(2, d) for d in block1))
    seeds.append(chunk(1, big_get) + chunk(1, big_get) + chunk(63 << 2 | 1, big_get))
    seeds.append(chunk(0, serialize(Message(Type.RST, 0, mid))))
    return seeds


# == DTLS =========================================================================================


def _handshake_wire() -> list[list[bytes]]:
    """Client-to-server datagrams of real handshakes (PSK with cookie, and raw public keys),
    each list with the server's replies interleaved after it as its own list entries."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from keystore.dtls import ClientConfig, CookieVerifier, DtlsEngine, ServerConfig
    from keystore.dtls.constants import CipherSuite

    psk_suites = [
        CipherSuite.TLS_PSK_WITH_AES_128_CCM_8,
        CipherSuite.TLS_PSK_WITH_AES_128_CBC_SHA256,
    ]
    ecdhe = [CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8]
    ckey, skey = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pairs = [
        (
            ClientConfig(
                cipher_suites=psk_suites, psk_identity=b"fuzz-device", psk=bytes(range(16))
            ),
            ServerConfig(cipher_suites=psk_suites, psk_for_identity=lambda i: bytes(range(16))),
        ),
        (
            ClientConfig(
                cipher_suites=ecdhe, private_key=ckey, verify_rpk=lambda k: True, connection_id=b""
            ),
            ServerConfig(cipher_suites=ecdhe, private_key=skey, verify_rpk=lambda k: True),
        ),
    ]
    addr = ("192.0.2.10", 40000)
    runs = []
    for client_config, server_config in pairs:
        client = DtlsEngine.client(client_config)
        cookies = CookieVerifier()
        server: DtlsEngine | None = None
        c2s: list[bytes] = []
        s2c: list[bytes] = []
        client.connect(0.0)
        for _ in range(20):
            out = client.datagrams_to_send(0.0)
            c2s += out
            for d in out:
                if server is None:
                    reply, ok = cookies.server_handle_initial_datagram(d, addr, 0.0)
                    if reply is not None:
                        s2c.append(reply)
                        client.receive_datagram(reply, 0.0)
                    if not ok:
                        continue
                    server = DtlsEngine.server(server_config, addr)
                server.receive_datagram(d, 0.0, addr)
            back = server.datagrams_to_send(0.0) if server is not None else []
            s2c += back
            for d in back:
                client.receive_datagram(d, 0.0)
            if not out and not back:
                break
        runs.append(c2s)
        runs.append(s2c)
    return runs


def _recorded_client_hellos() -> list[bytes]:
    """ClientHellos the test-suite recorded from other stacks (Mbed TLS)."""
    try:
        from tests.unit.dtls.test_record_version import MBEDTLS_HELLO_FE00
    except ImportError:  # the tests are not importable (an installed copy): generated seeds only
        return []
    return [MBEDTLS_HELLO_FE00]


def _dtls_seeds() -> dict[str, list[bytes]]:
    from keystore.dtls.buffer import Buffer
    from keystore.dtls.messages import pull_handshake_fragment
    from keystore.dtls.record import parse_datagram

    runs = _handshake_wire()
    recorded = _recorded_client_hellos()
    datagrams = [d for run in runs for d in run] + recorded
    fragments = []
    for d in datagrams:
        for record in parse_datagram(d):
            if record.content_type == 22 and record.epoch == 0:
                buf = Buffer(record.fragment)
                while not buf.eof():
                    start = buf.tell()
                    pull_handshake_fragment(buf)
                    fragments.append(record.fragment[start : buf.tell()])
    engine = [chunk(0, d) for d in recorded]
    for run in runs[::2]:  # what clients send
        engine.append(b"".join(chunk(0, d) for d in run))
        engine.append(chunk(0, run[0]))
    return {"dtls_record": datagrams, "dtls_handshake": fragments, "dtls_engine": engine}


# == writing ======================================================================================


@functools.cache
def _dtls_group() -> dict[str, list[bytes]]:
    return _dtls_seeds()


@functools.cache
def _codec_group() -> dict[str, list[bytes]]:
    return _codec_seeds()


GENERATORS: dict[str, Callable[[], list[bytes]]] = {
    **{name: functools.partial(lambda n: _codec_group()[n], name) for name in CODECS},
    "link_format": _link_format_seeds,
    "model_json": _model_json_seeds,
    "model_ddf": _model_ddf_seeds,
    "coap_parse": _coap_messages,
    "coap_endpoint": _coap_endpoint_seeds,
    **{
        name: functools.partial(lambda n: _dtls_group()[n], name)
        for name in ("dtls_record", "dtls_handshake", "dtls_engine")
    },
}
"""Each target's seed generator (targets that share an encoder run share one call)."""


def write(targets: Iterable[str], corpus: Path = CORPUS) -> dict[str, int]:
    """Write the seeds of ``targets`` under ``corpus/<target>/`` (named by content hash, so a
    second run adds nothing); returns how many seeds each target has."""
    counts = {}
    for target in targets:
        seeds = dict.fromkeys(GENERATORS[target]())
        folder = corpus / target
        folder.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            (folder / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
        counts[target] = len(seeds)
    return counts


def main(argv: list[str]) -> None:
    targets = argv or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        sys.exit(f"unknown targets {unknown}; targets: {', '.join(TARGETS)}")
    random.seed(0)
    for target, count in write(targets).items():
        print(f"{target:18} {count:4} seeds -> {CORPUS / target}")


if __name__ == "__main__":
    main(sys.argv[1:])

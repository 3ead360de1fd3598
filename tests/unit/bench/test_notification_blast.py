"""The generator's fast CON notification path (``bench/load/blast.py``): its patched datagrams
are CON notifications an independent CoAP implementation reads as such, and a short blast
against the real server is stored in full: every ACKed notification is a telemetry row."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code as AioCode
from aiocoap.numbers.types import Type as AioType

from bench.load import blast as b
from bench.load import generator as g
from bench.load import scenario


def test_patched_template_is_the_next_notification_as_aiocoap_reads_it() -> None:
    token = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    variants = [b._template(token, g.SENML_CBOR, p) for p in g.NOTIFY_PAYLOADS[g.SENML_CBOR]]
    slot = b.Slot(
        client=None,  # type: ignore[arg-type]
        sock=None,  # type: ignore[arg-type]
        variants=[data for data, _ in variants],
        observe_at=variants[0][1],
        mid=0,
        seq=0,
    )
    for mid, seq in ((0x1234, 0x10000), (0xFFFF, 0x10021), (7, 0xFFFFFF)):
        parsed = aiocoap.Message.decode(bytes(b._patch(slot, mid, seq)))
        assert parsed.mtype == AioType.CON
        assert parsed.code == AioCode.CONTENT
        assert parsed.mid == mid and parsed.token == token
        assert parsed.opt.observe == seq
        assert int(parsed.opt.content_format) == g.SENML_CBOR
        assert parsed.payload == g.NOTIFY_PAYLOADS[g.SENML_CBOR][seq % len(g.TEMPERATURES)]
        (record,) = cbor2.loads(parsed.payload)
        assert record[0] == "5700"


def test_a_blast_against_the_server_is_stored_in_full() -> None:
    """Five clients register and are observed the normal way (the server's GET+Observe
    answered by ``SimClient``), then 300 notifications go out from templates: every one is
    ACKed and each ACK is a stored row. The asyncio path still works after the blast."""
    cfg = scenario.Config(clients=5, observed=5, window=4, startup_timeout=60.0)

    async def run() -> tuple[b.BlastResult, int, int, tuple[int, int]]:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "server"
            data_dir.mkdir()
            with (Path(tmp) / "server.log").open("wb") as log:
                server = await scenario.start_server(data_dir, log, cfg)
                driver = scenario.Driver(cfg, server, echo=False)
                try:
                    for phase in ("prepare", "registrations", "observe"):
                        await driver.run_phase(phase)
                    assert len(driver.observed) == 5, server.log_tail()
                    rows = g.telemetry_rows(server.database)
                    done = b.blast(driver.observed, 300, 4, 60.0, echo=False)
                    stored = g.telemetry_rows(server.database) - rows
                    # the clients carry on where the blast stopped (Observe number, MID)
                    after = await g.notify_con(driver.observed[0])
                    return done, stored, g.telemetry_rows(server.database) - rows, after
                finally:
                    await driver.close()
                    server.stop()

    try:
        done, stored, stored_after, after = asyncio.run(asyncio.wait_for(run(), 120))
    except scenario.ServerUnavailable as exc:
        pytest.skip(f"server not runnable here: {exc}")
    assert done.sent == 300 and done.failed == 0
    assert done.acked == 300
    assert stored == done.acked, "a CON notification is ACKed only once stored"
    assert after == (1, 0) and stored_after == 301


def test_blast_against_the_echo_counts_its_echoes() -> None:
    """The ceiling's side: the echo returns each CON itself, matched by (socket, MID)."""
    cfg = scenario.Config(clients=4, observed=4, window=4)

    async def run() -> b.BlastResult:
        echo = await scenario.start_echo(remember=False)
        driver = scenario.Driver(cfg, echo, echo=True)
        try:
            for phase in ("prepare", "registrations", "observe"):
                await driver.run_phase(phase)
            return b.blast(driver.observed, 200, 4, 60.0, echo=True)
        finally:
            await driver.close()
            echo.stop()

    done = asyncio.run(asyncio.wait_for(run(), 60))
    assert done.sent == done.acked == 200 and done.failed == 0

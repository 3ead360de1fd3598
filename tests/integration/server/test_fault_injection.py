"""Bad input against real server processes: the small, fast version of
``bench/fault_injection.py``'s malformed-datagram part (docs/reliability.md, "Fault
injection"), and the log rate limit it found missing for 4.04 refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bench.fault_injection import Config, malformed_one
from lwm2m_server.service import Lwm2mServer

from . import rawcoap as raw


@pytest.mark.parametrize("program", ["lwm2m_server", "bootstrap_server"])
def test_a_flood_of_malformed_datagrams_leaves_the_server_serving(
    tmp_path: Path, program: str
) -> None:
    """5000 malformed datagrams (NoSec and DTLS ports, many source ports) interleaved with a
    legitimate client's exchanges: the process is alive and answers a fresh Register (or
    Bootstrap-Request), no traceback, no refusal logged twice per peer per minute, a clean
    exit, an intact sqlite file, and every acknowledged Register stored."""
    cfg = Config(datagrams=5_000, quick=True)
    result = malformed_one(cfg, tmp_path, program)
    assert result["alive"] and result["fresh_request_answered"], result
    assert result["legit_not_ok"] == {}, result
    assert result["tracebacks"] == 0, result
    assert result["repeated_per_peer_within_60s"] == 0, result["repeat_examples"]
    assert result["exit_code"] == 0
    assert result["integrity_check"] == "ok"
    assert result["undecodable_rows"] == 0, result["undecodable_examples"]
    assert result["acknowledged_missing"] == []
    if program == "lwm2m_server":
        assert result["quarantined"] == 0
        assert result["acknowledged_registers"] > 0
    assert result["ok"]


async def test_unknown_path_refusals_are_logged_once_per_peer_a_minute(
    server: Lwm2mServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4.04 is not malformed input, but a flood of them must not flood the log: the first
    from a peer host is logged at INFO, the rest of the minute at DEBUG; every one is still
    answered 4.04."""
    caplog.set_level(logging.DEBUG, logger="lwm2m_server.coap.site")
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        for path in (["nothing"], ["nothing"], ["rd", "unknown-id"], ["3", "0"]):
            answer = await peer.exchange(raw.request(raw.POST, path))
            assert answer.code == 0x84  # 4.04
    finally:
        peer.close()
    refusals = [
        r for r in caplog.records if r.name == "lwm2m_server.coap.site" and "4.04" in r.getMessage()
    ]
    assert [r.levelno for r in refusals] == [logging.INFO] + [logging.DEBUG] * 3

"""A tiny run of ``bench/runtime_path.py`` (the runtime's CPU per message), so it keeps working
while the runtime changes: both figures come out for each size, and every datagram the harness
sent got the ACK a correct endpoint sends (``Failed`` otherwise). No timing assertion."""

from __future__ import annotations

import json

import pytest

from bench import runtime_path
from lwm2m_runtime.coap import Code, Message, Type, serialize


def test_tiny_run_measures_both_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime_path.main(["--clients", "50,130", "--rounds", "2", "--per-round", "128"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    figures = {(line["figure"], line["clients"]): line["value"] for line in lines}
    assert set(figures) == {
        (figure, size) for figure in ("update_cpu_us", "notification_cpu_us") for size in (50, 130)
    }
    assert all(value > 0 for value in figures.values())


def test_an_answer_to_the_wrong_message_fails_the_run() -> None:
    peer = ("127.0.0.1", 5683)
    update = serialize(Message(Type.CON, Code.POST, 7, b"\x07", ((11, b"rd"),)))
    right = serialize(Message(Type.ACK, Code.CHANGED, 7, b"\x07"))
    other_mid = serialize(Message(Type.ACK, Code.CHANGED, 8, b"\x07"))
    wrong_code = serialize(Message(Type.ACK, Code.NOT_FOUND, 7, b"\x07"))
    not_an_ack = serialize(Message(Type.CON, Code.CHANGED, 7, b"\x07"))
    batch = [(update, peer)]
    for sent in ([(other_mid, peer)], [(wrong_code, peer)], [(not_an_ack, peer)], []):
        with pytest.raises(runtime_path.Failed):
            runtime_path.check("update", batch, sent, Code.CHANGED)
    runtime_path.check("update", batch, [(right, peer)], Code.CHANGED)

"""A tiny run of ``bench/hot_path.py`` (the in-process CPU-per-message harness), so it keeps
working while the server changes: every figure comes out, and every answer the harness got was
the one a correct server gives (the harness raises ``Failed`` otherwise). No figure is asserted
to be fast (no timing assertions): only that it was measured."""

from __future__ import annotations

import json

import pytest

from bench import hot_path
from lwm2m_runtime.coap import Code, Message, Type, serialize


def test_tiny_run_measures_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = hot_path.Config(
        clients=[20, 60], updates=120, notifications=60, observed=10, rounds=2, batch=16,
        warmup=20,
    )  # fmt: skip
    assert hot_path.main(
        ["--clients", "20,60", "--updates", "120", "--notifications", "60", "--observed", "10",
         "--rounds", "2", "--batch", "16"]
    ) == 0  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert all(line["bench"] == "hot_path" for line in lines)
    assert "skipped" not in lines[0]
    figures = {(line["figure"], line.get("clients")) for line in lines}
    for size in cfg.clients:
        for figure in ("register_cpu_us", "update_cpu_us", "notification_cpu_us"):
            assert (figure, size) in figures
        assert ("rss_per_client_bytes", size) in figures
    by_figure = {(line["figure"], line.get("clients")): line for line in lines}
    assert by_figure["register_cpu_us", 60]["messages"] == 40  # grown from 20 to 60
    assert by_figure["update_cpu_us", 60]["messages"] == 120
    assert by_figure["notification_cpu_us", 60]["observed"] == 10
    for size in cfg.clients:
        for figure in ("register_cpu_us", "update_cpu_us", "notification_cpu_us"):
            assert by_figure[figure, size]["value"] > 0
    assert lines[-1]["figure"] == "end"


def test_a_wrong_answer_fails_the_run() -> None:
    """The harness checks what the server answered: an answer to nobody's message (or the
    wrong code) is a ``Failed``, not a figure."""
    bench = hot_path.Bench.__new__(hot_path.Bench)
    client = hot_path.Client("hp-x", hot_path.peer_of(0), mid=7)
    wrong = serialize(Message(Type.ACK, Code.NOT_FOUND, 7, b""))
    right = serialize(Message(Type.ACK, Code.CHANGED, 7, b""))
    other_mid = serialize(Message(Type.ACK, Code.CHANGED, 8, b""))
    for answers in ([(wrong, client.peer)], [(other_mid, client.peer)], []):
        with pytest.raises(hot_path.Failed):
            bench._check("update", {(client.peer, 7): client}, answers, hot_path.CHANGED, None)
    bench._check(
        "update", {(client.peer, 7): client}, [(right, client.peer)], hot_path.CHANGED, None
    )


def test_clients_sharing_addresses_are_answered_each(capsys: pytest.CaptureFixture[str]) -> None:
    """``--addresses 4``: 40 clients on 4 source addresses (one MID counter each, as the C
    generator's sockets): every Register and Update is answered to its own client (the harness
    matches answers by address and MID and fails otherwise); no notification figure."""
    assert hot_path.main(
        ["--clients", "40", "--updates", "80", "--rounds", "2", "--batch", "16",
         "--addresses", "4"]
    ) == 0  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    figures = {line["figure"]: line for line in lines}
    assert figures["setup"]["addresses"] == 4
    assert figures["register_cpu_us"]["messages"] == 40
    assert figures["update_cpu_us"]["messages"] == 80
    assert "notification_cpu_us" not in figures
    clients = [hot_path.peer_of(i, 4) for i in range(8)]
    assert len(set(clients)) == 4 and clients[0] == clients[4]


def test_updates_every_kth_client(capsys: pytest.CaptureFixture[str]) -> None:
    """``--update-stride 5`` (lwm2m-loadgen's ``-U`` with fewer Updates than clients): the
    Updates cycle over every 5th registered client, each answered 2.04 to that client (the
    harness fails otherwise); a stride below 1 is refused, not run."""
    assert hot_path.main(
        ["--clients", "40", "--updates", "80", "--rounds", "2", "--batch", "16",
         "--notifications", "0", "--update-stride", "5"]
    ) == 0  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    figures = {line["figure"]: line for line in lines}
    assert figures["setup"]["update_stride"] == 5
    assert figures["update_cpu_us"]["messages"] == 80
    with pytest.raises(SystemExit):
        hot_path.parse_args(["--update-stride", "0"])


def test_like_blast_observes_a_tenth_with_three_byte_observe_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--like-blast``: as ``server_load.py``'s notification phase, a tenth of the clients is
    observed at each size (at most ``--observed``), and every notification carries a
    three-byte Observe number (``bench/load/blast.py``'s); each one is still ACKed (the
    harness fails otherwise)."""
    sent: list[bytes] = []
    make = hot_path.notification_datagram

    def spy(client: hot_path.Client) -> bytes:
        data = make(client)
        sent.append(data)
        return data

    hot_path.notification_datagram = spy  # type: ignore[assignment]
    try:
        assert hot_path.main(
            ["--clients", "40,200", "--updates", "40", "--notifications", "60", "--observed",
             "15", "--rounds", "2", "--batch", "16", "--like-blast"]
        ) == 0  # fmt: skip
    finally:
        hot_path.notification_datagram = make  # type: ignore[assignment]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    by_size = {line["clients"]: line for line in lines if line["figure"] == "notification_cpu_us"}
    assert by_size[40]["observed"] == 4
    assert by_size[200]["observed"] == 15  # a tenth is 20: capped by --observed
    assert len(sent) == 120
    observes = [hot_path.parse(data).observe for data in sent]
    assert all(o is not None and 0x10000 <= o <= 0xFFFFFF for o in observes)

"""``lwm2m-client``'s ``--fw-*`` flags: what they turn into, and bad values refused (exit 2)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from lwm2m_client.cli import build_client, build_parser, main, update_simulation
from lwm2m_client.firmware import UpdateSimulation


def test_defaults_simulate_nothing() -> None:
    args = build_parser().parse_args(["-e", "x"])
    assert update_simulation(args) == UpdateSimulation()


def test_flags() -> None:
    args = build_parser().parse_args(
        ["-e", "x", "--fw-fail-update", "--fw-corrupt-download", "--fw-vanish-after-blocks", "3",
         "--fw-vanish-for", "20", "--fw-reboot-delay", "0.5", "--fw-block-timeout", "4",
         "--software-instances", "2"]
    )  # fmt: skip
    assert update_simulation(args) == UpdateSimulation(
        fail_update=True, corrupt_download=True, vanish_after_blocks=3, vanish_for=20.0,
        reboot_delay=0.5, block_timeout=4.0,
    )  # fmt: skip
    client = build_client(args)
    assert client.firmware is not None and client.update_simulation.fail_update
    assert [s.base.ids[1] for s in client.software] == [0, 1]


@pytest.mark.parametrize(
    "flags",
    [
        ["--fw-vanish-after-blocks", "0"],
        ["--fw-vanish-for", "5"],  # without --fw-vanish-after-blocks
        ["--fw-reboot-delay", "-1"],
        ["--fw-block-timeout", "nan"],
        ["--software-instances", "-1"],
    ],
)
def test_bad_values_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-e", "x", *flags]) == 2
    assert "lwm2m-client: --" in capsys.readouterr().err


def test_ca_file_is_trusted_for_https_downloads(tmp_path: Path) -> None:
    from keystore import tools

    _, ca = tools.make_ca("some private CA")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(tools.certificate_pem(ca))
    client = build_client(build_parser().parse_args(["-e", "x", "--ca-file", str(ca_file)]))
    tls = client.update_host._tls
    assert tls.verify_mode is ssl.CERT_REQUIRED and tls.check_hostname
    assert [c["subject"] for c in tls.get_ca_certs()] == [((("commonName", "some private CA"),),)]


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_a_bad_ca_file_exits_2(
    content: bytes | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_file = tmp_path / "ca.crt"
    if content is not None:
        ca_file.write_bytes(content)
    assert main(["-e", "x", "--ca-file", str(ca_file)]) == 2
    assert f"lwm2m-client: --ca-file {ca_file}" in capsys.readouterr().err

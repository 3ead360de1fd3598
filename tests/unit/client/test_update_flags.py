"""``lwm2m-client``'s ``--fw-*`` flags: what they turn into, and bad values refused (exit 2)."""

from __future__ import annotations

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

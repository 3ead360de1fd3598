"""What every pylwm2m command shares (object_models.cli_support): ``--version``, an unknown
subcommand answered with the commands, negative numbers taken as values without ``--``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import pytest

from bootstrap_server.cli import main as bootstrap_main
from keystore.cli import main as keystore_main
from lwm2m_client.cli import main as client_main
from lwm2m_server.cli import build_parser as server_parser
from lwm2m_server.cli import main as server_main
from object_models.cli import main as models_main
from object_models.cli_support import (
    NEGATIVE_NUMBER,
    accept_negative_numbers,
    package_version,
    unknown_command,
)

Main = Callable[[Sequence[str] | None], int]

COMMANDS: list[tuple[str, Main]] = [
    ("lwm2m-server", server_main),
    ("lwm2m-bootstrap", bootstrap_main),
    ("lwm2m-keystore", keystore_main),
    ("lwm2m-models", models_main),
    ("lwm2m-client", client_main),
]


def run(main: Main, *args: str) -> int:
    try:
        return main(list(args))
    except SystemExit as exc:  # argparse's --version exits
        return int(exc.code or 0)


@pytest.mark.parametrize(("prog", "main"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_version(prog: str, main: Main, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(main, "--version") == 0
    assert capsys.readouterr().out.strip() == f"{prog} {package_version()}"
    assert package_version() != "unknown"  # the test environment installs the package


@pytest.mark.parametrize(
    ("main", "typo", "meant"),
    [(server_main, "clinets", "clients"), (bootstrap_main, "sesions", "sessions")],
)
def test_a_mistyped_command_lists_the_commands(
    main: Main, typo: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both servers treat options alone as ``serve``; a word that is no command is an error
    that names the nearest command and lists them all (it used to start serving, or say
    'unrecognized arguments')."""
    assert run(main, typo) == 2
    err = capsys.readouterr().err
    assert f"unknown command {typo!r} (did you mean {meant!r}?)" in err
    assert "serve" in err


@pytest.mark.parametrize(
    "value", ["-5", "-0.5", "-.5", "-1e3", "-2.5E-3", "-inf", "-NaN", "-1_000"]
)
def test_negative_numbers_are_values(value: str) -> None:
    assert NEGATIVE_NUMBER.match(value)
    args = server_parser().parse_args(["write", "ep", "/3303/0/5700", value])
    assert args.value == value


@pytest.mark.parametrize("option", ["-h", "--json", "-x", "-e5x", "--5"])
def test_options_are_not_numbers(option: str) -> None:
    assert not NEGATIVE_NUMBER.match(option)


def test_unknown_command_without_a_near_one() -> None:
    text = unknown_command("prog", "zzz", ["serve", "clients"])
    assert text == "prog: unknown command 'zzz'; commands: serve, clients"


def test_negative_numbers_in_a_subcommand_of_a_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="p")
    sub = parser.add_subparsers(dest="c").add_parser("a").add_subparsers(dest="d")
    leaf = sub.add_parser("b")
    leaf.add_argument("v")
    accept_negative_numbers(parser)
    assert parser.parse_args(["a", "b", "-1e3"]).v == "-1e3"

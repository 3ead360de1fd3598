"""What every pylwm2m command line shares: ``--version``, negative numbers accepted as values,
and an unknown subcommand answered with the list of commands (and the nearest one).

It lives in the lowest package so that all five commands (``lwm2m-models``, ``lwm2m-keystore``,
``lwm2m-server``, ``lwm2m-bootstrap``, ``lwm2m-client``) behave the same way.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable
from importlib import metadata

DISTRIBUTION = "pylwm2m"

NEGATIVE_NUMBER = re.compile(
    r"^-(?:(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE
)
"""A token that is a negative number value (``-5``, ``-0.5``, ``-1e3``, ``-inf``), never an
option: argparse's own test only knows ``-5`` and ``-.5``, so ``write ep /3303/0/5700 -1e3``
needed ``--`` before it. No pylwm2m option looks like a number, which is what makes widening
the test safe."""


def package_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare source tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version`` prints ``<prog> <version>`` and exits 0."""
    parser.add_argument("--version", action="version", version=f"{parser.prog} {package_version()}")


def accept_negative_numbers(parser: argparse.ArgumentParser) -> None:
    """Let values such as ``-1e3`` or ``-inf`` be positional arguments, in ``parser`` and in
    all its subcommands (argparse keeps the test per parser: ``_negative_number_matcher``)."""
    parser._negative_number_matcher = NEGATIVE_NUMBER
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                accept_negative_numbers(sub)


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    """The names of ``parser``'s subcommands, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def unknown_command(prog: str, word: str, commands: Iterable[str]) -> str:
    """``<prog>: unknown command 'clinets' (did you mean 'clients'?); commands: …``."""
    names = list(commands)
    close = difflib.get_close_matches(word, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{prog}: unknown command {word!r}{hint}; commands: {', '.join(names)}"

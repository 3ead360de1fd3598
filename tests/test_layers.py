"""The import graph of the six packages is the DAG of DESIGN.md "Layers" (issue 10, item 5).

    object_models  <-  keystore  <-  lwm2m_runtime  <-  lwm2m_server, bootstrap_server
    lwm2m_client uses object_models, keystore, lwm2m_runtime (and aiocoap), never a server

Why a test: a lower layer that imports an upper one cannot be reused or tested without it (the
registration store in ``keystore`` used to pull in the whole LwM2M server), and the two servers
importing each other made every change to one a change to both. Every ``import`` counts, also
the ones inside functions (they are how such edges used to hide). ``bench/`` and ``tests/`` may
import anything and are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: package -> the project packages it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "object_models": frozenset(),
    "keystore": frozenset({"object_models"}),
    "lwm2m_runtime": frozenset({"object_models", "keystore"}),
    "lwm2m_server": frozenset({"object_models", "keystore", "lwm2m_runtime"}),
    "bootstrap_server": frozenset({"object_models", "keystore", "lwm2m_runtime"}),
    "lwm2m_client": frozenset({"object_models", "keystore", "lwm2m_runtime"}),
}
PACKAGES = frozenset(ALLOWED)

#: Packages that must not run on aiocoap (issue 10: the servers' runtime is our own CoAP layer;
#: aiocoap stays for the demo client, ``lwm2m_client``, and its CoAPs glue lives there).
NO_AIOCOAP = frozenset({"keystore", "lwm2m_runtime", "lwm2m_server", "bootstrap_server"})

#: Known edges that are being removed (file, imported module); delete an entry when its import
#: goes away (the test fails on a stale entry, so the list cannot outlive the edge). Empty since
#: the LwM2M server left aiocoap (issue 10) and the demo client's CoAPs glue moved to
#: ``lwm2m_client/coaps.py``.
TEMPORARY: frozenset[tuple[str, str]] = frozenset()


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute import of ``path`` as (line, module), function-local ones included.
    Relative imports stay inside their package and cannot cross a layer."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def modules() -> list[tuple[str, Path]]:
    found = [(pkg, p) for pkg in sorted(PACKAGES) for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(found) > 100, "the packages were not found next to tests/"
    return found


def crossings() -> Iterator[tuple[str, int, str, str, str]]:
    """(file, line, module, from package, to package) of every import that leaves its package
    for another project package or aiocoap."""
    for package, path in modules():
        rel = path.relative_to(ROOT).as_posix()
        for line, module in imports(path):
            target = module.split(".")[0]
            if target != package and (target in PACKAGES or target == "aiocoap"):
                yield rel, line, module, package, target


def violations() -> tuple[list[str], set[tuple[str, str]]]:
    bad: list[str] = []
    used: set[tuple[str, str]] = set()
    for rel, line, module, package, target in crossings():
        ok = package not in NO_AIOCOAP if target == "aiocoap" else target in ALLOWED[package]
        if ok:
            continue
        if (rel, module) in TEMPORARY:
            used.add((rel, module))
            continue
        bad.append(f"{rel}:{line}: {package} -> {target} (import {module})")
    return bad, used


def test_every_import_follows_the_layers() -> None:
    bad, _ = violations()
    assert not bad, "imports against DESIGN.md's layers:\n" + "\n".join(bad)


def test_temporary_exceptions_are_still_needed() -> None:
    _, used = violations()
    stale = sorted(TEMPORARY - used)
    assert not stale, f"remove these from TEMPORARY, the import is gone: {stale}"


def test_the_servers_do_not_import_each_other() -> None:
    """Stated on its own so the failure says which rule broke (``ALLOWED`` implies it)."""
    servers = {"lwm2m_server", "bootstrap_server"}
    found = [
        f"{rel}:{line}: import {module}"
        for rel, line, module, package, target in crossings()
        if {package, target} == servers and (rel, module) not in TEMPORARY
    ]
    assert not found, "one server imports the other:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import keystore.resolver\n", [(1, "keystore.resolver")]),
        ("def f():\n    from lwm2m_server.config import X\n", [(2, "lwm2m_server.config")]),
        ("from . import sibling\nfrom .x import y\n", []),
    ],
)
def test_the_scanner_sees_function_local_imports(
    tmp_path: Path, source: str, expected: list[tuple[int, str]]
) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert list(imports(path)) == expected

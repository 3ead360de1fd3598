"""``lwm2m_runtime`` sits below both servers (DESIGN.md "Layers"): it may import the standard
library, ``object_models`` and ``keystore`` only — never a server, the demo client or aiocoap."""

from __future__ import annotations

import ast
from pathlib import Path

import lwm2m_runtime

FORBIDDEN = ("lwm2m_server", "bootstrap_server", "lwm2m_client", "aiocoap")


def test_runtime_imports_only_lower_layers() -> None:
    root = Path(lwm2m_runtime.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert bad == []

"""The servers run on our own CoAP layer (DESIGN.md, issue 10): importing either server — its
service, CLI and API — must not load aiocoap at all (it stays for the demo client only)."""

from __future__ import annotations

import subprocess
import sys


def test_the_servers_do_not_load_aiocoap() -> None:
    code = (
        "import sys\n"
        "import lwm2m_server.service, lwm2m_server.cli, lwm2m_server.api\n"
        "import bootstrap_server.service, bootstrap_server.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiocoap'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"

"""The HTTP API and the ``lwm2m-bootstrap`` operator commands against a running bootstrap
server; server-initiated bootstrap; ``serve`` refusing a bad configuration file (exit 2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer

from bootstrap_server.api import create_app
from bootstrap_server.cli import main
from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from lwm2m_runtime.http_auth import ApiAuthSettings
from tests.auth import ADMIN_TOKEN, token_env

from .bsclient import BootstrapTestClient

ENDPOINT = {
    "endpoint": "dev-api",
    "bootstrap_security": [{"mode": "nosec"}],
    "servers": [{"uri": "coap://127.0.0.1:5683", "short_server_id": 1,
                 "security": {"mode": "nosec"}}],
}  # fmt: skip
PROFILE = {
    "profile": "fleet",
    "bootstrap_security": [{"mode": "psk", "identity": "fleet-bs", "key": "hex:00112233"}],
    "provisioning": {"strategy": "pre_provisioned"},
    "servers": [{"uri": "coaps://127.0.0.1:5684", "short_server_id": 1,
                 "security": {"mode": "psk", "generate": True}}],
}  # fmt: skip


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[BootstrapServer, str]]:
    server = BootstrapServer(BootstrapServerConfig(
        host="127.0.0.1", coap_port=0, data_dir=tmp_path / "data", step_timeout=2.0,
        step_retries=0, coaps=False,
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN)))  # fmt: skip
    await server.start()
    http = TestServer(create_app(server), host="127.0.0.1")
    await http.start_server()
    yield server, str(http.make_url("")).rstrip("/")
    await http.close()
    await server.stop()


async def cli(api: str, *args: str, capsys: Any) -> tuple[int, str, str]:
    """Run ``lwm2m-bootstrap <args>`` against ``api`` with the tests' admin token."""
    capsys.readouterr()
    with token_env():
        code = await asyncio.to_thread(main, [*args, "--api", api])
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_configs_devices_sessions(running: tuple[BootstrapServer, str], tmp_path: Path,
                                        capsys: Any) -> None:  # fmt: skip
    server, api = running
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(ENDPOINT))
    (tmp_path / "fleet.json").write_text(json.dumps(PROFILE))
    code, out, _ = await cli(api, "configs", "add", str(tmp_path / "dev.yaml"), capsys=capsys)
    assert code == 0 and "endpoint dev-api saved as" in out
    assert (await cli(api, "configs", "add", str(tmp_path / "fleet.json"), capsys=capsys))[0] == 0
    assert (server.config.configs_folder / "endpoint-dev-api.json").exists()
    code, out, _ = await cli(api, "configs", "list", capsys=capsys)
    assert "dev-api" in out and "fleet" in out and "generated" in out
    code, out, _ = await cli(api, "configs", "show", "profile:fleet", "--json", capsys=capsys)
    shown = json.loads(out)
    assert shown["strategy"] == "pre_provisioned" and "00112233" not in out
    bad = dict(ENDPOINT, objects={"/3/0/999": 1})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, _, err = await cli(api, "configs", "add", str(tmp_path / "bad.yaml"), capsys=capsys)
    assert code == 2 and "objects./3/0/999: object 3 (Device) has no resource 999" in err
    (tmp_path / "devices.csv").write_text("endpoint,profile\nd-1,fleet\nd-2\n")
    code, out, _ = await cli(api, "devices", "import", str(tmp_path / "devices.csv"),
                             "--profile", "fleet", capsys=capsys)  # fmt: skip
    assert code == 0 and "2 devices imported" in out
    (tmp_path / "wrong.csv").write_text("d-3,nope\n")
    code, _, err = await cli(api, "devices", "import", str(tmp_path / "wrong.csv"), capsys=capsys)
    assert code == 1 and "no profile 'nope'" in err
    code, out, _ = await cli(api, "devices", "list", capsys=capsys)
    assert "d-1" in out and "NEW" in out
    async with BootstrapTestClient("dev-api") as bs:
        uri = f"coap://127.0.0.1:{server.coap_address.port}"
        await bs.bootstrap(uri)
        for _ in range(200):
            if server.store.sessions("dev-api"):
                break
            await asyncio.sleep(0.02)
        # server-initiated: the server knows where the client's last request came from
        code, out, _ = await cli(api, "bootstrap", "dev-api", capsys=capsys)
        assert code == 0 and "bootstrap started" in out
        for _ in range(200):
            if len(server.store.sessions("dev-api")) == 2:
                break
            await asyncio.sleep(0.02)
    code, out, _ = await cli(api, "sessions", "--endpoint", "dev-api", capsys=capsys)
    assert out.count("succeeded") == 2 and "server" in out and "finish" in out
    code, _, err = await cli(api, "bootstrap", "nobody", capsys=capsys)
    assert code == 1 and "no known address" in err
    assert (await cli(api, "configs", "remove", "dev-api", capsys=capsys))[0] == 0
    assert not (server.config.configs_folder / "endpoint-dev-api.json").exists()


def test_serve_refuses_a_bad_config_file(tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "ok.yaml").write_text(yaml.safe_dump(ENDPOINT))
    (folder / "dup.yaml").write_text(yaml.safe_dump(dict(ENDPOINT)))
    code = main(["--coap-port", "0", "--http-port", "0", "--data-dir", str(tmp_path / "d"),
                 "--configs-dir", str(folder)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "ok.yaml: endpoint: endpoint name is also used by endpoint 'dev-api'" in err

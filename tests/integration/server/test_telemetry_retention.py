"""Retention in the running server (issue 13 item 6): the deployment's ``telemetry.retention``
and a profile's own ``retention`` decide what the background pruner deletes; latest values stay."""

from __future__ import annotations

import time
from pathlib import Path

import attrs

from lwm2m_server.config import TelemetrySettings
from lwm2m_server.core.telemetry import TelemetryPoint
from object_models.types import ResourceType

from .conftest import ServerFactory

DAY_MS = 86_400_000
TEMP = "/3303/0/5700"


def points(endpoint: str, *ages_days: int) -> list[TelemetryPoint]:
    now_ms = int(time.time() * 1000)
    return [
        TelemetryPoint(endpoint, TEMP, "t", now_ms - d * DAY_MS, float(d), ResourceType.FLOAT)
        for d in ages_days
    ]


async def test_deployment_and_profile_retention(make_server: ServerFactory, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "archive.yaml").write_text('endpoints: ["archive-*"]\nretention: 365d\n')
    (profiles / "keep.yaml").write_text('endpoints: ["keep-*"]\nretention: 0\n')
    server = await make_server(profiles_dir=profiles, telemetry=TelemetrySettings(retention="30d"))
    store = server.stores.telemetry
    for endpoint in ("plain-1", "archive-1", "keep-1"):
        store.append_points(points(endpoint, 400, 100, 40, 1))
    server.stores.committer.commit()
    assert server.retention is not None
    server.retention.run_pass()
    server.stores.committer.commit()

    def kept(endpoint: str) -> list[float]:
        return [p.value for p in server.telemetry_history(endpoint, key=TEMP)]

    assert kept("plain-1") == [1.0]  # the deployment's 30 days
    assert kept("archive-1") == [1.0, 40.0, 100.0]  # its profile's 365 days
    assert kept("keep-1") == [1.0, 40.0, 100.0, 400.0]  # its profile: forever
    assert server.telemetry_latest("plain-1")[TEMP].value == 1.0


async def test_no_retention_configured_deletes_nothing(make_server: ServerFactory) -> None:
    server = await make_server()
    assert attrs.asdict(server.config.telemetry) == {"retention": ""}
    server.stores.telemetry.append_points(points("dev", 10_000, 1))
    assert server.retention is not None and server.retention.run_pass() == 0
    assert len(server.telemetry_history("dev", key=TEMP)) == 2

"""A device provisioned under a profile's ``bootstrap:`` section gets that profile on the LwM2M
server: the bootstrap server assigns it in the shared profile store (when a session under the
profile succeeds, and when ``devices import`` names it), and the LwM2M server's profile engine
re-reads the device's assignment when it registers. End to end: both servers in process on one
data directory, the real ``lwm2m_client`` bootstraps, registers, and gets observed as the
profile says, although no ``endpoints`` pattern names it."""

from __future__ import annotations

from typing import Any

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.profiles.engine import ProfileEngine
from lwm2m_server.service import Lwm2mServer
from tests.integration.bootstrap import fixtures
from tests.integration.bootstrap.fixtures import Factory, coap_uri

lwm2m_server = fixtures.lwm2m_server
make_bootstrap = fixtures.make_bootstrap


def fleet_profile(server: Lwm2mServer) -> dict[str, Any]:
    lwm2m_uri = f"coaps://127.0.0.1:{server.coaps_address.port}"
    return {
        "name": "fleet",
        "resources": {"/3/0/9": {"key": "batteryLevel", "kind": "telemetry", "observe": True}},
        "bootstrap": {
            "bootstrap_security": [{"mode": "nosec"}],
            "provisioning": {"strategy": "allow_new"},
            "servers": [
                {  # per-device PSK credentials, issued at bootstrap
                    "uri": lwm2m_uri,
                    "short_server_id": 1,
                    "lifetime": 120,
                    "security": {"mode": "psk", "generate": True},
                }
            ],
        },
    }


async def test_a_device_bootstrapped_under_a_profile_gets_it_on_the_lwm2m_server(
    lwm2m_server: Lwm2mServer, make_bootstrap: Factory
) -> None:
    engine = lwm2m_server.profiles
    assert isinstance(engine, ProfileEngine)
    engine.put_profile("fleet", fleet_profile(lwm2m_server))
    lwm2m_server.stores.committer.commit()  # the bootstrap server reads the file at start
    bootstrap = await make_bootstrap()
    assert bootstrap.catalog.profile("fleet") is not None

    device = Lwm2mClient.from_bootstrap(
        "sensor-7", coap_uri(bootstrap), finish_timeout=10.0, attempts=1, auto_update=False
    )
    async with device:
        assert device.registered
        await engine.idle()
        status = engine.status("sensor-7")
        assert (status["profile"], status["chosenBy"]) == ("fleet", "assigned")
        assert status["observations"] == [["/3/0/9"]]
        observed = [[str(p) for p in paths] for paths in lwm2m_server.observations("sensor-7")]
        assert observed == [["/3/0/9"]]  # the server observes it as the profile says


async def test_devices_imported_under_a_profile_are_assigned_it(
    lwm2m_server: Lwm2mServer, make_bootstrap: Factory
) -> None:
    engine = lwm2m_server.profiles
    assert isinstance(engine, ProfileEngine)
    engine.put_profile("fleet", fleet_profile(lwm2m_server))
    lwm2m_server.stores.committer.commit()
    bootstrap = await make_bootstrap()
    bootstrap.import_devices("endpoint,profile\nlisted-1,fleet\nlisted-2,fleet\n")
    assert engine.catalog.store.assignment("listed-1") == "fleet"
    assert engine.catalog.store.assignments() == {"listed-1": "fleet", "listed-2": "fleet"}

"""The bootstrap server on the Redis store (``store: {engine: redis}``), over real sockets: a
device auto-provisioned by one bootstrap server has its credentials in the Redis keystore and
its record and session in Redis, where a second bootstrap server on the same Redis (another
node) finds them."""

from __future__ import annotations

import pytest

from bootstrap_server.core.provisioning import ProvisionState
from bootstrap_server.redis_store import RedisBootstrapStore
from keystore.store.engines import StoreSettings
from keystore.store.redis_credentials import RedisCredentialStore
from lwm2m_client.accounts import server_accounts
from lwm2m_server.service import Lwm2mServer
from tests.integration.bootstrap import fixtures
from tests.integration.bootstrap.fixtures import Factory

from .test_bootstrap_e2e import _device, _profile

lwm2m_server = fixtures.lwm2m_server
make_bootstrap = fixtures.make_bootstrap
_uri = fixtures.coap_uri


async def test_auto_provisioning_lands_in_redis(
    lwm2m_server: Lwm2mServer, make_bootstrap: Factory, redis_url: str
) -> None:
    store = StoreSettings("redis", redis_url, "bs-test")
    bootstrap = await make_bootstrap(_profile(_uri(lwm2m_server)), store=store)
    assert isinstance(bootstrap.store, RedisBootstrapStore)
    client = _device("sensor-r", bootstrap)
    await client.bootstrap()
    generated = next(a for a in server_accounts(client.objects) if a.short_server_id == 2)
    assert (await fixtures.sessions(bootstrap, "sensor-r"))[0]["success"] is True
    await client.stop()
    with RedisCredentialStore.open(redis_url, prefix="bs-test") as keystore:
        stored = keystore.get_device("sensor-r")
    assert stored is not None
    assert (stored.psk_identity, stored.psk_key) == (generated.identity, generated.secret)
    # another bootstrap server (another node) on the same Redis sees the record and the session
    other = await make_bootstrap(_profile(_uri(lwm2m_server)), store=store)
    record = other.store.get_device("sensor-r")
    assert record is not None and record.state is ProvisionState.PROVISIONED
    assert other.store.sessions("sensor-r")[0]["success"] is True


async def test_unreachable_redis_stops_the_start(make_bootstrap: Factory) -> None:
    from keystore.store.errors import StoreError

    store = StoreSettings("redis", "redis://:pw@127.0.0.1:1/0")
    with pytest.raises(StoreError, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0: cannot connect"):
        await make_bootstrap({}, store=store)

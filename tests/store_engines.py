"""Store engines for the contract tests (a pytest plugin, loaded by ``tests/conftest.py``).

A store test that asks for ``engine`` runs once per engine (``[sqlite]``, ``[redis]``, and
``[redis-cluster]``: the Redis engines on a three-node Redis Cluster, where a change whose keys
span slots is refused with CROSSSLOT): the same assertions hold whatever stores the data, which
is the point of the store Protocols. An ``Engine`` opens stores of every kind on one backing
store (one sqlite file, or one Redis and key prefix); calling a method twice gives a second,
independent store object on the same data, as a restarted server or a second server process
would have.

The Redis engines need ``redis_url``/``redis_cluster_url`` (``tests/redis_fixture.py``): without
``redis-server`` the Redis cases are skipped with the reason, the ``[sqlite]`` ones still run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bootstrap_server.store import BootstrapStore
    from keystore.coaps.persistence import DtlsSessionStore
    from keystore.store.credentials import CredentialStore
    from keystore.store.profiles import ProfileStore
    from lwm2m_server.firmware.campaign_store import CampaignStore
    from lwm2m_server.firmware.job_store import JobStore
    from lwm2m_server.store.device_state import DeviceStateStore


class Engine:
    name = ""

    def __init__(self) -> None:
        self._opened: list[Any] = []

    def _keep(self, closable: Any) -> Any:
        self._opened.append(closable)
        return closable

    def close(self) -> None:
        for closable in reversed(self._opened):
            closable.close()

    def elsewhere(self) -> Engine:
        """The same engine on separate data (another file, another key prefix)."""
        raise NotImplementedError

    def credentials(self) -> CredentialStore:
        raise NotImplementedError

    def profiles(self) -> ProfileStore:
        raise NotImplementedError

    def dtls_sessions(self) -> DtlsSessionStore:
        raise NotImplementedError

    def device_state(self) -> DeviceStateStore:
        raise NotImplementedError

    def bootstrap(self) -> BootstrapStore:
        raise NotImplementedError

    def campaigns(self) -> CampaignStore:
        raise NotImplementedError

    def firmware_jobs(self) -> JobStore:
        raise NotImplementedError


class SqliteEngine(Engine):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.path = folder / "server.sqlite"
        self.bootstrap_path = folder / "bootstrap.sqlite"

    def elsewhere(self) -> Engine:
        return self._keep(SqliteEngine(self.folder / "elsewhere"))  # type: ignore[no-any-return]

    def _database(self) -> Any:
        from keystore.store.database import SqliteDatabase

        return self._keep(SqliteDatabase(self.path))

    def credentials(self) -> CredentialStore:
        from keystore.store.credentials import SqliteCredentialStore

        return self._keep(SqliteCredentialStore.open(self.path))  # type: ignore[no-any-return]

    def profiles(self) -> ProfileStore:
        from keystore.store.profiles import SqliteProfileStore

        return SqliteProfileStore(self._database())

    def dtls_sessions(self) -> DtlsSessionStore:
        from keystore.store.dtls_sessions import SqliteDtlsSessionStore

        return SqliteDtlsSessionStore(self._database())

    def device_state(self) -> DeviceStateStore:
        from keystore.store.profiles import SqliteProfileStore
        from lwm2m_server.store.device_state import SqliteDeviceStateStore

        database = self._database()
        SqliteProfileStore(database)  # records the schema version the state tables share
        return SqliteDeviceStateStore(database)

    def bootstrap(self) -> BootstrapStore:
        from bootstrap_server.store import SqliteBootstrapStore

        return self._keep(SqliteBootstrapStore(self.bootstrap_path))  # type: ignore[no-any-return]

    def campaigns(self) -> CampaignStore:
        from lwm2m_server.firmware.campaign_store import SqliteCampaignStore

        return SqliteCampaignStore(self._database())

    def firmware_jobs(self) -> JobStore:
        from lwm2m_server.firmware.job_store import SqliteJobStore

        return SqliteJobStore(self._database())


class RedisEngine(Engine):
    name = "redis"

    def __init__(self, url: str, prefix: str = "test", *, cluster: bool = False) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.cluster = cluster
        if cluster:
            self.name = "redis-cluster"

    def elsewhere(self) -> Engine:
        other = RedisEngine(self.url, self.prefix + "-elsewhere", cluster=self.cluster)
        return self._keep(other)  # type: ignore[no-any-return]

    def database(self) -> Any:
        from keystore.store.redis_database import RedisDatabase

        return self._keep(RedisDatabase(self.url, prefix=self.prefix, cluster=self.cluster))

    def credentials(self) -> CredentialStore:
        from keystore.store.redis_credentials import RedisCredentialStore

        return RedisCredentialStore(self.database())

    def profiles(self) -> ProfileStore:
        from keystore.store.redis_profiles import RedisProfileStore

        return RedisProfileStore(self.database())

    def dtls_sessions(self) -> DtlsSessionStore:
        from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore

        return RedisDtlsSessionStore(self.database())

    def device_state(self) -> DeviceStateStore:
        from lwm2m_server.store.redis_device_state import RedisDeviceStateStore

        return RedisDeviceStateStore(self.database())

    def bootstrap(self) -> BootstrapStore:
        from bootstrap_server.redis_store import RedisBootstrapStore

        return RedisBootstrapStore(self.database())

    def campaigns(self) -> CampaignStore:
        from lwm2m_server.firmware.campaign_store import RedisCampaignStore

        return RedisCampaignStore(self.database())

    def firmware_jobs(self) -> JobStore:
        from lwm2m_server.firmware.job_store import RedisJobStore

        return RedisJobStore(self.database())


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """Each store engine in turn (see the module docstring)."""
    chosen: Engine
    if request.param == "redis":
        chosen = RedisEngine(request.getfixturevalue("redis_url"))
    elif request.param == "redis-cluster":
        chosen = RedisEngine(request.getfixturevalue("redis_cluster_url"), cluster=True)
    else:
        chosen = SqliteEngine(tmp_path / "data")
    try:
        yield chosen
    finally:
        chosen.close()

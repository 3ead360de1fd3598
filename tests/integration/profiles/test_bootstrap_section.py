"""A device profile's ``bootstrap`` section reaches the bootstrap server: ``lwm2m-server``
keeps profiles in the shared sqlite file, and ``lwm2m-bootstrap`` reads their sections into its
catalog at start and on reload, under the files of its own folder (a file of the same name
wins)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from keystore.bootstrap_config.model import ConfigKind
from keystore.store.profiles import SqliteProfileStore
from lwm2m_server.profiles.catalog import Catalog
from lwm2m_server.store.sqlite import SqliteStore
from tests.unit.profiles.helpers import BOOTSTRAP, REGISTRY, RESOURCES


def store_profile(data_dir: Path, name: str, identity: str = "fleet") -> None:
    """What ``lwm2m-server profiles apply`` leaves in the shared file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    section = copy.deepcopy(BOOTSTRAP)
    section["bootstrap_security"][0]["identity"] = identity
    with SqliteStore(data_dir / "lwm2m-server.sqlite") as shared:
        document = {"name": name, "resources": RESOURCES, "bootstrap": section}
        Catalog(SqliteProfileStore(shared), REGISTRY).put(document, name)


def bootstrap_config(tmp_path: Path) -> BootstrapServerConfig:
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    return BootstrapServerConfig(
        host="127.0.0.1", coap_port=0, data_dir=tmp_path / "data", configs_dir=folder,
        coaps=False,
    )  # fmt: skip


async def test_profile_sections_join_the_catalog_and_files_win(tmp_path: Path) -> None:
    store_profile(tmp_path / "data", "fleet")
    server = BootstrapServer(bootstrap_config(tmp_path))
    await server.start()
    try:
        config = server.catalog.profile("fleet")
        assert config is not None and config.kind is ConfigKind.PROFILE
        assert config.servers[0].uri == "coaps://lwm2m.example:5684"
        assert server.catalog.by_psk_identity(b"fleet") is not None  # the fleet's factory PSK

        # a file of the same name in the bootstrap server's folder overrides the profile's
        override = copy.deepcopy(BOOTSTRAP)
        override["profile"] = "fleet"
        override["servers"][0]["uri"] = "coaps://override.example:5684"
        (tmp_path / "configs" / "fleet.yaml").write_text(yaml.safe_dump(override))
        assert server.reload_configs() == []
        config = server.catalog.profile("fleet")
        assert config is not None and config.servers[0].uri == "coaps://override.example:5684"

        # a profile stored later is picked up by a reload; one whose factory identity is
        # already taken is refused with the reason, and the catalog stays as it was
        store_profile(tmp_path / "data", "second", identity="second-fleet")
        assert server.reload_configs() == []
        assert server.catalog.profile("second") is not None
        store_profile(tmp_path / "data", "third", identity="fleet")
        errors = server.reload_configs()
        assert any("fleet" in str(e) for e in errors), errors
        assert server.catalog.profile("third") is None
    finally:
        await server.stop()

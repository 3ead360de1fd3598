"""Configuration documents: what is accepted, and that every refusal names file, key, reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootstrap_server.core.catalog import Catalog, cross_check, load_folder
from keystore.bootstrap_config.model import ConfigKind, Strategy
from keystore.config_error import ConfigError
from keystore.modes import SecurityMode
from object_models.path import LwM2mPath

from .helpers import KEY, REGISTRY, endpoint_doc, parse, profile_doc


def test_endpoint_config_defaults() -> None:
    config = parse(endpoint_doc())
    assert config.kind is ConfigKind.ENDPOINT and config.name == "dev-1"
    assert config.to_delete == (LwM2mPath(0), LwM2mPath(1))
    (server,) = config.servers
    assert server.security.mode is SecurityMode.PSK
    assert server.security.public_key_or_identity == b"dev-1"
    assert server.security.secret_key == bytes(range(16))
    assert (server.lifetime, server.binding, server.notification_storing) == (300, "U", True)
    assert config.allows(SecurityMode.NOSEC) and config.generated is None
    assert "secret" in repr(server.security) and "0001" not in repr(server.security)


def test_profile_config() -> None:
    config = parse(
        profile_doc(
            provisioning={
                "strategy": "pre-provisioned",
                "psk_identity_template": "{profile}:{endpoint}",
            }
        )
    )
    assert config.kind is ConfigKind.PROFILE
    assert config.provisioning is not None
    assert config.provisioning.strategy is Strategy.PRE_PROVISIONED
    assert config.generated is config.servers[0]


def test_objects_acls_oscore_typed_by_the_models() -> None:
    config = parse(endpoint_doc(
        objects={"/3/0/14": "+02:00", "/3/0/13": "2024-01-01T00:00:00Z",
                 "/6/0": {"0": 48.1, "1": 11.5}},
        acls=[{"object": 3, "instance": 0, "rights": {1: 15, 0: 1}, "owner": 1}],
        to_delete=["/", "/3303"],
    ))  # fmt: skip
    device = config.objects[LwM2mPath(3, 0)]
    assert device.resources[14].value == "+02:00"  # type: ignore[union-attr]
    assert device.resources[13].value == 1704067200  # type: ignore[union-attr]
    assert config.objects[LwM2mPath(6, 0)].resources[0].value == 48.1  # type: ignore[union-attr]
    assert config.acls[0].rights == {1: 15, 0: 1}
    assert config.to_delete == (LwM2mPath(), LwM2mPath(3303))


def test_oscore_and_extra_resources() -> None:
    server = endpoint_doc()["servers"][0]
    server["oscore"] = {0: "hex:00112233", 1: "hex:01", 2: "hex:02"}
    server["security_resources"] = {11: 5}
    server["server_resources"] = {23: True}
    config = parse(endpoint_doc(servers=[server]))
    (account,) = config.servers
    assert account.oscore is not None and account.oscore.resources[0].value == bytes.fromhex(
        "00112233"
    )  # type: ignore[union-attr]
    assert account.security_extra == {11: 5} and account.server_extra == {23: True}


def test_file_references_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"k" * 16)
    doc = endpoint_doc()
    doc["servers"][0]["security"]["key"] = "file:secret.bin"
    (tmp_path / "dev-1.yaml").write_text(__import__("yaml").safe_dump(doc))
    catalog, errors = load_folder(tmp_path, REGISTRY)
    assert errors == []
    config = catalog.endpoint("dev-1")
    assert config is not None and config.servers[0].security.secret_key == b"k" * 16


def _server(**changes: Any) -> dict[str, Any]:
    server = dict(endpoint_doc()["servers"][0])
    server.update(changes)
    return server


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("no name", {"endpoint": None}, "", "exactly one of"),
    ("both names", {"profile": "p"}, "", "exactly one of"),
    ("unknown key", {"servres": []}, "servres", "unknown key"),
    ("no bootstrap security", {"bootstrap_security": None}, "bootstrap_security", "required"),
    ("bad mode", {"bootstrap_security": [{"mode": "tls"}]}, "bootstrap_security[0].mode",
     "unknown security mode"),
    ("psk without key", {"bootstrap_security": [{"mode": "psk", "identity": "x"}]},
     "bootstrap_security[0].key", "required"),
    ("no servers", {"servers": []}, "servers", "at least one"),
    ("duplicate short server id", {"servers": [_server(), _server(uri="coaps://b:5684")]},
     "servers[1].short_server_id", "also used by servers[0]"),
    ("ssid out of range", {"servers": [_server(short_server_id=0)]},
     "servers[0].short_server_id", "outside 1..65534"),
    ("nosec with coaps", {"servers": [_server(security={"mode": "nosec"})]},
     "servers[0].security", "needs a coap:// uri"),
    ("psk key not hex", {"servers": [_server(security={"mode": "psk", "identity": "a",
                                                         "key": "hex:zz"})]},
     "servers[0].security.key", "not hexadecimal"),
    ("bad binding", {"servers": [_server(binding="X")]}, "servers[0].binding", "binding letters"),
    ("unknown object", {"objects": {"/9999/0": {"0": 1}}}, "objects./9999/0", "unknown object"),
    ("unknown resource", {"objects": {"/3/0/999": 1}}, "objects./3/0/999", "no resource 999"),
    ("wrong type", {"objects": {"/3/0/13": "yesterday"}}, "objects./3/0/13", "Current Time"),
    ("executable", {"objects": {"/3/0/4": ""}}, "objects./3/0/4", "executable"),
    ("security via objects", {"objects": {"/0/5": {"0": "coap://x"}}}, "objects./0/5",
     "written from 'servers'"),
    ("deep delete", {"to_delete": ["/3/0/1"]}, "to_delete[0]", "targets /, an object"),
    ("delete unknown object", {"to_delete": ["/4242"]}, "to_delete[0]", "unknown object"),
    ("acl unknown server", {"acls": [{"object": 3, "instance": 0, "rights": {7: 1}}]},
     "acls[0].rights.7", "not one of the servers"),
    ("bad content format", {"content_format": "text"}, "content_format",
     "cannot carry object instances"),
    ("two generated", {"servers": [_server(security={"mode": "psk", "generate": True}),
                                   _server(short_server_id=2,
                                           security={"mode": "psk", "generate": True})]},
     "servers", "at most one"),
    ("generate with a key", {"servers": [_server(security={"mode": "psk", "generate": True,
                                                             "key": KEY})]},
     "servers[0].security.key", "not allowed with generate"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "key", "reason"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])  # fmt: skip
def test_errors_name_file_key_and_reason(changes: dict[str, Any], key: str, reason: str) -> None:
    doc = endpoint_doc(**changes)
    for name, value in changes.items():
        if value is None:
            doc.pop(name)
    with pytest.raises(ConfigError) as caught:
        parse(doc, "configs/dev-1.yaml")
    error = caught.value
    assert error.source == "configs/dev-1.yaml"
    assert error.key == key, str(error)
    assert reason in error.reason, str(error)
    assert str(error).startswith("configs/dev-1.yaml")


def test_profile_must_generate_and_template_must_name_the_endpoint() -> None:
    doc = profile_doc()
    doc["servers"][0]["security"] = {"mode": "psk", "identity": "same", "key": KEY}
    with pytest.raises(ConfigError, match="must issue per-device credentials"):
        parse(doc)
    with pytest.raises(ConfigError, match=r"must contain \{endpoint\}"):
        parse(profile_doc(provisioning={"psk_identity_template": "fleet"}))
    with pytest.raises(ConfigError, match="only profiles"):
        parse(endpoint_doc(provisioning={}))


def test_cross_checks_across_files() -> None:
    a = parse(endpoint_doc(), "a.yaml")
    b = parse(endpoint_doc(), "b.yaml")
    errors = cross_check([a, b])
    assert [(e.source, e.key) for e in errors] == [("b.yaml", "endpoint")]
    p1 = parse(profile_doc(bootstrap_security=[{"mode": "psk", "identity": "shared",
                                                "key": KEY}]), "p1.yaml")  # fmt: skip
    e2 = parse(endpoint_doc(endpoint="dev-2", bootstrap_security=[{"mode": "psk",
               "identity": "shared", "key": KEY}]), "e2.yaml")  # fmt: skip
    (error,) = cross_check([p1, e2])
    assert error.source == "e2.yaml" and "also used by profile 'fleet'" in error.reason
    n1 = parse(profile_doc(bootstrap_security=[{"mode": "nosec"}]), "n1.yaml")
    n2 = parse(profile_doc(profile="other", bootstrap_security=[{"mode": "nosec"}]), "n2.yaml")
    (error,) = cross_check([n1, n2])
    assert "NoSec bootstrap of unlisted devices" in error.reason
    with pytest.raises(ConfigError):
        Catalog.of([n1, n2])


def test_load_folder_reports_every_bad_file(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "good.yaml").write_text(yaml.safe_dump(endpoint_doc()))
    (tmp_path / "broken.yaml").write_text("servers: [\n")
    (tmp_path / "wrong.json").write_text('{"endpoint": "x", "servers": []}')
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    (tmp_path / "notes.txt").write_text("ignored")
    catalog, errors = load_folder(tmp_path, REGISTRY)
    assert [c.name for c in catalog.all()] == ["dev-1"]
    by_file = {Path(e.source).name: e for e in errors}
    assert set(by_file) == {"broken.yaml", "wrong.json"}
    assert "not valid YAML at line" in by_file["broken.yaml"].reason
    assert by_file["wrong.json"].key == "bootstrap_security"

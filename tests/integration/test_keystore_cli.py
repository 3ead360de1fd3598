"""``lwm2m-keystore`` run as a real process (``python -m keystore``) in temporary folders."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keystore import tools
from keystore.cli import main
from keystore.credentials import DeviceCredentials, certificate_der
from keystore.resolver import PeerIdentity, Resolver
from keystore.store.credentials import SqliteCredentialStore

REPO = Path(__file__).resolve().parents[2]
KEY = "00112233445566778899aabbccddeeff"


def run(
    *args: str | Path, cwd: Path, umask: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LWM2M_SERVER_DATA_DIR"}
    environ.update(env or {}, PYTHONPATH=str(REPO))

    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        [sys.executable, "-m", "keystore", *map(str, args)],
        cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, preexec_fn=set_umask,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _no_data_dir_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``main()`` calls must not follow a developer's own LWM2M_SERVER_DATA_DIR."""
    monkeypatch.delenv("LWM2M_SERVER_DATA_DIR", raising=False)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_server_rpk_then_x509_and_show(tmp_path: Path) -> None:
    first = run("server", "generate-rpk", cwd=tmp_path, umask=0)
    assert first.returncode == 0, first.stderr
    xy = next(line for line in first.stdout.splitlines() if "X||Y" in line).split()[-1]
    assert len(xy) == 128
    assert mode_of(tmp_path / "data" / "lwm2m-server.sqlite") == 0o600
    again = run("server", "generate-rpk", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr

    cert = run("server", "generate-x509", "--cn", "lwm2m.example", "--san", "192.0.2.1",
               "--days", "30", cwd=tmp_path)  # fmt: skip
    assert cert.returncode == 0, cert.stderr
    shown = run("server", "show", "--json", cwd=tmp_path)
    info = json.loads(shown.stdout)
    assert info["public_key_xy"] == xy  # the certificate is for the same key
    assert info["certificate_subject"] == "CN=lwm2m.example"
    assert "PRIVATE" not in shown.stdout + cert.stdout + first.stdout


def test_server_certificate_signed_by_a_ca(tmp_path: Path) -> None:
    ca_key, ca = tools.make_ca("Server CA")
    (tmp_path / "ca.pem").write_bytes(tools.certificate_pem(ca))
    (tmp_path / "ca.key").write_bytes(tools.private_key_pem(ca_key))
    result = run("server", "generate-x509", "--cn", "srv", "--ca-cert", "ca.pem",
                 "--ca-key", "ca.key", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "chain length: 2" in result.stdout and "certificate issuer: CN=Server CA" in result.stdout
    )
    half = run("server", "generate-x509", "--ca-cert", "ca.pem", "--force", cwd=tmp_path)
    assert half.returncode == 2 and "--ca-cert and --ca-key" in half.stderr


def test_device_lifecycle_for_every_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    device_key = tools.generate_private_key()
    ca_key, ca = tools.make_ca("Devices CA")
    pinned = tools.issue_certificate(device_key.public_key(), "pinned", issuer_key=device_key)
    (tmp_path / "ca.pem").write_bytes(tools.certificate_pem(ca))
    (tmp_path / "pinned.der").write_bytes(certificate_der(pinned))
    commands: list[tuple[str, ...]] = [
        ("device", "add", "psk-1", "--mode", "psk", "--identity", "psk-1-id", "--key", KEY),
        ("device", "add", "psk-2", "--mode", "psk", "--identity", "hex:00ff", "--key", KEY),
        ("device", "add", "rpk-1", "--mode", "rpk", "--public-key",
         tools.public_key_xy_hex(device_key.public_key())),
        ("device", "add", "x509-1", "--mode", "x509", "--cert", "pinned.der"),
        ("device", "add", "urn:imei:1", "--mode", "x509"),
        ("device", "add", "plain", "--mode", "nosec", "--inactive"),
        ("ca", "add", "ca.pem", "--auto-registration"),
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for command in commands:  # in-process: one process start per command is slow
        assert main(list(command)) == 0, command
        out, err = capsys.readouterr()
        assert KEY not in out + err

    listing = run("device", "list", cwd=tmp_path)
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["ENDPOINT", "MODE", "ACTIVE", "IDENTITY"]
    assert [line.split()[0] for line in lines[1:]] == [
        "plain", "psk-1", "psk-2", "rpk-1", "urn:imei:1", "x509-1",
    ]  # fmt: skip
    assert "hex:00ff" in listing.stdout and KEY not in listing.stdout
    as_json = json.loads(run("device", "list", "--json", cwd=tmp_path).stdout)
    assert {d["endpoint"]: d["mode"] for d in as_json}["x509-1"] == "x509"
    assert "psk_key" not in json.dumps(as_json)

    show = run("device", "show", "psk-1", cwd=tmp_path)
    assert show.returncode == 0 and KEY not in show.stdout and "--show-secret" in show.stdout
    secret = run("device", "show", "psk-1", "--show-secret", "--json", cwd=tmp_path)
    assert json.loads(secret.stdout)["psk_key"] == KEY

    cas = run("ca", "list", "--json", cwd=tmp_path)
    assert json.loads(cas.stdout)[0]["auto_registration"] is True

    # what the CLI stored is what the server's resolver decides from
    with SqliteCredentialStore.open(tmp_path / "data" / "lwm2m-server.sqlite") as store:
        resolver = Resolver(store, open_registration=False)
        assert resolver.resolve(PeerIdentity.psk(b"\x00\xff"), "psk-2").endpoint == "psk-2"
        assert resolver.psk_lookup(b"psk-1-id") == bytes.fromhex(KEY)
        spki = tools.spki_der(device_key.public_key())
        assert resolver.resolve(PeerIdentity.rpk(spki), "rpk-1").endpoint == "rpk-1"
        assert resolver.resolve(PeerIdentity.x509([certificate_der(pinned)])).endpoint == "x509-1"
        dev = tools.issue_certificate(device_key.public_key(), "urn:imei:1", issuer_key=ca_key,
                                      issuer_cert=ca)  # fmt: skip
        assert resolver.resolve(PeerIdentity.x509([certificate_der(dev)]), "urn:imei:1")
        assert store.get_device("plain") == DeviceCredentials.for_nosec("plain", active=False)

    assert run("device", "activate", "plain", cwd=tmp_path).returncode == 0
    assert run("device", "remove", "psk-1", cwd=tmp_path).returncode == 0
    gone = run("device", "show", "psk-1", cwd=tmp_path)
    assert gone.returncode == 1 and "no device 'psk-1'" in gone.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("device", "add", "d", "--mode", "psk", "--identity", "i", "--key", "xyz"), 2,
         "--key: not hexadecimal"),
        (("device", "add", "d", "--mode", "psk", "--key", KEY), 2,
         "--identity: required with --mode psk"),
        (("device", "add", "d", "--mode", "rpk", "--key", KEY), 2,
         "--key: not used with --mode rpk"),
        (("device", "add", "d", "--mode", "rpk", "--public-key", "abcd"), 2,
         "--public-key: not a public key"),
        (("device", "add", "d", "--mode", "tls"), 2, "--mode: unknown security mode 'tls'"),
        (("device", "add", "d", "--mode", "psk", "--identity", "x" * 129, "--key", KEY), 2,
         "--identity: 129 bytes, at most 128"),
        (("device", "add", "d", "--mode", "x509", "--cert", "missing.pem"), 1,
         "missing.pem: No such file"),
        (("device", "add", "d", "--mode", "x509", "--cert", "junk.pem"), 1,
         "--cert junk.pem: not an X.509 certificate"),
        (("ca", "add", "junk.pem"), 1, "junk.pem: not an X.509 certificate"),
        (("server", "show"), 1, "server: no identity yet"),
        (("device", "remove", "nobody"), 1, "endpoint: no device 'nobody'"),
        (("device", "frobnicate"), 2, "invalid choice"),
        ((), 2, "required"),
    ],
)  # fmt: skip
def test_errors_name_the_field_and_exit_code(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    """In-process (``main(argv)``: the same code path, without a process start per row)."""
    (tmp_path / "junk.pem").write_text("not a certificate")
    monkeypatch.chdir(tmp_path)
    assert main(list(args)) == code
    out, err = capsys.readouterr()
    assert message in err and err.startswith(("lwm2m-keystore: error:", "usage:"))
    assert out == ""


def test_usage_error_exit_code_as_a_process(tmp_path: Path) -> None:
    result = run("device", "add", "d", "--mode", "psk", "--key", "zz", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "lwm2m-keystore: error: --identity: required with --mode psk\n"


def test_conflicting_identity_and_existing_endpoint(tmp_path: Path) -> None:
    add = ("device", "add", "a", "--mode", "psk", "--identity", "shared", "--key", KEY)
    assert run(*add, cwd=tmp_path).returncode == 0
    again = run(*add, cwd=tmp_path)
    assert again.returncode == 1 and "exists already (--replace" in again.stderr
    other = run("device", "add", "b", "--mode", "psk", "--identity", "shared", "--key", KEY,
                cwd=tmp_path)  # fmt: skip
    assert other.returncode == 1
    assert "psk_identity: 'shared' already belongs to endpoint 'a'" in other.stderr
    assert KEY not in other.stderr
    replaced = run("device", "add", "a", "--mode", "nosec", "--replace", cwd=tmp_path)
    assert replaced.returncode == 0


def test_data_dir_option_before_or_after_the_command(tmp_path: Path) -> None:
    before = run("--data-dir", "elsewhere", "device", "add", "x", "--mode", "nosec", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    after = run("device", "list", "--data-dir", "elsewhere", cwd=tmp_path)
    assert "x" in after.stdout.split()
    assert (tmp_path / "elsewhere" / "lwm2m-server.sqlite").exists()
    assert not (tmp_path / "data").exists()
    env = run("device", "list", cwd=tmp_path, env={"LWM2M_SERVER_DATA_DIR": "elsewhere"})
    assert "x" in env.stdout.split()


def test_export_import_round_trip_with_0600_files(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    assert run("server", "generate-rpk", cwd=src).returncode == 0
    run("device", "add", "a", "--mode", "psk", "--identity", "ida", "--key", KEY, cwd=src)
    run("device", "add", "b", "--mode", "nosec", cwd=src)
    export = run("export", tmp_path / "keys.json", "--encoding", "base64", cwd=src, umask=0)
    assert export.returncode == 0, export.stderr
    assert mode_of(tmp_path / "keys.json") == 0o600 and "holds secrets" in export.stderr
    document = json.loads((tmp_path / "keys.json").read_text())
    assert document["encoding"] == "base64" and len(document["devices"]) == 2

    imported = run("import", tmp_path / "keys.json", cwd=dst, umask=0)
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 devices, 0 CAs and the server identity" in imported.stdout
    assert mode_of(dst / "data" / "lwm2m-server.sqlite") == 0o600
    assert json.loads(run("export", "-", cwd=dst).stdout) == json.loads(
        run("export", "-", cwd=src).stdout
    )

    document["devices"][0]["psk_key"] = "!!"
    (tmp_path / "bad.json").write_text(json.dumps(document))
    bad = run("import", tmp_path / "bad.json", cwd=dst)
    assert bad.returncode == 1 and "devices[0].psk_key: not base64" in bad.stderr
    (tmp_path / "notjson.json").write_text("{")
    assert "not JSON" in run("import", tmp_path / "notjson.json", cwd=dst).stderr


def test_existing_world_readable_store_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "lwm2m-server.sqlite").touch(mode=0o644)
    os.chmod(data / "lwm2m-server.sqlite", 0o644)
    assert run("device", "list", cwd=tmp_path).returncode == 0
    assert mode_of(data / "lwm2m-server.sqlite") == 0o600


def test_the_redis_store(
    tmp_path: Path,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--store-url``: the same commands on the Redis store the servers share, no file."""
    from keystore.store.redis_credentials import RedisCredentialStore

    monkeypatch.chdir(tmp_path)  # where the default ./data would be made
    redis = ("--store-url", redis_url, "--store-prefix", "cli")
    assert main([*redis, "device", "add", "r-1", "--mode", "psk", "--identity", "r-1",
                 "--key", KEY]) == 0  # fmt: skip
    assert main([*redis, "device", "list"]) == 0
    assert "r-1" in capsys.readouterr().out
    with RedisCredentialStore.open(redis_url, prefix="cli") as store:
        device = store.device_by_psk_identity(b"r-1")
    assert device is not None and device.psk_key == bytes.fromhex(KEY)
    assert not (tmp_path / "data").exists()
    assert main(["--store-url", "redis://:pw@127.0.0.1:1/0", "device", "list"]) == 1
    err = capsys.readouterr().err
    assert "redis://:***@127.0.0.1:1/0: cannot connect" in err and "pw@" not in err

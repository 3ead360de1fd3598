"""``http_tls``: the HTTPS listener's certificate and key are checked at start, and a problem
is refused with where the value came from (file, environment variable, flag), the key and the
reason: a missing file, a key other users can read, a half-given pair, files that are not a
matching certificate and key."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from keystore import tools
from keystore.config_error import ConfigError
from lwm2m_server.cli import main
from lwm2m_server.config import HttpTlsSettings, load_config, server_tls_context


def pair(folder: Path, name: str = "server") -> tuple[Path, Path]:
    key = tools.generate_private_key()
    cert = tools.self_signed_server_certificate(key, "127.0.0.1")
    cert_file = folder / f"{name}.crt"
    cert_file.write_bytes(tools.certificate_pem(cert))
    key_file = folder / f"{name}.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(tools.private_key_pem(key))
    os.chmod(key_file, 0o600)
    return cert_file, key_file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(text)
    return path


def test_a_good_pair_loads_from_yaml_env_and_flags(tmp_path: Path) -> None:
    cert, key = pair(tmp_path)
    from_yaml = load_config(write(tmp_path, f"http_tls:\n  cert: {cert}\n  key: {key}\n"), env={})
    assert from_yaml.http_tls == HttpTlsSettings(cert=cert, key=key)
    env = {"LWM2M_SERVER_HTTP_TLS_CERT": str(cert), "LWM2M_SERVER_HTTP_TLS_KEY": str(key)}
    assert load_config(env=env).http_tls == HttpTlsSettings(cert=cert, key=key)
    flags = {"http_tls.cert": str(cert), "http_tls.key": str(key)}
    assert load_config(env={}, overrides=flags).http_tls == HttpTlsSettings(cert=cert, key=key)
    context = server_tls_context(from_yaml.http_tls)
    assert context is not None
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_without_http_tls_there_is_no_context() -> None:
    assert server_tls_context(load_config(env={}).http_tls) is None


def test_a_missing_certificate_file_is_refused_with_the_file_and_reason(tmp_path: Path) -> None:
    _, key = pair(tmp_path)
    path = write(tmp_path, f"http_tls:\n  cert: {tmp_path}/nope.crt\n  key: {key}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.source == str(path) and caught.value.key == "http_tls.cert"
    assert "nope.crt" in caught.value.reason and "No such file" in caught.value.reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_refused(tmp_path: Path) -> None:
    cert, key = pair(tmp_path)
    os.chmod(key, 0o000)
    env = {"LWM2M_SERVER_HTTP_TLS_CERT": str(cert), "LWM2M_SERVER_HTTP_TLS_KEY": str(key)}
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert caught.value.source == "environment LWM2M_SERVER_HTTP_TLS_KEY"
    assert caught.value.key == "http_tls.key" and "Permission denied" in caught.value.reason


def test_a_key_other_users_can_read_is_refused(tmp_path: Path) -> None:
    cert, key = pair(tmp_path)
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, overrides={"http_tls.cert": str(cert), "http_tls.key": str(key)})
    assert caught.value.key == "http_tls.key"
    assert "other users" in caught.value.reason and "0644" in caught.value.reason


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert, _ = pair(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"http_tls:\n  cert: {cert}\n"), env={})
    assert caught.value.key == "http_tls.key" and "both" in caught.value.reason


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cert, _ = pair(tmp_path, "one")
    _, other_key = pair(tmp_path, "two")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"http_tls:\n  cert: {cert}\n  key: {other_key}\n"), env={})
    assert caught.value.key == "http_tls.cert"
    assert "private key" in caught.value.reason


def test_serve_refuses_a_bad_key_flag_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, _ = pair(tmp_path)
    status = main(
        ["serve", "--data-dir", str(tmp_path), "--http-cert", str(cert),
         "--http-key", str(tmp_path / "missing.key")]
    )  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert "http_tls.key" in err and "missing.key" in err and "No such file" in err

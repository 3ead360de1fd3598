"""Key/certificate generation and owner-only secret files."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from keystore import secrets_io, tools
from keystore.credentials import CredentialError, certificate_names, load_public_key

from .conftest import NOW


def test_rpk_key_pair_export_forms() -> None:
    key = tools.generate_private_key()
    public = key.public_key()
    spki_hex = tools.public_key_hex(public)
    xy_hex = tools.public_key_xy_hex(public)
    assert len(xy_hex) == 128 and spki_hex.endswith(xy_hex)
    assert spki_hex.startswith("3059301306072a8648ce3d020106082a8648ce3d03010703420004")
    assert load_public_key(xy_hex) == bytes.fromhex(spki_hex)
    again = tools.load_private_key(tools.private_key_pem(key))
    assert tools.public_key_hex(again.public_key()) == spki_hex


def test_self_signed_server_certificate_has_cn_and_sans() -> None:
    key = tools.generate_private_key()
    cert = tools.self_signed_server_certificate(key, "lwm2m.example", sans=["192.0.2.10"],
                                                days=30, now=NOW)  # fmt: skip
    assert certificate_names(cert) == ("lwm2m.example",)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(
        days=30, minutes=5
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    cert.verify_directly_issued_by(cert)
    assert len(tools.certificate_hex(cert)) % 2 == 0


def test_ca_signed_certificates() -> None:
    ca_key, ca = tools.make_ca("Root", days=100, now=NOW)
    device_key = tools.generate_private_key()
    cert = tools.issue_certificate(device_key.public_key(), "dev-1", issuer_key=ca_key,
                                   issuer_cert=ca, sans=["urn:imei:1"], now=NOW)  # fmt: skip
    cert.verify_directly_issued_by(ca)
    assert certificate_names(cert) == ("dev-1", "urn:imei:1")
    with pytest.raises(CredentialError, match=r"^ca_key: does not belong"):
        tools.issue_certificate(device_key.public_key(), "x", issuer_key=device_key,
                                issuer_cert=ca)  # fmt: skip
    with pytest.raises(CredentialError, match=r"^days: "):
        tools.make_ca("Root", days=0)


def test_load_private_key_refuses_other_curves_and_garbage() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(CredentialError, match="P-256"):
        tools.load_private_key(tools.private_key_pem(other))
    with pytest.raises(CredentialError, match=r"^private_key: unreadable"):
        tools.load_private_key(b"nope")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_secret_files_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        target = tmp_path / "key.pem"
        secrets_io.write_private(target, b"secret")
        assert mode_of(target) == 0o600 and target.read_bytes() == b"secret"
        target.chmod(0o644)
        secrets_io.write_private(target, b"new")  # replacing a readable file fixes it
        assert mode_of(target) == 0o600 and target.read_bytes() == b"new"
        assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]  # no temp files left
        db = tmp_path / "db" / "x.db"
        secrets_io.ensure_private_dir(db.parent)
        secrets_io.ensure_private_file(db)
        assert mode_of(db) == 0o600 and mode_of(db.parent) == 0o700
        assert secrets_io.is_private(db)
    finally:
        os.umask(old)


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "key.pem"
    secrets_io.write_private(target, b"old")

    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        secrets_io.write_private(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]

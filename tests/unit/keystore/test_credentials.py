"""Credential records: validation naming the field, input forms, and no secrets in repr/logs."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from keystore import tools
from keystore.credentials import (
    CredentialError,
    DeviceCredentials,
    ServerIdentity,
    TrustedCa,
    certificate_der,
    certificate_names,
    format_psk_identity,
    load_certificates,
    load_public_key,
    parse_psk_identity,
    raw_public_key,
)
from keystore.modes import SecurityMode

from .conftest import Pki

KEY = bytes.fromhex("0badc0ffee0ddf00d15ea5e0123456789abcdef0fedcba987654321001234567")


def test_security_mode_numbers_are_the_security_objects() -> None:
    assert [int(m) for m in SecurityMode] == [0, 1, 2, 3, 4]
    assert SecurityMode.parse("PSK") is SecurityMode.PSK
    assert SecurityMode.parse("x.509") is SecurityMode.X509
    assert SecurityMode.parse("2") is SecurityMode.X509
    assert SecurityMode.parse(3) is SecurityMode.NOSEC
    assert SecurityMode.parse("certificate-with-est") is SecurityMode.EST
    with pytest.raises(ValueError, match="psk, rpk, x509, nosec, est"):
        SecurityMode.parse("tls")
    with pytest.raises(ValueError, match=r"0..4"):
        SecurityMode.parse(5)


@pytest.mark.parametrize(
    ("identity", "shown"),
    [
        (b"device-1", "device-1"),
        ("gerät-ü".encode(), "gerät-ü"),
        (b"\x00\x01\xfe", "hex:0001fe"),
        (b"tab\there", "hex:" + b"tab\there".hex()),
        (b"hex:abcd", "hex:" + b"hex:abcd".hex()),  # would read back as other bytes
        (bytes(range(128)), "hex:" + bytes(range(128)).hex()),
    ],
)
def test_psk_identity_text_form_round_trips(identity: bytes, shown: str) -> None:
    assert format_psk_identity(identity) == shown
    assert parse_psk_identity(shown) == identity


@given(st.binary(min_size=1, max_size=128), st.binary(min_size=1, max_size=64))
def test_any_binary_psk_identity_survives_text_and_json(identity: bytes, key: bytes) -> None:
    assert parse_psk_identity(format_psk_identity(identity)) == identity
    device = DeviceCredentials.for_psk("ep", identity, key)
    for encoding in ("hex", "base64"):
        assert DeviceCredentials.from_json(device.to_json(encoding), encoding) == device
    other_key = bytes(b ^ 0xFF for b in key)
    assert repr(device) == repr(DeviceCredentials.for_psk("ep", identity, other_key))


def test_psk_limits_name_the_field() -> None:
    DeviceCredentials.for_psk("ep", bytes(128), KEY)
    with pytest.raises(CredentialError, match=r"^psk_identity: 129 bytes, at most 128"):
        DeviceCredentials.for_psk("ep", bytes(129), KEY)
    with pytest.raises(CredentialError, match=r"^psk_identity: required"):
        DeviceCredentials.for_psk("ep", b"", KEY)
    with pytest.raises(CredentialError, match=r"^psk_key: required"):
        DeviceCredentials.for_psk("ep", b"id", b"")
    with pytest.raises(CredentialError, match=r"^psk_key: 65 bytes"):
        DeviceCredentials.for_psk("ep", b"id", bytes(65))


@pytest.mark.parametrize("endpoint", ["", "x" * 256, "line\nbreak"])
def test_bad_endpoint(endpoint: str) -> None:
    with pytest.raises(CredentialError) as info:
        DeviceCredentials.for_nosec(endpoint)
    assert info.value.field == "endpoint"


def test_fields_of_other_modes_are_refused(pki: Pki) -> None:
    spki = tools.spki_der(pki.device_key.public_key())
    with pytest.raises(CredentialError, match=r"^psk_identity: not used in rpk mode"):
        DeviceCredentials("ep", SecurityMode.RPK, psk_identity=b"x", rpk_spki=spki)
    with pytest.raises(CredentialError, match=r"^rpk_public_key: not used in nosec mode"):
        DeviceCredentials("ep", SecurityMode.NOSEC, rpk_spki=spki)
    with pytest.raises(CredentialError, match=r"^certificate: not used in psk mode"):
        DeviceCredentials("ep", SecurityMode.PSK, psk_identity=b"i", psk_key=KEY, certificate=b"x")
    with pytest.raises(CredentialError, match=r"^rpk_public_key: required"):
        DeviceCredentials("ep", SecurityMode.RPK)


def test_public_key_input_forms_all_give_the_same_spki(pki: Pki) -> None:
    public = pki.device_key.public_key()
    spki = tools.spki_der(public)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    xy = raw_public_key(spki)
    forms: list[bytes | str] = [
        spki,
        spki.hex(),
        pem,
        pem.decode(),
        xy,
        xy.hex(),
        xy.hex().upper(),
        b"\x04" + xy,
        "04" + xy.hex(),
        ":".join(f"{b:02x}" for b in xy),
    ]
    for form in forms:
        assert load_public_key(form) == spki, form
    assert len(xy) == 64 and tools.public_key_xy_hex(public) == xy.hex()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("zz", "not a public key"),
        (bytes(64), "not a point on the P-256 curve"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "unreadable PEM"),
    ],
)
def test_bad_public_keys(data: str | bytes, reason: str) -> None:
    with pytest.raises(CredentialError, match=reason) as info:
        DeviceCredentials.for_rpk("ep", data)
    assert info.value.field == "rpk_public_key"


def test_non_p256_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(CredentialError, match="P-256"):
        load_public_key(tools.spki_der(other))


def test_certificate_names_cn_then_san(pki: Pki) -> None:
    cert = pki.device_cert("Meter 7", sans=("meter7.example", "urn:imei:1234", "192.0.2.7"))
    assert certificate_names(cert) == ("Meter 7", "meter7.example", "urn:imei:1234")
    assert certificate_names(pki.device_cert("only-cn")) == ("only-cn",)


def test_certificate_input_forms(pki: Pki) -> None:
    cert = pki.device_cert("d")
    der = certificate_der(cert)
    pem = tools.certificate_pem(cert)
    for form in (der, der.hex(), pem, pem.decode()):
        assert certificate_der(load_certificates(form)[0]) == der
    bundle = pem + tools.certificate_pem(pki.ca)
    assert len(load_certificates(bundle)) == 2
    with pytest.raises(CredentialError, match=r"^certificate: not an X.509"):
        load_certificates(b"\x30\x00")


def test_trusted_ca_must_be_a_ca(pki: Pki) -> None:
    with pytest.raises(CredentialError, match=r"^ca_certificate: not a CA certificate"):
        TrustedCa(certificate_der(pki.device_cert("leaf")))
    ca = TrustedCa(certificate_der(pki.ca), auto_registration=True)
    assert ca.subject == "CN=Test Devices CA" and len(ca.fingerprint) == 64


def test_server_identity_checks_the_certificate_matches_the_key(pki: Pki) -> None:
    key = tools.generate_private_key()
    pem = tools.private_key_pem(key)
    cert = tools.self_signed_server_certificate(key, "lwm2m.example")
    ident = ServerIdentity(pem, (certificate_der(cert),))
    assert ident.public_key_spki == tools.spki_der(key.public_key())
    with pytest.raises(CredentialError, match=r"^certificate_chain\[0\]: .*not for the server"):
        ServerIdentity(pem, (certificate_der(pki.ca),))
    with pytest.raises(CredentialError, match=r"^private_key: unreadable"):
        ServerIdentity(b"not a key")


def test_json_round_trip_in_both_encodings(pki: Pki) -> None:
    devices = [
        DeviceCredentials.for_psk("a", b"\x00bin", KEY, active=False),
        DeviceCredentials.for_rpk("b", tools.spki_der(pki.device_key.public_key())),
        DeviceCredentials.for_x509("c", pki.device_cert("c")),
        DeviceCredentials.for_x509("d", est=True),
        DeviceCredentials.for_nosec("e"),
    ]
    for encoding in ("hex", "base64"):
        for device in devices:
            assert DeviceCredentials.from_json(device.to_json(encoding), encoding) == device


def test_json_names_the_bad_field() -> None:
    with pytest.raises(CredentialError, match=r"^psk_key: not hexadecimal"):
        DeviceCredentials.from_json(
            {"endpoint": "a", "mode": "psk", "psk_identity": "00", "psk_key": "xyz"}
        )
    with pytest.raises(CredentialError, match=r"^colour: unknown field"):
        DeviceCredentials.from_json({"endpoint": "a", "mode": "nosec", "colour": 1})
    with pytest.raises(CredentialError, match=r"^mode: unknown security mode"):
        DeviceCredentials.from_json({"endpoint": "a", "mode": "tls"})
    text = DeviceCredentials.from_json(
        {"endpoint": "a", "mode": "psk", "psk_identity_text": "plain", "psk_key": KEY.hex()}
    )
    assert text.psk_identity == b"plain"


def secret_forms(secret: bytes) -> list[str]:
    import base64

    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), repr(secret)]


def test_repr_and_str_never_show_secrets(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    device = DeviceCredentials.for_psk("dev", b"id", KEY)
    key = tools.generate_private_key()
    pem = tools.private_key_pem(key)
    server = ServerIdentity(pem)
    der_key = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("test.secrets")
    log.info("device %r %s", device, device)
    log.info("server %r %s", server, server)
    log.info("both %r", [device, server])
    texts = [repr(device), str(device), repr(server), str(server), caplog.text]
    assert "psk_key=<secret>" in repr(device) and "private_key=<secret>" in repr(server)
    for text in texts:
        for form in secret_forms(KEY) + secret_forms(der_key) + secret_forms(scalar):
            assert form not in text
        assert "PRIVATE KEY" not in text and pem.decode().splitlines()[1] not in text

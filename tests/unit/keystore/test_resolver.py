"""The resolver's decision table (docs/security.md), one test per row, and the DTLS callbacks."""

from __future__ import annotations

import logging

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from keystore import tools
from keystore.credentials import DeviceCredentials, TrustedCa, certificate_der
from keystore.dtls.certificates import verify_certificate_chain
from keystore.dtls.identity import PskIdentity, RawPublicKeyIdentity, X509Identity
from keystore.modes import SecurityMode
from keystore.resolver import (
    ChainError,
    IdentityBinding,
    IdentityRefused,
    PeerIdentity,
    Resolution,
    Resolver,
    verify_chain,
)
from keystore.store.credentials import SqliteCredentialStore
from object_models.errors import ResponseCode

from .conftest import DAY, NOW, Pki

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
# SubjectPublicKeyInfo header of a P-256 key with a 33-byte compressed point
COMPRESSED_SPKI_PREFIX = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
E400, E401, E403 = ResponseCode.BAD_REQUEST, ResponseCode.UNAUTHORIZED, ResponseCode.FORBIDDEN


def resolver(store: SqliteCredentialStore, *, open_registration: bool = False) -> Resolver:
    return Resolver(store, open_registration=open_registration, clock=lambda: NOW)


def refused(r: Resolver, peer: PeerIdentity, ep: str | None) -> ResponseCode:
    with pytest.raises(IdentityRefused) as info:
        r.resolve(peer, ep)
    return info.value.code


def der(cert: x509.Certificate) -> bytes:
    return certificate_der(cert)


def trust(store: SqliteCredentialStore, pki: Pki, *, auto: bool = False) -> None:
    store.put_trusted_ca(TrustedCa(der(pki.ca), auto_registration=auto))


# -- NoSec ------------------------------------------------------------------------------------


@pytest.mark.parametrize("open_registration", [True, False])
def test_nosec_unknown_endpoint_depends_on_open_registration(
    store: SqliteCredentialStore, open_registration: bool
) -> None:
    r = resolver(store, open_registration=open_registration)
    if open_registration:
        res = r.resolve(PeerIdentity.nosec(("10.0.0.1", 5683)), "new-device")
        assert res == Resolution("new-device", SecurityMode.NOSEC, None, auto_registered=True)
    else:
        assert refused(r, PeerIdentity.nosec(), "new-device") == E401


def test_nosec_record_is_accepted_with_open_registration_off(store: SqliteCredentialStore) -> None:
    store.put_device(DeviceCredentials.for_nosec("plain"))
    res = resolver(store).resolve(PeerIdentity.nosec(), "plain")
    assert res == Resolution("plain", SecurityMode.NOSEC, None, auto_registered=False)


@pytest.mark.parametrize("mode", ["psk", "rpk", "x509", "est"])
@pytest.mark.parametrize("open_registration", [True, False])
def test_nosec_never_reaches_an_endpoint_that_requires_security(
    store: SqliteCredentialStore, pki: Pki, mode: str, open_registration: bool
) -> None:
    device = {
        "psk": DeviceCredentials.for_psk("secure", b"id", KEY),
        "rpk": DeviceCredentials.for_rpk("secure", tools.spki_der(pki.device_key.public_key())),
        "x509": DeviceCredentials.for_x509("secure"),
        "est": DeviceCredentials.for_x509("secure", est=True),
    }[mode]
    store.put_device(device)
    r = resolver(store, open_registration=open_registration)
    assert refused(r, PeerIdentity.nosec(), "secure") == E403


def test_nosec_inactive_record_is_unauthorized(store: SqliteCredentialStore) -> None:
    store.put_device(DeviceCredentials.for_nosec("plain", active=False))
    assert refused(resolver(store, open_registration=True), PeerIdentity.nosec(), "plain") == E401


def test_nosec_without_ep_is_a_bad_request(store: SqliteCredentialStore) -> None:
    assert refused(resolver(store, open_registration=True), PeerIdentity.nosec(), None) == E400


def test_invalid_ep_is_a_bad_request(store: SqliteCredentialStore) -> None:
    assert refused(resolver(store, open_registration=True), PeerIdentity.nosec(), "a\nb") == E400


# -- PSK --------------------------------------------------------------------------------------


def test_psk_identity_binds_its_endpoint(store: SqliteCredentialStore) -> None:
    store.put_device(DeviceCredentials.for_psk("dev-1", b"\x00\xffbin", KEY))
    r = resolver(store)
    peer = PeerIdentity.psk(b"\x00\xffbin", ("10.0.0.1", 40000))
    expected = Resolution("dev-1", SecurityMode.PSK, IdentityBinding("psk", "hex:00ff62696e"))
    assert r.resolve(peer, "dev-1") == expected
    assert r.resolve(peer, None) == expected
    assert refused(r, peer, "dev-2") == E403


@pytest.mark.parametrize("open_registration", [True, False])
def test_psk_unknown_identity_is_unauthorized_even_with_open_registration(
    store: SqliteCredentialStore, open_registration: bool
) -> None:
    r = resolver(store, open_registration=open_registration)
    assert refused(r, PeerIdentity.psk(b"nobody"), "nobody") == E401


def test_psk_inactive_device_is_unauthorized(store: SqliteCredentialStore) -> None:
    store.put_device(DeviceCredentials.for_psk("dev-1", b"id", KEY, active=False))
    assert refused(resolver(store), PeerIdentity.psk(b"id"), "dev-1") == E401


# -- RPK --------------------------------------------------------------------------------------


def test_rpk_key_binds_its_endpoint_in_any_encoding(store: SqliteCredentialStore, pki: Pki) -> None:
    public = pki.device_key.public_key()
    store.put_device(DeviceCredentials.for_rpk("rpk-1", tools.public_key_xy_hex(public)))
    r = resolver(store)
    spki = tools.spki_der(public)
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    compressed_spki = COMPRESSED_SPKI_PREFIX + point
    for sent in (spki, compressed_spki):
        res = r.resolve(PeerIdentity.rpk(sent), "rpk-1")
        assert res == Resolution("rpk-1", SecurityMode.RPK, IdentityBinding("rpk", spki.hex()))
    assert refused(r, PeerIdentity.rpk(spki), "someone-else") == E403


def test_rpk_unknown_or_inactive_key_is_unauthorized(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    spki = tools.spki_der(pki.device_key.public_key())
    r = resolver(store, open_registration=True)
    assert refused(r, PeerIdentity.rpk(spki), "rpk-1") == E401
    store.put_device(DeviceCredentials.for_rpk("rpk-1", spki, active=False))
    assert refused(r, PeerIdentity.rpk(spki), "rpk-1") == E401


def test_rpk_malformed_key_is_a_bad_request(store: SqliteCredentialStore) -> None:
    assert refused(resolver(store), PeerIdentity.rpk(b"\x30\x03junk"), "x") == E400


# -- X.509: pinned certificate ------------------------------------------------------------------


def test_pinned_certificate_binds_its_endpoint_whatever_its_cn(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    cert = pki.self_signed("factory-name-123")
    store.put_device(DeviceCredentials.for_x509("pinned-1", cert))
    r = resolver(store)
    peer = PeerIdentity.x509([der(cert)])
    res = r.resolve(peer, "pinned-1")
    assert res == Resolution(
        "pinned-1", SecurityMode.X509, IdentityBinding("x509", "CN=factory-name-123")
    )
    assert refused(r, peer, "factory-name-123") == E403


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_pinned_certificate_outside_its_validity_is_unauthorized(
    store: SqliteCredentialStore, pki: Pki, when: str
) -> None:
    issued = NOW - 30 * DAY if when == "expired" else NOW + DAY
    cert = pki.self_signed("dev", issued=issued, days=10)
    store.put_device(DeviceCredentials.for_x509("dev", cert))
    assert refused(resolver(store), PeerIdentity.x509([der(cert)]), "dev") == E401


def test_pinned_certificate_of_inactive_device_is_unauthorized(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    cert = pki.self_signed("dev")
    store.put_device(DeviceCredentials.for_x509("dev", cert, active=False))
    assert refused(resolver(store), PeerIdentity.x509([der(cert)]), "dev") == E401


# -- X.509: trusted CA ----------------------------------------------------------------------------


@pytest.mark.parametrize("est", [False, True])
def test_trust_ca_record_accepts_a_ca_issued_certificate_naming_it(
    store: SqliteCredentialStore, pki: Pki, est: bool
) -> None:
    trust(store, pki)
    store.put_device(DeviceCredentials.for_x509("urn:imei:490154203237518", est=est))
    cert = pki.device_cert("Meter 7", sans=("urn:imei:490154203237518",))
    r = resolver(store)
    res = r.resolve(PeerIdentity.x509([der(cert)]), "urn:imei:490154203237518")
    mode = SecurityMode.EST if est else SecurityMode.X509
    assert res == Resolution(
        "urn:imei:490154203237518", mode, IdentityBinding("x509", "CN=Meter 7")
    )
    assert r.resolve(PeerIdentity.x509([der(cert)])).endpoint == "urn:imei:490154203237518"


def test_certificate_not_naming_the_ep_is_forbidden(store: SqliteCredentialStore, pki: Pki) -> None:
    trust(store, pki, auto=True)
    cert = pki.device_cert("dev-a")
    assert refused(resolver(store), PeerIdentity.x509([der(cert)]), "dev-b") == E403


def test_certificate_for_an_endpoint_with_other_credentials_is_forbidden(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    trust(store, pki, auto=True)
    store.put_device(DeviceCredentials.for_psk("dev-a", b"id", KEY))
    cert = pki.device_cert("dev-a")
    assert refused(resolver(store), PeerIdentity.x509([der(cert)]), "dev-a") == E403
    pinned = pki.self_signed("other")
    store.put_device(DeviceCredentials.for_x509("dev-b", pinned))
    assert (
        refused(resolver(store), PeerIdentity.x509([der(pki.device_cert("dev-b"))]), "dev-b")
        == E403
    )


def test_auto_registration_ca_admits_unknown_endpoint_from_cn(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    trust(store, pki, auto=True)
    cert = pki.device_cert("fresh-device", sans=("fresh.example.net",))
    r = resolver(store)
    res = r.resolve(PeerIdentity.x509([der(cert)]), "fresh-device")
    assert res.endpoint == "fresh-device" and res.auto_registered
    assert r.resolve(PeerIdentity.x509([der(cert)]), "fresh.example.net").endpoint == (
        "fresh.example.net"
    )
    assert r.resolve(PeerIdentity.x509([der(cert)])).endpoint == "fresh-device"


def test_ca_without_auto_registration_needs_a_record(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    trust(store, pki, auto=False)
    cert = pki.device_cert("fresh-device")
    r = resolver(store, open_registration=True)
    assert refused(r, PeerIdentity.x509([der(cert)]), "fresh-device") == E401


def test_untrusted_ca_is_unauthorized(store: SqliteCredentialStore, pki: Pki) -> None:
    trust(store, pki, auto=True)
    store.put_device(DeviceCredentials.for_x509("dev-a"))
    cert = pki.device_cert("dev-a", ca="other")
    assert refused(resolver(store), PeerIdentity.x509([der(cert)]), "dev-a") == E401


def test_no_trusted_cas_is_unauthorized(store: SqliteCredentialStore, pki: Pki) -> None:
    store.put_device(DeviceCredentials.for_x509("dev-a"))
    assert (
        refused(resolver(store), PeerIdentity.x509([der(pki.device_cert("dev-a"))]), "dev-a")
        == E401
    )


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_ca_issued_certificate_outside_validity_is_unauthorized(
    store: SqliteCredentialStore, pki: Pki, when: str
) -> None:
    trust(store, pki, auto=True)
    issued = NOW - 30 * DAY if when == "expired" else NOW + DAY
    cert = pki.device_cert("dev-a", issued=issued, days=10)
    assert refused(resolver(store), PeerIdentity.x509([der(cert)]), "dev-a") == E401


def test_inactive_trust_ca_record_is_unauthorized(store: SqliteCredentialStore, pki: Pki) -> None:
    trust(store, pki, auto=True)
    store.put_device(DeviceCredentials.for_x509("dev-a", active=False))
    assert (
        refused(resolver(store), PeerIdentity.x509([der(pki.device_cert("dev-a"))]), "dev-a")
        == E401
    )


def test_chain_through_an_intermediate(store: SqliteCredentialStore, pki: Pki) -> None:
    trust(store, pki, auto=True)
    mid_key, mid = tools.make_ca(
        "Intermediate", issuer_key=pki.ca_key, issuer_cert=pki.ca, path_length=0,
        now=NOW - 10 * DAY,
    )  # fmt: skip
    leaf = tools.issue_certificate(
        pki.device_key.public_key(), "deep-device", issuer_key=mid_key, issuer_cert=mid,
        now=NOW - DAY,
    )  # fmt: skip
    r = resolver(store)
    res = r.resolve(PeerIdentity.x509([der(leaf), der(mid)]), "deep-device")
    assert res.endpoint == "deep-device" and res.auto_registered
    assert refused(r, PeerIdentity.x509([der(leaf)]), "deep-device") == E401


# -- DTLS peers, callbacks and helpers ----------------------------------------------------------


def test_peer_identity_from_dtls_engine_types(pki: Pki) -> None:
    src = ("192.0.2.1", 5684)
    assert PeerIdentity.from_dtls(None, src) == PeerIdentity.nosec(src)
    assert PeerIdentity.from_dtls(PskIdentity(b"id"), src) == PeerIdentity.psk(b"id", src)
    assert PeerIdentity.from_dtls(RawPublicKeyIdentity(b"k"), src) == PeerIdentity.rpk(b"k", src)
    assert PeerIdentity.from_dtls(X509Identity((b"c",)), src) == PeerIdentity.x509([b"c"], src)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transport": "coaps", "mode": SecurityMode.NOSEC},
        {"transport": "coap", "mode": SecurityMode.PSK, "psk_identity": b"x"},
        {"transport": "coaps", "mode": SecurityMode.PSK},
        {"transport": "coaps", "mode": SecurityMode.RPK, "spki": b"k", "psk_identity": b"x"},
        {"transport": "coaps", "mode": SecurityMode.X509},
    ],
)
def test_inconsistent_peer_identity_is_a_programming_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PeerIdentity(**kwargs)  # type: ignore[arg-type]


def test_psk_lookup(store: SqliteCredentialStore) -> None:
    store.put_device(DeviceCredentials.for_psk("a", b"id-a", KEY))
    store.put_device(DeviceCredentials.for_psk("b", b"id-b", KEY[::-1], active=False))
    r = resolver(store)
    assert r.psk_lookup(b"id-a") == KEY
    assert r.psk_lookup(b"id-b") is None
    assert r.psk_lookup(b"nobody") is None


def test_rpk_verifier(store: SqliteCredentialStore, pki: Pki) -> None:
    spki = tools.spki_der(pki.device_key.public_key())
    r = resolver(store)
    assert not r.rpk_verifier(spki)
    store.put_device(DeviceCredentials.for_rpk("k", spki))
    assert r.rpk_verifier(spki)
    assert not r.rpk_verifier(b"garbage")
    store.put_device(DeviceCredentials.for_rpk("k", spki, active=False))
    assert not r.rpk_verifier(spki)


def test_trust_store_lets_the_dtls_engine_accept_cas_and_pinned_certificates(
    store: SqliteCredentialStore, pki: Pki
) -> None:
    trust(store, pki)
    pinned = pki.self_signed("pinned")
    store.put_device(DeviceCredentials.for_x509("p", pinned))
    anchors = resolver(store).trust_store()
    assert {a.subject.rfc4514_string() for a in anchors} == {"CN=Test Devices CA", "CN=pinned"}
    verify_certificate_chain([der(pki.device_cert("d"))], anchors, NOW)
    verify_certificate_chain([der(pinned)], anchors, NOW)
    ca_signed = pki.device_cert("pinned-too", ca="other")  # from a CA that is not trusted
    store.put_device(DeviceCredentials.for_x509("p2", ca_signed))
    anchors = resolver(store).trust_store()
    verify_certificate_chain([der(ca_signed), der(pki.other_ca)], anchors, NOW)
    assert resolver(store).resolve(PeerIdentity.x509([der(ca_signed)]), "p2").endpoint == "p2"


def test_certificate_verifier(store: SqliteCredentialStore, pki: Pki) -> None:
    trust(store, pki, auto=False)
    r = resolver(store)
    cert = der(pki.device_cert("d"))
    assert not r.certificate_verifier([cert])
    store.put_device(DeviceCredentials.for_x509("d"))
    assert r.certificate_verifier([cert])


def test_endpoint_for_certificate(store: SqliteCredentialStore, pki: Pki) -> None:
    r = resolver(store)
    cert = pki.device_cert("cn-name", sans=("san.example", "urn:dev:42"))
    assert r.endpoint_for_certificate(cert) is None  # no CA trusted yet
    trust(store, pki, auto=True)
    assert r.endpoint_for_certificate(cert) == "cn-name"
    store.put_device(DeviceCredentials.for_x509("urn:dev:42"))
    assert r.endpoint_for_certificate(cert) == "urn:dev:42"  # a name with a record comes first
    trust(store, pki, auto=False)
    assert r.endpoint_for_certificate(cert) == "urn:dev:42"
    assert r.resolve(PeerIdentity.x509([der(cert)])).endpoint == "urn:dev:42"
    store.put_device(DeviceCredentials.for_x509("urn:dev:42", active=False))
    assert r.endpoint_for_certificate(cert) is None
    assert r.endpoint_for_certificate(pki.device_cert("cn-name", ca="other")) is None
    pinned = pki.self_signed("whatever")
    store.put_device(DeviceCredentials.for_x509("pinned-ep", pinned))
    assert r.endpoint_for_certificate(pinned) == "pinned-ep"


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_endpoint_for_certificate_refuses_outside_validity(
    store: SqliteCredentialStore, pki: Pki, when: str
) -> None:
    trust(store, pki, auto=True)
    issued = NOW - 30 * DAY if when == "expired" else NOW + DAY
    cert = pki.device_cert("dev", issued=issued, days=10)
    assert resolver(store).endpoint_for_certificate(cert) is None
    pinned = pki.self_signed("pinned", issued=issued, days=10)
    store.put_device(DeviceCredentials.for_x509("pinned", pinned))
    assert resolver(store).endpoint_for_certificate(pinned) is None


def test_verify_chain_reasons(pki: Pki) -> None:
    ca = TrustedCa(der(pki.ca))
    assert verify_chain([der(pki.device_cert("d"))], [ca], NOW) == ca
    with pytest.raises(ChainError, match="expired"):
        verify_chain([der(pki.device_cert("d", issued=NOW - 30 * DAY, days=1))], [ca], NOW)
    with pytest.raises(ChainError, match="not valid before"):
        verify_chain([der(pki.device_cert("d", issued=NOW + DAY))], [ca], NOW)
    with pytest.raises(ChainError, match="does not verify"):
        verify_chain([der(pki.device_cert("d", ca="other"))], [ca], NOW)
    with pytest.raises(ChainError, match="no trusted CAs"):
        verify_chain([der(pki.device_cert("d"))], [], NOW)
    with pytest.raises(ChainError, match="malformed"):
        verify_chain([b"junk"], [ca], NOW)
    with pytest.raises(ChainError, match="empty"):
        verify_chain([], [ca], NOW)


def test_logs_never_contain_keys(
    store: SqliteCredentialStore, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    device = DeviceCredentials.for_psk("dev", b"id", KEY)
    store.put_device(device)
    r = resolver(store)
    logging.getLogger("test").info("stored %r / %s", device, device)
    r.psk_lookup(b"id")
    r.psk_lookup(b"unknown")
    with pytest.raises(IdentityRefused):
        r.resolve(PeerIdentity.psk(b"id"), "other")
    assert "refused psk identity 'id'" in caplog.text
    for form in (KEY.hex(), KEY.hex().upper(), repr(KEY), str(list(KEY))):
        assert form not in caplog.text


def test_a_repeated_refusal_is_logged_at_info_once_a_minute(
    store: SqliteCredentialStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A device retrying with a revoked key (or a flood of spoofed handshakes) must not flood
    the log: the first refusal of an identity is at INFO, repeats within a minute at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="keystore.resolver")
    now = [NOW]
    r = Resolver(store, open_registration=False, clock=lambda: now[0])

    def levels(text: str) -> list[int]:
        return [rec.levelno for rec in caplog.records if text in rec.getMessage()]

    for _ in range(5):
        assert r.psk_lookup(b"revoked") is None
        with pytest.raises(IdentityRefused):
            r.resolve(PeerIdentity.psk(b"stranger"), "dev")
    assert levels("identity 'revoked'") == [logging.INFO] + [logging.DEBUG] * 4
    assert levels("refused psk identity 'stranger'") == [logging.INFO] + [logging.DEBUG] * 4
    now[0] = NOW + DAY / 1440 + DAY / 86400  # 61 s later
    r.psk_lookup(b"revoked")
    assert levels("identity 'revoked'")[-1] == logging.INFO


@given(
    source=st.none()
    | st.tuples(
        st.sampled_from(["127.0.0.1", "::1", "2001:db8::7", "10.0.0.1"]), st.integers(0, 65535)
    )
)
def test_the_fast_nosec_identity_equals_the_checked_constructor(
    source: tuple[str, int] | None,
) -> None:
    fast = PeerIdentity.nosec(source)
    checked = PeerIdentity("coap", SecurityMode.NOSEC, source=source)
    assert fast == checked and hash(fast) == hash(checked) and repr(fast) == repr(checked)
    assert attrs.asdict(fast) == attrs.asdict(checked)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.source = None  # type: ignore[misc]

"""Shared fixtures: a credential store in a temporary data folder and a small PKI."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from keystore import tools
from keystore.store.credentials import SqliteCredentialStore

NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


@attrs.frozen
class Pki:
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    other_ca_key: ec.EllipticCurvePrivateKey
    other_ca: x509.Certificate
    device_key: ec.EllipticCurvePrivateKey

    def device_cert(
        self,
        cn: str,
        *,
        sans: tuple[str, ...] = (),
        issued: datetime.datetime = NOW - 10 * DAY,
        days: int = 365,
        ca: str = "ca",
    ) -> x509.Certificate:
        key, cert = (self.ca_key, self.ca) if ca == "ca" else (self.other_ca_key, self.other_ca)
        return tools.issue_certificate(
            self.device_key.public_key(), cn, issuer_key=key, issuer_cert=cert,
            sans=sans, days=days, now=issued,
        )  # fmt: skip

    def self_signed(
        self, cn: str, *, issued: datetime.datetime = NOW - 10 * DAY, days: int = 365
    ) -> x509.Certificate:
        return tools.issue_certificate(
            self.device_key.public_key(), cn, issuer_key=self.device_key, now=issued, days=days
        )


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca_key, ca = tools.make_ca("Test Devices CA", now=NOW - 100 * DAY)
    other_key, other = tools.make_ca("Untrusted CA", now=NOW - 100 * DAY)
    return Pki(ca_key, ca, other_key, other, tools.generate_private_key())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteCredentialStore]:
    with SqliteCredentialStore.open(tmp_path / "data" / "server.db") as s:
        yield s

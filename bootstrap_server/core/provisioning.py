"""Auto-provisioning: who may bootstrap under a profile, per-device credentials, and the record
of where each device stands (``ProvisionState``).

Credentials are issued when a session starts (in memory: they go into the Bootstrap-Writes) and
reach the shared keystore only through ``commit``, called after Bootstrap-Finish succeeded, in
one transaction. A session that fails anywhere leaves the keystore as it was, and the next
attempt issues fresh credentials. The LwM2M server reads the same keystore, so a device that
finished bootstrap is accepted at its first DTLS handshake.

Issued per device (the server account whose ``security`` has ``generate``):

* PSK: identity from the profile's ``psk_identity_template`` (``{endpoint}`` by default), key
  16 random bytes from ``secrets`` (128 bits, the AES-128-CCM-8 key size).
* RPK: a fresh P-256 key pair; the client gets its private key (PKCS#8 DER) and public key (SPKI
  DER), the keystore the public key. /0/x/4 is the LwM2M server's public key from the keystore.
* X.509: a fresh key and a certificate (CN = endpoint) issued by the provisioning CA the
  bootstrap server is configured with; the keystore pins that certificate. /0/x/4 is the LwM2M
  server's certificate from the keystore.
"""

from __future__ import annotations

import csv
import enum
import io
import secrets
from collections.abc import Sequence
from typing import Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keystore import tools
from keystore.bootstrap_config.model import BootstrapConfig, ConfigKind, ServerAccount, Strategy
from keystore.credentials import (
    CredentialError,
    DeviceCredentials,
    ServerIdentity,
    certificate_der,
    check_endpoint,
    format_psk_identity,
)
from keystore.modes import SecurityMode
from object_models.errors import Lwm2mError, ResponseCode

from .plan import IssuedSecurity, PlanError, ServerKeys

PSK_KEY_BYTES = 16


class ProvisionState(enum.Enum):
    NEW = "NEW"
    BOOTSTRAPPING = "BOOTSTRAPPING"
    PROVISIONED = "PROVISIONED"
    FAILED = "FAILED"


class Refused(Lwm2mError):
    """The device may not bootstrap (not pre-provisioned, wrong identity …): 4.03."""

    code = ResponseCode.FORBIDDEN


@attrs.frozen
class DeviceRecord:
    endpoint: str
    profile: str | None = None
    state: ProvisionState = ProvisionState.NEW
    reason: str = ""
    updated: float = 0.0
    origin: str = "import"
    """``import`` (CSV/API, pre-provisioned) or ``auto`` (created by an allow-new profile)."""


class DeviceRegistry(Protocol):
    """Where provisioning records live (the bootstrap server's own sqlite file)."""

    def get_device(self, endpoint: str) -> DeviceRecord | None: ...

    def put_device(self, record: DeviceRecord) -> None: ...

    def put_devices(self, records: Sequence[DeviceRecord]) -> None:
        """All or nothing (a CSV import)."""
        ...

    def devices(self) -> list[DeviceRecord]: ...

    def remove_device(self, endpoint: str) -> DeviceRecord | None: ...


class MemoryDevices:
    """A ``DeviceRegistry`` in a dict (tests, and a server without a data folder)."""

    def __init__(self) -> None:
        self._records: dict[str, DeviceRecord] = {}

    def get_device(self, endpoint: str) -> DeviceRecord | None:
        return self._records.get(endpoint)

    def put_device(self, record: DeviceRecord) -> None:
        self._records[record.endpoint] = record

    def put_devices(self, records: Sequence[DeviceRecord]) -> None:
        self._records.update({r.endpoint: r for r in records})

    def devices(self) -> list[DeviceRecord]:
        return [self._records[k] for k in sorted(self._records)]

    def remove_device(self, endpoint: str) -> DeviceRecord | None:
        return self._records.pop(endpoint, None)


# -- admission ----------------------------------------------------------------------------------


def admit(
    endpoint: str, config: BootstrapConfig, devices: DeviceRegistry, now: float
) -> DeviceRecord:
    """The device's record if it may bootstrap under ``config`` (created for an allow-new
    profile, not stored yet); ``Refused`` otherwise."""
    record = devices.get_device(endpoint)
    if config.kind is ConfigKind.ENDPOINT:
        return record or DeviceRecord(endpoint, None, ProvisionState.NEW, "", now, "config")
    assert config.provisioning is not None
    if record is not None and record.profile not in (None, config.name):
        raise Refused(f"{endpoint!r} is provisioned under profile {record.profile!r}, not "
                      f"{config.name!r}")  # fmt: skip
    if record is None:
        if config.provisioning.strategy is Strategy.PRE_PROVISIONED:
            raise Refused(f"{endpoint!r} is not pre-provisioned for profile {config.name!r}")
        record = DeviceRecord(endpoint, config.name, ProvisionState.NEW, "", now, "auto")
    return record


# -- CSV import ---------------------------------------------------------------------------------


class CsvImportError(Lwm2mError):
    """A CSV file that cannot be imported; names the line and the reason."""


def parse_csv(text: str, *, default_profile: str | None = None, now: float = 0.0,
              source: str = "CSV") -> list[DeviceRecord]:  # fmt: skip
    """``endpoint[,profile]`` per line; an optional header line ``endpoint,profile``; blank
    lines and lines starting with ``#`` are skipped; further columns are ignored (room for
    notes). Duplicate endpoints are an error: an import is all or nothing."""
    records: dict[str, DeviceRecord] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "endpoint":
            continue
        try:
            endpoint = check_endpoint(cells[0])
        except CredentialError as exc:
            raise CsvImportError(f"{source}:{number}: {exc.reason}") from None
        profile = (cells[1] if len(cells) > 1 and cells[1] else None) or default_profile
        if endpoint in records:
            raise CsvImportError(f"{source}:{number}: endpoint {endpoint!r} is listed twice")
        records[endpoint] = DeviceRecord(endpoint, profile, ProvisionState.NEW, "", now, "import")
    return list(records.values())


# -- credentials --------------------------------------------------------------------------------


class CredentialReader(Protocol):
    """The part of the shared keystore issuing reads."""

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None: ...

    def server_identity(self) -> ServerIdentity | None: ...


@attrs.frozen(repr=False)
class Issued:
    """Credentials issued for one session: what the client gets, and what the keystore will
    hold once the session succeeds."""

    security: IssuedSecurity
    record: DeviceCredentials

    def __repr__(self) -> str:
        return f"Issued({self.record!r})"


@attrs.frozen(repr=False)
class ProvisioningCa:
    """The CA that signs device certificates for ``generate: x509``."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    days: int = tools.DEFAULT_DAYS


def server_keys(store: CredentialReader) -> ServerKeys:
    identity = store.server_identity()
    if identity is None:
        return ServerKeys()
    chain = identity.certificate_chain
    return ServerKeys(identity.public_key_spki, chain[0] if chain else b"")


def psk_identity_for(endpoint: str, config: BootstrapConfig) -> bytes:
    template = "{endpoint}" if config.provisioning is None else (
        config.provisioning.psk_identity_template)  # fmt: skip
    profile = config.name if config.kind is ConfigKind.PROFILE else ""
    identity = template.format(endpoint=endpoint, profile=profile).encode("utf-8")
    if not 1 <= len(identity) <= 128:
        raise PlanError(f"PSK identity for {endpoint!r} is {len(identity)} bytes (1..128)")
    return identity


def issue(
    endpoint: str,
    config: BootstrapConfig,
    store: CredentialReader,
    *,
    ca: ProvisioningCa | None = None,
) -> Issued | None:
    """Fresh credentials for the config's generated server account (``None`` if it has none).
    Raises ``PlanError`` when they cannot be issued (identity taken, no CA, no server key)."""
    account: ServerAccount | None = config.generated
    if account is None:
        return None
    mode = account.security.mode
    keys = server_keys(store)
    if mode is SecurityMode.PSK:
        identity = psk_identity_for(endpoint, config)
        owner = store.device_by_psk_identity(identity)
        if owner is not None and owner.endpoint != endpoint:
            raise PlanError(f"PSK identity {format_psk_identity(identity)!r} already belongs to "
                            f"endpoint {owner.endpoint!r} in the keystore")  # fmt: skip
        key = secrets.token_bytes(PSK_KEY_BYTES)
        return Issued(IssuedSecurity(mode, identity, key),
                      DeviceCredentials.for_psk(endpoint, identity, key))  # fmt: skip
    private = tools.generate_private_key()
    secret = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    spki = tools.spki_der(private.public_key())
    if mode is SecurityMode.RPK:
        return Issued(IssuedSecurity(mode, spki, secret, keys.rpk_spki),
                      DeviceCredentials.for_rpk(endpoint, spki))  # fmt: skip
    if mode is SecurityMode.X509:
        if ca is None:
            raise PlanError("generate: x509 needs a provisioning CA (provisioning_ca in the "
                            "bootstrap server configuration)")  # fmt: skip
        cert = tools.issue_certificate(
            private.public_key(), endpoint, issuer_key=ca.key, issuer_cert=ca.certificate,
            days=ca.days,
        )  # fmt: skip
        der = certificate_der(cert)
        return Issued(IssuedSecurity(mode, der, secret, keys.certificate),
                      DeviceCredentials.for_x509(endpoint, cert))  # fmt: skip
    raise PlanError(f"cannot generate credentials for mode {mode.label}")


class CredentialWriter(Protocol):
    def put_device(self, device: DeviceCredentials) -> DeviceCredentials | None: ...


def commit(issued: Issued, store: CredentialWriter) -> None:
    """Store the issued credentials (after Bootstrap-Finish). One ``put_device`` is one
    transaction: a ``CredentialError``/``StoreError`` leaves the store unchanged."""
    store.put_device(issued.record)

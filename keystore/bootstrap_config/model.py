"""What a bootstrap configuration says, as validated values.

A configuration belongs to one endpoint (``endpoint: dev-1``) or to a device profile
(``profile: fleet-a``) and says what the bootstrap server writes into a client: the LwM2M server
accounts (each a Security (0) and a Server (1) instance, built together so that a Server can
never lack its Security instance), Access Control (2) instances, and any other object instances
(``objects``), after deleting ``to_delete``.

The shape follows Leshan's ``BootstrapConfig`` (``servers``/``security``/``acls``/``oscore``/
``toDelete``/``contentFormat``) with one change: a server account is one entry holding its
security, instead of two maps joined by the short server id. Instance ids are picked at session
time (Leshan's ``autoIdForSecurityObject``) unless a config fixes them, because the client's
Bootstrap-Server account can live at any Security instance id and must never be overwritten.

The loader is ``loader``; values here are already checked, so the session code never
validates again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from object_models.node import LwM2mObjectInstance
from object_models.path import LwM2mPath

from ..modes import SecurityMode

DEFAULT_TO_DELETE = (LwM2mPath(0), LwM2mPath(1))
"""Leshan's and Anjay's habit: clear the server accounts, keep everything else. The client keeps
its Bootstrap-Server account whatever we delete (Core 1.1 §6.1.7.5); we also never send a Delete
that names it (see ``plan``)."""


class ConfigKind(enum.Enum):
    ENDPOINT = "endpoint"
    PROFILE = "profile"


class Strategy(enum.Enum):
    """Who may bootstrap under a profile: anyone holding the fleet credentials (a new device
    record is created), or only the endpoints imported beforehand (CSV)."""

    ALLOW_NEW = "allow_new"
    PRE_PROVISIONED = "pre_provisioned"


def _frozen_map(value: Mapping[int, object]) -> dict[int, object]:
    return dict(value)


@attrs.frozen(repr=False)
class SecuritySettings:
    """How a client authenticates to one LwM2M server: Security resources 2..5.

    ``generate`` set means the bootstrap server issues fresh credentials per device at session
    time (``provisioning``); the byte fields are then empty. Otherwise they are the resource
    values: ``public_key_or_identity`` (/0/x/3: PSK identity, SPKI DER, or certificate DER),
    ``secret_key`` (/0/x/5: PSK, or PKCS#8 DER private key) and ``server_public_key``
    (/0/x/4: the server's SPKI DER or certificate DER; empty means "take it from the shared
    keystore's server identity" for generated RPK/X.509 credentials).
    """

    mode: SecurityMode
    generate: bool = False
    public_key_or_identity: bytes = b""
    secret_key: bytes = b""
    server_public_key: bytes = b""

    def __repr__(self) -> str:  # never show secrets
        return (
            f"SecuritySettings(mode={self.mode.label}, generate={self.generate}, "
            f"identity_bytes={len(self.public_key_or_identity)}, secret=<{len(self.secret_key)}>)"
        )


@attrs.frozen
class ServerAccount:
    """One LwM2M server: its Server instance values and its Security instance values."""

    uri: str
    short_server_id: int
    security: SecuritySettings
    lifetime: int = 86400
    binding: str = "U"
    notification_storing: bool = True
    default_min_period: int | None = None
    default_max_period: int | None = None
    security_instance: int | None = None
    server_instance: int | None = None
    security_extra: Mapping[int, object] = attrs.field(factory=dict, converter=_frozen_map)
    server_extra: Mapping[int, object] = attrs.field(factory=dict, converter=_frozen_map)
    oscore: LwM2mObjectInstance | None = None
    """An OSCORE (21) instance for this server; /0/x/17 then links to it."""


@attrs.frozen
class AclEntry:
    """One Access Control (2) instance: rights per short server id (0 = default) on one
    object instance, and its owner (a short server id, or 65535 = set by bootstrap)."""

    object_id: int
    instance_id: int
    rights: Mapping[int, int]
    owner: int
    instance: int | None = None


@attrs.frozen(repr=False)
class BootstrapCredentials:
    """How a device (endpoint config) or a fleet (profile) authenticates to *us*.

    ``NOSEC`` must be said explicitly: no configuration allows NoSec bootstrap by default."""

    mode: SecurityMode
    psk_identity: bytes | None = None
    psk_key: bytes | None = None
    rpk_spki: bytes | None = None
    certificate: bytes | None = None
    """Endpoint configs: the device's pinned certificate. Profiles: the CA whose certificates
    identify devices (endpoint = certificate CN)."""

    def __repr__(self) -> str:
        return f"BootstrapCredentials(mode={self.mode.label})"


@attrs.frozen
class Provisioning:
    """Profile settings for devices that bootstrap with fleet credentials."""

    strategy: Strategy = Strategy.ALLOW_NEW
    psk_identity_template: str = "{endpoint}"


@attrs.frozen
class BootstrapConfig:
    """One configuration file (or one API upload)."""

    kind: ConfigKind
    name: str
    source: str
    servers: tuple[ServerAccount, ...]
    bootstrap: tuple[BootstrapCredentials, ...]
    to_delete: tuple[LwM2mPath, ...] = DEFAULT_TO_DELETE
    acls: tuple[AclEntry, ...] = ()
    objects: Mapping[LwM2mPath, LwM2mObjectInstance] = attrs.field(factory=dict)
    content_format: int | None = None
    bootstrap_read: bool = False
    provisioning: Provisioning | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.kind.value, self.name

    @property
    def generated(self) -> ServerAccount | None:
        """The server account whose credentials are issued per device (at most one)."""
        return next((s for s in self.servers if s.security.generate), None)

    def allows(self, mode: SecurityMode) -> bool:
        return any(c.mode is mode for c in self.bootstrap)

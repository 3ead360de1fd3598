"""Who is asking to bootstrap: the transport's peer identity + the request's ``ep`` -> the
configuration to apply, or a refusal.

The rules (docs/bootstrap.md has the table):

* The credential decides the configuration. An endpoint config's own bootstrap credential
  (PSK identity, raw public key, pinned certificate) admits exactly that endpoint: another
  ``ep`` gets 4.03. A profile's credential (the fleet's provision PSK, or a certificate issued
  by the profile's CA) admits the device as a member of the profile; with a certificate the
  endpoint is the certificate's CN/SAN and ``ep`` must be one of them.
* NoSec only where a configuration says ``mode: nosec``: the endpoint's own config, else the
  profile of its device record, else the one profile that takes unlisted NoSec devices. An
  endpoint whose own config (or record's profile) does not allow NoSec is refused over NoSec
  even when a NoSec profile exists, so NoSec can never bypass a device's DTLS credentials.
* Whether a profile device may go on (allow-new / pre-provisioned) is ``provisioning.admit``.
"""

from __future__ import annotations

import datetime

import attrs

from keystore.bootstrap_config.model import BootstrapConfig, ConfigKind
from keystore.credentials import CredentialError, TrustedCa, certificate_names, check_endpoint
from keystore.modes import SecurityMode
from keystore.resolver import ChainError, PeerIdentity, verify_chain
from object_models.errors import Lwm2mError, ResponseCode

from .catalog import Catalog
from .provisioning import DeviceRegistry


class NotAllowed(Lwm2mError):
    code = ResponseCode.UNAUTHORIZED


@attrs.frozen
class Target:
    endpoint: str
    config: BootstrapConfig

    @property
    def profile(self) -> str | None:
        return self.config.name if self.config.kind is ConfigKind.PROFILE else None


def resolve(
    catalog: Catalog,
    devices: DeviceRegistry,
    peer: PeerIdentity,
    endpoint: str,
    now: datetime.datetime,
) -> Target:
    """Raises ``NotAllowed`` (4.01: no config takes this peer) or ``Lwm2mError`` 4.03 (the
    identity belongs to another endpoint) or 4.00 (a bad ``ep``)."""
    try:
        check_endpoint(endpoint, "ep")
    except CredentialError as exc:
        raise Lwm2mError(f"ep: {exc.reason}", code=ResponseCode.BAD_REQUEST) from None
    if peer.mode is SecurityMode.NOSEC:
        return _nosec(catalog, devices, endpoint)
    config: BootstrapConfig | None = None
    if peer.mode is SecurityMode.PSK and peer.psk_identity is not None:
        found = catalog.by_psk_identity(peer.psk_identity)
        config = None if found is None else found[0]
    elif peer.mode is SecurityMode.RPK and peer.spki is not None:
        config = catalog.by_rpk(peer.spki)
    elif peer.certificate_chain:
        config = catalog.by_certificate(peer.certificate_chain[0])
        if config is None:
            return _by_ca(catalog, peer, endpoint, now)
    if config is None:
        raise NotAllowed(f"no bootstrap configuration knows {peer.describe()}")
    return _bind(config, endpoint, peer)


def _bind(config: BootstrapConfig, endpoint: str, peer: PeerIdentity) -> Target:
    if config.kind is ConfigKind.ENDPOINT and config.name != endpoint:
        raise Lwm2mError(f"{peer.describe()} is the bootstrap identity of {config.name!r}, "
                         f"not of {endpoint!r}", code=ResponseCode.FORBIDDEN)  # fmt: skip
    return Target(endpoint, config)


def _by_ca(catalog: Catalog, peer: PeerIdentity, endpoint: str,
           now: datetime.datetime) -> Target:  # fmt: skip
    for config, ca in catalog.profile_cas():
        try:
            verify_chain(peer.certificate_chain, [TrustedCa(ca)], now)
        except ChainError:
            continue
        from cryptography import x509

        names = certificate_names(x509.load_der_x509_certificate(peer.certificate_chain[0]))
        if endpoint not in names:
            raise Lwm2mError(f"the certificate names {', '.join(names) or 'nobody'}, not "
                             f"{endpoint!r}", code=ResponseCode.FORBIDDEN)  # fmt: skip
        return Target(endpoint, config)
    raise NotAllowed(f"no bootstrap configuration trusts {peer.describe()}")


def _nosec(catalog: Catalog, devices: DeviceRegistry, endpoint: str) -> Target:
    own = catalog.endpoint(endpoint)
    if own is not None:
        if not own.allows(SecurityMode.NOSEC):
            raise NotAllowed(f"{endpoint!r} must bootstrap over DTLS (its configuration does "
                             "not allow nosec)")  # fmt: skip
        return Target(endpoint, own)
    record = devices.get_device(endpoint)
    if record is not None and record.profile is not None:
        profile = catalog.profile(record.profile)
        if profile is None:
            raise NotAllowed(f"{endpoint!r} belongs to profile {record.profile!r}, which has no "
                             "configuration")  # fmt: skip
        if not profile.allows(SecurityMode.NOSEC):
            raise NotAllowed(f"profile {profile.name!r} does not allow nosec bootstrap")
        return Target(endpoint, profile)
    fallback = catalog.nosec_profile()
    if fallback is None:
        raise NotAllowed(f"no configuration for {endpoint!r} allows nosec bootstrap")
    return Target(endpoint, fallback)

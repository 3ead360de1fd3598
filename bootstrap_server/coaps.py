"""The bootstrap server's DTLS configuration: the engine's callbacks answer from the bootstrap
configurations (not from the device records of the LwM2M server), because what a device uses to
reach *us* is its bootstrap credential: an endpoint config's own PSK/RPK/certificate, or a
profile's fleet PSK or CA.

The bootstrap server presents the same key as the LwM2M server (the shared keystore's server
identity; created there if missing, as ``lwm2m-server`` does): one key for devices to pin, and
no second private key to protect. A deployment wanting separate keys runs the bootstrap server
on its own keystore file.

The callbacks read ``server.catalog`` at handshake time, so a config added through the API takes
effect at the next handshake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography import x509

from keystore.coaps import CoapsSettings, ensure_server_identity
from keystore.coaps.server import dtls_server_config
from keystore.dtls import ServerConfig
from keystore.store.credentials import ServerIdentityStore

from .core.catalog import Catalog


class HasCatalog(Protocol):
    @property
    def catalog(self) -> Catalog: ...


class _Anchors(Sequence[x509.Certificate]):
    """Profile CAs and pinned device certificates of the current catalog."""

    def __init__(self, owner: HasCatalog) -> None:
        self.owner = owner

    def _current(self) -> list[x509.Certificate]:
        catalog = self.owner.catalog
        ders = [der for _, der in catalog.profile_cas()]
        ders += [c.certificate for config in catalog.all() for c in config.bootstrap
                 if c.certificate is not None and config.kind.value == "endpoint"]  # fmt: skip
        return [x509.load_der_x509_certificate(d) for d in dict.fromkeys(ders)]

    def __len__(self) -> int:
        return len(self._current())

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self._current()[index]


def bootstrap_dtls_config(
    owner: HasCatalog, keystore: ServerIdentityStore, settings: CoapsSettings | None = None
) -> ServerConfig:
    """The bootstrap listener's engine config: who-is-who comes from the bootstrap
    configurations (factory PSK identities, RPKs, certificates and profile CAs), the key from
    the shared keystore; suites, CIDs and modes as for the LwM2M server."""
    identity = ensure_server_identity(keystore)

    def psk(identity_bytes: bytes) -> bytes | None:
        found = owner.catalog.by_psk_identity(identity_bytes)
        return None if found is None else found[1]

    def rpk(spki: bytes) -> bool:
        return owner.catalog.by_rpk(spki) is not None

    return dtls_server_config(
        identity,
        psk_lookup=psk,
        rpk_verifier=rpk,
        trust_store=_Anchors(owner),
        settings=settings,
    )

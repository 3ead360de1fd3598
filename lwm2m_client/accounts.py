"""LwM2M Server accounts as bootstrap left them: a Server instance joined to its Security
instance by short server id, turned into what the transport needs (URI and DTLS credentials).

Security object resources (Core §E.1): 0 URI, 1 Bootstrap-Server, 2 mode (0 PSK, 1 RPK,
2 X.509, 3 NoSec), 3 public key or identity, 4 server public key, 5 secret key, 10 short server
id. Per mode: PSK = (identity 3, key 5); RPK = (private key 5, server public key 4); X.509 =
(private key 5, certificate 3, server certificate 4). The material is handed to
``keystore.coaps.client_dtls_config`` as is, so every encoding it reads (DER, PEM) works.
"""

from __future__ import annotations

import attrs

from keystore.coaps.client import client_dtls_config
from keystore.dtls import ClientConfig
from keystore.modes import SecurityMode
from object_models.errors import Lwm2mError
from object_models.path import LwM2mPath

from .objects import ObjectTree

SECURITY, SERVER = 0, 1


@attrs.frozen
class ServerAccount:
    short_server_id: int
    security_instance: int
    server_instance: int
    uri: str
    mode: int
    identity: bytes = b""
    server_key: bytes = b""
    secret: bytes = b""

    def dtls_config(self) -> ClientConfig | None:
        """The DTLS client config for this account (None for NoSec)."""
        if self.mode == SecurityMode.NOSEC:
            return None
        if self.mode == SecurityMode.PSK:
            return client_dtls_config(psk=(self.identity, self.secret))
        if self.mode == SecurityMode.RPK:
            return client_dtls_config(rpk=(self.secret, self.server_key))
        if self.mode == SecurityMode.X509:
            return client_dtls_config(x509=(self.secret, self.identity, self.server_key))
        raise ValueError(f"/0/{self.security_instance}: security mode {self.mode} is not supported")


def _get(tree: ObjectTree, o: int, i: int, r: int, default: object = None) -> object:
    try:
        return tree.get_value(LwM2mPath(o, i, r))
    except (Lwm2mError, ValueError):
        return default


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else b""


def security_account(tree: ObjectTree, i: int, server_instance: int = -1) -> ServerAccount:
    """The Security instance ``i`` as an account (also the Bootstrap-Server account's)."""
    ssid = _get(tree, SECURITY, i, 10, 0)
    mode = _get(tree, SECURITY, i, 2, int(SecurityMode.NOSEC))
    return ServerAccount(
        short_server_id=ssid if isinstance(ssid, int) else 0,
        security_instance=i,
        server_instance=server_instance,
        uri=str(_get(tree, SECURITY, i, 0, "")),
        mode=mode if isinstance(mode, int) else int(SecurityMode.NOSEC),
        identity=_bytes(_get(tree, SECURITY, i, 3)),
        server_key=_bytes(_get(tree, SECURITY, i, 4)),
        secret=_bytes(_get(tree, SECURITY, i, 5)),
    )


def server_accounts(tree: ObjectTree) -> list[ServerAccount]:
    """Every Server instance with its Security instance, in Server instance order."""
    security_by_ssid = {
        _get(tree, SECURITY, i, 10): i
        for i in tree.instance_ids(SECURITY)
        if not _get(tree, SECURITY, i, 1, False)
    }
    accounts = []
    for s in tree.instance_ids(SERVER):
        security = security_by_ssid.get(_get(tree, SERVER, s, 0))
        if security is not None:
            accounts.append(security_account(tree, security, s))
    return accounts

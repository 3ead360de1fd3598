"""``/leshan/api/security/...`` and ``/leshan/api/server/security``: device credentials and the
server's identity in the JSON of Leshan's ``SecurityServlet`` (``JacksonSecuritySerializer``,
``JacksonSecurityDeserializer``, ``PublicKeySerDes``, ``X509CertificateSerDes``), backed by our
keystore (``keystore.store.credentials``) — the same records ``lwm2m-keystore`` manages and the
DTLS resolver reads, so a key added here is the one a device's handshake is checked against.

Shapes::

    {"endpoint": "dev", "tls": {"mode": "psk", "details": {"identity": "id", "key": "0102.."}}}
    {"endpoint": "dev", "tls": {"mode": "rpk", "details": {"key": "<SPKI DER, hex>"}}}
    {"endpoint": "dev", "tls": {"mode": "x509"}}

Our keystore also knows NoSec records and pinned certificates, which Leshan has no JSON for: a
NoSec record is listed as ``{"endpoint"}`` alone (what Leshan's UI shows as "unsupported"), a
pinned certificate as plain ``x509`` (Leshan's X.509 mode checks the CN, as our unpinned one
does). OSCORE is not supported (400).
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from keystore.credentials import CredentialError, DeviceCredentials, raw_public_key
from keystore.modes import SecurityMode
from keystore.store.credentials import CredentialStore
from lwm2m_runtime.http_errors import ApiError

from .. import params

JsonDict = dict[str, Any]

CREDENTIALS: web.AppKey[CredentialStore] = web.AppKey("lwm2m_leshan_credentials", object)  # type: ignore[arg-type]


def security_json(device: DeviceCredentials) -> JsonDict:
    result: JsonDict = {"endpoint": device.endpoint}
    if device.mode is SecurityMode.PSK and device.psk_identity is not None:
        result["tls"] = {
            "mode": "psk",
            "details": {
                "identity": device.psk_identity.decode("utf-8", "replace"),
                "key": (device.psk_key or b"").hex(),
            },
        }
    elif device.mode is SecurityMode.RPK and device.rpk_spki is not None:
        result["tls"] = {"mode": "rpk", "details": {"key": device.rpk_spki.hex()}}
    elif device.mode.uses_certificates:
        result["tls"] = {"mode": "x509"}
    return result


def _hex(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid request body: {field} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ApiError(400, f"Invalid request body: {field} must be a valid hex string") from None


def security_from_json(data: object) -> DeviceCredentials:
    """A Leshan security info → our credential record (400 naming what is wrong)."""
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid request body: Security info should be a json object")
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ApiError(400, "Invalid request body: Missing endpoint")
    tls = data.get("tls")
    if tls is None:
        if "oscore" in data:
            raise ApiError(400, "Invalid request body: OSCORE is not supported by this server")
        raise ApiError(400, "Invalid request body: Invalid security info content")
    if not isinstance(tls, dict):
        raise ApiError(400, "Invalid request body: tls field should be a json object")
    mode = tls.get("mode")
    details = tls.get("details")
    try:
        if mode == "psk":
            if not isinstance(details, dict):
                raise ApiError(400, "Invalid request body: details field should be a json object")
            identity = details.get("identity")
            if not isinstance(identity, str) or not identity:
                raise ApiError(400, "Invalid request body: Missing PSK identity")
            return DeviceCredentials.for_psk(endpoint, identity, _hex(details.get("key"), "key"))
        if mode == "rpk":
            if not isinstance(details, dict):
                raise ApiError(400, "Invalid request body: details field should be a json object")
            return DeviceCredentials.for_rpk(endpoint, _hex(details.get("key"), "key"))
        if mode == "x509":
            return DeviceCredentials.for_x509(endpoint)
    except CredentialError as exc:
        raise ApiError(400, f"Invalid request body: {exc.message}") from None
    raise ApiError(400, "Invalid request body: Invalid security info content")


def _store(request: web.Request) -> CredentialStore:
    store = request.app.get(CREDENTIALS)
    if store is None:
        raise ApiError(404, "this server has no keystore attached to its API")
    return store


async def list_security(request: web.Request) -> web.Response:
    store = _store(request)
    return web.json_response([security_json(d) for d in store.devices()])


async def show_security(request: web.Request) -> web.Response:
    """One endpoint's record (not in Leshan's servlet, which only lists; here for scripts)."""
    device = _store(request).get_device(request.match_info["ep"])
    if device is None:
        return web.json_response({"message": "not_found"}, status=404)
    return web.json_response(security_json(device))


async def put_security(request: web.Request) -> web.Response:
    """Add or replace (``PUT /api/security/clients/``, body = a security info); 400 when its
    identity or key belongs to another endpoint, as Leshan's ``NonUniqueSecurityInfoException``."""
    store = _store(request)
    device = security_from_json(await params.json_body(request))
    try:
        store.put_device(device)
    except CredentialError as exc:
        raise ApiError(400, exc.message) from None
    commit = getattr(getattr(store, "store", None), "commit", None)
    if callable(commit):
        commit()
    return web.Response(status=200)


async def delete_security(request: web.Request) -> web.Response:
    """Remove; an unknown endpoint is 200 ``{"message":"not_found"}``, as in Leshan."""
    store = _store(request)
    removed = store.remove_device(request.match_info["ep"])
    commit = getattr(getattr(store, "store", None), "commit", None)
    if callable(commit):
        commit()
    if removed is None:
        return web.json_response({"message": "not_found"})
    return web.Response(status=200)


def _pubkey_json(key: ec.EllipticCurvePublicKey, spki: bytes) -> JsonDict:
    xy = raw_public_key(spki)
    return {
        "x": xy[:32].hex(),
        "y": xy[32:].hex(),
        "params": "secp256r1 [NIST P-256, X9.62 prime256v1] (1.2.840.10045.3.1.7)",
        "b64Der": base64.b64encode(spki).decode("ascii"),
    }


async def server_security(request: web.Request) -> web.Response:
    """The server's public key (``pubkey``) or, when it has one, its certificate
    (``certificate``: ``pubkey`` + ``b64Der``): what a device must trust."""
    store = _store(request)
    identity = store.server_identity()
    if identity is None:
        return web.json_response({})
    spki = identity.public_key_spki
    key = identity.key.public_key()
    cert: x509.Certificate | None = identity.certificate
    if cert is not None:
        from cryptography.hazmat.primitives import serialization

        der = cert.public_bytes(serialization.Encoding.DER)
        return web.json_response(
            {
                "certificate": {
                    "pubkey": _pubkey_json(key, spki),
                    "b64Der": base64.b64encode(der).decode("ascii"),
                }
            }
        )
    return web.json_response({"pubkey": _pubkey_json(key, spki)})

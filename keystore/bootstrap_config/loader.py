"""Reading bootstrap configurations: a mapping (YAML/JSON file, API body) -> ``BootstrapConfig``.

Every problem is a ``ConfigError(file, key, reason)``: ``key`` is the dotted/indexed place in the
document (``servers[0].security.key``, ``objects./3/0/14``), so an operator can fix a file from
the message alone. Values are typed against the object models: a path or resource the registry
does not know, or a value that does not fit the resource type, is refused here rather than by
the client in the middle of a bootstrap session.

Byte values (keys, identities, certificates) are written as ``hex:...``, ``base64:...``, PEM
text, or ``file:NAME`` (read relative to the configuration file, so secrets can live in files
with their own permissions). A PSK identity without a prefix is UTF-8 text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization

from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import InvalidPathError
from object_models.model import ModelProvider, ResourceModel
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType, coerce_value

from ..config_error import ConfigError
from ..credentials import (
    MAX_ENDPOINT,
    CredentialError,
    certificate_der,
    is_ca_certificate,
    load_certificate,
    load_public_key,
    parse_psk_identity,
)
from ..modes import SecurityMode
from ..tools import load_private_key
from .model import (
    DEFAULT_TO_DELETE,
    AclEntry,
    BootstrapConfig,
    BootstrapCredentials,
    ConfigKind,
    Provisioning,
    SecuritySettings,
    ServerAccount,
    Strategy,
)

__all__ = ["INSTANCE_FORMATS", "parse_config"]

INSTANCE_FORMATS = frozenset({
    ContentFormat.TLV, ContentFormat.OLD_TLV, ContentFormat.JSON, ContentFormat.OLD_JSON,
    ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR,
})  # fmt: skip
"""Formats that can carry whole object instances (Bootstrap-Write payloads)."""

SECURITY, SERVER, ACL, OSCORE = 0, 1, 2, 21
MAX_SSID = 65534
ACL_BOOTSTRAP_OWNER = 65535
_MANAGED = {
    SECURITY: "servers",
    SERVER: "servers",
}
# Security/Server resources that ``servers`` entries set themselves (not via *_resources).
_SECURITY_OWN = frozenset({0, 1, 2, 3, 4, 5, 10, 17})
_SERVER_OWN = frozenset({0, 1, 2, 3, 6, 7})
_TOP_KEYS = frozenset({
    "endpoint", "profile", "bootstrap_security", "provisioning", "servers", "to_delete", "acls",
    "objects", "content_format", "bootstrap_read", "description",
})  # fmt: skip

T = TypeVar("T")


class _Doc:
    """Where we are in one document: the file name and the key path, for error messages."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.where: list[str] = []

    @property
    def key(self) -> str:
        return "".join(self.where).lstrip(".")

    def error(self, reason: str, key: str | None = None) -> ConfigError:
        return ConfigError(self.source, self.key if key is None else key, reason)

    @contextmanager
    def at(self, part: str | int) -> Iterator[None]:
        self.where.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        try:
            yield
        finally:
            self.where.pop()

    # -- typed getters ---------------------------------------------------------------------------
    def mapping(self, value: object) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise self.error(f"expected a mapping, got {_kind(value)}")
        return value

    def listing(self, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected a non-empty string, got {_kind(value)}")
        return value.strip()

    def integer(self, value: object, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
                value = int(value)
            else:
                raise self.error(f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.error(f"{value} is outside {lo}..{hi}")
        return value

    def boolean(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {_kind(value)}")
        return value

    def blob(self, value: object) -> bytes:
        """``hex:``, ``base64:``, ``file:`` or PEM text -> bytes (PEM stays PEM text bytes)."""
        if isinstance(value, bytes):
            return value
        text = self.text(value)
        lowered = text.lower()
        if lowered.startswith("hex:"):
            try:
                return bytes.fromhex("".join(text[4:].split()).replace(":", ""))
            except ValueError:
                raise self.error("not hexadecimal after 'hex:'") from None
        if lowered.startswith("base64:"):
            try:
                return base64.b64decode(text[7:].strip(), validate=True)
            except (binascii.Error, ValueError):
                raise self.error("not base64 after 'base64:'") from None
        if lowered.startswith("file:"):
            name = Path(text[5:].strip())
            path = name if name.is_absolute() or self.base_dir is None else self.base_dir / name
            try:
                return path.read_bytes()
            except OSError as exc:
                raise self.error(f"cannot read {path}: {exc.strerror or exc}") from None
        if text.startswith("-----BEGIN"):
            return text.encode("ascii", "replace")
        raise self.error("expected hex:…, base64:…, file:… or PEM text")

    def credential(self, convert: Callable[[], T]) -> T:
        try:
            return convert()
        except CredentialError as exc:
            raise self.error(exc.reason) from None

    def unknown(self, data: Mapping[Any, Any], known: frozenset[str]) -> None:
        for name in data:
            if name not in known:
                with self.at(str(name)):
                    raise self.error(f"unknown key (known: {', '.join(sorted(known))})")


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"


# == the document ================================================================================


def parse_config(
    data: object, source: str, models: ModelProvider, *, base_dir: Path | None = None
) -> BootstrapConfig:
    """Validate one configuration document; raises ``ConfigError`` at the first problem."""
    doc = _Doc(source, base_dir)
    top = doc.mapping(data)
    doc.unknown(top, _TOP_KEYS)
    kind, name = _identity(doc, top)
    with doc.at("bootstrap_security"):
        bootstrap = _bootstrap_credentials(doc, top.get("bootstrap_security"), kind)
    provisioning = None
    if "provisioning" in top:
        if kind is not ConfigKind.PROFILE:
            raise doc.error("only profiles have provisioning settings", "provisioning")
        with doc.at("provisioning"):
            provisioning = _provisioning(doc, top["provisioning"])
    elif kind is ConfigKind.PROFILE:
        provisioning = Provisioning()
    with doc.at("servers"):
        servers = _servers(doc, top.get("servers"), models)
    with doc.at("to_delete"):
        to_delete = _to_delete(doc, top.get("to_delete", None), models)
    with doc.at("acls"):
        acls = _acls(doc, top.get("acls", []), servers, models)
    with doc.at("objects"):
        objects = _objects(doc, top.get("objects", {}), models)
    _no_overlap(doc, acls, servers, objects)
    fmt = None
    if top.get("content_format") is not None:
        with doc.at("content_format"):
            fmt = _content_format(doc, top["content_format"])
    read = False
    if "bootstrap_read" in top:
        with doc.at("bootstrap_read"):
            read = doc.boolean(top["bootstrap_read"])
    config = BootstrapConfig(
        kind=kind,
        name=name,
        source=source,
        servers=servers,
        bootstrap=bootstrap,
        to_delete=to_delete,
        acls=acls,
        objects=objects,
        content_format=fmt,
        bootstrap_read=read,
        provisioning=provisioning,
    )
    if kind is ConfigKind.PROFILE and config.generated is None:
        raise doc.error(
            "a profile must issue per-device credentials: give one server "
            "'security: {mode: psk|rpk|x509, generate: true}'",
            "servers",
        )
    return config


def _identity(doc: _Doc, top: Mapping[str, Any]) -> tuple[ConfigKind, str]:
    has_ep, has_profile = "endpoint" in top, "profile" in top
    if has_ep == has_profile:
        raise doc.error("give exactly one of 'endpoint' (one device) or 'profile' (a fleet)", "")
    kind = ConfigKind.ENDPOINT if has_ep else ConfigKind.PROFILE
    with doc.at(kind.value):
        name = doc.text(top[kind.value])
        if len(name) > MAX_ENDPOINT or not name.isprintable():
            raise doc.error(f"must be printable and at most {MAX_ENDPOINT} characters")
    return kind, name


# -- how devices authenticate to the bootstrap server -------------------------------------------


def _bootstrap_credentials(
    doc: _Doc, value: object, kind: ConfigKind
) -> tuple[BootstrapCredentials, ...]:
    if value is None:
        raise doc.error(
            "required: how devices authenticate to the bootstrap server "
            "(a list of {mode: nosec|psk|rpk|x509, ...}); NoSec is never implied"
        )
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise doc.error("give at least one entry")
    result: list[BootstrapCredentials] = []
    for index, entry in enumerate(entries):
        with doc.at(index) if isinstance(value, list) else _nowhere():
            result.append(_one_bootstrap_credential(doc, entry, kind))
    modes = [c.mode for c in result]
    for mode in set(modes):
        if modes.count(mode) > 1:
            raise doc.error(f"mode {mode.label} is given twice")
    return tuple(result)


@contextmanager
def _nowhere() -> Iterator[None]:
    yield


def _mode(doc: _Doc, data: Mapping[str, Any]) -> SecurityMode:
    with doc.at("mode"):
        if "mode" not in data:
            raise doc.error("required (nosec, psk, rpk or x509)")
        try:
            mode = SecurityMode.parse(data["mode"])
        except ValueError as exc:
            raise doc.error(str(exc)) from None
        if mode is SecurityMode.EST:
            raise doc.error("est is not supported by the bootstrap server")
        return mode


def _one_bootstrap_credential(doc: _Doc, entry: object, kind: ConfigKind) -> BootstrapCredentials:
    data = doc.mapping(entry)
    mode = _mode(doc, data)
    allowed = {
        SecurityMode.NOSEC: frozenset({"mode"}),
        SecurityMode.PSK: frozenset({"mode", "identity", "key"}),
        SecurityMode.RPK: frozenset({"mode", "public_key"}),
        SecurityMode.X509: frozenset({"mode", "certificate" if kind is ConfigKind.ENDPOINT
                                      else "ca"}),
    }[mode]  # fmt: skip
    doc.unknown(data, allowed)
    for name in sorted(allowed - {"mode"}):
        if name not in data:
            raise doc.error(f"required in {mode.label} mode", f"{doc.key}.{name}".lstrip("."))
    if mode is SecurityMode.PSK:
        with doc.at("identity"):
            identity = _psk_identity(doc, data["identity"])
        with doc.at("key"):
            key = _psk_key(doc, data["key"])
        return BootstrapCredentials(mode, psk_identity=identity, psk_key=key)
    if mode is SecurityMode.RPK:
        with doc.at("public_key"):
            raw = doc.blob(data["public_key"])
            spki = doc.credential(lambda: load_public_key(raw))
        return BootstrapCredentials(mode, rpk_spki=spki)
    if mode is SecurityMode.X509:
        field = "certificate" if kind is ConfigKind.ENDPOINT else "ca"
        with doc.at(field):
            raw = doc.blob(data[field])
            cert = doc.credential(lambda: load_certificate(raw))
            if field == "ca" and not is_ca_certificate(cert):
                raise doc.error("not a CA certificate (basicConstraints CA:TRUE missing)")
        return BootstrapCredentials(mode, certificate=certificate_der(cert))
    return BootstrapCredentials(mode)


def _psk_identity(doc: _Doc, value: object) -> bytes:
    text = doc.text(value)
    identity = doc.credential(lambda: parse_psk_identity(text))
    if not 1 <= len(identity) <= 128:
        raise doc.error(f"{len(identity)} bytes; a PSK identity has 1..128")
    return identity


def _psk_key(doc: _Doc, value: object) -> bytes:
    key = doc.blob(value)
    if not 1 <= len(key) <= 64:
        raise doc.error(f"{len(key)} bytes; a PSK has 1..64 (write it as hex:… or base64:…)")
    return key


def _provisioning(doc: _Doc, value: object) -> Provisioning:
    data = doc.mapping(value)
    doc.unknown(data, frozenset({"strategy", "psk_identity_template"}))
    strategy = Strategy.ALLOW_NEW
    if "strategy" in data:
        with doc.at("strategy"):
            raw = doc.text(data["strategy"]).lower().replace("-", "_")
            try:
                strategy = Strategy(raw)
            except ValueError:
                raise doc.error("expected allow_new or pre_provisioned") from None
    template = "{endpoint}"
    if "psk_identity_template" in data:
        with doc.at("psk_identity_template"):
            template = doc.text(data["psk_identity_template"])
            try:
                template.format(endpoint="x", profile="y")
            except (KeyError, IndexError, ValueError) as exc:
                raise doc.error(f"may only use {{endpoint}} and {{profile}}: {exc}") from None
            if "{endpoint}" not in template:
                raise doc.error("must contain {endpoint}: identities must differ per device")
    return Provisioning(strategy, template)


# -- servers ------------------------------------------------------------------------------------

_SERVER_KEYS = frozenset({
    "uri", "short_server_id", "lifetime", "binding", "notification_storing", "default_min_period",
    "default_max_period", "security", "security_instance", "server_instance", "security_resources",
    "server_resources", "oscore",
})  # fmt: skip
_BINDING = re.compile(r"[UMHTSNQ]{1,7}")


def _servers(doc: _Doc, value: object, models: ModelProvider) -> tuple[ServerAccount, ...]:
    if value is None:
        raise doc.error("required: at least one LwM2M server account")
    entries = doc.listing(value)
    if not entries:
        raise doc.error("at least one LwM2M server account is needed (the client would have "
                        "nowhere to register)")  # fmt: skip
    result: list[ServerAccount] = []
    for index, entry in enumerate(entries):
        with doc.at(index):
            result.append(_server(doc, entry, models))
    seen: dict[str, dict[int, int]] = {"short_server_id": {}, "security_instance": {},
                                       "server_instance": {}}  # fmt: skip
    for index, server in enumerate(result):
        for name, number in (
            ("short_server_id", server.short_server_id),
            ("security_instance", server.security_instance),
            ("server_instance", server.server_instance),
        ):
            if number is None:
                continue
            first = seen[name].setdefault(number, index)
            if first != index:
                raise doc.error(f"{number} is also used by servers[{first}]",
                                f"{doc.key}[{index}].{name}")  # fmt: skip
    generated = [i for i, s in enumerate(result) if s.security.generate]
    if len(generated) > 1:
        raise doc.error(
            f"servers {generated} all generate credentials; at most one can (the shared "
            "keystore holds one record per endpoint)"
        )
    return tuple(result)


def _server(doc: _Doc, entry: object, models: ModelProvider) -> ServerAccount:
    data = doc.mapping(entry)
    doc.unknown(data, _SERVER_KEYS)
    for name in ("uri", "short_server_id", "security"):
        if name not in data:
            raise doc.error("required", f"{doc.key}.{name}")
    with doc.at("uri"):
        uri = doc.text(data["uri"])
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in ("coap", "coaps"):
            raise doc.error("expected a coap:// or coaps:// URI")
    with doc.at("short_server_id"):
        ssid = doc.integer(data["short_server_id"], 1, MAX_SSID)
    with doc.at("security"):
        security = _security(doc, data["security"])
        if (security.mode is SecurityMode.NOSEC) != (scheme == "coap"):
            wanted = "coap://" if security.mode is SecurityMode.NOSEC else "coaps://"
            raise doc.error(f"mode {security.mode.label} needs a {wanted} uri (got {uri})")
    numbers: dict[str, int | None] = {}
    for name, lo, hi in (
        ("lifetime", 1, 2**31 - 1),
        ("default_min_period", 0, 2**31 - 1),
        ("default_max_period", 1, 2**31 - 1),
        ("security_instance", 0, 65534),
        ("server_instance", 0, 65534),
    ):
        numbers[name] = None
        if data.get(name) is not None:
            with doc.at(name):
                numbers[name] = doc.integer(data[name], lo, hi)
    binding = "U"
    if "binding" in data:
        with doc.at("binding"):
            binding = doc.text(data["binding"])
            if not _BINDING.fullmatch(binding):
                raise doc.error("binding letters are U, M, H, T, S, N (and Q for 1.0)")
    storing = True
    if "notification_storing" in data:
        with doc.at("notification_storing"):
            storing = doc.boolean(data["notification_storing"])
    extras: dict[str, dict[int, object]] = {}
    for name, object_id, own in (
        ("security_resources", SECURITY, _SECURITY_OWN),
        ("server_resources", SERVER, _SERVER_OWN),
    ):
        extras[name] = {}
        if name in data:
            with doc.at(name):
                extras[name] = _resource_values(doc, data[name], object_id, models, own)
    oscore = None
    if data.get("oscore") is not None:
        with doc.at("oscore"):
            values = _resource_values(doc, data["oscore"], OSCORE, models, frozenset())
            oscore = _instance(None, OSCORE, values, models)
    lifetime = numbers["lifetime"]
    return ServerAccount(
        uri=uri,
        short_server_id=ssid,
        security=security,
        lifetime=86400 if lifetime is None else lifetime,
        binding=binding,
        notification_storing=storing,
        default_min_period=numbers["default_min_period"],
        default_max_period=numbers["default_max_period"],
        security_instance=numbers["security_instance"],
        server_instance=numbers["server_instance"],
        security_extra=extras["security_resources"],
        server_extra=extras["server_resources"],
        oscore=oscore,
    )


_SECURITY_KEYS = {
    SecurityMode.NOSEC: frozenset({"mode"}),
    SecurityMode.PSK: frozenset({"mode", "generate", "identity", "key"}),
    SecurityMode.RPK: frozenset({"mode", "generate", "public_key", "private_key",
                                 "server_public_key"}),
    SecurityMode.X509: frozenset({"mode", "generate", "certificate", "private_key",
                                  "server_certificate"}),
}  # fmt: skip


def _security(doc: _Doc, value: object) -> SecuritySettings:
    data = doc.mapping(value)
    mode = _mode(doc, data)
    doc.unknown(data, _SECURITY_KEYS[mode])
    generate = False
    if "generate" in data:
        with doc.at("generate"):
            generate = doc.boolean(data["generate"])
    if mode is SecurityMode.NOSEC:
        return SecuritySettings(mode)
    given = sorted(set(data) - {"mode", "generate"})
    if generate:
        allowed = {"server_public_key", "server_certificate"}
        extra = [g for g in given if g not in allowed]
        if extra:
            raise doc.error("not allowed with generate: true (credentials are issued per "
                            "device)", f"{doc.key}.{extra[0]}")  # fmt: skip
        server_key = _server_key(doc, data, mode)
        return SecuritySettings(mode, generate=True, server_public_key=server_key)
    if mode is SecurityMode.PSK:
        for name in ("identity", "key"):
            if name not in data:
                raise doc.error("required in psk mode (or generate: true)", f"{doc.key}.{name}")
        with doc.at("identity"):
            identity = _psk_identity(doc, data["identity"])
        with doc.at("key"):
            key = _psk_key(doc, data["key"])
        return SecuritySettings(mode, public_key_or_identity=identity, secret_key=key)
    own = "public_key" if mode is SecurityMode.RPK else "certificate"
    for name in (own, "private_key"):
        if name not in data:
            raise doc.error(f"required in {mode.label} mode (or generate: true)",
                            f"{doc.key}.{name}")  # fmt: skip
    with doc.at(own):
        raw = doc.blob(data[own])
        if mode is SecurityMode.RPK:
            public = doc.credential(lambda: load_public_key(raw))
        else:
            public = certificate_der(doc.credential(lambda: load_certificate(raw)))
    with doc.at("private_key"):
        raw_key = doc.blob(data["private_key"])
        private = doc.credential(lambda: load_private_key(raw_key))
        secret = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return SecuritySettings(
        mode,
        public_key_or_identity=public,
        secret_key=secret,
        server_public_key=_server_key(doc, data, mode),
    )


def _server_key(doc: _Doc, data: Mapping[str, Any], mode: SecurityMode) -> bytes:
    """/0/x/4; empty = taken from the shared keystore's server identity at session time."""
    if mode is SecurityMode.RPK and data.get("server_public_key") is not None:
        with doc.at("server_public_key"):
            raw = doc.blob(data["server_public_key"])
            return doc.credential(lambda: load_public_key(raw))
    if mode is SecurityMode.X509 and data.get("server_certificate") is not None:
        with doc.at("server_certificate"):
            raw = doc.blob(data["server_certificate"])
            return certificate_der(doc.credential(lambda: load_certificate(raw)))
    if mode is SecurityMode.PSK and "server_public_key" in data:
        raise doc.error("psk mode has no server public key", f"{doc.key}.server_public_key")
    return b""


# -- typed resource values ----------------------------------------------------------------------


def _resource_id(doc: _Doc, name: object) -> int:
    if isinstance(name, int) and not isinstance(name, bool):
        rid = name
    elif isinstance(name, str) and re.fullmatch(r"[0-9]{1,5}", name.strip()):
        rid = int(name)
    else:
        raise doc.error(f"resource ids are numbers, got {_kind(name)}")
    if rid > 65535:
        raise doc.error(f"resource id {rid} is outside 0..65535")
    return rid


def _resource_model(doc: _Doc, models: ModelProvider, object_id: int, rid: int) -> ResourceModel:
    model = models.get_object(object_id)
    if model is None:
        raise doc.error(f"unknown object {object_id} (add its model to the models folder)")
    resource = model.resource(rid)
    if resource is None:
        raise doc.error(f"object {object_id} ({model.name}) has no resource {rid}")
    if resource.operations.executable or resource.type is ResourceType.NONE:
        raise doc.error(f"/{object_id}/x/{rid} ({resource.name}) is executable, not a value")
    return resource


def _typed(doc: _Doc, resource: ResourceModel, value: object) -> object:
    if resource.type is ResourceType.OPAQUE and isinstance(value, str):
        return doc.blob(value) if ":" in value or value.startswith("-----") else _b64(doc, value)
    try:
        return coerce_value(resource.type, value)
    except (ValueError, TypeError) as exc:
        raise doc.error(f"{resource.name} is {resource.type.value}: {exc}") from None


def _b64(doc: _Doc, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise doc.error("opaque values are hex:…, base64:… or file:…") from None


def _resource_value(doc: _Doc, models: ModelProvider, object_id: int, rid: int,
                    value: object) -> object:  # fmt: skip
    resource = _resource_model(doc, models, object_id, rid)
    if resource.multiple:
        if not isinstance(value, dict):
            raise doc.error(f"{resource.name} is a multiple resource: give {{instance: value}}")
        out = {}
        for ri, item in value.items():
            with doc.at(str(ri)):
                out[_resource_id(doc, ri)] = _typed(doc, resource, item)
        return out
    if isinstance(value, dict):
        raise doc.error(f"{resource.name} is a single resource, not {{instance: value}}")
    return _typed(doc, resource, value)


def _resource_values(
    doc: _Doc, value: object, object_id: int, models: ModelProvider, reserved: frozenset[int]
) -> dict[int, object]:
    data = doc.mapping(value)
    out: dict[int, object] = {}
    for name, item in data.items():
        with doc.at(str(name)):
            rid = _resource_id(doc, name)
            if rid in reserved:
                raise doc.error(f"resource {rid} is set by the server entry itself")
            out[rid] = _resource_value(doc, models, object_id, rid, item)
    return out


def _instance(
    instance_id: int | None, object_id: int, values: Mapping[int, object], models: ModelProvider
) -> LwM2mObjectInstance:
    resources: list[LwM2mResource] = []
    for rid, value in sorted(values.items()):
        model = models.get_object(object_id)
        rmodel = None if model is None else model.resource(rid)
        rtype = ResourceType.STRING if rmodel is None else rmodel.type
        if isinstance(value, dict):
            resources.append(LwM2mMultipleResource.from_values(rid, value, rtype))
        else:
            resources.append(LwM2mSingleResource(rid, value, rtype))  # type: ignore[arg-type]
    return LwM2mObjectInstance.of(instance_id, *resources)


# -- deletes, ACLs, other objects ---------------------------------------------------------------


def _path(doc: _Doc, value: object) -> LwM2mPath:
    text = doc.text(value) if not isinstance(value, int) else str(value)
    try:
        return LwM2mPath.parse(text)
    except InvalidPathError as exc:
        raise doc.error(exc.message) from None


def _to_delete(doc: _Doc, value: object, models: ModelProvider) -> tuple[LwM2mPath, ...]:
    if value is None:
        return DEFAULT_TO_DELETE
    result: list[LwM2mPath] = []
    for index, item in enumerate(doc.listing(value)):
        with doc.at(index):
            path = _path(doc, item)
            if path.depth > 2:
                raise doc.error("Bootstrap-Delete targets /, an object or an object instance")
            if path.depth and models.get_object(path.ids[0]) is None:
                raise doc.error(f"unknown object {path.ids[0]}")
            if path in result:
                raise doc.error(f"{path} is listed twice")
            result.append(path)
    return tuple(result)


def _acls(
    doc: _Doc, value: object, servers: tuple[ServerAccount, ...], models: ModelProvider
) -> tuple[AclEntry, ...]:
    ssids = {s.short_server_id for s in servers}
    result: list[AclEntry] = []
    for index, item in enumerate(doc.listing(value)):
        with doc.at(index):
            data = doc.mapping(item)
            doc.unknown(data, frozenset({"object", "instance", "rights", "owner", "acl_instance"}))
            for name in ("object", "instance", "rights"):
                if name not in data:
                    raise doc.error("required", f"{doc.key}.{name}")
            with doc.at("object"):
                object_id = doc.integer(data["object"], 0, 65535)
                if models.get_object(object_id) is None:
                    raise doc.error(f"unknown object {object_id}")
            with doc.at("instance"):
                instance_id = doc.integer(data["instance"], 0, 65535)
            rights: dict[int, int] = {}
            with doc.at("rights"):
                for name, bits in doc.mapping(data["rights"]).items():
                    with doc.at(str(name)):
                        ssid = doc.integer(name, 0, MAX_SSID)
                        if ssid and ssid not in ssids:
                            raise doc.error(f"short server id {ssid} is not one of the servers")
                        rights[ssid] = doc.integer(bits, 0, 31)
            owner = ACL_BOOTSTRAP_OWNER
            if "owner" in data:
                with doc.at("owner"):
                    owner = doc.integer(data["owner"], 1, ACL_BOOTSTRAP_OWNER)
                    if owner != ACL_BOOTSTRAP_OWNER and owner not in ssids:
                        raise doc.error(f"short server id {owner} is not one of the servers")
            fixed = None
            if data.get("acl_instance") is not None:
                with doc.at("acl_instance"):
                    fixed = doc.integer(data["acl_instance"], 0, 65534)
            result.append(AclEntry(object_id, instance_id, rights, owner, fixed))
    return tuple(result)


def _objects(
    doc: _Doc, value: object, models: ModelProvider
) -> dict[LwM2mPath, LwM2mObjectInstance]:
    """``/o/i: {rid: value}`` or ``/o/i/r: value``, merged per instance."""
    values: dict[LwM2mPath, dict[int, object]] = {}
    for name, item in doc.mapping(value).items():
        with doc.at(str(name)):
            path = _path(doc, name)
            if path.depth not in (2, 3):
                raise doc.error("give an object instance (/o/i) or a resource (/o/i/r)")
            object_id = path.ids[0]
            if object_id in _MANAGED:
                raise doc.error(f"object {object_id} is written from 'servers'")
            if models.get_object(object_id) is None:
                raise doc.error(f"unknown object {object_id} (add its model to the models "
                                "folder)")  # fmt: skip
            target = values.setdefault(LwM2mPath(*path.ids[:2]), {})
            if path.is_resource:
                rid = path.ids[2]
                if rid in target:
                    raise doc.error(f"{path} is given twice")
                target[rid] = _resource_value(doc, models, object_id, rid, item)
            else:
                for rid, resource_value in _resource_values(
                    doc, item, object_id, models, frozenset()
                ).items():
                    if rid in target:
                        raise doc.error(f"{path}/{rid} is given twice")
                    target[rid] = resource_value
    return {
        path: _instance(path.ids[1], path.ids[0], resource_values, models)
        for path, resource_values in values.items()
    }


def _no_overlap(
    doc: _Doc,
    acls: tuple[AclEntry, ...],
    servers: tuple[ServerAccount, ...],
    objects: Mapping[LwM2mPath, LwM2mObjectInstance],
) -> None:
    written = {path.ids[0] for path in objects}
    if acls and ACL in written:
        raise doc.error("/2 instances come from 'acls' or from 'objects', not both", "objects")
    if any(s.oscore is not None for s in servers) and OSCORE in written:
        raise doc.error("/21 instances come from servers[].oscore or from 'objects', not both",
                        "objects")  # fmt: skip


def _content_format(doc: _Doc, value: object) -> int:
    try:
        fmt = ContentFormat.from_name(str(value)) if not isinstance(value, int) else value
        fmt = int(ContentFormat(fmt))
    except ValueError:
        raise doc.error(f"unknown content format {value!r} (tlv, senml-json, senml-cbor, "
                        "lwm2m-cbor or a number)") from None  # fmt: skip
    if fmt not in INSTANCE_FORMATS or not codecs.supports(fmt, "encode"):
        raise doc.error(f"content format {value!r} cannot carry object instances")
    return fmt

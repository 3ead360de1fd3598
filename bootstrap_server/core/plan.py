"""From a configuration and a client to the requests of one bootstrap: which paths to delete
and which object instances to write, with their instance ids chosen.

Why a separate step: it is where a configuration meets a real client, so it is where the
"cannot be applied" cases are decided, before anything is sent: an object the client does not
support, a resource its object version lacks, a fixed instance id that is the client's
Bootstrap-Server account. A ``PlanError`` ends the session with that reason and the client
untouched (only Discover/Read were sent).

Instance ids (Leshan's ``autoIdForSecurityObject``, always on): Security instances get the
lowest ids that are not the Bootstrap-Server account (for a Bootstrap-Pack without ``acc=`` or
an earlier Discover that is neither /0/0 nor /0/1, see ``ClientInfo.for_pack``); Server, OSCORE
and ACL instances count up from 0, skipping the ids a config fixes (and OSCORE the account's own
instances ``acc=`` names). Deletes: ``/0`` becomes one Delete per Security
instance that is not the Bootstrap-Server account (Core 1.1 §6.1.7.5 says a Delete never removes
that account, but some clients got it wrong, e.g. Wakaama #96, so we do not ask), and a Delete
that names the account is dropped and noted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from keystore.bootstrap_config.model import BootstrapConfig, SecuritySettings, ServerAccount
from keystore.modes import SecurityMode
from object_models.errors import Lwm2mError
from object_models.model import ModelProvider
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mSingleResource,
)
from object_models.path import ROOT, LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ObjectLink, ResourceType, Value, guess_type

from .client_info import ClientInfo

SECURITY, SERVER, ACL, OSCORE = 0, 1, 2, 21


class PlanError(Lwm2mError):
    """The configuration cannot be applied to this client (the reason says why)."""


class AccountConflict(PlanError):
    """A fixed instance id of the config is (or, for a Bootstrap-Pack, may be) the client's
    Bootstrap-Server account. Not a server fault: the client can say where its account is
    (``acc=``) or bootstrap with Bootstrap-Request, whose Discover tells us."""


@attrs.frozen(repr=False)
class IssuedSecurity:
    """Credentials issued for one device at session time (Security resources 3, 4, 5)."""

    mode: SecurityMode
    public_key_or_identity: bytes
    secret_key: bytes
    server_public_key: bytes = b""

    def __repr__(self) -> str:
        return f"IssuedSecurity(mode={self.mode.label}, secret=<{len(self.secret_key)} bytes>)"


@attrs.frozen
class ServerKeys:
    """The LwM2M server's own public material (/0/x/4) from the shared keystore."""

    rpk_spki: bytes = b""
    certificate: bytes = b""

    def for_mode(self, mode: SecurityMode) -> bytes:
        return self.rpk_spki if mode is SecurityMode.RPK else self.certificate


@attrs.frozen
class Write:
    path: LwM2mPath
    node: LwM2mObjectInstance


@attrs.frozen
class Plan:
    deletes: tuple[LwM2mPath, ...]
    writes: tuple[Write, ...]
    models: ModelProvider
    notes: tuple[str, ...] = ()

    def nodes(self) -> dict[LwM2mPath, LwM2mObjectInstance]:
        return {w.path: w.node for w in self.writes}


def client_models(registry: ModelRegistry, client: ClientInfo) -> ModelProvider:
    """The object models as this client knows them (1.0 versions for an undiscovered 1.0
    client, the latest versions for a Bootstrap-Pack client)."""
    if not client.discovered and client.lwm2m_version == "1.0":
        return registry.for_client({o: "1.0" for o in (SECURITY, SERVER, ACL, 3)})
    return registry.for_client(client.object_versions)


def make_plan(
    config: BootstrapConfig,
    client: ClientInfo,
    registry: ModelRegistry,
    *,
    issued: IssuedSecurity | None = None,
    server_keys: ServerKeys = ServerKeys(),
) -> Plan:
    models = client_models(registry, client)
    notes: list[str] = []
    deletes = _deletes(config.to_delete, client, notes)
    writes: list[Write] = []
    security_ids = _ids(
        [s.security_instance for s in config.servers],
        reserved=client.bootstrap_instances,
        what="security_instance",
        client=client,
    )
    server_ids = _ids([s.server_instance for s in config.servers], frozenset(), "", client)
    oscore_ids = iter(_ids([None] * sum(s.oscore is not None for s in config.servers),
                           client.bootstrap_oscore, "", client))  # fmt: skip
    oscore_writes: list[Write] = []
    for server, security_id in zip(config.servers, security_ids, strict=True):
        link = None
        if server.oscore is not None:
            oscore_id = next(oscore_ids)
            link = ObjectLink(OSCORE, oscore_id)
            oscore_writes.append(Write(LwM2mPath(OSCORE, oscore_id),
                                       attrs.evolve(server.oscore, id=oscore_id)))  # fmt: skip
        security = _security_values(server, issued, server_keys, link)
        writes.append(Write(LwM2mPath(SECURITY, security_id),
                            _instance(models, SECURITY, security_id, security)))  # fmt: skip
    for server, server_id in zip(config.servers, server_ids, strict=True):
        writes.append(
            Write(
                LwM2mPath(SERVER, server_id),
                _instance(models, SERVER, server_id, _server_values(server)),
            )
        )
    acl_ids = _ids([a.instance for a in config.acls], frozenset(), "acl_instance", client)
    for acl, acl_id in zip(config.acls, acl_ids, strict=True):
        values: dict[int, object] = {0: acl.object_id, 1: acl.instance_id,
                                     2: dict(acl.rights), 3: acl.owner}  # fmt: skip
        writes.append(Write(LwM2mPath(ACL, acl_id), _instance(models, ACL, acl_id, values)))
    writes.extend(oscore_writes)
    writes.extend(Write(path, node) for path, node in sorted(config.objects.items()))
    for write in writes:
        _check_supported(write, client, models)
    return Plan(tuple(deletes), tuple(writes), models, tuple(notes))


# -- deletes ------------------------------------------------------------------------------------


def _deletes(
    to_delete: Iterable[LwM2mPath], client: ClientInfo, notes: list[str]
) -> list[LwM2mPath]:
    result: list[LwM2mPath] = []
    for path in to_delete:
        if path == LwM2mPath(SECURITY) and client.discovered:
            kept = sorted(client.bootstrap_instances)
            result.extend(
                LwM2mPath(SECURITY, i)
                for i in client.instances.get(SECURITY, ())
                if i not in client.bootstrap_instances
            )
            if kept:
                notes.append(f"/0 deleted instance by instance, keeping the Bootstrap-Server "
                             f"account {', '.join(f'/0/{i}' for i in kept)}")  # fmt: skip
        elif (
            path.depth == 2
            and path.ids[0] == SECURITY
            and (path.ids[1] in client.bootstrap_instances)
        ):
            notes.append(f"Delete {path} skipped: it is the Bootstrap-Server account")
        elif path == ROOT or path.depth <= 2:
            result.append(path)
    return list(dict.fromkeys(result))


# -- instance ids -------------------------------------------------------------------------------


def _ids(
    fixed: list[int | None], reserved: frozenset[int], what: str, client: ClientInfo
) -> list[int]:
    for value in fixed:
        if value is not None and value in reserved:
            verb = "is" if client.account_basis.certain else "may be"
            raise AccountConflict(
                f"{what} {value} {verb} the client's Bootstrap-Server account /0/{value} "
                f"({client.account_basis.value})"
            )
    taken = set(reserved) | {v for v in fixed if v is not None}
    result: list[int] = []
    candidate = 0
    for value in fixed:
        if value is not None:
            result.append(value)
            continue
        while candidate in taken:
            candidate += 1
        taken.add(candidate)
        result.append(candidate)
    return result


# -- values -------------------------------------------------------------------------------------


def _security_values(
    server: ServerAccount,
    issued: IssuedSecurity | None,
    server_keys: ServerKeys,
    oscore: ObjectLink | None,
) -> dict[int, object]:
    settings: SecuritySettings = server.security
    mode = settings.mode
    identity, secret, server_key = (
        settings.public_key_or_identity,
        settings.secret_key,
        settings.server_public_key,
    )
    if settings.generate:
        if issued is None or issued.mode is not mode:
            raise PlanError(f"no {mode.label} credentials were issued for {server.uri}")
        identity, secret = issued.public_key_or_identity, issued.secret_key
        server_key = server_key or issued.server_public_key
    if mode in (SecurityMode.RPK, SecurityMode.X509) and not server_key:
        server_key = server_keys.for_mode(mode)
        if not server_key:
            what = "public key" if mode is SecurityMode.RPK else "certificate"
            raise PlanError(
                f"{server.uri}: no server {what} for /0/x/4: set it in the config or give the "
                "shared keystore a server identity (lwm2m-keystore server init)"
            )
    values: dict[int, object] = {
        0: server.uri,
        1: False,
        2: int(mode),
        3: identity,
        4: server_key,
        5: secret,
        10: server.short_server_id,
    }
    if oscore is not None:
        values[17] = oscore
    values.update(server.security_extra)
    return values


def _server_values(server: ServerAccount) -> dict[int, object]:
    values: dict[int, object] = {
        0: server.short_server_id,
        1: server.lifetime,
        6: server.notification_storing,
        7: server.binding,
    }
    if server.default_min_period is not None:
        values[2] = server.default_min_period
    if server.default_max_period is not None:
        values[3] = server.default_max_period
    values.update(server.server_extra)
    return values


def _instance(
    models: ModelProvider, object_id: int, instance_id: int, values: Mapping[int, object]
) -> LwM2mObjectInstance:
    resources: list[LwM2mResource] = []
    for rid, value in sorted(values.items()):
        rtype = _type(models, object_id, rid, value)
        if isinstance(value, dict):
            resources.append(LwM2mMultipleResource.from_values(rid, value, rtype))
        else:
            resources.append(LwM2mSingleResource(rid, _as_value(value), rtype))
    return LwM2mObjectInstance.of(instance_id, *resources)


def _as_value(value: object) -> Value:
    if value is None or isinstance(value, str | int | float | bool | bytes | ObjectLink):
        return value
    raise PlanError(f"unsupported value {value!r}")


def _type(models: ModelProvider, object_id: int, rid: int, value: object) -> ResourceType:
    model = models.get_object(object_id)
    resource = None if model is None else model.resource(rid)
    if resource is not None:
        return resource.type
    if isinstance(value, dict):
        value = next(iter(value.values()), "")
    return guess_type(_as_value(value))


def _check_supported(write: Write, client: ClientInfo, models: ModelProvider) -> None:
    """Refuse writes the client's object versions cannot take (checked before any Delete)."""
    object_id = write.path.ids[0]
    if client.discovered and object_id not in client.object_versions:
        raise PlanError(f"{write.path}: the client does not support object {object_id}")
    model = models.get_object(object_id)
    if model is None:
        raise PlanError(f"{write.path}: no model for object {object_id}")
    for rid in write.node.resources:
        if model.resource(rid) is None:
            version = client.object_versions.get(object_id, model.version)
            raise PlanError(
                f"{write.path}/{rid}: the client's {model.name} object is version {version}, "
                f"which has no resource {rid}"
            )

"""What a client told us in its Bootstrap-Discover answer (Core 1.1 §6.1.7.3).

``</>;lwm2m=1.1,</0>;ver=1.2,</0/0>,</0/1>;ssid=101;uri="coaps://lwm2m.example.com",</1/0>;ssid=101,
</3/0>`` gives the client's LwM2M version, the objects and versions it supports, its instances,
and which Security instances are server accounts (``ssid``) and which is the Bootstrap-Server
account (no ``ssid``, or the reserved 0/65535 some clients put there). That account must survive
the bootstrap: we never delete it and never write over its instance id.

Clients of LwM2M 1.0 have no Bootstrap-Discover (they answer 4.04/4.05); ``ClientInfo.unknown``
then stands for "a 1.0 client": object versions 1.0 and, by the common convention (OMA
LwM2M-for-Developers #245/#522), the Bootstrap-Server account at /0/0.

A Bootstrap-Pack-Request has no Discover before it, and the convention is not safe there: a
Pack instance on the account's id *replaces* the account (factory PSK included) and the device
can never bootstrap again. So ``for_pack`` takes the account from what the client says now
(``acc=``, LwM2M 1.2.2: ``GET /bspack?ep=…&acc=</0/1>``), else from the endpoint's last
Discover (``DiscoveryLog``), else it assumes the account may be at /0/0 *or* /0/1 (both are
common: Leshan and Wakaama keep it at /0/0, Anjay and others at /0/1) and keeps clear of both.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Protocol

import attrs

from object_models.codecs.link_format import parse_discover
from object_models.errors import CodecError, InvalidPathError, Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

SECURITY = 0
OSCORE = 21
PACK_GUESS = frozenset({0, 1})
"""Security instance ids that may hold the Bootstrap-Server account when nothing says where it
is: a Bootstrap-Pack writes around both."""


class AccountBasis(enum.Enum):
    """How we know where the client's Bootstrap-Server account is (said in refusals and notes)."""

    DISCOVER = "as its Bootstrap-Discover says"
    CONVENTION = "by convention, as it has no Bootstrap-Discover"
    ACC = "as its acc= parameter says"
    LAST_DISCOVER = "as its last Bootstrap-Discover says"
    GUESS = "unknown: no acc= and no earlier Bootstrap-Discover (/0/0 and /0/1 are both common)"

    @property
    def certain(self) -> bool:
        return self in (AccountBasis.DISCOVER, AccountBasis.ACC, AccountBasis.LAST_DISCOVER)


_BARE_VERSION = re.compile(r'\s*lwm2m\s*=\s*"?[0-9.]+"?\s*,')
"""Core 1.1 §6.1.7.3 note: earlier examples put ``lwm2m=1.0`` before the first link without a
``</>``; servers MAY accept that, and several clients still send it."""


def _versions(value: Mapping[int, str]) -> dict[int, str]:
    return dict(value)


def _instances(value: Mapping[int, tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    return dict(value)


def _ints(value: Mapping[int, int]) -> dict[int, int]:
    return dict(value)


@attrs.frozen
class ClientInfo:
    discovered: bool
    lwm2m_version: str
    object_versions: Mapping[int, str] = attrs.field(factory=dict, converter=_versions)
    instances: Mapping[int, tuple[int, ...]] = attrs.field(factory=dict, converter=_instances)
    bootstrap_instances: frozenset[int] = frozenset()
    security_ssids: Mapping[int, int] = attrs.field(factory=dict, converter=_ints)
    """Security instance id -> short server id of the server accounts."""
    account_basis: AccountBasis = AccountBasis.DISCOVER
    bootstrap_oscore: frozenset[int] = frozenset()
    """OSCORE (21) instances of the Bootstrap-Server account (from ``acc=``): never written."""

    @classmethod
    def unknown(cls) -> ClientInfo:
        return cls(False, "1.0", {}, {}, frozenset({0}), {}, AccountBasis.CONVENTION)

    @classmethod
    def for_pack(
        cls, account: PackAccount | None = None, last: ClientInfo | None = None
    ) -> ClientInfo:
        """A Bootstrap-Pack client (1.2): no Discover happens, so object versions are the latest
        known; the Bootstrap-Server account is where ``acc=`` says, else where the endpoint's
        last Discover saw it, else possibly at /0/0 or /0/1 (``PACK_GUESS``)."""
        if account is not None and account.security:
            return cls(False, "1.2", {}, {}, account.security, {}, AccountBasis.ACC,
                       account.oscore)  # fmt: skip
        oscore = frozenset() if account is None else account.oscore
        if last is not None and last.discovered and last.bootstrap_instances:
            return cls(False, "1.2", {}, {}, last.bootstrap_instances, {},
                       AccountBasis.LAST_DISCOVER, oscore)  # fmt: skip
        return cls(False, "1.2", {}, {}, PACK_GUESS, {}, AccountBasis.GUESS, oscore)

    def account_paths(self) -> str:
        return ", ".join(f"/0/{i}" for i in sorted(self.bootstrap_instances)) or "none"

    # -- what the bootstrap store keeps of a Discover --------------------------------------------
    def to_json(self) -> dict[str, object]:
        return {
            "lwm2m": self.lwm2m_version,
            "objects": {str(k): v for k, v in self.object_versions.items()},
            "instances": {str(k): list(v) for k, v in self.instances.items()},
            "bootstrap": sorted(self.bootstrap_instances),
            "ssids": {str(k): v for k, v in self.security_ssids.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ClientInfo:
        """A Discover the store kept (``to_json``); ``ValueError`` if it is not one."""
        try:
            objects = data["objects"]
            instances = data["instances"]
            bootstrap = data["bootstrap"]
            ssids = data["ssids"]
            assert isinstance(objects, Mapping) and isinstance(instances, Mapping)
            assert isinstance(bootstrap, list) and isinstance(ssids, Mapping)
            return cls(
                True,
                str(data["lwm2m"]),
                {int(k): str(v) for k, v in objects.items()},
                {int(k): tuple(int(i) for i in v) for k, v in instances.items()},
                frozenset(int(i) for i in bootstrap),
                {int(k): int(v) for k, v in ssids.items()},
                AccountBasis.LAST_DISCOVER,
            )
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"not a stored Bootstrap-Discover: {exc!r}") from None

    @classmethod
    def from_discover(cls, payload: bytes) -> ClientInfo:
        """Parse a Bootstrap-Discover of ``/``; ``CodecError`` if it is not link format."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"Bootstrap-Discover answer is not UTF-8 (byte {exc.start})") from None
        if _BARE_VERSION.match(text):
            text = "</>;" + text.lstrip()
        version = "1.0"
        versions: dict[int, str] = {}
        instances: dict[int, list[int]] = {}
        bootstrap: set[int] = set()
        ssids: dict[int, int] = {}
        for link in parse_discover(text):
            path, attributes = link.path, link.attributes
            if path.is_root:
                raw = attributes.get("lwm2m")
                if raw is not None:
                    version = str(raw)
                continue
            object_id = path.ids[0]
            if path.is_object:
                raw_ver = attributes.get("ver")
                versions[object_id] = "1.0" if raw_ver is None else str(raw_ver)
                continue
            if not path.is_object_instance:
                continue
            versions.setdefault(object_id, "1.0")
            instances.setdefault(object_id, []).append(path.ids[1])
            if object_id == SECURITY:
                ssid = attributes.get("ssid")
                if isinstance(ssid, int) and 0 < ssid < 65535:
                    ssids[path.ids[1]] = ssid
                else:
                    bootstrap.add(path.ids[1])
        return cls(
            True,
            version,
            versions,
            {k: tuple(v) for k, v in instances.items()},
            frozenset(bootstrap),
            ssids,
        )

    def version_at_least(self, version: str) -> bool:
        def key(text: str) -> tuple[int, ...]:
            return tuple(int(p) for p in text.split(".") if p.isdigit())

        return key(self.lwm2m_version) >= key(version)


@attrs.frozen
class PackAccount:
    """``acc=`` of a Bootstrap-Pack-Request (LwM2M 1.2.2): the instances that make up the
    client's Bootstrap-Server account, as CoRE links (``</0/1>,</21/0>``)."""

    security: frozenset[int] = frozenset()
    oscore: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> PackAccount:
        """4.00 for anything but instance links of /0, /21, /23, /24 without parameters."""
        security: set[int] = set()
        oscore: set[int] = set()
        for item in (part.strip() for part in text.split(",")):
            if not (item.startswith("<") and item.endswith(">")):
                raise _bad_acc(item, "expected a link like </0/1>")
            try:
                path = LwM2mPath.parse(item[1:-1])
            except InvalidPathError as exc:
                raise _bad_acc(item, str(exc)) from None
            if not path.is_object_instance:
                raise _bad_acc(item, "not an object instance")
            object_id, instance_id = path.ids
            if object_id == SECURITY:
                security.add(instance_id)
            elif object_id == OSCORE:
                oscore.add(instance_id)
            elif object_id not in (23, 24):
                raise _bad_acc(item, "not an object of a Bootstrap-Server account")
        return cls(frozenset(security), frozenset(oscore))


def _bad_acc(item: str, reason: str) -> Lwm2mError:
    return Lwm2mError(f"acc: {item!r}: {reason}", code=ResponseCode.BAD_REQUEST)


class DiscoveryLog(Protocol):
    """The last Bootstrap-Discover answer per endpoint (the bootstrap store keeps it), so a
    later Bootstrap-Pack knows where that client's Bootstrap-Server account is."""

    def last_discover(self, endpoint: str) -> ClientInfo | None: ...

    def put_discover(self, endpoint: str, client: ClientInfo, now: float) -> None: ...


class MemoryDiscoveries:
    """``DiscoveryLog`` in a dict (tests, a manager without a store)."""

    def __init__(self) -> None:
        self._last: dict[str, ClientInfo] = {}

    def last_discover(self, endpoint: str) -> ClientInfo | None:
        return self._last.get(endpoint)

    def put_discover(self, endpoint: str, client: ClientInfo, now: float) -> None:
        self._last[endpoint] = attrs.evolve(client, account_basis=AccountBasis.LAST_DISCOVER)

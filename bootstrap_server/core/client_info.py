"""What a client told us in its Bootstrap-Discover answer (Core 1.1 §6.1.7.3).

``</>;lwm2m=1.1,</0>;ver=1.2,</0/0>,</0/1>;ssid=101;uri="coaps://lwm2m.example.com",</1/0>;ssid=101,
</3/0>`` gives the client's LwM2M version, the objects and versions it supports, its instances,
and which Security instances are server accounts (``ssid``) and which is the Bootstrap-Server
account (no ``ssid``, or the reserved 0/65535 some clients put there). That account must survive
the bootstrap: we never delete it and never write over its instance id.

Clients of LwM2M 1.0 have no Bootstrap-Discover (they answer 4.04/4.05); ``ClientInfo.unknown``
then stands for "a 1.0 client": object versions 1.0 and, by the common convention (OMA
LwM2M-for-Developers #245/#522), the Bootstrap-Server account at /0/0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from object_models.codecs.link_format import parse_discover
from object_models.errors import CodecError

SECURITY = 0
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

    @classmethod
    def unknown(cls) -> ClientInfo:
        return cls(False, "1.0", {}, {}, frozenset({0}), {})

    @classmethod
    def for_pack(cls) -> ClientInfo:
        """A Bootstrap-Pack client (1.2): no Discover happens, so object versions are the latest
        known and the Bootstrap-Server account is assumed at /0/0 (OMA issue #547)."""
        return cls(False, "1.2", {}, {}, frozenset({0}), {})

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

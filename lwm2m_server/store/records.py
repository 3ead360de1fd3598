"""JSON forms of the records the stores keep, shared by every engine (sqlite now, Redis later).

Values carry their Python type explicitly (``["o", "AAE="]`` for opaque bytes, ``["l", "3:0"]``
for an object link, ``["f", "nan"]`` for a non-finite float) so that what is read back is
exactly what was written: JSON alone would turn bytes into strings and ``1.0`` into ``1``.
Every ``*_from_json`` raises ``ValueError`` on a record it cannot read.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from keystore.resolver import IdentityBinding
from keystore.store.database import dumps
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.core.telemetry import TelemetryPoint
from object_models.errors import Lwm2mError
from object_models.path import LwM2mPath
from object_models.types import ObjectLink, ResourceType, Value

RECORD_VERSION = 1

T = TypeVar("T")


# -- values ---------------------------------------------------------------------------------------


def value_to_json(value: Value) -> list[Any]:
    """Tagged JSON of an LwM2M value; ``TypeError`` for anything that is not a ``Value``."""
    if value is None:
        return ["n", None]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value if math.isfinite(value) else repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, bytes):
        return ["o", base64.b64encode(value).decode("ascii")]
    if isinstance(value, ObjectLink):
        return ["l", str(value)]
    raise TypeError(f"not an LwM2M value: {type(value).__name__}")


def value_from_json(data: object) -> Value:
    if not isinstance(data, list) or len(data) != 2 or not isinstance(data[0], str):
        raise ValueError(f"not a tagged value: {data!r}")
    tag, raw = data
    if tag == "n" and raw is None:
        return None
    if tag == "b" and isinstance(raw, bool):
        return raw
    if tag == "i" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if tag == "f" and isinstance(raw, int | float | str) and not isinstance(raw, bool):
        return float(raw)
    if tag == "s" and isinstance(raw, str):
        return raw
    if tag == "o" and isinstance(raw, str):
        return base64.b64decode(raw, validate=True)
    if tag == "l" and isinstance(raw, str):
        return ObjectLink.parse(raw)
    raise ValueError(f"unreadable tagged value: {data!r}")


# -- registrations --------------------------------------------------------------------------------


def _links_json(links: ObjectLinks, compact: bool = False) -> dict[str, Any]:
    """The stored form of an object list: ``{"text": ...}`` alone when ``compact`` and the
    text parses to exactly this object (what every Register and Update makes), else the text
    and what it declares (a hand-built ``ObjectLinks``, text the parser reads otherwise now)."""
    if compact and _parses_to(links):
        return {"text": links.text}
    return {
        "text": links.text,
        "objects": {str(k): v for k, v in links.objects.items()},
        "instances": {str(k): list(v) for k, v in links.instances.items()},
        "root_path": links.root_path,
        "content_formats": sorted(links.content_formats),
    }


def _parses_to(links: ObjectLinks) -> bool:
    try:
        parsed = ObjectLinks.parse(links.text)
    except Exception:  # text the parser refuses
        return False
    return parsed is links or parsed == links


def registration_to_json(reg: Registration, *, compact_links: bool = False) -> dict[str, Any]:
    """The record; ``compact_links``: the object list as its text alone when that parses to it
    (the sqlite store's form since its schema version 3, ``registration_text``)."""
    return {
        "v": RECORD_VERSION,
        "id": reg.registration_id,
        "endpoint": reg.endpoint,
        "address": [reg.address.host, reg.address.port],
        "lifetime": reg.lifetime,
        "lwm2m_version": reg.lwm2m_version,
        "binding": reg.binding,
        "sms_number": reg.sms_number,
        "queue_mode": reg.queue_mode,
        "object_links": _links_json(reg.object_links, compact_links),
        "transport": reg.transport,
        "identity": None if reg.identity is None else [reg.identity.mode, reg.identity.identity],
        "registered_at": reg.registered_at,
        "last_update": reg.last_update,
        "additional_attributes": dict(reg.additional_attributes),
    }


_string = json.encoder.encode_basestring
"""The JSON string literal of a ``str`` as ``dumps`` writes it (``ensure_ascii=False``; C)."""

_LINKS_TEXT_CACHE = 1024
_links_text: dict[str, tuple[ObjectLinks, str]] = {}
"""Object-list text -> (the ``ObjectLinks`` object, its JSON), see ``registration_text``."""


def registration_text(reg: Registration) -> str:
    """``dumps(registration_to_json(reg, compact_links=True))``: the same text, built directly
    (the sqlite store's record: the object list as its text alone, issue 10's smaller rows).

    Why: the record is written on every Register, and ``json.dumps`` of its ~30-leaf dict was
    ~28 µs of a ~180 µs Register on the development machine. Most of it is the object list,
    which registrations share (``ObjectLinks.parse`` hands out one object per distinct text),
    so its JSON is kept per object (identity, not equality: a hit is the very object it was
    made from); the rest is a handful of fields joined in order. Anything of an unexpected
    type (a subclass, an int where a float belongs, a non-finite time) takes the reference
    path, which raises or converts exactly as before. ``tests/unit/store/test_records.py``
    holds the two to the same text on arbitrary registrations.

    A registration of the usual shape (no SMS number, no identity, no extra attributes) is
    filled into its *shape's* text (``_shaped_text``), built once per shape; a Register's two
    times, one object (``Registration.create`` sets both to ``now``), are written once."""
    address = reg.address
    registered_at, last_update = reg.registered_at, reg.last_update
    lifetime, port, identity = reg.lifetime, address.port, reg.identity
    if not (
        type(registered_at) is float
        and type(last_update) is float
        and math.isfinite(registered_at)
        and math.isfinite(last_update)
        and type(lifetime) is int
        and type(port) is int
        and type(reg.queue_mode) is bool
    ):
        return dumps(registration_to_json(reg, compact_links=True))
    links = reg.object_links
    sms = reg.sms_number
    attributes = reg.additional_attributes
    try:
        if sms is None and identity is None and not attributes:
            shaped = _shaped_text(reg, links, lifetime)
            if shaped is not None:
                registered = float.__repr__(registered_at)
                return _SHAPED % (
                    _string(reg.registration_id),
                    _string(reg.endpoint),
                    _string(address.host),
                    int.__repr__(port),
                    shaped,
                    registered,
                    registered if last_update is registered_at else float.__repr__(last_update),
                )
        links_json = _links_text_of(links)
        return "".join(
            (
                '{"v":',
                str(RECORD_VERSION),
                ',"id":',
                _string(reg.registration_id),
                ',"endpoint":',
                _string(reg.endpoint),
                ',"address":[',
                _string(address.host),
                ",",
                int.__repr__(port),
                '],"lifetime":',
                int.__repr__(lifetime),
                ',"lwm2m_version":',
                _string(reg.lwm2m_version),
                ',"binding":',
                _string(reg.binding),
                ',"sms_number":',
                "null" if sms is None else _string(sms),
                ',"queue_mode":',
                "true" if reg.queue_mode else "false",
                ',"object_links":',
                links_json,
                ',"transport":',
                _string(reg.transport),
                ',"identity":',
                (
                    "null"
                    if identity is None
                    else f"[{_string(identity.mode)},{_string(identity.identity)}]"
                ),
                ',"registered_at":',
                float.__repr__(registered_at),
                ',"last_update":',
                float.__repr__(last_update),
                ',"additional_attributes":',
                dumps(dict(attributes)) if attributes else "{}",
                "}",
            )
        )
    except TypeError:  # a field that is not a string: the reference path says what it does
        return dumps(registration_to_json(reg, compact_links=True))


def _links_text_of(links: ObjectLinks) -> str:
    """The JSON of ``links`` in the record, kept per object (``registration_text``)."""
    cached = _links_text.get(links.text)
    if cached is not None and cached[0] is links:
        return cached[1]
    links_json = dumps(_links_json(links, compact=True))
    if len(_links_text) >= _LINKS_TEXT_CACHE:
        del _links_text[next(iter(_links_text))]
    _links_text[links.text] = (links, links_json)
    return links_json


_SHAPED = (
    '{"v":' + str(RECORD_VERSION) + ',"id":%s,"endpoint":%s,"address":[%s,%s]%s%s'
    ',"last_update":%s,"additional_attributes":{}}'
)
"""A record of the usual shape around its per-registration fields: the id, the endpoint, the
address, the shape's text (``_shaped_text``) and the two times."""
_SHAPES_CACHE = 1024
_shapes: dict[tuple[str, int, str, str, bool, str], tuple[ObjectLinks, str]] = {}
"""(object-list text, lifetime, version, binding, queue mode, transport) -> (the
``ObjectLinks`` object, the record's text from ``,"lifetime":`` to ``"registered_at":``)."""


def _shaped_text(reg: Registration, links: ObjectLinks, lifetime: int) -> str | None:
    """The part of the record a fleet's registrations share: ``,"lifetime":…,"lwm2m_version":
    …,"binding":…,"sms_number":null,"queue_mode":…,"object_links":…,"transport":…,"identity":
    null,"registered_at":``, made once per shape (a fleet registers with a handful) and kept
    per object list *object*, as ``_links_text``; None for a field that is not exactly a
    ``str`` (the join decides then).

    Why: the join of ~30 parts with four string escapes and two integer reprs per Register
    was most of the record's ~3 µs; of a usual Register's record only the id, the endpoint,
    the address and the times differ from the fleet's other registrations."""
    version, binding, transport, queue = (
        reg.lwm2m_version,
        reg.binding,
        reg.transport,
        reg.queue_mode,
    )
    if type(version) is not str or type(binding) is not str or type(transport) is not str:
        return None
    key = (links.text, lifetime, version, binding, queue, transport)
    cached = _shapes.get(key)
    if cached is not None and cached[0] is links:
        return cached[1]
    text = "".join(
        (
            ',"lifetime":',
            int.__repr__(lifetime),
            ',"lwm2m_version":',
            _string(version),
            ',"binding":',
            _string(binding),
            ',"sms_number":null,"queue_mode":',
            "true" if queue else "false",
            ',"object_links":',
            _links_text_of(links),
            ',"transport":',
            _string(transport),
            ',"identity":null,"registered_at":',
        )
    )
    if len(_shapes) >= _SHAPES_CACHE:
        del _shapes[next(iter(_shapes))]
    _shapes[key] = (links, text)
    return text


def _field(data: dict[str, Any], name: str, convert: Callable[[Any], T]) -> T:
    """``convert(data[name])``; a ``ValueError`` naming the field, so that a quarantined row
    says which field of the record is wrong."""
    try:
        raw = data[name]
    except KeyError:
        raise ValueError(f"field {name!r} is missing") from None
    try:
        return convert(raw)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        detail = f"{exc!r}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"field {name!r}: {detail} (value {raw!r:.80})") from None


def _address(raw: Any) -> Address:
    host, port = raw
    return Address(str(host), int(port))


_LINKS_READ_CACHE = 1024
_links_read: dict[str, tuple[dict[str, Any], dict[str, Any], ObjectLinks]] = {}
"""Object-list text -> (the JSON the writer makes of an ``ObjectLinks`` read before, in full
and compact, and that object), see ``_links``."""


def _links(links: Any) -> ObjectLinks:
    """The ``ObjectLinks`` of a stored object list, shared by every record that stores the
    same one.

    Why: a fleet registers with a handful of distinct object lists, and converting the
    ``objects``/``instances`` maps of each record was ~15 µs of the ~35 µs a start-up spends per
    stored registration (issue 10: restart with 100k registrations in ≤ 3 s). A record whose
    object-list JSON is *equal* to the JSON the writer makes of an object read before (a C-level
    dict comparison) gets that object; anything else is converted field by field as always. The
    object converted first is swapped for ``ObjectLinks.parse``'s shared one of the same text
    when they are equal, so a restored registration shares it with the live Registers of that
    text (memory, and ``registration_text``'s per-object JSON). The compact form
    (``{"text": ...}`` alone, ``_links_json``) is ``ObjectLinks.parse`` of its text."""
    text = links["text"]
    if type(text) is str:
        seen = _links_read.get(text)
        if seen is not None and (seen[0] == links or seen[1] == links):
            # equal to the JSON the writer makes of that object: every field converted with
            # str() is that very string, every int() one a number equal to it (the same int)
            return seen[2]
        if len(links) == 1:  # the compact form (``_links_json``): the text says it all
            try:
                converted = ObjectLinks.parse(text)
            except Lwm2mError as exc:
                raise ValueError(f"unreadable object list: {exc.message}") from None
            _remember_links(converted)
            return converted
    converted = ObjectLinks(
        text=str(text),
        objects={int(k): None if v is None else str(v) for k, v in links["objects"].items()},
        instances={int(k): tuple(int(i) for i in v) for k, v in links["instances"].items()},
        root_path=str(links["root_path"]),
        content_formats=frozenset(int(c) for c in links["content_formats"]),
    )
    try:
        shared = ObjectLinks.parse(converted.text)
    except Exception:  # text the parser refuses: the record reads as it is stored
        shared = None
    if shared is not None and shared == converted:
        converted = shared
    _remember_links(converted)
    return converted


def _remember_links(links: ObjectLinks) -> None:
    if len(_links_read) >= _LINKS_READ_CACHE:
        del _links_read[next(iter(_links_read))]
    _links_read[links.text] = (_links_json(links), _links_json(links, compact=True), links)


def _identity(identity: Any) -> IdentityBinding | None:
    return None if identity is None else IdentityBinding(str(identity[0]), str(identity[1]))


def _optional_str(raw: Any) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise TypeError(f"expected a string or null, got {type(raw).__name__}")
    return raw


def _check_record(data: object, what: str) -> None:
    """A stored record is a JSON object of our record version (``what``: "a registration")."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} record is a JSON object, not {type(data).__name__}")
    if data.get("v") != RECORD_VERSION:
        raise ValueError(f"unknown {what.split()[-1]} record version {data.get('v')!r}")


def registration_from_json(
    data: dict[str, Any],
    last_update: object = None,
    lifetime: object = None,
    host: object = None,
    port: object = None,
) -> Registration:
    """The registration of a stored record; ``ValueError`` naming the field it cannot read.

    ``last_update``, ``lifetime``, ``host`` and ``port`` (all four or none): the values of
    the sqlite row's columns, which an Update that only touched the row made newer than the
    record; they replace the record's (which must still be readable)."""
    _check_record(data, "a registration")
    touched = not (lifetime is None or host is None or port is None)
    fast = _registration_fast(data, last_update, lifetime, host, port, touched)
    if fast is not None:
        return fast
    reg = _registration_checked(data)
    if touched and (
        reg.last_update != last_update
        or reg.lifetime != lifetime
        or reg.address.port != port
        or reg.address.host != host
    ):
        reg = attrs.evolve(
            reg,
            last_update=float(last_update),  # type: ignore[arg-type]
            lifetime=int(lifetime),  # type: ignore[call-overload]
            address=Address(str(host), int(port)),  # type: ignore[call-overload]
        )
    return reg


def _registration_fast(
    data: dict[str, Any],
    last_update: object,
    lifetime: object,
    host: object,
    port: object,
    touched: bool,
) -> Registration | None:
    """``registration_from_json`` of a record whose every field has exactly the type the
    writer gives it (all of them, always); None for anything else, which the checked path then
    converts or refuses with its field-naming error. The same ``Registration`` the checked path
    would build, at a third of its cost (a start-up reads every stored record)."""
    try:
        reg_id, endpoint, address = data["id"], data["endpoint"], data["address"]
        record_lifetime, version = data["lifetime"], data["lwm2m_version"]
        binding, sms, queue = data["binding"], data["sms_number"], data["queue_mode"]
        links, transport, identity = data["object_links"], data["transport"], data["identity"]
        registered_at, record_update = data["registered_at"], data["last_update"]
        attributes = data["additional_attributes"]
    except KeyError:  # the checked path names the missing field
        return None
    if not (
        type(reg_id) is str
        and type(endpoint) is str
        and type(version) is str
        and type(binding) is str
        and type(transport) is str
        and (sms is None or type(sms) is str)
        and type(queue) is bool
        and type(record_lifetime) is int
        and type(registered_at) is float
        and type(record_update) is float
        and type(address) is list
        and len(address) == 2
        and type(address[0]) is str
        and type(address[1]) is int
        and type(attributes) is dict
        and type(links) is dict
    ):
        return None
    if identity is not None:
        if not (
            type(identity) is list
            and len(identity) == 2
            and type(identity[0]) is str
            and type(identity[1]) is str
        ):
            return None
        identity = IdentityBinding(identity[0], identity[1])
    if attributes and not all(type(v) is str for v in attributes.values()):
        return None
    if touched:
        if not (
            type(last_update) is float
            and type(lifetime) is int
            and type(host) is str
            and type(port) is int
        ):
            return None
        record_update, record_lifetime = last_update, lifetime
        where = Address(host, port)
    else:
        where = Address(address[0], address[1])
    try:
        object_links = _links(links)
    except Exception:  # the checked path says what is wrong with it
        return None
    return Registration(
        registration_id=reg_id,
        endpoint=endpoint,
        address=where,
        lifetime=record_lifetime,
        lwm2m_version=version,
        binding=binding,
        sms_number=sms,
        queue_mode=queue,
        object_links=object_links,
        transport=transport,
        identity=identity,
        registered_at=registered_at,
        last_update=record_update,
        additional_attributes=attributes,
    )


def _registration_checked(data: dict[str, Any]) -> Registration:
    try:
        return Registration(
            registration_id=_field(data, "id", str),
            endpoint=_field(data, "endpoint", str),
            address=_field(data, "address", _address),
            lifetime=_field(data, "lifetime", int),
            lwm2m_version=_field(data, "lwm2m_version", str),
            binding=_field(data, "binding", str),
            sms_number=_field(data, "sms_number", _optional_str),
            queue_mode=_field(data, "queue_mode", bool),
            object_links=_field(data, "object_links", _links),
            transport=_field(data, "transport", str),
            identity=_field(data, "identity", _identity),
            registered_at=_field(data, "registered_at", float),
            last_update=_field(data, "last_update", float),
            additional_attributes=_field(
                data, "additional_attributes", lambda a: {str(k): str(v) for k, v in a.items()}
            ),
        )
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable registration record: {exc!r}") from None


# -- observations ---------------------------------------------------------------------------------


def observation_to_json(obs: Observation) -> dict[str, Any]:
    return {
        "v": RECORD_VERSION,
        "token": obs.token.hex(),
        "endpoint": obs.endpoint,
        "registration_id": obs.registration_id,
        "paths": [str(p) for p in obs.paths],
        "content_format": obs.content_format,
        "created_at": obs.created_at,
        "composite": obs.composite,
        "active": obs.active,
        "last_notification": obs.last_notification,
    }


def _optional(convert: Callable[[Any], T]) -> Callable[[Any], T | None]:
    return lambda raw: None if raw is None else convert(raw)


def observation_from_json(data: dict[str, Any]) -> Observation:
    _check_record(data, "an observation")
    try:
        return Observation(
            token=_field(data, "token", bytes.fromhex),
            endpoint=_field(data, "endpoint", str),
            registration_id=_field(data, "registration_id", str),
            paths=_field(data, "paths", lambda ps: tuple(LwM2mPath.parse(p) for p in ps)),
            content_format=_field(data, "content_format", _optional(int)),
            created_at=_field(data, "created_at", float),
            composite=_field(data, "composite", bool),
            active=_field(data, "active", bool),
            last_notification=_field(data, "last_notification", _optional(float)),
        )
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable observation record: {exc!r}") from None


# -- telemetry ------------------------------------------------------------------------------------


def check_point(point: TelemetryPoint) -> tuple[str, str, str, int, str, str]:
    """The row of a point, after checking every field (so a bad point fails before any write)."""
    if not isinstance(point, TelemetryPoint):
        raise TypeError(f"expected a TelemetryPoint, got {type(point).__name__}")
    endpoint, path, key, ts_ms = point.endpoint, point.path, point.key, point.ts_ms
    if not (
        endpoint.__class__ is str
        and path.__class__ is str
        and key.__class__ is str
        and endpoint
        and path
        and key
    ):  # the usual three plain non-empty strings pass above; anything else is checked here
        for name, text in (("endpoint", endpoint), ("path", path), ("key", key)):
            if not text or not isinstance(text, str):
                raise ValueError(f"telemetry point {name} must be a non-empty string")
    if type(ts_ms) is not int and (isinstance(ts_ms, bool) or not isinstance(ts_ms, int)):
        raise TypeError(f"telemetry ts_ms must be an int, got {ts_ms!r}")
    if not -(2**63) <= ts_ms < 2**63:
        raise ValueError(f"telemetry ts_ms {ts_ms} is out of range")
    rtype = point.type
    if rtype.__class__ is not ResourceType and not isinstance(rtype, ResourceType):
        raise TypeError(f"telemetry type must be a ResourceType, got {rtype!r}")
    # ``_value_``: what ``.value`` returns, without the enum's descriptor (a Python-level call)
    return (endpoint, path, key, ts_ms, rtype._value_, value_text(point.value))


def value_text(value: Value) -> str:
    """``dumps(value_to_json(value))``, with the two common cases (a finite float, an int)
    written directly — the same text (``json`` writes numbers with their ``repr``), a third
    of the cost, on every stored value."""
    kind = type(value)
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return f'["f",{float.__repr__(value)}]'
    if kind is int:
        return f'["i",{int.__repr__(value)}]'
    return dumps(value_to_json(value))


def point_from_row(
    endpoint: str, path: str, key: str, ts_ms: int, type_name: str, value: str
) -> TelemetryPoint:
    return TelemetryPoint(
        endpoint,
        path,
        key,
        int(ts_ms),
        value_from_json(json.loads(value)),
        ResourceType(type_name),
    )

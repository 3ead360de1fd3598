"""What a client told us when it registered, and the validation of Register/Update requests.

Everything here is a value: ``RegistrationRequest.parse`` and ``UpdateRequest.parse`` turn the
Uri-Query and payload of a CoAP request into checked, typed requests or raise ``Lwm2mError``
carrying the CoAP code to answer with, so the CoAP adapter never decides a code itself.

Parameter rules (LwM2M Core 1.1/1.2 §6.2, Transport §5; Leshan's behaviour where the spec is
silent):

| param   | Register                   | Update          | bad value                        |
|---------|----------------------------|-----------------|----------------------------------|
| ``ep``  | mandatory, 1..255 chars    | same value only | missing/empty → 4.00             |
| ``lt``  | optional, default 86400    | optional        | not a positive integer → 4.00    |
| ``lwm2m`` | optional, default 1.0    | same value only | not 1.0/1.1/1.2 → 4.12           |
| ``b``   | optional, default ``U``    | optional        | unknown letter → 4.00            |
| ``sms`` | optional                   | optional        |                                  |
| ``Q``   | flag, no value             | flag, no value  | ``Q=…`` → 4.00                   |

Binding letters: 1.0 takes ``U``, ``UQ``, ``S``, ``SQ``, ``US``, ``UQS`` (the ``Q`` after a
transport is queue mode); 1.1 and 1.2 take any set of ``U`` ``M`` ``H`` ``T`` ``S`` ``N`` and
carry queue mode in the separate ``Q`` parameter (``Q`` in ``b`` is refused there, as in Leshan).
A ``Q`` parameter from a 1.0 client is accepted too (harmless, and some clients send both).
``ep`` and ``lwm2m`` are not Update parameters (Core §6.2.2 lists ``lt``, ``b``, ``sms``,
``Q`` and the object list), but some clients repeat ``lwm2m=1.0`` (or ``ep``) in every Update;
refusing that made their registrations expire. So an Update may repeat the *registered* value
(Leshan ignores both, Wakaama ignores ``lwm2m``); a different value is a 4.00, since neither can
change without a new Register (4.12 is the Register's answer to a version it cannot serve, the
Update's failure codes are 4.00 and 4.04).
Unknown parameters are kept in ``additional_attributes`` rather than refused: the 1.0 response
table allows 4.00 for them, but real clients send resource-directory extras (``et``, ``d``) and
refusing those would lock them out (Leshan keeps them too).
The payload must be CoRE link-format (Content-Format 40); a request without a Content-Format
option is taken as link-format (several clients omit it), any other format is 4.15.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import attrs

from keystore.credentials import MAX_ENDPOINT
from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode

DEFAULT_LIFETIME = 86400
"""Core §6.2.1: a Register without ``lt`` gets one day."""

MAX_LIFETIME = 2**32 - 1
"""Larger lifetimes are refused: they would never expire and overflow 32-bit client timers."""

MAX_ENDPOINT_LENGTH = MAX_ENDPOINT
"""The keystore's limit (255, ``keystore.credentials.MAX_ENDPOINT`` says why): a name the
device records could not hold must not register either."""
MAX_LINK_PAYLOAD = 64 * 1024
"""A Register payload larger than this is 4.13: thousands of objects is already absurd."""

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
BINDINGS_1_0 = frozenset({"U", "UQ", "S", "SQ", "US", "UQS"})
BINDING_LETTERS_1_1 = frozenset("UMHTSN")

QueryInput = Sequence[str] | Mapping[str, str | None]
"""Either a request's Uri-Query options (``("ep=foo", "Q")``) or an already split mapping."""


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


def _str_map(value: Mapping[str, str]) -> Mapping[str, str]:
    """A copy; the empty case (nearly every registration) shares one read-only empty mapping
    instead of an empty dict each (readers copy it with ``dict()`` anyway)."""
    return dict(value) if value else _NO_ATTRIBUTES


def _objects_map(value: Mapping[int, str | None]) -> dict[int, str | None]:
    return dict(value)


def _instances_map(value: Mapping[int, tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    return {k: tuple(v) for k, v in value.items()}


def _bad(message: str, code: ResponseCode = ResponseCode.BAD_REQUEST) -> Lwm2mError:
    return Lwm2mError(message, code=code)


# -- object links ---------------------------------------------------------------------------------


@attrs.frozen
class ObjectLinks:
    """The object list of a Register/Update payload: the raw text and what it declares.

    Interpretation is ``object_models.codecs.link_format.parse_object_links`` (the project's one
    link-format parser): ``objects`` maps every declared object to its ``ver`` (``None`` when the
    link had none: the registry then picks the core default for the client's LwM2M version),
    ``instances`` lists instances per object in payload order, ``root_path`` is the alternate
    path of the ``rt="oma.lwm2m"`` link (``/lwm2m``; ``/`` by default) that downlink requests
    are prefixed with, ``content_formats`` what its ``ct=`` announces (LwM2M 1.1+). Links that
    are not objects or instances are ignored there.
    """

    text: str = ""
    objects: Mapping[int, str | None] = attrs.field(factory=dict, converter=_objects_map)
    instances: Mapping[int, tuple[int, ...]] = attrs.field(factory=dict, converter=_instances_map)
    root_path: str = "/"
    content_formats: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> ObjectLinks:
        """Parse link-format text; malformed text is a 4.00 that says where.

        A fleet registers with a handful of distinct object lists, so each distinct text is
        parsed once and its ``ObjectLinks`` shared by every registration that declares it
        (a value: nothing mutates it), which saves the parse on most Registers and the
        memory of one copy per registration. The cache is bounded (oldest text out first)."""
        cached = _PARSED.get(text)
        if cached is not None:
            return cached
        from object_models.codecs.link_format import parse_object_links

        try:
            declared = parse_object_links(text)
        except Lwm2mError as exc:
            raise _bad(f"invalid object list: {exc.message}") from None
        links = cls(
            text=text,
            objects=declared.objects,
            instances=declared.instances,
            root_path=declared.root_path,
            content_formats=frozenset(declared.content_formats),
        )
        if len(_PARSED) >= PARSED_LINKS_CACHE:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[text] = links
        return links


PARSED_LINKS_CACHE = 1024
"""Distinct object-list texts whose parse is kept (a few hundred bytes to a few KB each)."""
_PARSED: dict[str, ObjectLinks] = {}


def _links_from_payload(payload: bytes, content_format: int | None, required: bool) -> ObjectLinks:
    if content_format is not None and content_format != ContentFormat.LINK:
        raise _bad(
            f"the object list must be application/link-format (40), got content format "
            f"{content_format}",
            ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
        )
    if len(payload) > MAX_LINK_PAYLOAD:
        raise _bad(
            f"object list of {len(payload)} bytes exceeds {MAX_LINK_PAYLOAD}",
            ResponseCode.REQUEST_ENTITY_TOO_LARGE,
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the object list is not valid UTF-8") from None
    if not text.strip():
        if required:
            raise _bad("Register needs the list of objects and object instances as payload")
        return ObjectLinks()
    return ObjectLinks.parse(text)


# -- query parameters -----------------------------------------------------------------------------


def split_query(query: QueryInput) -> dict[str, str | None]:
    """``["ep=a", "Q"]`` → ``{"ep": "a", "Q": None}``; a parameter given twice is a 4.00."""
    if isinstance(query, Mapping):
        return dict(query)
    result: dict[str, str | None] = {}
    for item in query:
        if isinstance(item, bytes):
            item = item.decode("utf-8", "replace")
        name, sep, value = item.partition("=")
        if name in result:
            raise _bad(f"query parameter {name!r} is given twice")
        result[name] = value if sep else None
    return result


def _value(params: Mapping[str, str | None], name: str) -> str | None:
    if name not in params:
        return None
    value = params[name]
    if value is None:
        raise _bad(f"query parameter {name!r} needs a value")
    return value


_LIFETIME = re.compile(r"[0-9]{1,10}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _lifetime(params: Mapping[str, str | None]) -> int | None:
    text = _value(params, "lt")
    if text is None:
        return None
    if not _LIFETIME.fullmatch(text):
        raise _bad(f"lifetime lt={text!r} is not a non-negative integer number of seconds")
    value = int(text)
    if not 1 <= value <= MAX_LIFETIME:
        raise _bad(f"lifetime lt={value} is outside 1..{MAX_LIFETIME} seconds")
    return value


def _queue_flag(params: Mapping[str, str | None]) -> bool:
    if "Q" not in params:
        return False
    if params["Q"] not in (None, ""):
        raise _bad("queue mode parameter Q takes no value")
    return True


def check_version(version: str) -> str:
    """The version, as the one shared string of ``SUPPORTED_VERSIONS`` (not one copy per
    registration)."""
    for supported in SUPPORTED_VERSIONS:
        if version == supported:
            return supported
    raise _bad(
        f"LwM2M version {version!r} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})",
        ResponseCode.PRECONDITION_FAILED,
    )


def check_binding(binding: str, version: str) -> bool:
    """Validate ``b`` for the client's LwM2M version; return whether it asks for queue mode
    (only 1.0 carries queue mode in the binding)."""
    if version == "1.0":
        if binding not in BINDINGS_1_0:
            raise _bad(
                f"binding {binding!r} is not valid for LwM2M 1.0 "
                f"(one of {', '.join(sorted(BINDINGS_1_0))})"
            )
        return "Q" in binding
    letters = set(binding)
    if not binding or not letters <= BINDING_LETTERS_1_1 or len(letters) != len(binding):
        raise _bad(
            f"binding {binding!r} is not valid for LwM2M {version} "
            f"(distinct letters of U, M, H, T, S, N; queue mode is the Q parameter)"
        )
    return False


_KNOWN_REGISTER = frozenset({"ep", "lt", "lwm2m", "b", "sms", "Q"})
_KNOWN_UPDATE = frozenset({"ep", "lwm2m", "lt", "b", "sms", "Q"})


def _additional(params: Mapping[str, str | None], known: frozenset[str]) -> dict[str, str]:
    return {k: (v if v is not None else "") for k, v in params.items() if k not in known}


@attrs.frozen
class RegistrationRequest:
    """A validated Register (``POST /rd?ep=…``)."""

    endpoint: str
    lifetime: int = DEFAULT_LIFETIME
    lwm2m_version: str = "1.0"
    binding: str = "U"
    sms_number: str | None = None
    queue_mode: bool = False
    object_links: ObjectLinks = attrs.field(factory=ObjectLinks)
    additional_attributes: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)

    @classmethod
    def parse(
        cls, query: QueryInput, payload: bytes, content_format: int | None = ContentFormat.LINK
    ) -> RegistrationRequest:
        """The checked request, or the ``Lwm2mError`` to answer with.

        A Register of the usual shape (``ep``, ``lt``, ``lwm2m``, ``b``, ``Q``, an object list
        parsed before) is read in one pass (``_common_register``); anything else, and every
        request the fast reader has a doubt about, goes through ``checked``, which decides the
        answer (``tests/unit/server/test_registration_fast.py`` holds the two to the same
        request)."""
        request = _common_register(query, payload, content_format)
        if request is not None:
            return request
        return cls.checked(query, payload, content_format)

    @staticmethod
    def usual(
        query: QueryInput, payload: bytes, content_format: int | None
    ) -> RegistrationRequest | None:
        """``parse``'s answer for a Register of the usual shape, None for any other (``parse``
        then decides, refusals included): the uplink reads the endpoint it authorizes from
        the parsed request instead of scanning the query for it first."""
        return _common_register(query, payload, content_format)

    @classmethod
    def checked(
        cls, query: QueryInput, payload: bytes, content_format: int | None = ContentFormat.LINK
    ) -> RegistrationRequest:
        """``parse`` parameter by parameter, in the order whose first problem is the answer."""
        params = split_query(query)
        endpoint = _value(params, "ep")
        if endpoint is None or not endpoint:
            raise _bad("Register needs the endpoint client name (ep)")
        if len(endpoint) > MAX_ENDPOINT_LENGTH:
            raise _bad(f"endpoint name longer than {MAX_ENDPOINT_LENGTH} characters")
        if _CONTROL.search(endpoint):
            raise _bad("endpoint name contains control characters")
        version = check_version(_value(params, "lwm2m") or "1.0")
        lifetime = _lifetime(params)
        binding = _value(params, "b") or "U"
        queue = check_binding(binding, version) or _queue_flag(params)
        links = _links_from_payload(payload, content_format, required=True)
        return cls(
            endpoint=endpoint,
            lifetime=DEFAULT_LIFETIME if lifetime is None else lifetime,
            lwm2m_version=version,
            binding=binding,
            sms_number=_value(params, "sms"),
            queue_mode=queue,
            object_links=links,
            additional_attributes=_additional(params, _KNOWN_REGISTER),
        )


def _binding_queue() -> dict[tuple[str, str], bool]:
    """(version, binding) → queue mode, for every binding ``check_binding`` accepts with at
    most three letters (longer ones, valid or not, take the checked path)."""
    from itertools import permutations

    table = {("1.0", b): "Q" in b for b in BINDINGS_1_0}
    for version in SUPPORTED_VERSIONS[1:]:
        for size in (1, 2, 3):
            for letters in permutations(sorted(BINDING_LETTERS_1_1), size):
                table[version, "".join(letters)] = False
    return table


_BINDING_QUEUE = _binding_queue()
_VERSIONS = {v: v for v in SUPPORTED_VERSIONS}
_COMMON_PARAMETERS = frozenset({"ep", "lt", "lwm2m", "b"})
_LINK = ContentFormat.LINK  # an enum class's attribute costs ~75 ns per lookup on 3.11


def _common_register(
    query: QueryInput, payload: bytes, content_format: int | None
) -> RegistrationRequest | None:
    """``RegistrationRequest.checked`` of a Register of the usual shape, in one pass over the
    query; None whenever the request is of any other shape or has anything to refuse (the
    checked reader then decides, with the same answer either way).

    Why: a Register is parsed once per device per lifetime, 100k of them after a restart of
    the fleet, and the checked reader (a dict of the parameters, a lookup and a test per
    parameter, a regex per value, keyword construction) was ~8 % of a Register's CPU. The
    usual shape: ``ep``, ``lt``, ``lwm2m``, ``b`` each at most once with a value, ``Q`` at
    most once as a flag, no other parameter, and an object list whose text was parsed before
    (every Register of a fleet but the first of each distinct list).

    A query that starts with ``ep=`` (every client we know of sends it first) is read as the
    endpoint and the rest, and what the rest says is kept per distinct rest
    (``_query_shape``): a fleet's Registers differ in their endpoint only."""
    if type(query) is not list and type(query) is not tuple:
        return None
    first = query[0] if query else None
    if type(first) is str and first.startswith("ep="):
        rest = tuple(query[1:])
        try:
            shape = _SHAPES.get(rest)
            unseen = shape is None and rest not in _SHAPES
        except TypeError:  # an unhashable item: certainly not the usual shape
            return None
        if unseen:
            shape = _query_shape(rest, None)
            if len(_SHAPES) >= _SHAPES_CACHE:
                del _SHAPES[next(iter(_SHAPES))]
            _SHAPES[rest] = shape
        endpoint: str | None = first[3:]
    else:
        given: dict[str, str] = {}
        shape = _query_shape(query, given)
        endpoint = given.get("ep")
    if shape is None:
        return None
    # the endpoint: not empty, not too long, no control characters (every one of which is
    # not printable; a name that is not printable for any other reason is checked slowly)
    if not endpoint or len(endpoint) > MAX_ENDPOINT_LENGTH or not endpoint.isprintable():
        return None
    if content_format is not None and content_format != _LINK:
        return None
    if type(payload) is not bytes or len(payload) > MAX_LINK_PAYLOAD:
        return None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    links = _PARSED.get(text)
    if links is None or not text or text.isspace():  # a blank list is the checked 4.00
        return None
    seconds, version, binding, queue = shape
    # ``RegistrationRequest(endpoint, seconds, version, binding, None, queue, links,
    # _NO_ATTRIBUTES)`` built by its slots (every Register), as ``create`` builds a
    # registration: the attrs ``__init__`` and the ``_str_map`` converter are two frames, and
    # the converter gives ``_NO_ATTRIBUTES`` for it anyway (tests/unit/server/
    # test_registration_fast.py holds the two equal)
    request = _new(RegistrationRequest)
    _set_request_endpoint(request, endpoint)
    _set_request_lifetime(request, seconds)
    _set_request_lwm2m_version(request, version)
    _set_request_binding(request, binding)
    _set_request_sms_number(request, None)
    _set_request_queue_mode(request, queue)
    _set_request_object_links(request, links)
    _set_request_additional_attributes(request, _NO_ATTRIBUTES)
    return request


parse_usual_register = _common_register
"""``RegistrationRequest.usual`` without its own frame (the uplink's, every Register)."""


_REQUEST_FIELDS = (
    "endpoint",
    "lifetime",
    "lwm2m_version",
    "binding",
    "sms_number",
    "queue_mode",
    "object_links",
    "additional_attributes",
)
if tuple(field.name for field in attrs.fields(RegistrationRequest)) != _REQUEST_FIELDS:
    # ``_common_register`` sets these slots and no other (caught at import, as for
    # ``Registration`` below)
    raise TypeError("RegistrationRequest's fields changed: update _REQUEST_FIELDS")
(
    _set_request_endpoint,
    _set_request_lifetime,
    _set_request_lwm2m_version,
    _set_request_binding,
    _set_request_sms_number,
    _set_request_queue_mode,
    _set_request_object_links,
    _set_request_additional_attributes,
) = (RegistrationRequest.__dict__[name].__set__ for name in _REQUEST_FIELDS)


_Shape = tuple[int, str, str, bool]
"""What a usual query says besides the endpoint: lifetime, version, binding, queue mode."""
_SHAPES_CACHE = 256
_SHAPES: dict[tuple[object, ...], _Shape | None] = {}
"""A query's items after its leading ``ep=`` -> ``_query_shape`` of them (None: not the usual
shape). Bounded, oldest out first; a few entries in practice (one per firmware's query)."""


def _query_shape(items: Sequence[object], given: dict[str, str] | None) -> _Shape | None:
    """The lifetime, version, binding and queue mode of the usual shape's parameters among
    ``items``, None when they are of any other shape or have anything to refuse.

    ``given``: filled with the parameters read, ``ep`` included, for a query whose endpoint
    was not taken off first; None when it was (an ``ep`` among ``items`` is then given twice:
    not the usual shape)."""
    params: dict[str, str] = {} if given is None else given
    if given is None:
        params["ep"] = ""  # taken off the front: another ``ep`` is a repeat
    queue = False
    for item in items:
        if type(item) is not str:
            return None
        name, sep, value = item.partition("=")
        if not sep:
            if name != "Q" or queue:
                return None
            queue = True
        elif name not in _COMMON_PARAMETERS or name in params:
            return None
        else:
            params[name] = value
    lifetime = params.get("lt")
    version = _VERSIONS.get(params.get("lwm2m", "1.0"))
    binding = params.get("b", "U")
    if version is None:
        return None
    if lifetime is None:
        seconds = DEFAULT_LIFETIME
    elif 0 < len(lifetime) <= 10 and lifetime.isascii() and lifetime.isdigit():
        seconds = int(lifetime)
        if not 1 <= seconds <= MAX_LIFETIME:
            return None
    else:
        return None
    binding_queue = _BINDING_QUEUE.get((version, binding))
    if binding_queue is None:
        return None
    return seconds, version, binding, binding_queue or queue


@attrs.frozen
class UpdateRequest:
    """A validated Update (``POST /rd/{id}``); ``None`` fields keep the registered value.

    The binding can only be checked against the client's LwM2M version once the registration is
    known, so ``Registration.updated`` re-checks it (``check_binding``); likewise a repeated
    ``endpoint`` / ``lwm2m_version`` is only accepted there if it equals the registered one.
    """

    endpoint: str | None = None
    lwm2m_version: str | None = None

    lifetime: int | None = None
    binding: str | None = None
    sms_number: str | None = None
    queue_mode: bool | None = None
    object_links: ObjectLinks | None = None
    additional_attributes: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)

    @classmethod
    def parse(
        cls,
        query: QueryInput,
        payload: bytes = b"",
        content_format: int | None = None,
    ) -> UpdateRequest:
        if not query and not payload:
            return BARE_UPDATE  # most Updates: no parameters, no object list
        params = split_query(query)
        binding = _value(params, "b")
        if binding is not None and not binding:
            raise _bad("binding b= is empty")
        links = None
        if payload:
            links = _links_from_payload(payload, content_format, required=False)
        return cls(
            endpoint=_value(params, "ep"),
            lwm2m_version=_value(params, "lwm2m"),
            lifetime=_lifetime(params),
            binding=binding,
            sms_number=_value(params, "sms"),
            queue_mode=True if _queue_flag(params) else None,
            object_links=links,
            additional_attributes=_additional(params, _KNOWN_UPDATE),
        )


BARE_UPDATE = UpdateRequest()
"""An Update without parameters or payload: only refreshes the lifetime (and the address).
``UpdateRequest.parse`` gives this very object for it (the book tells it by identity)."""


# -- the registration -----------------------------------------------------------------------------


@attrs.frozen
class Registration:
    """One client's registration as the server holds it (immutable; an Update makes a new one)."""

    registration_id: str
    endpoint: str
    address: Address
    lifetime: int = DEFAULT_LIFETIME
    lwm2m_version: str = "1.0"
    binding: str = "U"
    sms_number: str | None = None
    queue_mode: bool = False
    object_links: ObjectLinks = attrs.field(factory=ObjectLinks)
    transport: str = "coap"
    identity: IdentityBinding | None = None
    registered_at: float = 0.0
    last_update: float = 0.0
    additional_attributes: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)

    @property
    def expires_at(self) -> float:
        """When the lifetime runs out without an Update (the book adds its grace period)."""
        return self.last_update + self.lifetime

    @property
    def location(self) -> str:
        """The Location-Path of the 2.01 reply, as one string (``rd/{id}``)."""
        return f"rd/{self.registration_id}"

    @property
    def supported_objects(self) -> Mapping[int, str | None]:
        return self.object_links.objects

    @classmethod
    def create(
        cls,
        registration_id: str,
        request: RegistrationRequest,
        *,
        now: float,
        address: Address,
        transport: str = "coap",
        identity: IdentityBinding | None = None,
    ) -> Registration:
        if transport not in ("coap", "coaps"):
            raise ValueError(f"transport must be 'coap' or 'coaps', got {transport!r}")
        # built by the slots (``_new``), not ``cls(...)`` (every Register): the same
        # registration, the request's additional attributes converted as the field's converter
        # does (its own copy, or the one shared empty mapping)
        attributes = request.additional_attributes
        new = _new(Registration)
        _set_registration_id(new, registration_id)
        _set_endpoint(new, request.endpoint)
        _set_address(new, address)
        _set_lifetime(new, request.lifetime)
        _set_lwm2m_version(new, request.lwm2m_version)
        _set_binding(new, request.binding)
        _set_sms_number(new, request.sms_number)
        _set_queue_mode(new, request.queue_mode)
        _set_object_links(new, request.object_links)
        _set_transport(new, transport)
        _set_identity(new, identity)
        _set_registered_at(new, now)
        _set_last_update(new, now)
        _set_additional_attributes(new, dict(attributes) if attributes else _NO_ATTRIBUTES)
        return new

    def touched(self, now: float, address: Address) -> Registration:
        """``updated(BARE_UPDATE, now=now, address=address)`` without reading the request: a
        bare Update (the keep-alive) has nothing to check and changes nothing but
        ``last_update`` and, when the device moved, the address (the registered object is
        kept when ``address`` equals it, as ``updated`` does). Built by the slots (every
        keep-alive): the additional attributes are this registration's mapping itself, already
        converted (nothing mutates one: readers copy it), not a copy per keep-alive."""
        registered = self.address
        if address is not registered and (
            address.port == registered.port and address.host == registered.host
        ):
            address = registered
        # built by the slots (``_new``), every keep-alive
        new = _new(Registration)
        _set_registration_id(new, self.registration_id)
        _set_endpoint(new, self.endpoint)
        _set_address(new, address)
        _set_lifetime(new, self.lifetime)
        _set_lwm2m_version(new, self.lwm2m_version)
        _set_binding(new, self.binding)
        _set_sms_number(new, self.sms_number)
        _set_queue_mode(new, self.queue_mode)
        _set_object_links(new, self.object_links)
        _set_transport(new, self.transport)
        _set_identity(new, self.identity)
        _set_registered_at(new, self.registered_at)
        _set_last_update(new, now)
        _set_additional_attributes(new, self.additional_attributes)
        return new

    def updated(
        self, update: UpdateRequest, *, now: float, address: Address | None = None
    ) -> Registration:
        """This registration after ``update`` (validated against our LwM2M version)."""
        if update.endpoint is not None:
            _check_unchanged("ep", update.endpoint, self.endpoint)
        if update.lwm2m_version is not None:
            _check_unchanged("lwm2m", update.lwm2m_version, self.lwm2m_version)
        queue_mode = self.queue_mode
        binding = self.binding
        if update.binding is not None:
            binding_queue = check_binding(update.binding, self.lwm2m_version)
            binding = update.binding
            if self.lwm2m_version == "1.0":
                queue_mode = binding_queue
        if update.queue_mode is not None:
            queue_mode = update.queue_mode
        attributes = self.additional_attributes
        if update.additional_attributes:
            attributes = {**attributes, **update.additional_attributes}
        registered = self.address
        if address is None or (
            address is not registered
            and address.port == registered.port
            and address.host == registered.host
        ):
            address = registered  # the same object: the book and the store see it unmoved
        # every field by position, not ``attrs.evolve`` (twice the cost, on every Update)
        return Registration(
            self.registration_id,
            self.endpoint,
            address,
            self.lifetime if update.lifetime is None else update.lifetime,
            self.lwm2m_version,
            binding,
            self.sms_number if update.sms_number is None else update.sms_number,
            queue_mode,
            self.object_links if update.object_links is None else update.object_links,
            self.transport,
            self.identity,
            self.registered_at,
            now,
            attributes,
        )


_REGISTRATION_FIELDS = (
    "registration_id",
    "endpoint",
    "address",
    "lifetime",
    "lwm2m_version",
    "binding",
    "sms_number",
    "queue_mode",
    "object_links",
    "transport",
    "identity",
    "registered_at",
    "last_update",
    "additional_attributes",
)
if tuple(field.name for field in attrs.fields(Registration)) != _REGISTRATION_FIELDS:
    # ``create`` and ``touched`` set these slots and no other: a
    # field added to ``Registration`` must be added there too, or a copy would lack it
    # (caught at import, not at the first Update)
    raise TypeError(
        "Registration's fields changed: update _REGISTRATION_FIELDS, create and touched"
    )
(
    _set_registration_id,
    _set_endpoint,
    _set_address,
    _set_lifetime,
    _set_lwm2m_version,
    _set_binding,
    _set_sms_number,
    _set_queue_mode,
    _set_object_links,
    _set_transport,
    _set_identity,
    _set_registered_at,
    _set_last_update,
    _set_additional_attributes,
) = (Registration.__dict__[name].__set__ for name in _REGISTRATION_FIELDS)
_new = object.__new__
"""``create`` and ``touched`` (every Register and keep-alive) build their ``Registration`` with
these, each slot set by its own descriptor: the attrs ``__init__`` of a frozen class sets every
field through ``object.__setattr__`` (a bound method made per instance, then a generic
attribute lookup per field) and calls the converter, a third more instructions for the 14
fields. Skipped: the converter (the callers pass ``additional_attributes`` as ``_str_map``
gives it) and nothing else (no validators, no ``__attrs_post_init__``); the result compares
equal to ``Registration(...)`` of the same values (tests/unit/server/test_keep_alive_path.py)."""


def _check_unchanged(name: str, given: str, registered: str) -> None:
    """An Update may repeat ``ep`` or ``lwm2m`` (some clients do), never change it."""
    if given != registered:
        raise _bad(
            f"{name}={given!r} differs from the registered {registered!r}: it cannot "
            "change in an Update; Register again"
        )

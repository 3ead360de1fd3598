"""CoRE Link Format (RFC 6690, content format 40) and the LwM2M uses of it.

Grammar (RFC 6690 §2, with RFC 5988 params)::

    Link       = link-value *( "," link-value )
    link-value = "<" URI-Reference ">" *( ";" link-param )
    link-param = parmname [ "=" ( ptoken / quoted-string ) ]

We accept optional whitespace around ``,``, ``;`` and ``=`` (several clients emit it) and
quoted strings with backslash escapes (which may hold ``,`` and ``;``). Anything else is a
``CodecError`` 4.00 that gives the character position. A parameter repeated within one link
keeps its first value (RFC 8288 §3 says later occurrences are ignored).

LwM2M uses link format in three places:
- Register/Update payloads (Core 1.1.1 §6.2.1): ``</>;rt="oma.lwm2m";ct=11543,</1>;ver=1.1,
  </1/0>,</3/0>``; the ``rt="oma.lwm2m"`` link, when present, names an alternate root path
  (``</lwm2m>;rt="oma.lwm2m"``) under which every object link then lives. ``parse_object_links``.
- Discover responses (Core 1.1.1 §5.4.1.1 / 6.3.x): ``</3/0>;pmin=10,</3/0/7>;dim=2,</3/0/1>``
  with attributes typed below. ``parse_discover`` / ``format_discover``.
- Corelnk resource values (kept as text; parse them with ``parse_links`` when needed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..errors import CodecError, InvalidPathError
from ..path import MAX_ID, MAX_INSTANCE_ID, LwM2mPath
from .common import utf8

# RFC 6690 ptoken characters, and the characters allowed in a parameter name (RFC 5988 token).
_PTOKEN = re.compile(r"[!#$%&'()*+\-./0-9:<=>?@A-Z\[\]^_`a-z{|}~]+")
_PARMNAME = re.compile(r"[!#$&+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}")
_CONTENT_FORMAT = re.compile(r"[0-9]{1,5}")
_ALWAYS_QUOTED = frozenset({"rt", "if", "title", "anchor", "rel", "rev", "hreflang", "lwm2m"})

AttributeValue = int | float | str | tuple[int, ...] | None


def _params(value: Mapping[str, str | None]) -> dict[str, str | None]:
    return dict(value)


def _attributes(value: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    return dict(value)


def _versions(value: Mapping[int, str | None]) -> dict[int, str | None]:
    return dict(value)


def _instances(value: Mapping[int, tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    return dict(value)


@attrs.frozen(eq=True, hash=False)
class Link:
    """One link: the target between ``<>`` and its parameters in order (``None`` = no value)."""

    target: str
    params: Mapping[str, str | None] = attrs.field(factory=dict, converter=_params)

    def __str__(self) -> str:
        return format_links([self])


# == parsing ======================================================================================
class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str) -> CodecError:
        return CodecError(f"invalid link format at position {self.pos}: {reason}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"expected {char!r}, found {found}")
        self.pos += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.pos)
        if not found:
            raise self.error(f"expected {what}")
        self.pos = found.end()
        return found.group()

    def target(self) -> str:
        self.expect("<")
        end = self.text.find(">", self.pos)
        if end < 0:
            raise self.error("unterminated '<'")
        value = self.text[self.pos : end]
        if any(c in value for c in '<" \t\r\n'):
            raise self.error("invalid character in link target")
        self.pos = end + 1
        return value

    def quoted(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.error("unterminated quoted string")
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.error("unterminated escape")
                char = self.text[self.pos + 1]
                self.pos += 1
            chars.append(char)
            self.pos += 1

    def param(self) -> tuple[str, str | None]:
        name = self.match(_PARMNAME, "a parameter name")
        self.skip_space()
        if self.peek() != "=":
            return name, None
        self.pos += 1
        self.skip_space()
        if self.peek() == '"':
            return name, self.quoted()
        return name, self.match(_PTOKEN, f"a value for {name!r}")

    def link(self) -> Link:
        target = self.target()
        params: dict[str, str | None] = {}
        self.skip_space()
        while self.peek() == ";":
            self.pos += 1
            self.skip_space()
            name, value = self.param()
            params.setdefault(name, value)
            self.skip_space()
        return Link(target, params)


def parse_links(text: str | bytes) -> list[Link]:
    """Parse a link-format document; an empty (or blank) document is no links."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = utf8(bytes(text))
    scanner = _Scanner(text)
    links: list[Link] = []
    scanner.skip_space()
    if not scanner.peek():
        return links
    while True:
        links.append(scanner.link())
        scanner.skip_space()
        if not scanner.peek():
            return links
        scanner.expect(",")
        scanner.skip_space()


# == formatting ===================================================================================
def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_param(name: str, value: str | None) -> str:
    if not _PARMNAME.fullmatch(name):
        raise CodecError(f"invalid link parameter name {name!r}")
    if value is None:
        return name
    if name in _ALWAYS_QUOTED or not _PTOKEN.fullmatch(value):
        return f"{name}={_quote(value)}"
    return f"{name}={value}"


def format_links(links: Iterable[Link]) -> str:
    """The link-format text of ``links`` (no whitespace; values quoted only when needed)."""
    parts = []
    for link in links:
        if any(c in link.target for c in '<>" \t\r\n'):
            raise CodecError(f"invalid link target {link.target!r}")
        params = "".join(f";{_format_param(k, v)}" for k, v in link.params.items())
        parts.append(f"<{link.target}>{params}")
    return ",".join(parts)


# == typed LwM2M attributes =======================================================================
_INT_ATTRS = frozenset({"dim", "pmin", "pmax", "epmin", "epmax", "hqmax", "ssid", "edge", "con"})
_FLOAT_ATTRS = frozenset({"gt", "lt", "st"})
_FLAG_ATTRS = frozenset({"edge", "con"})


def parse_attribute(name: str, raw: str | None) -> AttributeValue:
    """Type a known LwM2M attribute (``ct`` as a tuple of formats); others stay strings."""
    if raw is None:
        return None
    if name in _INT_ATTRS:
        if not re.fullmatch(r"[0-9]{1,10}", raw) or (name in _FLAG_ATTRS and raw not in "01"):
            raise CodecError(
                f"attribute {name}={raw!r} must be a non-negative integer"
                + (" 0 or 1" if name in _FLAG_ATTRS else "")
            )
        return int(raw)
    if name in _FLOAT_ATTRS:
        if not re.fullmatch(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", raw):
            raise CodecError(f"attribute {name}={raw!r} must be a number")
        return float(raw)
    if name == "ct":
        return parse_content_formats(raw)
    if name == "ver" and not _VERSION.fullmatch(raw):
        raise CodecError(f"attribute ver={raw!r} must look like '1.0'")
    return raw


def parse_content_formats(raw: str) -> tuple[int, ...]:
    """``ct=11543`` or ``ct="60 110 112 11543"`` (space separated, RFC 7252 §7.2.1)."""
    parts = raw.split()
    if not parts or not all(_CONTENT_FORMAT.fullmatch(p) and int(p) < 65536 for p in parts):
        raise CodecError(f"attribute ct={raw!r} must be content-format numbers")
    return tuple(int(p) for p in parts)


def format_attribute(value: AttributeValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


# == Register payloads ============================================================================
@attrs.frozen
class RegisteredObjects:
    """What a client declared in Register/Update: root path, formats, objects and instances.

    ``objects`` maps every declared object id to its ``ver`` (``None`` when absent, which means
    the version the client's LwM2M version implies, 1.0 for the core objects of LwM2M 1.0).
    ``instances`` maps object ids to their declared instance ids, in the order given.
    """

    root_path: str = "/"
    content_formats: tuple[int, ...] = ()
    objects: Mapping[int, str | None] = attrs.field(factory=dict, converter=_versions)
    instances: Mapping[int, tuple[int, ...]] = attrs.field(factory=dict, converter=_instances)

    def version(self, object_id: int, default: str = "1.0") -> str:
        return self.objects.get(object_id) or default


def _is_lwm2m_root(link: Link) -> bool:
    return "oma.lwm2m" in (link.params.get("rt") or "").split()


def parse_object_links(text: str | bytes) -> RegisteredObjects:
    """Read a Register/Update payload; links that are not LwM2M objects are ignored.

    Why two parsers: this runs on every Register (and every Update that carries a list), where
    building a ``Link`` and an ``LwM2mPath`` per link cost more than the rest of the Register.
    ``_scan_links`` reads a well-formed document with a few regular expressions into plain
    ``(target, params)`` pairs; whatever it does not recognise (malformed text, unusual
    whitespace in a target) goes through ``parse_links``, the reference parser, which gives
    the same result or the positioned error. A property test holds the two to the same answers.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        text = utf8(bytes(text))
    pairs: Sequence[tuple[str, Mapping[str, str | None]]] | None = _scan_links(text)
    if pairs is None:
        pairs = [(link.target, link.params) for link in parse_links(text)]
    return _registered_objects(pairs)


def _registered_objects(pairs: Sequence[tuple[str, Mapping[str, str | None]]]) -> RegisteredObjects:
    root_index = -1
    for index, (_, params) in enumerate(pairs):
        if "oma.lwm2m" in (params.get("rt") or "").split():
            root_index = index
            break
    else:
        for index, (target, _) in enumerate(pairs):
            if target == "/":
                root_index = index
                break
    formats: tuple[int, ...] = ()
    if root_index < 0:
        root = "/"
    else:
        root_target, root_params = pairs[root_index]
        root = "/" + root_target.strip("/")
        if root_params.get("ct"):
            formats = parse_content_formats(root_params["ct"] or "")
    prefix = "" if root == "/" else root
    objects: dict[int, str | None] = {}
    instances: dict[int, list[int]] = {}
    for index, (target, params) in enumerate(pairs):
        if index == root_index:
            continue
        ids = _object_ids(target, prefix)
        if ids is None:
            continue
        object_id, instance_id = ids
        if instance_id is None:
            ver = params.get("ver")
            objects[object_id] = None if ver is None else str(parse_attribute("ver", ver))
        else:
            objects.setdefault(object_id, None)
            instances.setdefault(object_id, []).append(instance_id)
    return RegisteredObjects(root, formats, objects, {k: tuple(v) for k, v in instances.items()})


_SP = r"[ \t\r\n]*"  # exactly the reference parser's whitespace (not \s: no \f, \v, NBSP)
_QUOTED_BODY = r'(?:[^"\\]|\\.)*'  # backslash escapes any character, as in ``quoted``
_LINK_RE = re.compile(
    r'<([^<>" \t\r\n]*)>'  # the target: up to the first '>' (as the reference parser reads it)
    f"((?:{_SP};{_SP}{_PARMNAME.pattern}"
    f'(?:{_SP}={_SP}(?:"{_QUOTED_BODY}"|{_PTOKEN.pattern}))?)*)'
    f"{_SP}(?:(,){_SP}|\\Z)",
    re.DOTALL,
)
_PARAM_RE = re.compile(
    f'{_SP};{_SP}({_PARMNAME.pattern})(?:{_SP}={_SP}(?:"({_QUOTED_BODY})"|({_PTOKEN.pattern})))?',
    re.DOTALL,
)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_OBJECT_PATH = re.compile(r"/?(0|[1-9][0-9]{0,4})(?:/(0|[1-9][0-9]{0,4}))?/?")


def _scan_links(text: str) -> list[tuple[str, dict[str, str | None]]] | None:
    """The links of a well-formed document as ``(target, params)``, or None for anything the
    reference parser must look at (it then raises, or agrees). A repeated parameter keeps its
    first value, as there."""
    pairs: list[tuple[str, dict[str, str | None]]] = []
    end = len(text)
    pos = end - len(text.lstrip(" \t\r\n"))
    if pos == end:
        return pairs
    match = _LINK_RE.match
    while True:
        found = match(text, pos)
        if found is None:
            return None
        target, raw, comma = found.group(1, 2, 3)
        params: dict[str, str | None] = {}
        if raw:
            for param in _PARAM_RE.finditer(raw):
                name, quoted, token = param.group(1, 2, 3)
                if name not in params:
                    if quoted is not None and "\\" in quoted:
                        quoted = _UNESCAPE.sub(r"\1", quoted)
                    params[name] = token if quoted is None else quoted
        pairs.append((target, params))
        pos = found.end()
        if comma is None:
            return pairs
        if pos == end:
            return None  # a trailing comma: the reference parser explains it


def _object_ids(target: str, prefix: str) -> tuple[int, int | None] | None:
    """``(object, instance or None)`` of an object or instance link under ``prefix``, or None
    (any other link; the same answers as ``LwM2mPath.parse`` with depth 1 or 2)."""
    if prefix:
        if not target.startswith(prefix + "/"):
            return None
        target = target[len(prefix) :]
    found = _OBJECT_PATH.fullmatch(target)
    if found is None:
        path = _object_path(target, "/")  # unusual spellings (surrounding whitespace)
        if path is None:
            return None
        ids = path.ids
        return (ids[0], ids[1] if len(ids) > 1 else None)
    object_id = int(found.group(1))
    instance = found.group(2)
    if object_id > MAX_ID:
        return None
    if instance is None:
        return (object_id, None)
    instance_id = int(instance)
    return None if instance_id > MAX_INSTANCE_ID else (object_id, instance_id)


def _object_path(target: str, root: str) -> LwM2mPath | None:
    prefix = "" if root == "/" else root
    if prefix and not target.startswith(prefix + "/"):
        return None
    try:
        path = LwM2mPath.parse(target[len(prefix) :])
    except InvalidPathError:
        return None
    return path if path.depth in (1, 2) else None


# == Discover =====================================================================================
@attrs.frozen(eq=True, hash=False)
class DiscoveredLink:
    """One Discover entry: an LwM2M path and its typed attributes, in order."""

    path: LwM2mPath
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, converter=_attributes)


def parse_discover(text: str | bytes) -> list[DiscoveredLink]:
    """Read a Discover (or Bootstrap-Discover) response; every target must be an LwM2M path."""
    result = []
    for link in parse_links(text):
        try:
            path = LwM2mPath.parse(link.target)
        except InvalidPathError as exc:
            raise CodecError(f"discover link <{link.target}> is not an LwM2M path: {exc}") from None
        attributes = {name: parse_attribute(name, raw) for name, raw in link.params.items()}
        result.append(DiscoveredLink(path, attributes))
    return result


def format_discover(
    entries: Iterable[DiscoveredLink | tuple[LwM2mPath, Mapping[str, AttributeValue]]],
) -> str:
    links = []
    for entry in entries:
        path, attributes = (
            (entry.path, entry.attributes) if isinstance(entry, DiscoveredLink) else entry
        )
        params = {name: format_attribute(value) for name, value in attributes.items()}
        links.append(Link(str(path), params))
    return format_links(links)

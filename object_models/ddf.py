"""Import OMA LwM2M object definition files (DDF XML, schema ``LWM2M.xsd`` 1.0 and 1.1).

A DDF file looks like::

    <LWM2M>
      <Object ObjectType="MODefinition">
        <Name/> <Description1/> <ObjectID/> <ObjectURN/> <LWM2MVersion/> <ObjectVersion/>
        <MultipleInstances/> <Mandatory/>
        <Resources>
          <Item ID="5700"> <Name/> <Operations/> <MultipleInstances/> <Mandatory/> <Type/>
                           <RangeEnumeration/> <Units/> <Description/> </Item> ...
        </Resources>
        <Description2/>
      </Object> ...
    </LWM2M>

``LWM2MVersion`` and ``ObjectVersion`` are absent from schema 1.0 files and default to ``1.0``.
A file may hold several ``<Object>`` elements.

The XML is parsed with ``defusedxml`` and any document type declaration is refused, so entity
expansion ("billion laughs") and external entities never happen. Every problem raises a
``ModelError`` naming the file, the field (``Object[0].Resources.Item[ID=5].Type``), the reason
and, when known, the line.

Text values are stripped of surrounding whitespace (the registry indents many of them).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from .errors import ModelError
from .model import ObjectModel, Operations, ResourceModel
from .types import ResourceType

__all__ = [
    "MAX_DDF_SIZE",
    "copyright_line",
    "leading_comment",
    "load_ddf",
    "load_ddf_located",
    "parse_ddf",
    "parse_ddf_located",
]

MAX_DDF_SIZE = 16 * 1024 * 1024
"""Larger inputs are refused before parsing (the biggest registry file is about 100 KiB)."""

_VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")
_T = TypeVar("_T")


class _Located(ET.TreeBuilder):
    """A tree builder that remembers the line each element starts on."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[int, int] = {}
        self.expat: Any = None

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        element = super().start(tag, attrs)
        if self.expat is not None:
            self.lines[id(element)] = int(self.expat.CurrentLineNumber)
        return element


def _local(tag: str) -> str:
    """``{namespace}Name`` -> ``Name`` (the registry files use no namespace, some tools do)."""
    return tag.rsplit("}", 1)[-1]


class _Reader:
    """Walks one parsed DDF document, turning problems into ``ModelError``."""

    def __init__(self, file: str, lines: dict[int, int]) -> None:
        self.file = file
        self.lines = lines

    def error(self, field: str, reason: str, element: ET.Element | None) -> ModelError:
        line = None if element is None else self.lines.get(id(element))
        return ModelError(self.file, field, reason, line=line)

    def child(self, parent: ET.Element, tag: str) -> ET.Element | None:
        for element in parent:
            if _local(element.tag) == tag:
                return element
        return None

    def text(
        self, parent: ET.Element, tag: str, field: str, *, required: bool, default: str = ""
    ) -> tuple[str, ET.Element | None]:
        element = self.child(parent, tag)
        if element is None:
            if required:
                raise self.error(field, f"missing <{tag}> element", parent)
            return default, None
        if len(element):
            raise self.error(f"{field}.{tag}", "must hold text, not elements", element)
        return (element.text or "").strip(), element

    def convert(
        self,
        parent: ET.Element,
        tag: str,
        field: str,
        parse: Callable[[str], _T],
        *,
        required: bool = True,
        default: str = "",
    ) -> _T:
        text, element = self.text(parent, tag, field, required=required, default=default)
        try:
            return parse(text)
        except ValueError as exc:
            raise self.error(
                f"{field}.{tag}", str(exc), element if element is not None else parent
            ) from None

    def objects(self, root: ET.Element) -> list[tuple[ObjectModel, int | None]]:
        if _local(root.tag) != "LWM2M":
            raise self.error(
                _local(root.tag),
                "not an LwM2M object definition (root element must be <LWM2M>)",
                root,
            )
        elements = [e for e in root if _local(e.tag) == "Object"]
        if not elements:
            raise self.error("LWM2M", "no <Object> element", root)
        return [
            (self.object(e, f"Object[{i}]"), self.lines.get(id(e))) for i, e in enumerate(elements)
        ]

    def object(self, element: ET.Element, field: str) -> ObjectModel:
        object_type = element.get("ObjectType")
        if object_type is not None and object_type.strip() != "MODefinition":
            raise self.error(
                f"{field}@ObjectType", f"expected 'MODefinition', got {object_type!r}", element
            )
        name, _ = self.text(element, "Name", field, required=True)
        object_id = self.convert(element, "ObjectID", field, _parse_id)
        resources_element = self.child(element, "Resources")
        if resources_element is None:
            raise self.error(field, "missing <Resources> element", element)
        resources: dict[int, ResourceModel] = {}
        first_line: dict[int, int | None] = {}
        for index, item in enumerate(resources_element):
            if _local(item.tag) != "Item":
                raise self.error(
                    f"{field}.Resources", f"unexpected <{_local(item.tag)}> element", item
                )
            resource = self.resource(item, f"{field}.Resources", index)
            if resource.id in resources:
                before = first_line[resource.id]
                where = f" (first defined on line {before})" if before else ""
                raise self.error(
                    f"{field}.Resources.Item[ID={resource.id}]",
                    f"duplicate resource id {resource.id}{where}",
                    item,
                )
            resources[resource.id] = resource
            first_line[resource.id] = self.lines.get(id(item))
        return ObjectModel(
            id=object_id,
            name=name,
            resources=resources,
            version=self.convert(element, "ObjectVersion", field, _parse_version, required=False),
            lwm2m_version=self.convert(
                element, "LWM2MVersion", field, _parse_version, required=False
            ),
            multiple=self.convert(element, "MultipleInstances", field, _parse_multiple),
            mandatory=self.convert(element, "Mandatory", field, _parse_mandatory),
            urn=self.text(element, "ObjectURN", field, required=False)[0],
            description=self.text(element, "Description1", field, required=False)[0],
            description2=self.text(element, "Description2", field, required=False)[0],
        )

    def resource(self, item: ET.Element, parent_field: str, index: int) -> ResourceModel:
        raw_id = item.get("ID")
        if raw_id is None:
            raise self.error(f"{parent_field}.Item[{index}]", "missing ID attribute", item)
        try:
            resource_id = _parse_id(raw_id)
        except ValueError as exc:
            raise self.error(f"{parent_field}.Item[{index}]@ID", str(exc), item) from None
        field = f"{parent_field}.Item[ID={resource_id}]"
        return ResourceModel(
            id=resource_id,
            name=self.text(item, "Name", field, required=True)[0],
            operations=self.convert(item, "Operations", field, Operations.from_name),
            multiple=self.convert(item, "MultipleInstances", field, _parse_multiple),
            mandatory=self.convert(item, "Mandatory", field, _parse_mandatory),
            type=self.convert(item, "Type", field, ResourceType.from_name),
            range_enumeration=self.text(item, "RangeEnumeration", field, required=False)[0],
            units=self.text(item, "Units", field, required=False)[0],
            description=self.text(item, "Description", field, required=False)[0],
        )


def _parse_id(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"expected an id 0..65535, got {_clip(text)!r}")
    if len(value.lstrip("0")) > 5:  # before int(): Python refuses over 4300 digits
        raise ValueError(f"id {_clip(value)} is outside 0..65535")
    number = int(value)
    if number > 65535:
        raise ValueError(f"id {number} is outside 0..65535")
    return number


def _clip(text: str, limit: int = 40) -> str:
    """A value quoted in an error, cut short: an error line must stay one readable line."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _parse_version(text: str) -> str:
    if text == "":
        return "1.0"
    if not _VERSION.fullmatch(text):
        raise ValueError(f"expected a version like '1.0', got {text!r}")
    return text


def _parse_multiple(text: str) -> bool:
    key = text.lower()
    if key in ("multiple", "single"):
        return key == "multiple"
    raise ValueError(f"expected 'Single' or 'Multiple', got {text!r}")


def _parse_mandatory(text: str) -> bool:
    key = text.lower()
    if key in ("mandatory", "optional"):
        return key == "mandatory"
    raise ValueError(f"expected 'Mandatory' or 'Optional', got {text!r}")


def parse_ddf(data: bytes | str, file: str = "<string>") -> list[ObjectModel]:
    """Every object defined in the DDF document ``data``; ``file`` names it in errors."""
    return [model for model, _ in parse_ddf_located(data, file)]


def parse_ddf_located(
    data: bytes | str, file: str = "<string>"
) -> list[tuple[ObjectModel, int | None]]:
    """Like ``parse_ddf``, with the line each ``<Object>`` starts on."""
    if isinstance(data, str):
        text = data
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no XML parser can read it
            at = text.count("\n", 0, exc.start) + 1
            raise ModelError(file, "", f"not encodable as UTF-8: {exc.reason}", line=at) from None
        # the XML declaration may name another encoding; the bytes are UTF-8 now
        data = re.sub(rb"^(\s*<\?xml[^>]*?)\sencoding=['\"][^'\"]*['\"]", rb"\1", data)
    if len(data) > MAX_DDF_SIZE:
        raise ModelError(file, "", f"file is larger than {MAX_DDF_SIZE} bytes")
    builder = _Located()
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    builder.expat = parser.parser
    try:
        parser.feed(data)
        root = parser.close()
    except DefusedXmlException as exc:
        line = int(parser.parser.CurrentLineNumber) or None
        raise ModelError(file, "", _refusal(exc), line=line) from None
    except ET.ParseError as exc:
        position = getattr(exc, "position", None)
        line = position[0] if position else None
        raise _not_utf8(data, file) or ModelError(
            file, "", f"malformed XML: {exc}", line=line
        ) from None
    except (LookupError, ValueError) as exc:
        # the XML declaration names an encoding Python does not know (LookupError), that is
        # not a text encoding ("base64": LookupError) or that expat cannot decode through
        # Python (multi-byte ones such as UTF-32 or Shift-JIS: ValueError; "idna",
        # "undefined": UnicodeError, a ValueError)
        raise ModelError(file, "xml@encoding", _encoding_refusal(data, exc), line=1) from None
    if not isinstance(root, ET.Element):  # pragma: no cover - TreeBuilder always returns one
        raise ModelError(file, "", "empty XML document")
    return _Reader(file, builder.lines).objects(root)


_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?\sencoding\s*=\s*['"]([^'"]*)['"]""")


def _not_utf8(data: bytes, file: str) -> ModelError | None:
    """Say "not UTF-8" rather than expat's "invalid token" when that is the cause: a file saved
    in Latin-1 or UTF-16 without a declaration saying so (expat then reads UTF-8)."""
    match = _DECLARED_ENCODING.match(data[:1024])
    if match and match.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return ModelError(file, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}", line=line)
    return None


def _encoding_refusal(data: bytes, exc: Exception) -> str:
    match = _DECLARED_ENCODING.match(data[:1024])
    declared = match.group(1).decode("ascii", "replace") if match else None
    if declared is None:  # pragma: no cover - expat only consults codecs for a declaration
        return f"cannot decode the XML: {exc}"
    return (
        f"the XML declaration names encoding {declared!r}, which cannot be read ({exc}); "
        "DDF files are UTF-8"
    )


def _refusal(exc: DefusedXmlException) -> str:
    kind = type(exc).__name__
    if kind == "DTDForbidden":
        return "XML document type declarations (DTD) are refused (entity expansion attack guard)"
    if kind == "EntitiesForbidden":
        return "XML entity declarations are refused (entity expansion attack guard)"
    if kind == "ExternalReferenceForbidden":
        return "XML external references are refused"
    return f"refused unsafe XML: {exc}"  # pragma: no cover - defusedxml has no other kinds


def load_ddf(path: str | Path) -> list[ObjectModel]:
    """Read and parse a DDF file; unreadable files raise ``ModelError`` too."""
    return [model for model, _ in load_ddf_located(path)]


def load_ddf_located(path: str | Path) -> list[tuple[ObjectModel, int | None]]:
    """Like ``load_ddf``, with the line each ``<Object>`` starts on."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DDF_SIZE + 1)
    except OSError as exc:
        raise ModelError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    return parse_ddf_located(data, file)


_COMMENT = re.compile(r"\A(?:\ufeff)?\s*(?:<\?xml[^>]*\?>\s*)?<!--(.*?)-->", re.DOTALL)


def leading_comment(data: bytes | str) -> str | None:
    """The XML comment before the root element (where registry files keep their licence)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    match = _COMMENT.match(text)
    return match.group(1) if match else None


def copyright_line(data: bytes | str) -> str | None:
    """The first ``Copyright …`` line of the leading comment, if there is one."""
    comment = leading_comment(data)
    if comment is None:
        return None
    for line in comment.splitlines():
        if re.match(r"\s*copyright\b", line, re.IGNORECASE):
            return line.strip()
    return None

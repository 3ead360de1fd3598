"""CoAP Content-Format numbers used by LwM2M (IANA CoAP Content-Formats registry)."""

from __future__ import annotations

import enum


class ContentFormat(enum.IntEnum):
    TEXT = 0  # text/plain;charset=utf-8
    LINK = 40  # application/link-format
    OPAQUE = 42  # application/octet-stream
    CBOR = 60  # application/cbor (single resource value, LwM2M 1.1)
    SENML_JSON = 110  # application/senml+json
    SENML_CBOR = 112  # application/senml+cbor
    OLD_TLV = 1542  # pre-registration number used by LwM2M 1.0 clients
    OLD_JSON = 1543  # pre-registration number used by LwM2M 1.0 clients
    TLV = 11542  # application/vnd.oma.lwm2m+tlv
    JSON = 11543  # application/vnd.oma.lwm2m+json (OMA JSON, LwM2M 1.0)
    LWM2M_CBOR = 11544  # application/vnd.oma.lwm2m+cbor (LwM2M 1.2)

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]

    @classmethod
    def from_name(cls, name: str) -> ContentFormat:
        """Accept a number, a short name (``tlv``, ``senml-cbor``) or a media type."""
        key = name.strip().lower()
        if key.isdigit():
            return cls(int(key))
        for fmt, media in _MEDIA_TYPES.items():
            if key in (media, fmt.name.lower(), fmt.name.lower().replace("_", "-")):
                return fmt
        raise ValueError(f"unknown content format {name!r}")


_MEDIA_TYPES = {
    ContentFormat.TEXT: "text/plain",
    ContentFormat.LINK: "application/link-format",
    ContentFormat.OPAQUE: "application/octet-stream",
    ContentFormat.CBOR: "application/cbor",
    ContentFormat.SENML_JSON: "application/senml+json",
    ContentFormat.SENML_CBOR: "application/senml+cbor",
    ContentFormat.OLD_TLV: "application/vnd.oma.lwm2m+tlv;old",
    ContentFormat.OLD_JSON: "application/vnd.oma.lwm2m+json;old",
    ContentFormat.TLV: "application/vnd.oma.lwm2m+tlv",
    ContentFormat.JSON: "application/vnd.oma.lwm2m+json",
    ContentFormat.LWM2M_CBOR: "application/vnd.oma.lwm2m+cbor",
}

"""Which content format the server asks for (Accept) and sends (Content-Format).

The rule, in order (docs/server.md has the table):

1. a format forced by the caller (``?format=`` in the API) is used as it is: if the device does
   not speak it, the device answers 4.06/4.15 and the caller sees that;
2. a Read or Observe of a 1.0 client that announced no format carries **no Accept** at all
   (``read_accept``): the client answers in its own default format and says which in the
   Content-Format, as with Leshan. Some 1.0 clients answer 4.06 to any Accept they do not
   expect (e.g. TLV asked of a single resource they only serve as text);
3. otherwise it follows the client's LwM2M version and the ``ct=`` list of its root link
   (LwM2M 1.1+ clients announce the formats they support there):

   * 1.0: TLV for single paths (what a Write/Create payload is encoded in); no composite
     operations (4.00).
   * 1.1: SenML CBOR if announced, else TLV; composite: SenML CBOR if announced, else SenML
     JSON if announced, else SenML CBOR.
   * 1.2: LwM2M CBOR if announced, else SenML CBOR if announced, else TLV; composite: the
     first announced of LwM2M CBOR, SenML CBOR, SenML JSON, else SenML CBOR.

Why: TLV is the one structured format every 1.0 and 1.1 client must read (Core 1.0 §6.4,
1.1 §7.1), so it is the safe default when a client says nothing; the CBOR formats are smaller on
the wire and carry the full type information, so they win whenever the client announces them.
A format whose codec cannot do the operation here (e.g. no encoder) is skipped.
"""

from __future__ import annotations

from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode

from ..core.registration import Registration

MULTI_PATH = (ContentFormat.LWM2M_CBOR, ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON)


def _announced(registration: Registration) -> frozenset[int]:
    return registration.object_links.content_formats


def single_path_format(registration: Registration, operation: str = "decode") -> int:
    """The format for a single-path Read/Observe (``operation="decode"``) or Write/Create
    (``operation="encode"``) with this client."""
    version = registration.lwm2m_version
    announced = _announced(registration)
    candidates: list[int] = []
    if version == "1.2":
        candidates += [
            f for f in (ContentFormat.LWM2M_CBOR, ContentFormat.SENML_CBOR) if f in announced
        ]
    elif version == "1.1" and ContentFormat.SENML_CBOR in announced:
        candidates.append(ContentFormat.SENML_CBOR)
    candidates.append(ContentFormat.TLV)
    for fmt in candidates:
        if codecs.supports(int(fmt), operation):
            return int(fmt)
    return int(ContentFormat.TLV)


def read_accept(registration: Registration) -> int | None:
    """The Accept of a Read/Observe the caller asked no format for: None (no option) for a
    1.0 client that announced nothing, else ``single_path_format``. The server's own choice
    matters where the client told us what it speaks (1.1+ ``ct=``) or where it has to decode
    a composite answer; a 1.0 client says nothing, and asking it for one format only risks a
    4.06 for an answer it would have given in a format we decode anyway."""
    if registration.lwm2m_version == "1.0" and not _announced(registration):
        return None
    return single_path_format(registration, "decode")


def composite_format(registration: Registration, operation: str = "decode_nodes") -> int:
    """The format for Read-/Write-/Observe-Composite; 4.00 for a 1.0 client (no composite)."""
    if registration.lwm2m_version == "1.0":
        raise Lwm2mError(
            f"{registration.endpoint!r} speaks LwM2M 1.0, which has no composite operations",
            code=ResponseCode.BAD_REQUEST,
        )
    announced = _announced(registration)
    order = MULTI_PATH if registration.lwm2m_version == "1.2" else MULTI_PATH[1:]
    for fmt in order:
        if fmt in announced and codecs.supports(int(fmt), operation):
            return int(fmt)
    return int(ContentFormat.SENML_CBOR)


def paths_format(fmt: int) -> int:
    """The format of a composite request body listing paths (FETCH): the response format when
    it can list paths, else SenML CBOR (LwM2M CBOR has no path-list form in every codec)."""
    if codecs.supports(fmt, "encode_paths"):
        return fmt
    return int(ContentFormat.SENML_CBOR)

"""Bootstrap-Pack (LwM2M 1.2, Core §6.1.7.7): the whole configuration in one answer to
``GET /bspack?ep=``.

The pack is the plan's instances as one multi-path payload (SenML CBOR by default; SenML JSON
or LwM2M CBOR when the client's Accept asks). There is no Discover before it, so the plan is
made for ``ClientInfo.for_pack(acc, last_discover)``: latest object versions, and the
Bootstrap-Server account where the client's ``acc=`` says, else where its last Discover saw it,
else possibly at /0/0 or /0/1 (Security instances then start at 2). A pack instance on the
account's id would replace the account and lock the device out of bootstrap for good (the open
point of OMA LwM2M-for-Developers issue #547, settled by 1.2.2's ``acc``). ``to_delete`` does
not apply: the operation carries no deletes.
"""

from __future__ import annotations

from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode

from .plan import Plan

PACK_FORMATS = (ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR, ContentFormat.SENML_JSON)


def pack_format(accept: int | None) -> int:
    """The pack's format for this Accept (none: SenML CBOR); 4.06 for one we cannot produce."""
    if accept is None:
        return int(ContentFormat.SENML_CBOR)
    if accept in PACK_FORMATS and codecs.supports(accept, "encode_nodes"):
        return int(accept)
    names = ", ".join(f"{f.media_type} ({int(f)})" for f in PACK_FORMATS)
    raise Lwm2mError(f"a Bootstrap-Pack is sent as {names}, not {accept}",
                     code=ResponseCode.NOT_ACCEPTABLE)  # fmt: skip


def build_pack(plan: Plan, fmt: int) -> bytes:
    """Every planned instance in one payload (``CodecError`` if a value cannot be encoded)."""
    return codecs.encode_nodes(plan.nodes(), fmt, plan.models)

"""Fuzz target: the OMA DDF (XML) object-model loader.

May raise :class:`ModelError` only (see ``model_json``); defusedxml's refusals included.
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["object_models"]):
    from object_models import ddf
    from object_models.errors import ModelError


def TestOneInput(data: bytes) -> None:
    with contextlib.suppress(ModelError):
        ddf.parse_ddf_located(data, "<fuzz>")

"""Fuzz target: the JSON object-model loader, as user files (validated) and as built-ins.

May raise :class:`ModelError` only: a bad file is refused with file, field/line and reason while
every other model loads (issue 11 item 3); anything else stops ``lwm2m-server`` or a reload.
"""

from __future__ import annotations

import contextlib

import atheris

with atheris.instrument_imports(include=["object_models"]):
    from object_models import json_models
    from object_models.errors import ModelError


def TestOneInput(data: bytes) -> None:
    for validate in (True, False):
        with contextlib.suppress(ModelError):
            json_models.loads(data, "<fuzz>", validate=validate)

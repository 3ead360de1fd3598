"""Fuzz target: every decoder of content format SENML_CBOR (see ``_codec`` for the input layout)."""

from __future__ import annotations

from ._codec import harness

TestOneInput = harness("SENML_CBOR")

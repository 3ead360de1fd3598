"""Fuzz target: every decoder of content format SENML_JSON (see ``_codec`` for the input layout)."""

from __future__ import annotations

from ._codec import harness

TestOneInput = harness("SENML_JSON")

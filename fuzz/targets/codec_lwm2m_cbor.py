"""Fuzz target: every decoder of content format LWM2M_CBOR (see ``_codec`` for the input layout)."""

from __future__ import annotations

from ._codec import ContentFormat, harness

TestOneInput = harness(ContentFormat.LWM2M_CBOR)

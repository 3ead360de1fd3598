"""Fuzz target: every decoder of content format LWM2M_CBOR (see ``_codec`` for the input layout)."""

from __future__ import annotations

from ._codec import harness

TestOneInput = harness("LWM2M_CBOR")

"""Where the client gets its object models from: the shipped OMA registry.

The registry is part of the same distribution as the client, so there is no second, hand-kept
copy of any model here; a client that cannot load it has a broken install and should say so.
"""

from __future__ import annotations

from object_models.model import ModelProvider
from object_models.registry import ModelRegistry


def default_models() -> ModelProvider:
    """The built-in registry (latest version of every object)."""
    return ModelRegistry.builtin()

"""Stores behind small Protocols (``base``) with the embedded sqlite engine (``sqlite``)."""

from .base import ObservationStore, RegistrationStore, StoreError, TelemetryStore

__all__ = ["ObservationStore", "RegistrationStore", "StoreError", "TelemetryStore"]

"""The LwM2M server's registration, observation and telemetry store: small Protocols (``base``)
with the embedded sqlite engine (``sqlite``) on the keystore's shared database file; the device
attributes and profile status the profile engine keeps (``device_state``)."""

from .base import CoreStore, ObservationStore, RegistrationStore, TelemetryStore

__all__ = ["CoreStore", "ObservationStore", "RegistrationStore", "TelemetryStore"]

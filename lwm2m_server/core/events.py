"""What happened, as typed values the core returns and the adapters act on.

The core never calls out: it returns these, and the CoAP adapter persists, publishes them on the
HTTP API's event stream, and sends what they imply (e.g. cancel observations, drain a queue).
Each event says everything its consumer needs, so no consumer has to look state up again.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from .observations import Observation
from .registration import Registration


@attrs.frozen
class Registered:
    """A new registration; ``replaced`` is the earlier registration of the same endpoint."""

    registration: Registration
    replaced: Registration | None = None


@attrs.frozen
class Replaced:
    """A Register of an already registered endpoint superseded ``old`` (Core §6.2.1: the server
    keeps one registration per endpoint name; the old one's observations end)."""

    old: Registration
    new: Registration


@attrs.frozen
class Updated:
    registration: Registration
    previous: Registration


@attrs.frozen
class Deregistered:
    registration: Registration


@attrs.frozen
class Expired:
    """The lifetime (plus grace) ran out without an Update."""

    registration: Registration


@attrs.frozen
class ObservationsCancelled:
    """Observations that ended with their registration (no wire message needed: the client
    forgot them when it registered again or left)."""

    registration_id: str
    observations: tuple[Observation, ...]


@attrs.frozen
class Awake:
    """A queue-mode client sent something; it listens for ``until - now`` seconds."""

    endpoint: str
    until: float


@attrs.frozen
class Sleeping:
    """A queue-mode client's awake window closed: hold downlink requests until it speaks."""

    endpoint: str
    since: float


@attrs.frozen
class QueuedRequestExpired:
    """A queued downlink request waited longer than its time to live and was dropped."""

    endpoint: str
    request: object
    enqueued_at: float


@attrs.frozen
class QueueDropped:
    """A registration ended with requests still queued; the caller fails their waiters."""

    endpoint: str
    requests: tuple[object, ...]


@attrs.frozen
class NotificationReceived:
    """A notification for a known observation. ``payload`` is still encoded: decoding needs the
    client's models (the adapter owns the registry), and a failed decode must not lose it."""

    observation: Observation
    payload: bytes
    content_format: int | None
    received_at: float


@attrs.frozen
class SendReceived:
    """A Send (``POST /dp``, LwM2M 1.1+) from a registered client."""

    registration: Registration
    payload: bytes
    content_format: int | None
    received_at: float


Event: TypeAlias = (
    Registered
    | Replaced
    | Updated
    | Deregistered
    | Expired
    | ObservationsCancelled
    | Awake
    | Sleeping
    | QueuedRequestExpired
    | QueueDropped
    | NotificationReceived
    | SendReceived
)

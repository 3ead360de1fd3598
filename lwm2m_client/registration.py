"""Client Registration interface parameters (Core §6.2, Transport §6.2).

Register is ``POST /rd?ep=…&lt=…&lwm2m=…&b=…[&Q]`` with the object list in link format;
the server answers 2.01 with a Location-Path ``rd/<id>`` that names the registration.
Update is ``POST /rd/<id>`` with only the parameters that changed (and the object list when
instances were added or removed); De-register is ``DELETE /rd/<id>``.

The binding/queue spelling changed between versions: LwM2M 1.0 appends ``Q`` to the binding
(``b=UQ``), 1.1 and later send ``b=U`` and a bare ``Q`` parameter. Both live here so the client
code never has to care.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")


@attrs.frozen
class RegistrationParams:
    endpoint: str
    lifetime: int
    lwm2m_version: str = "1.1"
    binding: str = "U"
    queue_mode: bool = False
    sms: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.endpoint:
            raise ValueError("the endpoint name must not be empty")
        if self.lwm2m_version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"LwM2M version {self.lwm2m_version!r} is not one of {SUPPORTED_VERSIONS}"
            )
        if self.lifetime <= 0:
            raise ValueError("the lifetime must be positive")
        if "Q" in self.binding:
            raise ValueError("give queue mode with queue_mode=True, not in the binding")

    def binding_query(self) -> list[str]:
        if self.lwm2m_version == "1.0":
            return [f"b={self.binding}{'Q' if self.queue_mode else ''}"]
        return [f"b={self.binding}", *(["Q"] if self.queue_mode else [])]

    def register_query(self) -> list[str]:
        query = [f"ep={self.endpoint}", f"lt={self.lifetime}", f"lwm2m={self.lwm2m_version}"]
        query += self.binding_query()
        if self.sms:
            query.append(f"sms={self.sms}")
        return query

    def update_query(self, previous: RegistrationParams | None) -> list[str]:
        """Only what changed since ``previous`` (everything relevant when it is unknown)."""
        query: list[str] = []
        if previous is None or previous.lifetime != self.lifetime:
            query.append(f"lt={self.lifetime}")
        if previous is None or (previous.binding, previous.queue_mode) != (
            self.binding,
            self.queue_mode,
        ):
            query += self.binding_query()
        if self.sms and (previous is None or previous.sms != self.sms):
            query.append(f"sms={self.sms}")
        return query


def parse_query(query: Sequence[str]) -> dict[str, str | None]:
    """``["ep=a", "Q"]`` → ``{"ep": "a", "Q": None}`` (for tests and fake servers)."""
    result: dict[str, str | None] = {}
    for item in query:
        key, sep, value = item.partition("=")
        result[key] = value if sep else None
    return result


def update_delay(lifetime: float) -> float:
    """When to send the Update: well before the lifetime ends.

    The margin is 10 % of the lifetime, at least 1 s and at most 93 s (CoAP MAX_TRANSMIT_WAIT,
    the longest a confirmable request may take), but never more than half the lifetime so that
    tiny test lifetimes still work.
    """
    margin = min(max(lifetime * 0.1, 1.0), 93.0)
    return max(lifetime - margin, lifetime / 2)


def registration_id(location_path: Sequence[str]) -> str:
    """The id part of ``rd/<id>`` (all segments after ``rd`` joined, for exotic servers)."""
    segments = list(location_path)
    if segments and segments[0] == "rd":
        segments = segments[1:]
    return "/".join(segments)


def changed_params(params: RegistrationParams, changes: Mapping[str, object]) -> RegistrationParams:
    """``params`` with ``lifetime``/``binding``/``queue_mode``/``sms`` replaced."""
    allowed = {"lifetime", "binding", "queue_mode", "sms"}
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"unknown Update parameters {sorted(unknown)}; allowed {sorted(allowed)}")
    return attrs.evolve(params, **changes)  # type: ignore[arg-type]

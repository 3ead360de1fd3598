"""Observations and the notification policy (Core §5.1.2 attributes, §6.4 Information Reporting).

aiocoap owns the CoAP side of an observation (token, Observe sequence numbers, RST and
Observe=1 cancellation); this module only decides *when* a notification is due and then calls
the observation's ``trigger`` — which makes aiocoap render the original request again. The
rendering reports back with ``sent()`` so the timers restart from the moment a notification
actually went out.

Policy for one observation, with its effective attributes (deepest Write-Attributes along the
path, else the Server object's Default Minimum/Maximum Period):

- a change under (or above) an observed path makes a notification due, unless gt/lt/st are set
  on a numeric resource and the new value neither crossed gt or lt nor moved by st since the
  last notification;
- a due notification waits until ``pmin`` seconds after the previous one (changes in between
  are coalesced into one notification carrying the latest value);
- ``pmax`` seconds without a notification sends one anyway (ignored if 0 or below pmin);
- epmin/epmax are stored and shown by Discover but not enforced yet.

Observe-Composite observations use the Server object's defaults only (the attributes of the
individual paths would contradict each other).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from object_models.errors import Lwm2mError
from object_models.path import LwM2mPath

from .attributes import Attributes, AttributeStore
from .objects import ObjectTree

log = logging.getLogger(__name__)


class Observation:
    """One accepted observation: its paths and its notification timers."""

    def __init__(
        self, paths: Sequence[LwM2mPath], trigger: Callable[[], None], *, composite: bool
    ) -> None:
        self.paths = tuple(paths)
        self.trigger = trigger
        self.composite = composite
        self.last_sent: float | None = None
        self.last_value: float | None = None
        self.pending: asyncio.TimerHandle | None = None
        self.pmax_timer: asyncio.TimerHandle | None = None
        self.notifications = 0

    def covers(self, changed: LwM2mPath) -> bool:
        return any(changed.starts_with(p) or p.starts_with(changed) for p in self.paths)

    def cancel_timers(self) -> None:
        for handle in (self.pending, self.pmax_timer):
            if handle is not None:
                handle.cancel()
        self.pending = self.pmax_timer = None

    def __repr__(self) -> str:
        return f"<Observation {' '.join(map(str, self.paths))}>"


class Observations:
    """All observations of the client; the tree's change listener."""

    def __init__(
        self,
        tree: ObjectTree,
        attributes: AttributeStore,
        *,
        server_instance: int = 0,
        on_notify: Callable[[], None] | None = None,
    ) -> None:
        self.tree = tree
        self.attributes = attributes
        self.server_instance = server_instance
        self.on_notify = on_notify
        self._active: list[Observation] = []
        tree.add_listener(self.changed)

    @property
    def active(self) -> list[Observation]:
        return list(self._active)

    def add(
        self, paths: Sequence[LwM2mPath], trigger: Callable[[], None], *, composite: bool = False
    ) -> Observation:
        obs = Observation(paths, trigger, composite=composite)
        self._active.append(obs)
        log.debug("observation added: %r", obs)
        return obs

    def remove(self, obs: Observation) -> None:
        obs.cancel_timers()
        if obs in self._active:
            self._active.remove(obs)
            log.debug("observation cancelled: %r", obs)

    def clear(self) -> None:
        for obs in list(self._active):
            self.remove(obs)

    # -- attributes -----------------------------------------------------------------------------
    def server_defaults(self) -> tuple[int | None, int | None]:
        """(Default Minimum Period, Default Maximum Period) of the Server object instance."""
        result: list[int | None] = []
        for rid in (2, 3):
            try:
                value = self.tree.get_value(LwM2mPath(1, self.server_instance, rid))
            except Lwm2mError:
                value = None
            result.append(value if isinstance(value, int) and not isinstance(value, bool) else None)
        return result[0], result[1]

    def attributes_of(self, obs: Observation) -> Attributes:
        if obs.composite or not obs.paths:
            pmin, pmax = self.server_defaults()
            return Attributes(pmin=pmin, pmax=pmax)
        return self.attributes.effective(obs.paths[0], self.server_defaults)

    def _numeric_value(self, obs: Observation) -> float | None:
        if obs.composite or obs.paths[0].depth < 3:
            return None
        try:
            value = self.tree.get_value(obs.paths[0])
        except (Lwm2mError, ValueError):
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    # -- the policy -----------------------------------------------------------------------------
    def changed(self, paths: Sequence[LwM2mPath]) -> None:
        """Tree listener: some values under ``paths`` changed."""
        for obs in list(self._active):
            if any(obs.covers(p) for p in paths):
                self._consider(obs)

    def _consider(self, obs: Observation) -> None:
        attrs = self.attributes_of(obs)
        if attrs.has_value_conditions:
            value = self._numeric_value(obs)
            if value is not None and not crossed(attrs, obs.last_value, value):
                return
        loop = asyncio.get_running_loop()
        now = loop.time()
        pmin = attrs.pmin or 0
        if obs.last_sent is not None and now - obs.last_sent < pmin:
            if obs.pending is None:
                delay = obs.last_sent + pmin - now
                obs.pending = loop.call_later(delay, self._fire, obs)
            return
        self._fire(obs)

    def _fire(self, obs: Observation) -> None:
        if obs not in self._active:
            return
        if obs.pending is not None:
            obs.pending.cancel()
            obs.pending = None
        if self.on_notify is not None:
            self.on_notify()
        obs.trigger()

    def sent(self, obs: Observation) -> None:
        """The response or a notification of ``obs`` was just rendered: restart its timers."""
        loop = asyncio.get_running_loop()
        obs.last_sent = loop.time()
        obs.last_value = self._numeric_value(obs)
        obs.notifications += 1
        if obs.pending is not None:
            obs.pending.cancel()
            obs.pending = None
        if obs.pmax_timer is not None:
            obs.pmax_timer.cancel()
            obs.pmax_timer = None
        pmax = self.attributes_of(obs).effective_pmax
        if pmax:
            obs.pmax_timer = loop.call_later(pmax, self._fire, obs)


def crossed(attrs: Attributes, last: float | None, new: float) -> bool:
    """Whether ``new`` satisfies gt/lt/st relative to the last notified value."""
    if last is None:
        return True
    if attrs.gt is not None and (last > attrs.gt) != (new > attrs.gt):
        return True
    if attrs.lt is not None and (last < attrs.lt) != (new < attrs.lt):
        return True
    return attrs.st is not None and abs(new - last) >= attrs.st

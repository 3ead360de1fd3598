"""``Breaker``: stop asking a Redis that does not answer (docs/cluster.md, "Redis down").

A Redis that refuses connections costs nothing to ask: the refusal comes back in well under a
millisecond, and every request is answered 5.03 at once. A Redis that silently drops packets (a
network partition, a ``SIGSTOP``'d process, a host that froze) is the expensive case: each
command waits for the socket timeout (5 s) — on the event loop, for a device's request — and
then the next command does it again. So after a command **timed out** the breaker opens: every
command fails at once with a connection error (``StoreUnavailable``, 5.03 with Max-Age to a
device, 503 on the API) without touching the network, until a **probe** finds Redis answering.

Why the probe is a PING from a thread of its own and not "one request let through after a
pause" (the textbook half-open state): the request let through would again wait the whole
socket timeout on the event loop, once per pause, for as long as Redis hangs. The prober's
PING waits in its own thread; a process that was stopped answers it the moment it resumes
(the PING is already in its socket), so the breaker closes within milliseconds of recovery
and the next request is served. A refused connection never opens the breaker: it is cheap,
and a restarting Redis should be used as soon as it accepts again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

PROBE_INTERVAL = 0.5
"""Seconds between two probes that failed at once (a refused connection); a probe that hangs
waits for its own socket timeout."""


class Breaker:
    """Open after a timeout; closed again by the first probe that succeeds.

    ``probe()`` raises when Redis does not answer (it runs in the breaker's thread, with its
    own connection: the commands of the store would be refused while the breaker is open);
    ``closed()`` is called after a probe succeeded (the database logs the outage's end).
    Reads of ``is_open`` are lock-free (one attribute: the event loop checks it per command)."""

    def __init__(
        self,
        probe: Callable[[], object],
        closed: Callable[[], None],
        *,
        interval: float = PROBE_INTERVAL,
    ) -> None:
        self._probe = probe
        self._closed = closed
        self._interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.is_open = False
        self.trips = 0
        """Times the breaker opened (a command timed out while it was closed)."""
        self.refused = 0
        """Commands failed at once while it was open (Redis not asked)."""

    def trip(self) -> bool:
        """A command timed out: open (True if it was closed) and start probing."""
        with self._lock:
            if self.is_open or self._stopped:
                return False
            self.is_open = True
            self.trips += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="redis-breaker-probe", daemon=True
                )
                self._thread.start()
        return True

    def refuse(self) -> bool:
        """True (and counted) when a command must fail at once: the breaker is open."""
        if not self.is_open:
            return False
        self.refused += 1
        return True

    def stop(self) -> None:
        """No more probes (the database is closing); waits briefly for the prober."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stopped:
            try:
                self._probe()
            except Exception as exc:  # still down: try again after a pause
                log.debug("Redis probe failed: %s", exc)
                self._wake.wait(self._interval)
                continue
            with self._lock:
                self.is_open = False
                self._thread = None
            try:
                self._closed()
            except Exception:  # logging only: never let the prober die with it
                log.exception("after the Redis probe succeeded")
            return

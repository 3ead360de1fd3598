"""What every asyncio driver of a sans-IO :class:`~lwm2m_runtime.coap.Endpoint` does, written once.

Why a shared base: the NoSec UDP endpoint (:mod:`.udp`) and the CoAPs endpoint (:mod:`.coaps`)
differ only in how bytes come in and go out (a socket, or DTLS records of a session). Feeding the
endpoint, handing its events to a plain ``handler(event)`` call (no task per request), one flush
per loop iteration (``call_soon``: everything answered in one iteration leaves together, after
the application's work — the hook for group commit), one loop timer for ``get_timer()``, and
futures for ``await request(...)`` are the same for both.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Protocol

from .coap import (
    Endpoint,
    Event,
    FailureReason,
    Message,
    RequestFailed,
    RequestHandle,
    ResponseReceived,
)

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]
ResponseHook = Callable[[RequestHandle, Message], None]


class RequestError(ConnectionError):
    """A request the endpoint gave up on; ``reason`` says how (``str()`` is its value, as
    before: ``timeout``, ``reset``, ``block_transfer``…), ``detail`` what exactly."""

    def __init__(self, reason: FailureReason, detail: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.detail = detail


Peer = Hashable
_ANSWERS = frozenset((ResponseReceived, RequestFailed))
"""The classes of the events a waiting ``request()`` may take: a set lookup of the event's
class is the cheapest test per event (the event classes are ``@final``)."""


class Committer(Protocol):
    """Makes the writes of the loop iteration durable before its replies leave (group commit).

    ``commit()`` is called once per flush, before the datagrams are handed to the socket; True
    means everything written since the last call is durable (or there was nothing), False that
    some of it was rolled back: the iteration's answers are then withheld (and forgotten by the
    deduplication cache, so the device's retransmission is handled again)."""

    def commit(self) -> bool: ...


Done = Callable[[bool], None]


class AsyncCommitter(Committer, Protocol):
    """A :class:`Committer` that can commit without blocking the loop (Redis: the iteration's
    script is sent and the loop goes on reading datagrams while Redis answers).

    ``commit_async(done)`` starts the commit of everything written since the last call and
    calls ``done(ok)`` when it is durable (True) or failed (False), possibly at once (nothing
    to commit and nothing in flight). Calls of ``done`` keep the order of ``commit_async``
    calls, and ``done(True)`` of one call means every earlier call's writes are durable too;
    a call made while an earlier commit was in flight that then failed gets False as well (its
    iteration may have read state that commit wrote, e.g. a duplicate answered from the
    deduplication cache). The driver releases an iteration's datagrams only at its ``done``."""

    def commit_async(self, done: Done) -> None: ...

    def poll(self) -> None:
        """Answer (call ``done`` of) the commits whose answer has arrived, without waiting.
        The driver calls it when a new loop iteration starts handling datagrams while replies
        are held, so they leave before that work rather than after it."""
        ...


class _Batch:
    """The datagrams of one flush, held until its asynchronous commit answers."""

    __slots__ = ("datagrams", "driver", "ok")

    def __init__(self, driver: CoapDriver, datagrams: list[tuple[bytes, Peer]]) -> None:
        self.driver = driver
        self.datagrams = datagrams
        self.ok: bool | None = None

    def done(self, ok: bool) -> None:
        """The committer's answer (possibly at once, inside ``commit_async``)."""
        self.ok = ok
        self.driver._release()


class CoapDriver:
    """Drives one endpoint on the running loop; subclasses move the bytes (``_transmit``)."""

    def __init__(self, endpoint: Endpoint, handler: Handler | None = None) -> None:
        self.endpoint = endpoint
        self.handler = handler
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[RequestHandle, asyncio.Future[Message]] = {}
        self._hooks: dict[RequestHandle, ResponseHook] = {}
        self._stopped = False
        self.committer: Committer | None = None
        """Group commit (see :class:`Committer`); None: replies leave as soon as flushed."""
        self.withheld = 0
        """Answers not sent because their iteration's commit failed (for metrics and tests)."""
        self._held: deque[_Batch] = deque()
        """Flushed datagrams waiting for their iteration's asynchronous commit, oldest first."""

    @property
    def closed(self) -> bool:
        return self._stopped

    # -- what subclasses provide ----------------------------------------------------------------
    def _transmit(self, datagrams: list[tuple[bytes, Peer]]) -> None:
        raise NotImplementedError

    def _check_peer(self, peer: Peer) -> None:
        """Raise ``ConnectionError`` when ``peer`` can no longer be reached at all (a closed
        DTLS session): failing at once beats retransmitting into nothing."""

    # -- application calls ----------------------------------------------------------------------
    def send_request(self, peer: Peer, message: Message) -> RequestHandle:
        """Send without waiting; the response (or failure) goes to the handler as an event."""
        handle = self.endpoint.send_request(peer, message)
        self._dispatch()  # a queue-full failure is an event already
        return handle

    async def request(
        self,
        peer: Peer,
        message: Message,
        timeout: float | None = None,
        *,
        on_response: ResponseHook | None = None,
    ) -> Message:
        """Send a request and wait for its response, matched by token **and** peer.

        ``RequestError(reason)`` (a ``ConnectionError``) when it fails (no ACK, RST, the peer's
        session closed, a block-wise answer that does not add up); a block the peer refused
        (an error code on a Block2 follow-up) is returned as the answer;
        ``TimeoutError`` after ``timeout`` seconds; giving up (timeout or cancellation) cancels
        the request in the endpoint, so its NSTART slot goes to the next request at once.

        ``on_response(handle, message)`` runs as soon as the response is in, inside the loop
        iteration that read it (before any later datagram): an observer indexes its
        observation there, so even an immediate first notification finds it. The handle of an
        accepted Observe stays alive (its notifications go to the handler)."""
        if self._stopped:
            raise ConnectionError("the endpoint is closed")
        self._check_peer(peer)
        future: asyncio.Future[Message] = self._loop.create_future()
        handle = self.endpoint.send_request(peer, message)
        self._waiters[handle] = future
        if on_response is not None:
            self._hooks[handle] = on_response
        self._dispatch()
        try:
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        finally:
            if on_response is not None:
                self._hooks.pop(handle, None)
            if self._waiters.pop(handle, None) is not None:
                self.endpoint.cancel(handle)
                self._schedule_flush()

    def kick(self) -> None:
        """Call after ``endpoint.respond(...)`` made outside an event handler."""
        self._schedule_flush()

    def fail_peer(self, peer: Peer, reason: str) -> int:
        """The peer is gone (its DTLS session closed): every request to it waiting here fails
        with ``ConnectionError(reason)`` and is cancelled in the endpoint. Returns how many."""
        failed = [h for h in self._waiters if h.peer == peer]
        for handle in failed:
            future = self._waiters.pop(handle)
            self.endpoint.cancel(handle)
            if not future.done():
                future.set_exception(ConnectionError(reason))
        if failed:
            self._schedule_flush()
        return len(failed)

    def _stop(self) -> None:
        """No more I/O: the timer goes, waiting requests fail."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(ConnectionError("endpoint closed"))
        self._waiters.clear()
        self._held.clear()  # answers whose commit had not answered: never sent

    # -- internals ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self._held and not self._flush_scheduled:
            self._poll()
        self._deliver()
        if not self._flush_scheduled and not self._stopped:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _poll(self) -> None:
        """The first datagram of an iteration while replies wait for a commit: release those
        already answered before handling it (up to a socket's batch of datagrams would
        otherwise run first)."""
        poll: Callable[[], None] | None = getattr(self.committer, "poll", None)
        if poll is not None:
            poll()

    def _deliver(self) -> None:
        """Hand the endpoint's events to the waiting ``request()`` calls or the handler."""
        events = self.endpoint.events
        handler = self.handler
        while events:
            event = events.popleft()
            if event.__class__ in _ANSWERS and self._answer(event):
                continue
            if handler is not None:
                try:
                    handler(event)
                except Exception:  # one bad handler call must not stop the endpoint
                    log.exception("CoAP event handler failed on %s", type(event).__name__)

    def _answer(self, event: Event) -> bool:
        """Hand a response or failure to the ``request()`` waiting for it; False when none is
        (the event then goes to the handler)."""
        if not isinstance(event, ResponseReceived | RequestFailed):
            return False
        future = self._waiters.pop(event.handle, None)
        if future is None:
            return False
        if not future.done():
            if isinstance(event, ResponseReceived):
                hook = self._hooks.pop(event.handle, None)
                if hook is not None:
                    try:
                        hook(event.handle, event.message)
                    except Exception:
                        log.exception("response hook failed")
                future.set_result(event.message)
            elif event.response is not None:
                future.set_result(event.response)  # a block refused: the answer
            else:
                future.set_exception(RequestError(event.reason, event.detail))
        return True

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._stopped:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._stopped:
            return
        datagrams = self.endpoint.datagrams_to_send(self._loop.time())
        committer = self.committer
        if committer is not None:
            start: Callable[[Done], None] | None = getattr(committer, "commit_async", None)
            if start is not None:
                # the datagrams wait behind the commit (and behind every earlier one: a reply
                # never leaves before a write it may have read); the loop goes on meanwhile
                batch = _Batch(self, datagrams)
                self._held.append(batch)
                start(batch.done)
                datagrams = []
            elif not committer.commit():
                datagrams = self._withhold(datagrams)
        if datagrams:
            self._transmit(datagrams)
        when = self.endpoint.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if when is None else self._loop.call_at(when, self._on_timer)
            self._timer_at = when

    def _release(self) -> None:
        """Send (or withhold) the held batches whose commit answered, in flush order."""
        held = self._held
        while held and held[0].ok is not None:
            batch = held.popleft()
            if self._stopped:
                continue
            datagrams = batch.datagrams if batch.ok else self._withhold(batch.datagrams)
            if datagrams:
                self._transmit(datagrams)

    def _withhold(self, datagrams: list[tuple[bytes, Peer]]) -> list[tuple[bytes, Peer]]:
        """The commit failed: no answer of this iteration may claim a write that is not there.
        Answers (responses, empty ACKs) are dropped and forgotten by the dedup cache; our own
        requests and RSTs still go. The store logged the failure."""
        answers = [d for d in datagrams if not 1 <= d[0][1] <= 31 and (d[0][0] >> 4) & 3 != 3]
        if answers:
            self.endpoint.withdraw_answers(answers)
            self.withheld += len(answers)
            log.debug("withheld %d answers: their writes were not committed", len(answers))
        return [d for d in datagrams if 1 <= d[0][1] <= 31 or (d[0][0] >> 4) & 3 == 3]

    def _on_timer(self) -> None:
        # asyncio may run a timer up to one clock resolution early: never hand the endpoint a
        # time before the deadline it asked for (it would find nothing due and ask again)
        now = max(self._loop.time(), self._timer_at or 0.0)
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(now)
        self._dispatch()

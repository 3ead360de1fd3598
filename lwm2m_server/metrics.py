"""Prometheus metrics of the LwM2M server: ``GET /metrics`` (text exposition format).

Two kinds of figures, chosen so that the hot path pays at most a dict increment:

* **counted where they happen** (``Counts``: plain ``collections.Counter`` s, no locks, no
  label lookups): uplink requests by operation and CoAP code (the CoAP site), downlink requests
  by operation and outcome (the service), notifications by verdict (the uplink), the duration
  of each group commit (the driver's flush, ``TimedCommitter``);
* **read at scrape time** (``ServerCollector.collect``): registrations by state and security
  mode (one pass over the registration cache: ~10 ms per 100k registrations, once per scrape),
  queued requests, DTLS handshakes, sessions and drops (the DTLS endpoint's own stats), the CoAP
  layer's limit refusals, the event stream's subscribers, queue depth and dropped events, the
  store's quarantined rows; on a Redis store, the cluster node's figures (its id, peers seen,
  routed/served/taken-over requests, Redis reachability, PING time, group commits, credential
  version reads and cache hits: ``ClusterNode.figures``).

The exposition is ``prometheus_client``'s (``generate_latest`` over a registry holding only
this collector), so names, types and escaping follow the format exactly.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from lwm2m_runtime.driver import AsyncCommitter, Committer, Done

    from .service import Lwm2mServer

COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Seconds; a group commit is a WAL append (well under a millisecond on local disk)."""


class Counts:
    """What the server counts as it goes (read by ``ServerCollector``)."""

    def __init__(self) -> None:
        self.uplink: Counter[tuple[str, str]] = Counter()
        """(operation, CoAP code) of every request a device sent (register, update, …)."""
        self.downlink: Counter[tuple[str, str]] = Counter()
        """(operation, outcome: the device's CoAP code, ``timeout`` or ``error``)."""
        self.notifications: Counter[str] = Counter()
        """By verdict: accept, reject, refuse, ignore (uplink.Verdict)."""
        self.commit_buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.commit_sum = 0.0
        self.commit_failures = 0

    def commit_took(self, seconds: float, ok: bool) -> None:
        self.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1
        self.commit_sum += seconds
        if not ok:
            self.commit_failures += 1


class TimedCommitter:
    """The store's ``Committer`` with each flush timed into ``Counts`` (store latency)."""

    def __init__(self, committer: Committer, counts: Counts) -> None:
        self._committer = committer
        self._counts = counts

    def commit(self) -> bool:
        start = time.perf_counter()
        ok = self._committer.commit()
        self._counts.commit_took(time.perf_counter() - start, ok)
        return ok


class TimedAsyncCommitter(TimedCommitter):
    """The same for a store that commits asynchronously (Redis): the time from the flush to
    the commit's answer."""

    def __init__(self, committer: AsyncCommitter, counts: Counts) -> None:
        super().__init__(committer, counts)
        self._start_async = committer.commit_async
        self._poll = committer.poll

    def commit_async(self, done: Done) -> None:
        start = time.perf_counter()
        counts = self._counts

        def timed(ok: bool) -> None:
            counts.commit_took(time.perf_counter() - start, ok)
            done(ok)

        self._start_async(timed)

    def poll(self) -> None:
        self._poll()


def timed_committer(committer: Committer, counts: Counts) -> TimedCommitter:
    """``committer`` timed into ``counts``, asynchronous when it is."""
    if hasattr(committer, "commit_async"):
        return TimedAsyncCommitter(cast("AsyncCommitter", committer), counts)
    return TimedCommitter(committer, counts)


def _dotted(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


class ServerCollector(Collector):
    """Every metric of one running server, built at scrape time."""

    def __init__(self, server: Lwm2mServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        counts = server.counts
        yield from self._registrations()
        yield from self._cluster()
        uplink = CounterMetricFamily(
            "lwm2m_uplink_requests",
            "Requests devices sent (Register, Update, De-register, Send) by CoAP answer code.",
            labels=["operation", "code"],
        )
        for (operation, code), n in sorted(counts.uplink.items()):
            uplink.add_metric([operation, code], n)
        yield uplink
        downlink = CounterMetricFamily(
            "lwm2m_downlink_requests",
            "Requests the server sent to devices, by operation and outcome (CoAP code, "
            "timeout or error).",
            labels=["operation", "outcome"],
        )
        for (operation, outcome), n in sorted(counts.downlink.items()):
            downlink.add_metric([operation, outcome], n)
        yield downlink
        notifications = CounterMetricFamily(
            "lwm2m_notifications",
            "Notifications received, by verdict (accept: stored; reject: unknown or cancelled "
            "observation; refuse: not from the observed peer; ignore: not stored).",
            labels=["verdict"],
        )
        for verdict, n in sorted(counts.notifications.items()):
            notifications.add_metric([verdict], n)
        yield notifications
        buckets, acc = [], 0
        for bound, n in zip((*COMMIT_BUCKETS, float("inf")), counts.commit_buckets, strict=True):
            acc += n
            buckets.append((str(bound) if bound != float("inf") else "+Inf", acc))
        commit = HistogramMetricFamily(
            "lwm2m_store_commit_seconds",
            "Duration of each group commit (the writes of one loop iteration, before replies).",
            buckets=buckets,
            sum_value=counts.commit_sum,
        )
        yield commit
        yield CounterMetricFamily(
            "lwm2m_store_commit_failures",
            "Group commits that failed (their answers were withheld).",
            value=counts.commit_failures,
        )
        yield GaugeMetricFamily(
            "lwm2m_store_quarantined_rows",
            "Store rows set aside at start because they could not be read.",
            value=server.quarantined(),
        )
        yield from self._queues()
        yield from self._events()
        yield from self._limits()
        yield from self._dtls()

    def _registrations(self) -> Iterator[Metric]:
        server = self.server
        now = server.clock()
        by_key: Counter[tuple[str, str]] = Counter()
        queues = server.core.queues
        for registration in server.core.registrations:
            if not registration.queue_mode:
                state = "online"
            elif queues.is_awake(registration.endpoint, now):
                state = "awake"
            else:
                state = "sleeping"
            identity = registration.identity
            by_key[(state, "nosec" if identity is None else identity.mode)] += 1
        family = GaugeMetricFamily(
            "lwm2m_registrations",
            "Registered clients by state (online: not in queue mode; awake/sleeping: queue "
            "mode) and security mode.",
            labels=["state", "security"],
        )
        for (state, security), n in sorted(by_key.items()):
            family.add_metric([state, security], n)
        yield family

    def _queues(self) -> Iterator[Metric]:
        sizes = list(self.server.core.queues.sizes().values())
        yield GaugeMetricFamily(
            "lwm2m_queued_requests",
            "Requests waiting for sleeping queue-mode clients.",
            value=sum(sizes),
        )
        yield GaugeMetricFamily(
            "lwm2m_queued_clients",
            "Queue-mode clients with requests waiting.",
            value=len(sizes),
        )

    def _events(self) -> Iterator[Metric]:
        bus = self.server.bus
        yield GaugeMetricFamily(
            "lwm2m_event_subscribers", "Open event streams.", value=bus.subscribers
        )
        yield GaugeMetricFamily(
            "lwm2m_event_queue_depth",
            "Events waiting in the fullest subscriber's queue (how far the slowest reader lags).",
            value=bus.deepest(),
        )
        yield CounterMetricFamily(
            "lwm2m_events_dropped",
            "Events dropped because a subscriber's queue was full.",
            value=bus.dropped,
        )

    def _limits(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "lwm2m_limit_refusals",
            "Requests refused or evicted by a configured limit (docs/security.md, Limits).",
            labels=["limit"],
        )
        for name, n in sorted(self.server.limit_counters().items()):
            family.add_metric([name], n)
        yield family

    def _dtls(self) -> Iterator[Metric]:
        coap = self.server.coap
        coaps = coap.coaps
        dtls = None if coaps is None else coaps.dtls
        if dtls is None:
            return
        stats = dtls.stats
        handshakes = CounterMetricFamily(
            "lwm2m_dtls_handshakes",
            "DTLS handshakes by result.",
            labels=["result"],
        )
        for result, n in (
            ("started", stats.handshakes_started),
            ("completed", stats.handshakes_completed),
            ("failed", stats.handshakes_failed),
            ("refused", stats.handshakes_refused),
            ("timed_out", stats.handshakes_timed_out),
        ):
            handshakes.add_metric([result], n)
        yield handshakes
        yield CounterMetricFamily(
            "lwm2m_dtls_hello_verify_requests",
            "HelloVerifyRequests sent (stateless cookie exchanges).",
            value=stats.hello_verify_requests,
        )
        drops = CounterMetricFamily(
            "lwm2m_dtls_drops",
            "DTLS datagrams or records dropped without an answer, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(stats.drops.items()):
            drops.add_metric([reason], n)
        yield drops
        yield GaugeMetricFamily(
            "lwm2m_dtls_sessions", "DTLS sessions held.", value=len(dtls.sessions)
        )
        lookups = CounterMetricFamily(
            "lwm2m_dtls_session_lookups",
            "Shared session store: lookups of unknown peers' sessions, by outcome "
            "(docs/coaps-transport.md, DTLS across nodes).",
            labels=["result"],
        )
        for result, n in (
            ("sent", stats.session_lookups),
            ("rate_limited", stats.session_lookups_refused),
            ("recent_miss", stats.session_lookups_cached),
        ):
            lookups.add_metric([result], n)
        yield lookups
        yield CounterMetricFamily(
            "lwm2m_dtls_sessions_adopted",
            "Sessions of other nodes (or of this node before a restart) continued here.",
            value=stats.sessions_adopted,
        )
        yield CounterMetricFamily(
            "lwm2m_dtls_sessions_taken_over",
            "Sessions forgotten here because another node continued them.",
            value=stats.sessions_taken_over,
        )

    def _cluster(self) -> Iterator[Metric]:
        """A node of a cluster on Redis (docs/cluster.md, "Health and metrics"); nothing on
        sqlite."""
        cluster = getattr(self.server, "cluster", None)
        if cluster is None:
            return
        figures = cluster.figures()
        info = GaugeMetricFamily(
            "lwm2m_cluster_node_info", "This node's id (constant 1).", labels=["node"]
        )
        info.add_metric([figures["node"]], 1)
        yield info
        yield GaugeMetricFamily(
            "lwm2m_cluster_peers",
            "Other nodes heard from within the last 45 s (events, heartbeats).",
            value=len(figures["peers"]),
        )
        for name, key, text in (
            (
                "routed_requests",
                "routed",
                "Requests this node routed to the node holding a device.",
            ),
            ("served_requests", "served", "Requests other nodes routed to this node."),
            ("queued_taken", "queuedTaken", "Queued requests taken over from other nodes."),
            (
                "holder_writes",
                "holderWrites",
                "Holder records written (which node holds a device).",
            ),
            (
                "events_dropped",
                "eventsDropped",
                "Events not shared with other nodes (outbox full).",
            ),
        ):
            yield CounterMetricFamily(f"lwm2m_cluster_{name}", text, value=figures[key])
        redis = figures["redis"]
        yield GaugeMetricFamily(
            "lwm2m_redis_up",
            "1 while Redis answers, 0 during an outage.",
            value=0 if redis["down"] else 1,
        )
        yield GaugeMetricFamily(
            "lwm2m_redis_breaker_open",
            "1 while the circuit breaker is open (Redis timed out: commands fail at once "
            "until a PING answers).",
            value=1 if redis["breakerOpen"] else 0,
        )
        yield CounterMetricFamily(
            "lwm2m_redis_breaker_trips",
            "Times the circuit breaker opened (a Redis command timed out).",
            value=redis["breakerTrips"],
        )
        yield CounterMetricFamily(
            "lwm2m_redis_failed_fast",
            "Redis commands failed at once by the open breaker (Redis not asked).",
            value=redis["failedFast"],
        )
        if redis["pingMs"] is not None:
            yield GaugeMetricFamily(
                "lwm2m_redis_ping_seconds",
                "How long the last PING of Redis took (every 15 s).",
                value=redis["pingMs"] / 1e3,
            )
        if redis["groupCommits"] is not None:
            yield CounterMetricFamily(
                "lwm2m_redis_group_commits",
                "Group commits sent to Redis (one round trip per busy loop iteration).",
                value=redis["groupCommits"],
            )
        if redis["credentialVersionReads"] is not None:
            yield CounterMetricFamily(
                "lwm2m_redis_credential_version_reads",
                "Reads of the credential version counter (one round trip per busy loop "
                "iteration, instead of one per request).",
                value=redis["credentialVersionReads"],
            )
            yield CounterMetricFamily(
                "lwm2m_redis_credential_versions_from_commits",
                "Loop turns whose credential lookups used the version the group commit read "
                "(no read of their own).",
                value=redis["credentialVersionsFromCommits"] or 0,
            )
            lookups = CounterMetricFamily(
                "lwm2m_credential_cache_lookups",
                "Device-record lookups of the resolver, by whether the cache answered.",
                labels=["result"],
            )
            lookups.add_metric(["hit"], redis["credentialCacheHits"])
            lookups.add_metric(["miss"], redis["credentialCacheMisses"])
            yield lookups


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: unauthenticated like ``/api/health`` (scrapers poll it), no device
    data in it — counts only."""
    registry: CollectorRegistry = request.app[METRICS_REGISTRY]
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def add_metrics_route(app: web.Application, server: Lwm2mServer) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    app[METRICS_REGISTRY] = registry
    app.router.add_route("GET", "/metrics", metrics_handler)

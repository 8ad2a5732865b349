"""Every Prometheus metric dialgate exports, in one module.

Three sources, three ways of counting:

- **Workers** (``WORKER`` registry). A ``dialgate worker`` runs several dramatiq
  processes; they write their samples to a private multiprocess directory that the
  worker's main process serves on ``DIALGATE_WORKER_METRICS_PORT`` (:func:`serve_worker`).
  ``python -m worker`` sets that directory before anything imports this module.
- **The control service's API process** (``CONTROL`` registry): transitions, pause
  latency and drain time, measured where the answer is made.
- **Shared state, read at scrape time** (:class:`StateCollector`): queue depth, outbox
  backlog, leases in flight, live workers, gates behind the database, propagation lag.
  It reads PostgreSQL, Redis and RabbitMQ, so every control replica reports the same
  cluster-wide values (alert rules take ``max()`` over replicas). The counters of the
  background loops (reconciler repairs, events published, monitor firings) are kept in
  one Redis hash (``<ns>:stats``) for the same reason: the loops run in another process,
  in every replica, and any replica reports the cluster's total. A flushed Redis resets
  them, which Prometheus' ``rate()`` treats as a counter reset.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from http.server import ThreadingHTTPServer

import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from shared.clients import REDIS_ERRORS
from shared.keys import Keys
from shared.supervisor import Supervised

WORKER = CollectorRegistry(auto_describe=True)
CONTROL = CollectorRegistry(auto_describe=True)

# Gate checks are one Redis round trip: sub-millisecond to a few ms.
_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Pauses wait for in-flight provider calls: up to the drain timeout (60 s at most).
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# -- worker ------------------------------------------------------------------------------
LINES_EXPIRED = Counter(
    "dialgate_lines_expired",
    "Lines whose call's end never arrived (a worker died, an event was lost), freed by expiry.",
    registry=WORKER,
)
DIALS_PLACED = Counter(
    "dialgate_dials_placed",
    "Calls handed to the provider (after a granted claim).",
    registry=WORKER,
)
DIALS_DENIED = Counter(
    "dialgate_dials_denied",
    "Dials the gate denied, by reason (paused, cancelled, gate_missing, gate_behind, "
    "concurrency, estop, redis_error, ...).",
    ["reason"],
    registry=WORKER,
)
DIAL_MESSAGES_DROPPED = Counter(
    "dialgate_dial_messages_dropped",
    "Dial messages a worker dropped undialed, by reason (bad_signature, invalid, foreign_epoch).",
    ["reason"],
    registry=WORKER,
)
GATE_CHECK_SECONDS = Histogram(
    "dialgate_gate_check_seconds",
    "One gate round trip: a claim (Lua claim + emergency-stop read) or the room check "
    "before a message starts.",
    buckets=_FAST,
    registry=WORKER,
)
DIALS_IN_FLIGHT = Gauge(
    "dialgate_worker_dials_in_flight",
    "Provider calls in progress in this worker (its leases in flight).",
    multiprocess_mode="livesum",
    registry=WORKER,
)
PROPAGATION_SECONDS = Histogram(
    "dialgate_propagation_seconds",
    "From a transition's commit to a worker applying its broadcast.",
    buckets=_SLOW,
    registry=WORKER,
)

# -- control service, API process ----------------------------------------------------------
TRANSITIONS = Counter(
    "dialgate_transitions",
    "Campaign transitions answered, by action.",
    ["action"],
    registry=CONTROL,
)
TRANSITION_SECONDS = Histogram(
    "dialgate_transition_seconds",
    "A transition from request to answer (commit, gate write and, for pause and cancel, "
    "the drain): the pause latency an operator sees.",
    ["action"],
    buckets=_SLOW,
    registry=CONTROL,
)
DRAIN_SECONDS = Histogram(
    "dialgate_drain_seconds",
    "How long pause, cancel or the emergency stop waited for in-flight dials to end.",
    ["action"],
    buckets=_SLOW,
    registry=CONTROL,
)
UNDRAINED = Counter(
    "dialgate_undrained",
    "Pauses, cancels and emergency stops that answered before every in-flight dial ended.",
    ["action"],
    registry=CONTROL,
)


def observe_transition(
    action: str, seconds: float, drain_ms: float | None, drained: bool | None
) -> None:
    """Record one answered transition (``drain_ms`` None when nothing was drained)."""
    TRANSITIONS.labels(action).inc()
    TRANSITION_SECONDS.labels(action).observe(seconds)
    if drain_ms is not None:
        observe_drain(action, drain_ms, bool(drained))


def observe_drain(action: str, drain_ms: float, drained: bool) -> None:
    """Record one drain (pause, cancel, or ``estop`` for the emergency stop)."""
    DRAIN_SECONDS.labels(action).observe(max(0.0, drain_ms) / 1000)
    if not drained:
        UNDRAINED.labels(action).inc()


# -- background loops (cluster-wide counters in Redis) -----------------------------------------
class LoopCount(StrEnum):
    """Counters of the control loops, in the ``<ns>:stats`` hash."""

    RECONCILER_REPAIRS = "reconciler_repairs"
    OUTBOX_PUBLISHED = "outbox_published"
    MONITOR_FIRINGS = "monitor_firings"  # each automatic pause a monitor rule makes


_LOOP_HELP = {
    LoopCount.RECONCILER_REPAIRS: "Gates the reconciler rewrote because they differed from "
    "the database.",
    LoopCount.OUTBOX_PUBLISHED: "Transition events the outbox relay published (confirmed).",
    LoopCount.MONITOR_FIRINGS: "Automatic pauses made by the monitors.",
}


def count(r: redis.Redis, keys: Keys, what: LoopCount, n: int = 1) -> None:
    """Add ``n`` to a loop counter; a metric never fails the loop that counts it."""
    if n:
        with contextlib.suppress(*REDIS_ERRORS):
            r.hincrby(keys.stats, what.value, n)


def loop_counts(r: redis.Redis, keys: Keys) -> dict[str, int]:
    """Every loop counter's cluster-wide total (counter name -> value)."""
    return {str(k): int(v) for k, v in r.hgetall(keys.stats).items()}


# -- shared state, read at scrape time -------------------------------------------------------
@dataclass
class State:
    """What the cluster looks like now; ``None`` fields could not be read."""

    campaigns: dict[str, int] | None = None  # status -> count
    outbox_backlog: int | None = None
    outbox_oldest_s: float | None = None
    gates_behind: int | None = None
    propagation_lag_s: float | None = None
    leases_in_flight: int | None = None
    live_workers: int | None = None
    emergency_stop: bool | None = None
    dial_queue: int | None = None
    loop_counts: dict[str, int] | None = None
    processes: list[Supervised] | None = None  # every supervised process
    errors: tuple[str, ...] = ()  # sources that failed: database, redis, rabbitmq


class StateCollector(Collector):
    """Turns :class:`State` (from ``read``) into gauges at every scrape."""

    def __init__(self, read: Callable[[], State]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time only; never at registration

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        st = self.read()

        def gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)

        if st.campaigns is not None:
            g = GaugeMetricFamily("dialgate_campaigns", "Campaigns by status.", labels=["status"])
            for status, n in sorted(st.campaigns.items()):
                g.add_metric([status], n)
            yield g
        yield from gauge(
            "dialgate_outbox_backlog", "Transition events not yet published.", st.outbox_backlog
        )
        yield from gauge(
            "dialgate_outbox_oldest_seconds",
            "Age of the oldest unpublished transition event (0 when none waits).",
            st.outbox_oldest_s,
        )
        yield from gauge(
            "dialgate_gates_behind_database",
            "Running or paused campaigns whose gate in Redis is missing or holds an older "
            "version than the database.",
            st.gates_behind,
        )
        yield from gauge(
            "dialgate_propagation_lag_seconds",
            "Longest time a live worker has not acknowledged a campaign's current version "
            "(0 when every live worker has).",
            st.propagation_lag_s,
        )
        yield from gauge(
            "dialgate_leases_in_flight", "Live gate leases, all campaigns.", st.leases_in_flight
        )
        yield from gauge(
            "dialgate_live_workers", "Worker processes with a recent heartbeat.", st.live_workers
        )
        yield from gauge(
            "dialgate_emergency_stop",
            "1 while the emergency stop is in force.",
            None if st.emergency_stop is None else float(st.emergency_stop),
        )
        yield from gauge(
            "dialgate_dial_queue_messages",
            "Dial messages ready in the RabbitMQ dial queue.",
            st.dial_queue,
        )
        if st.loop_counts is not None:
            for what in LoopCount:
                c = CounterMetricFamily(f"dialgate_{what.value}", _LOOP_HELP[what])
                c.add_metric([], st.loop_counts.get(what.value, 0))
                yield c
        if st.processes is not None:
            labels = ["supervisor", "host", "process"]
            restarts = CounterMetricFamily(
                "dialgate_process_restarts",
                "Times a supervised process died and was started again.",
                labels=labels,
            )
            running = GaugeMetricFamily(
                "dialgate_process_up", "1 while a supervised process runs.", labels=labels
            )
            for p in st.processes:
                restarts.add_metric([p.supervisor, p.host, p.name], p.restarts)
                running.add_metric([p.supervisor, p.host, p.name], int(p.running))
            yield restarts
            yield running
        up = GaugeMetricFamily(
            "dialgate_backend_up",
            "1 when this scrape could read the backing service.",
            labels=["service"],
        )
        for service in ("database", "redis", "rabbitmq"):
            up.add_metric([service], 0 if service in st.errors else 1)
        yield up
        yield GaugeMetricFamily(
            "dialgate_state_scrape_seconds",
            "Time this scrape took to read the shared state.",
            value=time.perf_counter() - start,
        )


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


# -- the worker's exposition ---------------------------------------------------------------
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by `python -m worker` before any import


def serve_worker(host: str, port: int) -> int:
    """Serve every worker process's samples at ``/metrics`` in a daemon thread; returns
    the bound port (``port=0`` lets the OS choose)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server = ThreadingHTTPServer((host, port), MetricsHandler.factory(registry))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_address[1])


def process_exited(pid: int) -> None:
    """Drop a stopped worker process's live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)

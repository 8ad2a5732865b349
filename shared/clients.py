"""Clients of the backing services with explicit timeouts and bounded retries.

redis-py's defaults can stall for seconds on a hung server; here every call is bounded
by ``DIALGATE_REDIS_TIMEOUT`` and retried at most once, so the gate fails closed fast.
The broker probe of a diagnosis is remembered for a few seconds (:class:`BrokerProbe`):
many diagnoses, one connection.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, cast

import pika
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from shared.settings import Settings, host_ports


def make_redis(settings: Settings) -> redis.Redis:
    """The process's Redis client: redis-py's cluster client on
    ``DIALGATE_REDIS_CLUSTER_NODES``, its Sentinel client's master on
    ``DIALGATE_REDIS_SENTINELS``, else one node at ``DIALGATE_REDIS_URL``."""
    t = settings.redis_timeout
    options: dict[str, Any] = {
        "socket_timeout": t,
        "socket_connect_timeout": t,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        "health_check_interval": 30,
        "decode_responses": True,
    }
    password = settings.secret("redis_password")
    if settings.redis_cluster_nodes is not None:
        nodes = [ClusterNode(h, p) for h, p in host_ports(settings.redis_cluster_nodes)]
        # The cluster client offers every command dialgate sends (pipelines, scripts by
        # SHA, pub/sub; each script's keys share one hash tag, see shared.keys), as the
        # suite proves on a real cluster; it is typed apart from redis.Redis only.
        return cast(redis.Redis, _cluster(settings, nodes, password, options))
    if settings.redis_sentinels is not None:
        assert settings.redis_sentinel_master is not None  # the settings check both
        sentinel = Sentinel(
            host_ports(settings.redis_sentinels),
            sentinel_kwargs={"socket_timeout": t, "socket_connect_timeout": t},
        )
        return sentinel.master_for(settings.redis_sentinel_master, password=password, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


# What a Redis call may raise when Redis is away: redis-py's cluster client also raises
# RedisClusterException (not a RedisError) when it has no node to ask.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

CLUSTER_WAIT_SAY_S = 5.0  # how often a process waiting for the cluster says so


def _cluster(
    settings: Settings, nodes: list[ClusterNode], password: str | None, options: dict[str, Any]
) -> RedisCluster:
    """redis-py's cluster client, which must read the cluster's slot map to exist: a
    process started while no start-up node answers waits for one (saying so every few
    seconds) instead of exiting, so a supervisor does not count a crash loop."""
    said = 0.0
    while True:
        try:
            return RedisCluster(startup_nodes=nodes, password=password, **options)
        except REDIS_ERRORS as exc:
            if time.monotonic() - said >= CLUSTER_WAIT_SAY_S:
                print(
                    f"dialgate: waiting for {settings.redis_where()} ({exc})",
                    file=sys.stderr,
                    flush=True,
                )
                said = time.monotonic()
            time.sleep(0.5)


def amqp_parameters(settings: Settings) -> pika.URLParameters:
    params = pika.URLParameters(settings.amqp_url)
    params.heartbeat = settings.amqp_heartbeat
    params.blocked_connection_timeout = 10
    params.socket_timeout = 5
    params.connection_attempts = 1
    return params


def quick_amqp(settings: Settings) -> pika.BlockingConnection:
    """A connection for a probe or a one-off read: it fails within about 3 s."""
    params = amqp_parameters(settings)
    params.socket_timeout = 2
    params.stack_timeout = 3
    return pika.BlockingConnection(params)


def amqp_unreachable(settings: Settings) -> str | None:
    """Why the broker does not answer a probe (``None``: it does)."""
    try:
        quick_amqp(settings).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


BROKER_PROBE_TTL_S = 5.0


class BrokerProbe:
    """:func:`amqp_unreachable`, its answer reused for ``ttl`` seconds. One probe runs at
    a time: callers arriving meanwhile wait for its answer instead of connecting too (so
    a broker that hangs costs them one timeout, not one each)."""

    def __init__(self, settings: Settings, ttl: float = BROKER_PROBE_TTL_S) -> None:
        self.settings = settings
        self.ttl = ttl
        self.connections = 0  # probes made (each one connection attempt)
        self._lock = threading.Lock()
        self._at: float | None = None
        self._answer: str | None = None

    def __call__(self) -> str | None:
        with self._lock:
            if self._at is None or time.monotonic() - self._at >= self.ttl:
                self.connections += 1
                self._answer = amqp_unreachable(self.settings)
                self._at = time.monotonic()
            return self._answer


_probes: dict[str, BrokerProbe] = {}
_probes_lock = threading.Lock()


def broker_probe(settings: Settings) -> BrokerProbe:
    """The process's one probe of the broker at ``settings.amqp_url``."""
    with _probes_lock:
        probe = _probes.get(settings.amqp_url)
        if probe is None:
            probe = _probes[settings.amqp_url] = BrokerProbe(settings)
        return probe

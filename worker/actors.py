"""The dramatiq side of a worker process: broker, the ``dial`` actor, the middleware.

dramatiq imports this module in every worker process (``dialgate worker`` runs
``dramatiq worker.actors``). Settings come from the ``DIALGATE_*`` environment.
The :class:`ControlPlane` middleware (dramatiq's extension point) starts the control
subscriber and the heartbeat when the worker boots and stops them on shutdown.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from shared import metrics
from shared.clients import make_redis
from shared.db import make_engine
from shared.gate import Gate
from shared.keys import DIAL_ACTOR, Keys
from shared.logging import configure
from shared.queue import make_broker
from shared.settings import Settings
from worker import backends
from worker.heartbeat import Heartbeat
from worker.runtime import Runtime
from worker.subscriber import Subscriber


class ControlPlane(Middleware):
    def __init__(self, runtime: Runtime, keys: Keys) -> None:
        self.runtime = runtime
        self.keys = keys
        self.subscriber: Subscriber | None = None
        self.heartbeat: Heartbeat | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        structlog.contextvars.bind_contextvars(worker_id=self.runtime.worker_id)
        self.heartbeat = Heartbeat(self.runtime, self.keys).start()
        self.subscriber = Subscriber(self.runtime, self.keys).start()
        structlog.get_logger("dialgate.worker").info(
            "worker_started", worker_id=self.runtime.worker_id, queue=self.keys.dial_queue
        )

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.subscriber is not None:
            self.subscriber.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.runtime.close()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        metrics.process_exited(os.getpid())


def build(settings: Settings) -> tuple[dramatiq.Broker, Runtime]:
    keys = Keys(settings.namespace)
    client = make_redis(settings)
    runtime = Runtime(
        settings,
        make_engine(settings),
        client,
        Gate(client, keys, provider_cps=settings.provider_max_cps),
        lambda report: backends.build(settings, report),
    )
    broker = make_broker(settings)
    broker.add_middleware(ControlPlane(runtime, keys))
    return broker, runtime


settings = Settings()
configure(settings.log_level, settings.log_json)
broker, runtime = build(settings)
dramatiq.set_broker(broker)


@dramatiq.actor(
    actor_name=DIAL_ACTOR,
    queue_name=Keys(settings.namespace).dial_queue,
    # An infrastructure error (database away) is retried; every retry passes the gate
    # and the conditional update again, so it can neither bypass a pause nor dial twice.
    max_retries=10,
    min_backoff=200,
    max_backoff=10_000,
)
def dial(*args: Any, **kwargs: Any) -> None:
    """One dial message. Its signature and contract are checked first; a message failing
    either returns (is acknowledged) without touching its attempts, never retried."""
    runtime.receive(args, kwargs)

"""Probes for orchestrators and Prometheus: ``/healthz``, ``/readyz``, ``/metrics``.

``/readyz`` answers 503 while the database, Redis or RabbitMQ is unreachable; while a
supervised process is down or has restarted in the last 10 minutes it answers 200 with
``status: degraded``, naming the process (:mod:`shared.supervisor`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from control.api.answers import Check, Checks, Health, Readiness
from control.api.deps import Service
from control.campaigns.observe import read_state
from control.campaigns.service import Control
from shared import metrics
from shared.clients import REDIS_ERRORS, quick_amqp
from shared.supervisor import Supervised, supervised


def router(control: Control) -> APIRouter:
    r = APIRouter()
    state = CollectorRegistry(auto_describe=False)
    state.register(metrics.StateCollector(lambda: read_state(control)))

    @r.get("/healthz")
    def healthz() -> Health:
        return Health(status="ok")

    @r.get(
        "/readyz",
        response_model_exclude_unset=True,
        responses={503: {"model": Readiness, "description": "A backing service is down."}},
    )
    def readyz(control: Service, response: Response) -> Readiness:
        checks = Checks(
            database=_check(control.ping_database),
            redis=_check(control.gate.ping),
            rabbitmq=_check(lambda: quick_amqp(control.settings).close()),
        )
        ready = all(c.ok for c in (checks.database, checks.redis, checks.rabbitmq))
        response.status_code = 200 if ready else 503
        now = time.time()
        try:
            found: list[Supervised] | None = supervised(control.redis, control.keys, now)
        except REDIS_ERRORS:
            found = None  # the redis check above says why
        degraded = [t for p in found or () if (t := p.trouble(now)) is not None]
        return Readiness(
            ready=ready,
            status="unavailable" if not ready else "degraded" if degraded else "ready",
            checks=checks,
            degraded=degraded,
            processes=found,
        )

    @r.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body = metrics.render(metrics.CONTROL) + metrics.render(state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return r


def _check(fn: Callable[[], object]) -> Check:
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:
        return Check(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
    return Check(ok=True, ms=round((time.perf_counter() - start) * 1000, 2))

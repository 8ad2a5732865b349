"""Probes for orchestrators and Prometheus: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from control.api.deps import Service
from control.campaigns.observe import read_state
from control.campaigns.service import Control
from shared import metrics
from shared.clients import quick_amqp


def router(control: Control) -> APIRouter:
    r = APIRouter()
    state = CollectorRegistry(auto_describe=False)
    state.register(metrics.StateCollector(lambda: read_state(control)))

    @r.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/readyz")
    def readyz(control: Service) -> JSONResponse:
        checks = {
            "database": _check(control.ping_database),
            "redis": _check(control.gate.ping),
            "rabbitmq": _check(lambda: quick_amqp(control.settings).close()),
        }
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @r.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body = metrics.render(metrics.CONTROL) + metrics.render(state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return r


def _check(fn: Callable[[], object]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 2)}

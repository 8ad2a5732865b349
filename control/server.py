"""``dialgate control``: config → logging → connections → serve.

One process serves the HTTP API and runs the background loops (outbox relay, feeder,
gate reconciler). Every loop is safe to run in several replicas at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
import uvicorn
from fastapi import FastAPI

from control.api import create_app
from control.feeder import Feeder
from control.reconciler import Reconciler
from control.relay import Relay
from control.services import Control
from shared.clients import make_redis
from shared.db import make_engine, make_sessionmaker
from shared.gate import Gate
from shared.keys import Keys
from shared.queue import make_broker
from shared.settings import Settings
from shared.states import Action, Source

log = structlog.get_logger("dialgate.control")


@dataclass
class Stack:
    control: Control
    app: FastAPI
    relay: Relay
    feeder: Feeder
    reconciler: Reconciler

    def start_loops(self) -> None:
        try:
            self.reconciler.reconcile()  # gates first: until then no worker dials
        except Exception as exc:
            log.warning("initial_reconcile_failed", error=str(exc))
        for loop in (self.reconciler, self.relay, self.feeder):
            loop.start()

    def stop_loops(self) -> None:
        for loop in (self.reconciler, self.relay, self.feeder):
            loop.stop()
        self.relay.close()


def build(settings: Settings) -> Stack:
    keys = Keys(settings.namespace)
    sessions = make_sessionmaker(make_engine(settings))
    gate = Gate(make_redis(settings), keys)
    control = Control(settings, sessions, gate, keys)

    def complete(campaign_id: int) -> None:
        control.transition(
            campaign_id,
            Action.COMPLETE,
            actor="feeder",
            source=Source.SYSTEM,
            reason="no contacts left to dial",
        )

    return Stack(
        control=control,
        app=create_app(control),
        relay=Relay(settings, sessions, keys),
        feeder=Feeder(settings, sessions, gate, keys, make_broker(settings), complete),
        reconciler=Reconciler(settings, sessions, gate),
    )


def serve(settings: Settings, background: bool = True) -> None:
    stack = build(settings)
    if background:
        stack.start_loops()
    try:
        uvicorn.run(
            stack.app,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        stack.stop_loops()

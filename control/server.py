"""``dialgate control``: config → logging → connections → serve.

One process serves the HTTP API (``--role api``); another (``--role loops``) runs the seven
background loops: outbox relay, feeder, gate reconciler, recovery sweep, cap lifter,
monitor and webhook sender. Every loop is safe to run in several replicas at once.
``dialgate control`` (``--role all``) runs both as supervised children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass

import structlog
import uvicorn
from fastapi import FastAPI

from control.api.app import create_app
from control.campaigns.service import Control
from control.loops.base import Loop
from control.loops.cap_lifter import CapLifter
from control.loops.feeder import Feeder
from control.loops.monitor import Monitor
from control.loops.reconciler import Reconciler
from control.loops.recovery import Recovery
from control.loops.relay import Relay
from control.loops.webhooks import WebhookSender
from shared.clients import make_redis
from shared.db import database_epoch, make_engine, make_sessionmaker
from shared.gate import Gate
from shared.keys import Keys
from shared.queue import make_broker
from shared.settings import Settings
from shared.states import Action, Source
from shared.supervisor import Spec, Supervisor, die_with_parent

log = structlog.get_logger("dialgate.control")


@dataclass
class Stack:
    control: Control
    app: FastAPI
    relay: Relay
    feeder: Feeder
    reconciler: Reconciler
    recovery: Recovery
    cap_lifter: CapLifter
    monitor: Monitor
    webhooks: WebhookSender

    @property
    def loops(self) -> tuple[Loop, ...]:
        return (
            self.reconciler,
            self.relay,
            self.feeder,
            self.recovery,
            self.cap_lifter,
            self.monitor,
            self.webhooks,
        )

    def start_loops(self) -> None:
        try:
            self.reconciler.reconcile()  # gates first: until then no worker dials
        except Exception as exc:
            log.warning("initial_reconcile_failed", error=str(exc))
        for loop in self.loops:
            loop.start()

    def stop_loops(self) -> None:
        for loop in self.loops:
            loop.stop()
        self.relay.close()
        self.webhooks.close()


def build(settings: Settings) -> Stack:
    keys = Keys(settings.namespace)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    client = make_redis(settings)
    replicas = 1 if settings.redis_sentinels else 0  # a pause is on the replica too
    gate = Gate(client, keys, database_epoch(engine), replicas=replicas)
    control = Control(settings, sessions, client, gate, keys)

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
        relay=Relay(settings, sessions, keys, client),
        feeder=Feeder(settings, sessions, client, gate, keys, make_broker(settings), complete),
        reconciler=Reconciler(settings, sessions, client, gate, control.dnc),
        recovery=Recovery(settings, sessions, client),
        cap_lifter=CapLifter(control),
        monitor=Monitor(settings, control),
        webhooks=WebhookSender(settings, sessions, keys, client),
    )


def run_loops(settings: Settings) -> None:
    """The background loops alone, until SIGTERM or SIGINT."""
    stack = build(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack.start_loops()
    log.info("control_loops_started", loops=[loop.name for loop in stack.loops])
    try:
        while not stop.wait(0.5):  # a timed wait: the signal handler always gets its turn
            pass
    finally:
        stack.stop_loops()


def run_monitor(settings: Settings) -> None:
    """``dialgate monitor``: the monitor loop alone (the loops role runs it too)."""
    stack = build(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack.monitor.start()
    log.info("monitor_started")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stack.monitor.stop()


def http_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """How the API is served, by ``dialgate control`` and the tests' stacks alike. Forwarded
    headers are dialgate's to judge (``DIALGATE_TRUSTED_PROXIES``,
    :mod:`control.auth.proxies`): uvicorn's own handling, which believes any sent from
    127.0.0.1, is off."""
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False
    )


def serve(settings: Settings, role: str = "all") -> int:
    """``api``: HTTP only; ``loops``: the seven loops only (relay, feeder, reconciler,
    recovery, cap lifter, monitor, webhook sender); ``all``: both, each in a supervised child
    process (:mod:`shared.supervisor`: one that dies is started again), so that the loops' work
    never delays an answer (one Python process would make a pause wait for the loops'
    turns at the GIL)."""
    if role == "all":
        exe = [sys.executable, "-m", "control.cli", "control", "--role"]
        return Supervisor(
            "dialgate control",
            [Spec("api", [*exe, "api"]), Spec("loops", [*exe, "loops"])],
            redis_client=make_redis(settings),
            keys=Keys(settings.namespace),
            env={**os.environ, "DIALGATE_HTTP_PORT": str(settings.http_port)},  # --port
        ).run()
    die_with_parent()
    if role == "loops":
        run_loops(settings)
        return 0
    stack = build(settings)
    server = uvicorn.Server(http_config(stack.app, settings.http_host, settings.http_port))
    # After a graceful shutdown on Ctrl-C uvicorn raises the signal again, for the default
    # handler: a KeyboardInterrupt here, and its traceback, once everything has stopped.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0

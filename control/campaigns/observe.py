"""Reads the cluster's shared state for ``/metrics`` (:class:`shared.metrics.State`).

Each backing service is read on its own: one that does not answer leaves its fields
empty and is reported by ``dialgate_backend_up{service}``, the others still answer.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pika
import structlog
from sqlalchemy import func, select

from control.campaigns.service import Control
from control.loops.relay import backlog
from shared import metrics
from shared.clients import REDIS_ERRORS, quick_amqp
from shared.metrics import State
from shared.models import Campaign
from shared.states import Status
from shared.supervisor import supervised

log = structlog.get_logger("dialgate.observe")

ACTIVE = (Status.RUNNING.value, Status.PAUSED.value)


def read_state(control: Control) -> State:
    st = State()
    errors: list[str] = []
    active: list[tuple[int, int, datetime]] = []  # id, version, time of that version
    try:
        with control.sessions() as s:
            rows = s.execute(select(Campaign.status, func.count()).group_by(Campaign.status))
            st.campaigns = {str(status): int(n) for status, n in rows}
            unsent = backlog(s)
            st.outbox_backlog = unsent.unsent
            st.outbox_oldest_s = 0.0 if unsent.oldest is None else _age(unsent.oldest)
            active = [
                (int(i), int(v), t)
                for i, v, t in s.execute(
                    select(Campaign.id, Campaign.version, Campaign.updated_at).where(
                        Campaign.status.in_(ACTIVE)
                    )
                )
            ]
    except Exception as exc:
        errors.append("database")
        log.warning("metrics_database_unreadable", error=str(exc)[:300])
    try:
        _read_redis(control, st, active if "database" not in errors else None)
    except REDIS_ERRORS as exc:
        errors.append("redis")
        log.warning("metrics_redis_unreadable", error=str(exc)[:300])
    try:
        st.dial_queue = _queue_depth(control)
    except Exception as exc:
        errors.append("rabbitmq")
        log.warning("metrics_rabbitmq_unreadable", error=str(exc)[:300])
    st.errors = tuple(errors)
    return st


def _age(t: datetime) -> float:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - t).total_seconds())


def _read_redis(
    control: Control, st: State, active: list[tuple[int, int, datetime]] | None
) -> None:
    gate = control.gate
    live = control.live_workers()
    st.live_workers = len(live)
    st.leases_in_flight = gate.inflight_all()
    st.emergency_stop = gate.estop() is not None
    st.loop_counts = metrics.loop_counts(control.redis, control.keys)
    st.processes = supervised(control.redis, control.keys)
    if active is None:
        return  # the database did not answer: nothing to compare the gates with
    found = gate.propagation([cid for cid, _, _ in active])
    behind, lag = 0, 0.0
    for cid, version, at in active:
        stored, acks = found[cid]
        if stored is None or stored < version:
            behind += 1
        if any(acks.get(w, 0) < version for w in live):
            lag = max(lag, _age(at))
    st.gates_behind, st.propagation_lag_s = behind, lag


def _queue_depth(control: Control) -> int:
    conn = quick_amqp(control.settings)
    try:
        ch = conn.channel()
        frame = ch.queue_declare(control.keys.dial_queue, passive=True)
        return int(frame.method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return 0  # no worker nor feeder declared it yet: nothing is queued
        raise
    finally:
        with contextlib.suppress(Exception):
            conn.close()

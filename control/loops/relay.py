"""Outbox relay: publishes committed transition events to ``<namespace>.control``.

At least once, in commit order per batch: rows are claimed for a while by one relay
(a conditional update, so several relays never publish the same row at the same time),
published with publisher confirms and ``mandatory``, and marked sent only after the
broker confirmed them. While RabbitMQ is away rows stay unsent and the loop backs off.
Workers ignore versions they have already applied, so a repeat is harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pika
import pika.exceptions
import redis
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from control.loops.base import Loop
from shared import metrics
from shared.clients import amqp_parameters
from shared.keys import Keys
from shared.messages import SIGNATURE_HEADER, sign
from shared.models import Outbox, utcnow
from shared.settings import Settings

BATCH = 200
CLAIM_FOR = timedelta(seconds=30)


@dataclass(frozen=True)
class Backlog:
    """The outbox rows the relay has not published yet."""

    unsent: int
    oldest: datetime | None  # when the oldest of them was written (UTC); None: no row


def backlog(s: Session) -> Backlog:
    """How many outbox rows wait to be published, and since when."""
    unsent, oldest = s.execute(
        select(func.count(), func.min(Outbox.created_at)).where(Outbox.sent_at.is_(None))
    ).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite's aggregate skips the column type
        oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=UTC)
    return Backlog(int(unsent), oldest)


class Relay(Loop):
    name = "relay"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        keys: Keys,
        r: redis.Redis | None = None,
    ) -> None:
        super().__init__(settings.relay_interval, (r, keys.outbox_nudge) if r else None)
        self.settings = settings
        self.r = r
        self.sessions = sessions
        self.keys = keys
        self.relay_id = f"relay-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._conn: pika.BlockingConnection | None = None
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None

    def _connect(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        self._conn = pika.BlockingConnection(amqp_parameters(self.settings))
        ch = self._conn.channel()
        ch.exchange_declare(self.keys.control_exchange, exchange_type="topic", durable=True)
        ch.confirm_delivery()
        self._channel = ch
        self.log.info("relay_connected", exchange=self.keys.control_exchange)
        return ch

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception):
                conn.close()

    def _claim(self) -> list[Outbox]:
        now = utcnow()
        free = or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now)
        with self.sessions.begin() as s:
            ids = list(
                s.scalars(
                    select(Outbox.id)
                    .where(Outbox.sent_at.is_(None), free)
                    .order_by(Outbox.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                return []
            # The unsent/free predicate is repeated so a concurrent relay that claimed
            # the same rows first makes this update skip them.
            claimed = set(
                s.scalars(
                    update(Outbox)
                    .where(Outbox.id.in_(ids), Outbox.sent_at.is_(None), free)
                    .values(
                        claimed_by=self.relay_id,
                        claimed_until=now + CLAIM_FOR,
                        attempts=Outbox.attempts + 1,
                    )
                    .returning(Outbox.id)
                )
            )
            rows = s.scalars(select(Outbox).where(Outbox.id.in_(claimed)).order_by(Outbox.id))
            return list(rows)

    def step(self) -> int:
        rows = self._claim()
        if not rows:
            return 0
        try:
            ch = self._connect()
            sent = []
            key = self.settings.secret("control_key")
            for row in rows:
                body = json.dumps(row.payload).encode()
                try:
                    ch.basic_publish(
                        self.keys.control_exchange,
                        row.routing_key,
                        body,
                        properties=pika.BasicProperties(
                            content_type="application/json",
                            delivery_mode=2,
                            message_id=f"outbox-{row.id}",
                            headers={SIGNATURE_HEADER: sign(body, key)} if key else None,
                        ),
                        mandatory=True,
                    )
                except pika.exceptions.UnroutableError:
                    # No worker queue is bound: nobody to tell now; workers read the gate
                    # when they connect, so this event is not needed for safety.
                    self.log.info("event_unroutable", outbox_id=row.id, key=row.routing_key)
                sent.append(row.id)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            self._release(rows)
            raise RuntimeError(f"RabbitMQ unavailable, {len(rows)} events wait: {exc!r}") from exc
        with self.sessions.begin() as s:
            s.execute(
                update(Outbox)
                .where(Outbox.id.in_(sent), Outbox.claimed_by == self.relay_id)
                .values(sent_at=utcnow(), claimed_until=None)
            )
        self.log.debug("published", count=len(sent))
        if self.r is not None:
            metrics.count(self.r, self.keys, metrics.LoopCount.OUTBOX_PUBLISHED, len(sent))
        return len(sent)

    def _release(self, rows: list[Outbox]) -> None:
        try:
            with self.sessions.begin() as s:
                s.execute(
                    update(Outbox)
                    .where(
                        Outbox.id.in_([r.id for r in rows]),
                        Outbox.claimed_by == self.relay_id,
                        Outbox.sent_at.is_(None),
                    )
                    .values(claimed_until=None, claimed_by=None)
                )
        except Exception as exc:  # the claim expires by itself
            self.log.warning("relay_release_failed", error=str(exc))

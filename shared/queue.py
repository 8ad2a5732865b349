"""The dramatiq broker on RabbitMQ, the queues' types, and the one way to build a dial
message.

The control service (feeder) enqueues dial messages and the workers consume them;
both build the broker here so they agree on the queue and the actor name.

With ``DIALGATE_AMQP_QUORUM=1`` the dial queue (with dramatiq's delay queue ``.DQ`` and
dead-letter queue ``.XQ``) and each worker's control queue are quorum queues: replicated
on a majority of the RabbitMQ cluster's nodes, so a node's death loses no dial message
and stops no consumer for longer than a leader election. A queue's type is fixed when it
is declared; :func:`queue_conflict` says so in one line when it differs from the setting.
"""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions
from dramatiq import Message
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker, xq_name
from dramatiq.middleware import Middleware

from shared.clients import quick_amqp
from shared.keys import DIAL_ACTOR, Keys
from shared.messages import DialBatch
from shared.settings import Settings

QUORUM = {"x-queue-type": "quorum"}
# A quorum control queue (it outlives its connection) is removed this long after its
# worker has gone; a worker coming back later declares it again and reads every gate.
CONTROL_QUEUE_EXPIRES_MS = 60_000


class QuorumBroker(RabbitmqBroker):
    """dramatiq's RabbitMQ broker declaring its queues as quorum queues: dramatiq has no
    option for the type, and declares every queue through these two methods."""

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return {**super()._build_queue_arguments(queue_name), **QUORUM}

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=xq_name(queue_name),
            durable=True,
            arguments={"x-message-ttl": DEAD_MESSAGE_TTL, **QUORUM},
        )


def make_broker(settings: Settings, middleware: list[Middleware] | None = None) -> RabbitmqBroker:
    # Timeouts ride on the URL: dramatiq refuses a URL together with pika parameters.
    sep = "&" if "?" in settings.amqp_url else "?"
    url = (
        f"{settings.amqp_url}{sep}heartbeat={settings.amqp_heartbeat}"
        "&blocked_connection_timeout=10&connection_attempts=1&socket_timeout=5"
    )
    kind = QuorumBroker if settings.amqp_quorum else RabbitmqBroker
    return kind(url=url, confirm_delivery=True, middleware=middleware)


def control_queue_options(settings: Settings) -> dict[str, Any]:
    """How a worker declares its control queue: exclusive to its connection (classic),
    or quorum (durable and replicated; removed a minute after its worker has gone)."""
    if settings.amqp_quorum:
        return {"durable": True, "arguments": {**QUORUM, "x-expires": CONTROL_QUEUE_EXPIRES_MS}}
    return {"exclusive": True, "auto_delete": True}


def queue_conflict(settings: Settings) -> str | None:
    """Why the dial queue cannot be used as configured (``None``: it can, or the broker
    does not answer, which is told elsewhere): it exists with the other queue type."""
    queue = Keys(settings.namespace).dial_queue
    broker = make_broker(settings)
    wanted = broker._build_queue_arguments(queue)
    try:
        conn = quick_amqp(settings)
    except pika.exceptions.AMQPError:
        return None
    try:
        conn.channel().queue_declare(queue, durable=True, arguments=wanted)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        have, want = ("classic", "quorum") if settings.amqp_quorum else ("quorum", "classic")
        return (
            f"the dial queue {queue} exists as a {have} queue and DIALGATE_AMQP_QUORUM asks "
            f"for a {want} one (a queue's type is fixed): let it drain and delete it "
            f"(rabbitmqctl delete_queue {queue}), or use another DIALGATE_NAMESPACE"
        )
    finally:
        if conn.is_open:
            conn.close()
    return None


def dial_message(keys: Keys, batch: DialBatch) -> Message:
    return Message(
        queue_name=keys.dial_queue,
        actor_name=DIAL_ACTOR,
        args=(),
        kwargs=batch.model_dump(),
        options={},
    )

"""The dramatiq broker on RabbitMQ, and the one way to build a dial message.

The control service (feeder) enqueues dial messages and the workers consume them;
both build the broker here so they agree on the queue and the actor name.
"""

from __future__ import annotations

from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from shared.keys import DIAL_ACTOR, Keys
from shared.messages import DialBatch
from shared.settings import Settings


def make_broker(settings: Settings, middleware: list[Middleware] | None = None) -> RabbitmqBroker:
    # Timeouts ride on the URL: dramatiq refuses a URL together with pika parameters.
    sep = "&" if "?" in settings.amqp_url else "?"
    url = (
        f"{settings.amqp_url}{sep}heartbeat={settings.amqp_heartbeat}"
        "&blocked_connection_timeout=10&connection_attempts=1&socket_timeout=5"
    )
    return RabbitmqBroker(url=url, confirm_delivery=True, middleware=middleware)


def dial_message(keys: Keys, batch: DialBatch) -> Message:
    return Message(
        queue_name=keys.dial_queue,
        actor_name=DIAL_ACTOR,
        args=(),
        kwargs=batch.model_dump(),
        options={},
    )

"""The feeder: lost dial messages are enqueued again and still dialed exactly once."""

from __future__ import annotations

import pika
import pika.exceptions

from tests.conftest import AMQP_URL
from tests.integration.test_pause_path import assert_each_contact_dialed_once
from tests.support.stack import wait_for


def depth(conn: pika.BlockingConnection, queue: str) -> int:
    """Messages ready in ``queue``; -1 while it does not exist yet."""
    try:
        declared = conn.channel().queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return -1
    return int(declared.method.message_count)


def test_dial_messages_lost_by_the_broker_are_enqueued_again_and_dialed_once(make_stack):
    stack = make_stack(feeder_requeue_after=1.0).start()
    cid = stack.make_campaign(contacts=40, max_concurrency=5)
    wait_for(lambda: stack.campaign(cid)["counts"]["queued"] == 10, 10, "10 queued attempts")
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        wait_for(lambda: depth(conn, stack.keys.dial_queue) == 10, 10, "10 dial messages")
        # The messages vanish (a broker that lost them, a purge by mistake).
        conn.channel().queue_purge(stack.keys.dial_queue)
    finally:
        conn.close()

    stack.start_worker()
    done = stack.wait_status(cid, "completed", timeout=60)
    assert done["counts"]["done"] == 40
    assert_each_contact_dialed_once(stack, cid, 40)

"""RabbitMQ killed (-9) and restarted, and RabbitMQ blackholed, while a campaign dials."""

from __future__ import annotations

import time

from tests.faults.conftest import Run
from tests.support.stack import wait_for


def test_rabbitmq_killed_while_dialing_and_while_paused_loses_doubles_and_leaks_nothing(
    fresh, private_rabbitmq
):
    run = Run.start(fresh(amqp_url=private_rabbitmq.url), contacts=300)

    # 1. killed while dialing: workers reconnect, redelivered messages never dial twice
    with private_rabbitmq.stopped():  # kill -9; started again in its finally
        run.faults += 1
    run.recovered(time.time())

    # 2. killed, a pause committed while it is away, then back: the outbox publishes the
    #    pause after, the gate held it all along
    with private_rabbitmq.stopped():
        run.faults += 1
        paused = run.act("pause")
        assert paused["gate"]["closed"] is True and paused["gate"]["drained"] is True
        assert run.stack.outbox_unsent() >= 1
        assert run.ready() == {"database": True, "redis": True, "rabbitmq": False}
    run.wait_ready()
    wait_for(lambda: run.stack.outbox_unsent() == 0, 60, "the relay to publish the pause")
    run.wait_acked()
    assert run.stack.campaign(run.cid)["status"] == "paused"
    resumed = time.time()
    run.act("resume")
    run.recovered(resumed)
    run.finish("rabbitmq kill -9 + restart, while dialing and while paused")


def test_rabbitmq_blackholed_is_detected_by_heartbeats_and_dialing_resumes_after(
    fresh, private_rabbitmq
):
    run = Run.start(fresh(amqp_url=private_rabbitmq.url), contacts=300)
    with private_rabbitmq.blackholed():
        run.faults += 1
        paused = run.act("pause")  # the gate closes; the broadcast waits in the outbox
        assert paused["gate"]["drained"] is True
        # longer than two heartbeats: every client must notice the silence on its own
        time.sleep(3 * run.stack.settings.amqp_heartbeat)
    wait_for(
        lambda: run.stack.outbox_unsent() == 0,
        60,
        "the relay to publish the pause",
    )
    run.wait_acked()
    resumed = time.time()
    run.act("resume")
    run.recovered(resumed)
    run.finish("rabbitmq blackholed (kill -STOP) for 3 heartbeats, during a pause")

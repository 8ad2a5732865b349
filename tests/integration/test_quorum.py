"""``DIALGATE_AMQP_QUORUM=1``: the dial queue and the control queues are quorum queues,
on this machine's RabbitMQ, and a queue of the other type is refused in one line."""

from __future__ import annotations

import subprocess
import sys
import time

import pika
import pika.exceptions
import pytest

from shared.queue import control_queue_options, queue_conflict
from tests.support.stack import ROOT, TestStack


def _declared_as(stack: TestStack, queue: str, **how: object) -> int:
    """Declare ``queue`` as ``how`` says: 0 if RabbitMQ agrees, else its reply code."""
    conn = pika.BlockingConnection(pika.URLParameters(stack.settings.amqp_url))
    try:
        conn.channel().queue_declare(queue, **how)  # type: ignore[arg-type]
    except pika.exceptions.ChannelClosedByBroker as exc:
        return int(exc.reply_code)
    finally:
        if conn.is_open:
            conn.close()
    return 0


def test_quorum_queues_carry_dials_and_pauses_and_the_other_type_is_refused(make_stack):
    stack = make_stack(db="sqlite", amqp_quorum=True).start()
    worker = stack.start_worker(threads=2)
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=40, max_concurrency=4)
    stack.wait_calls(10)
    paused = stack.act(cid, "pause")
    assert paused["gate"]["drained"] is True
    answered = time.time()
    time.sleep(0.3)
    assert [c for c in stack.calls() if c["t"] > answered] == []
    stack.act(cid, "resume")
    stack.wait_status(cid, "completed", timeout=60)
    assert stack.check_calls({cid}).ok

    # Quorum queues: a classic declaration is refused (406 PRECONDITION_FAILED).
    control = stack.keys.control_queue(stack.live_workers()[0])
    assert _declared_as(stack, control, **control_queue_options(stack.settings)) == 0
    for queue in (stack.keys.dial_queue, f"{stack.keys.dial_queue}.DQ"):
        assert _declared_as(stack, queue, durable=True) == 406
    classic = stack.settings.model_copy(update={"amqp_quorum": False})
    conflict = queue_conflict(classic)
    assert conflict is not None
    assert f"{stack.keys.dial_queue} exists as a quorum queue" in conflict
    assert "DIALGATE_AMQP_QUORUM" in conflict
    assert queue_conflict(stack.settings) is None
    env = {**stack.worker_env(), "DIALGATE_AMQP_QUORUM": "false"}
    refused = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert refused.returncode == 2 and conflict in refused.stderr.decode(), refused.stderr

    # A worker that stops deletes its quorum control queue (it would expire in a minute).
    stack.stop_workers()
    assert worker.returncode == 0
    assert _declared_as(stack, control, passive=True) == 404


@pytest.mark.parametrize("quorum", [False, True])
def test_a_worker_declares_its_control_queue_as_the_setting_says(make_stack, quorum):
    stack = make_stack(db="sqlite", amqp_quorum=quorum).start(loops=False)
    stack.start_worker(threads=1)
    stack.wait_workers(1)
    control = stack.keys.control_queue(stack.live_workers()[0])
    as_quorum = control_queue_options(stack.settings.model_copy(update={"amqp_quorum": True}))
    assert (_declared_as(stack, control, **as_quorum) == 0) is quorum

"""Two feeders and two relays at once (two loops processes): nothing enqueued or published
twice."""

from __future__ import annotations

from sqlalchemy import select

from shared.models import Outbox
from tests.faults.conftest import Run
from tests.support.stack import wait_for


def test_feeder_and_relay_running_twice_enqueue_and_publish_everything_once(fresh):
    stack = fresh()
    stack.start()
    stack.start_loops_process()  # a second set of the six loops
    for _ in range(2):
        stack.start_worker(threads=4)
    stack.wait_workers(2)
    run = Run(stack, stack.make_campaign(300, max_concurrency=4), 300)
    stack.wait_calls(20)
    for _ in range(5):
        run.act("pause")
        run.act("resume")
    run.finish("feeder and relay running twice, 5 pauses")

    assert stack.stack is not None
    wait_for(lambda: stack.outbox_unsent() == 0, 30, "the outbox to be empty")
    with stack.stack.control.sessions() as s:
        rows = list(s.execute(select(Outbox.id, Outbox.sent_at, Outbox.attempts)))
    # each event claimed (and so published) by one relay, once
    assert rows and all(attempts == 1 for _, _, attempts in rows), rows
    # each dial message taken once: a second message for an attempt would be skipped
    skipped = sum(
        (stack.tmp / f"worker-{n}.log").read_text().count("attempt_not_queued_skip")
        for n in range(2)
    )
    assert skipped == 0, f"{skipped} dial messages were duplicates"

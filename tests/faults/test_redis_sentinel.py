"""Redis behind a Sentinel: the master killed while a campaign dials, the replica
promoted, and every process follows it (``DIALGATE_REDIS_SENTINELS``)."""

from __future__ import annotations

import time

from tests.faults.conftest import Run
from tests.support.stack import wait_for


def test_a_sentinel_failover_while_dialing_moves_every_process_to_the_new_master(
    redis_sentinel,  # first: it outlives the stack, which cleans its keys up at the end
    fresh,
):
    settings = {
        "redis_sentinels": redis_sentinel.sentinels,
        "redis_sentinel_master": redis_sentinel.MASTER,
    }
    run = Run.start(fresh(**settings), contacts=300)
    first = redis_sentinel.master_port()
    assert first == redis_sentinel.master.port

    redis_sentinel.master.kill()
    run.faults += 1
    killed = time.time()
    wait_for(lambda: redis_sentinel.master_port() != first, 30, "the Sentinel's failover")
    assert redis_sentinel.master_port() == redis_sentinel.replica.port
    run.recovered(killed)

    paused = run.act("pause")  # on the new master: the barrier holds there too
    assert paused["gate"]["drained"] is True, paused["gate"]
    answered = time.time()
    time.sleep(0.5)
    assert run.calls_after(answered) == [], "a call after the pause on the new master"
    resumed = time.time()
    run.act("resume")
    run.recovered(resumed)
    result = run.finish("redis sentinel: the master killed while dialing, the replica promoted")
    assert result["doubled"] == result["late"] == result["lost"] == 0
